"""End to end: real secondaries learn aliasd's zones from its catalog zone.

BIND named (``catalog-zones``) and Knot knotd (``catalog-role: interpret``)
are configured with the catalog zone only. A zone file dropped into the
zone directory, followed by SIGHUP, must reach them with no change to their
configuration; a removed file must make them stop serving the zone.
"""

from __future__ import annotations

import re
import signal
import textwrap
import time

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.serial
import dns.zone
import pytest

from aliasd.zones.catalog import catalog_source, member_id
from tests.aliasd_process import free_port
from tests.secondaries import Knot, Named, available

pytestmark = pytest.mark.e2e

CATALOG = "catalog.example."
ZONE = """\
    $ORIGIN {zone}.
    $TTL 300
    @    SOA ns1 hostmaster 1 86400 600 864000 120
         NS  ns1
    ns1  A   192.0.2.53
    www  A   {address}
    """
SECONDARIES = [pytest.param(Named, id="named"), pytest.param(Knot, id="knot")]
TIMEOUT = 20  # seconds for a change to reach the secondary


def zone_text(zone: str, address: str = "192.0.2.80") -> str:
    return textwrap.dedent(ZONE.format(zone=zone, address=address))


def catalog_config(secondary_port: int) -> str:
    return f"""
        [zone-defaults]
        notify = ["127.0.0.1:{secondary_port}"]
        allow-transfer = ["127.0.0.1"]

        [zone-directory]
        path = "zones.d"

        [catalog]
        zone = "{CATALOG}"
        notify = ["127.0.0.1:{secondary_port}"]
        allow-transfer = ["127.0.0.1"]
        """


def need(kind) -> None:
    program = "named" if kind is Named else "knotd"
    if not available(program):
        pytest.skip(f"{program} is not installed ({'bind9' if kind is Named else 'knot'}; .ci/run installs it)")


def start_secondary(kind, tmp_path, port, primary_port):
    directory = tmp_path / kind.name
    directory.mkdir()
    return kind(directory, port).start_catalog_consumer(CATALOG, primary_port)


def catalog_axfr(port) -> dns.zone.Zone:
    zone = dns.zone.Zone(CATALOG, relativize=False)
    dns.query.inbound_xfr("127.0.0.1", zone, port=port, timeout=5, lifetime=10)
    return zone


def members_of(zone: dns.zone.Zone) -> dict[str, str]:
    """label -> member zone, from the PTRs under zones.<catalog>."""
    zones = dns.name.from_text(f"zones.{CATALOG}")
    return {
        name.labels[0].decode(): rdata.target.to_text()
        for name, rdataset in zone.iterate_rdatasets(dns.rdatatype.PTR)
        if name.parent() == zones
        for rdata in rdataset
    }


def catalog_serial(p) -> int:
    return p.query(CATALOG, "SOA").answer[0][0].serial


def wait_until(p, predicate, what: str, secondary) -> float:
    """Seconds until ``predicate()`` holds; fails with both logs otherwise."""
    started = time.monotonic()
    deadline = started + TIMEOUT
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(
        f"{what}: not within {TIMEOUT}s\n--- aliasd\n{p.log()}\n--- {secondary.name}\n{secondary.log()}"
    )


def hup(p) -> None:
    p.proc.send_signal(signal.SIGHUP)


@pytest.mark.parametrize("kind", SECONDARIES)
def test_secondary_follows_zones_added_and_removed_through_the_catalog(aliasd, tmp_path, kind):
    need(kind)
    secondary_port = free_port()
    zones_d = tmp_path / "zones.d"
    zones_d.mkdir()
    p = aliasd(
        catalog_config(secondary_port),
        {
            "zones.d/example.com.zone": zone_text("example.com"),
            "zones.d/example.org.zone": zone_text("example.org"),
        },
        server="serial-interval = 0\n",
    )
    # The catalog as aliasd serves it: RFC 9432 version 2, one PTR per zone.
    catalog = catalog_axfr(p.port)
    version = catalog.get_rdataset(f"version.{CATALOG}", "TXT")
    assert [r.to_text() for r in version] == ['"2"']
    assert [r.to_text() for r in catalog.get_rdataset(CATALOG, "NS")] == ["invalid."]
    assert members_of(catalog) == {
        member_id(dns.name.from_text(z)): z for z in ("example.com.", "example.org.")
    }

    secondary = start_secondary(kind, tmp_path, secondary_port, p.port)
    try:
        first = wait_until(
            p,
            lambda: secondary.serves("example.com") and secondary.serves("example.org"),
            "both member zones served",
            secondary,
        )
        assert secondary.addresses("www.example.org") == {"192.0.2.80"}

        # A new file and SIGHUP: a new catalog serial, an incremental IXFR
        # with the new PTR, and the secondary serves the zone.
        before = catalog_serial(p)
        (zones_d / "example.net.zone").write_text(zone_text("example.net", "192.0.2.81"))
        hup(p)
        added = wait_until(p, lambda: secondary.serves("example.net"), "added zone served", secondary)
        assert secondary.addresses("www.example.net") == {"192.0.2.81"}
        after = catalog_serial(p)
        assert dns.serial.Serial(after) > dns.serial.Serial(before)
        kind_of_answer, removed_rrs, added_rrs = ixfr(p.port, before)
        new_label = member_id(dns.name.from_text("example.net."))
        assert kind_of_answer == "incremental"
        assert added_rrs == {(f"{new_label}.zones.{CATALOG}", "PTR", "example.net.")}
        assert removed_rrs == set()
        assert re.search(
            rf"IXFR of {re.escape(CATALOG)} serial \d+ to 127\.0\.0\.1 from \d+: incremental", p.log()
        ), p.log()

        # A removed file and SIGHUP: the secondary stops serving the zone.
        (zones_d / "example.org.zone").unlink()
        hup(p)
        removed = wait_until(p, lambda: secondary.refuses("example.org"), "removed zone dropped", secondary)
        assert secondary.serves("example.com") and secondary.serves("example.net")
        assert set(members_of(catalog_axfr(p.port)).values()) == {"example.com.", "example.net."}
        print(
            f"{kind.name}: members served {first:.1f}s after start, "
            f"added zone {added:.1f}s after SIGHUP, removed zone gone {removed:.1f}s after SIGHUP"
        )
    finally:
        secondary.stop()


def ixfr(port: int, serial: int) -> tuple[str, set, set]:
    """An IXFR of the catalog from ``serial``: its kind, removed and added records."""
    messages = dns.query.xfr(
        "127.0.0.1", CATALOG, rdtype=dns.rdatatype.IXFR, serial=serial,
        port=port, timeout=5, lifetime=10, relativize=False,
    )
    rrsets = [rrset for m in messages for rrset in m.answer]
    soas = [i for i, rrset in enumerate(rrsets) if rrset.rdtype == dns.rdatatype.SOA]
    if len(soas) < 4 or rrsets[soas[1]][0].serial != serial:
        return "full", set(), set()
    removed, added = set(), set()
    # SOA(new) { SOA(old) removed... SOA(next) added... }* SOA(new)
    for start, end in zip(soas[1:-1], soas[2:]):
        side = removed if (soas.index(start) % 2) == 1 else added
        for rrset in rrsets[start + 1 : end]:
            side |= {(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), r.to_text()) for r in rrset}
    return "incremental", removed, added


@pytest.mark.parametrize("kind", SECONDARIES)
def test_secondary_consumes_a_catalog_zone_file(aliasd, tmp_path, kind):
    """The consumer side alone: a catalog written as an ordinary zone file
    (by aliasd.zones.catalog) and served through [zones], so a failure here is in
    the secondary's configuration, not in aliasd's [catalog] support."""
    need(kind)
    secondary_port = free_port()

    def write(members):
        source = catalog_source(dns.name.from_text(CATALOG), [dns.name.from_text(m) for m in members])
        (tmp_path / "catalog.zone").write_text("".join(rr.to_text() + "\n" for rr in source.rrsets.values()))
        config = ""
        for zone in [CATALOG, *members]:
            name = zone.rstrip(".")
            file = "catalog.zone" if zone == CATALOG else f"{name}.zone"
            if zone != CATALOG:
                (tmp_path / file).write_text(zone_text(name))
            config += f"""
                [zones."{name}"]
                file = "{file}"
                allow-transfer = ["127.0.0.1"]
                notify = ["127.0.0.1:{secondary_port}"]
                """
        return config

    p = aliasd(write(["example.com.", "example.org."]), server="serial-interval = 0\n")
    secondary = start_secondary(kind, tmp_path, secondary_port, p.port)
    try:
        wait_until(p, lambda: secondary.serves("example.com") and secondary.serves("example.org"),
                   "both member zones served", secondary)
        conf = tmp_path / "aliasd.toml"
        head = conf.read_text().split("[zones.", 1)[0]
        conf.write_text(head + textwrap.dedent(write(["example.com.", "example.net."])))
        hup(p)
        wait_until(p, lambda: secondary.serves("example.net"), "added zone served", secondary)
        wait_until(p, lambda: secondary.refuses("example.org"), "removed zone dropped", secondary)
        assert secondary.serves("example.com")
    finally:
        secondary.stop()
