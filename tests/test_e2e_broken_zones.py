"""End to end: one customer's broken zone file never takes the others down.

A DNS host with a hundred zones, three of them broken in different ways:
the other 97 start and are served; each broken one is logged once, naming
file, line and reason, answers SERVFAIL (as a zone still loading) and stays
in the catalog; the gauge counts it. A mended file is served at the next
reload. A zone broken while the server was stopped serves its last good
data from the store, under a serial that never goes back.
"""

from __future__ import annotations

import signal
import textwrap

import dns.query
import dns.rcode
import dns.serial
import dns.update
import pytest

from tests.aliasd_process import free_port
from tests.test_e2e_catalog import catalog_axfr, members_of
from tests.test_e2e_statistics import scrape

pytestmark = pytest.mark.e2e

CATALOG = "catalog.example."
COUNT = 100


def zone_text(i: int, serial: int = 1, www: str = "192.0.2.80") -> str:
    return textwrap.dedent(f"""\
        $ORIGIN cust{i:02d}.test.
        $TTL 300
        @    SOA ns1 hostmaster {serial} 86400 600 864000 120
             NS  ns1
        ns1  A   192.0.2.53
        www  A   {www}
        """)


# zone number -> (the line that breaks it, added as line 7, the reason logged)
BROKEN = {
    3: ("bad  A   192.0.2.300", "A record: '192.0.2.300' is not an IPv4 address"),
    41: ("odd  BOGUS  hello", "unknown record type 'BOGUS'"),
    77: ('txt  TXT ( "first"', "unterminated parenthesis: a '(' is never closed"),
}


def config(metrics_port: int) -> str:
    return f"""
        [statistics]
        listen = "127.0.0.1:{metrics_port}"
        [zone-directory]
        path = "zones.d"
        [catalog]
        zone = "{CATALOG}"
        allow-transfer = ["127.0.0.1"]
        """


def rcode(p, i: int) -> int:
    return p.query(f"cust{i:02d}.test", "SOA").rcode()


def served(p) -> set[int]:
    return {i for i in range(COUNT) if rcode(p, i) == dns.rcode.NOERROR}


def update_rcode(p, i: int) -> int:
    update = dns.update.UpdateMessage(f"cust{i:02d}.test")
    update.add("new", 60, "A", "192.0.2.1")
    return dns.query.udp(update, "127.0.0.1", port=p.port, timeout=2).rcode()


def hup(p) -> None:
    p.proc.send_signal(signal.SIGHUP)


def test_three_broken_zones_of_a_hundred_the_rest_is_served_and_mended_one_comes_back(aliasd, tmp_path):
    zones = tmp_path / "zones.d"
    zones.mkdir()
    for i in range(COUNT):
        text = zone_text(i) + (BROKEN[i][0] + "\n" if i in BROKEN else "")
        (zones / f"cust{i:02d}.test.zone").write_text(text)
    metrics = free_port()
    p = aliasd(config(metrics), server="serial-interval = 0\n")

    assert served(p) == set(range(COUNT)) - set(BROKEN)
    log = p.log()
    for i, (_, reason) in BROKEN.items():
        assert rcode(p, i) == dns.rcode.SERVFAIL
        assert p.query(f"www.cust{i:02d}.test").rcode() == dns.rcode.SERVFAIL
        line = f"{zones / f'cust{i:02d}.test.zone'}:7: {reason}"
        named = [entry for entry in log.splitlines() if f"cust{i:02d}.test.zone" in entry]
        assert len(named) == 1 and line in named[0], named
        assert "answers SERVFAIL until its file is mended" in named[0]
        assert update_rcode(p, i) == dns.rcode.SERVFAIL  # ours, not NOTAUTH
    assert update_rcode(p, 0) == dns.rcode.REFUSED  # a served zone without update rules
    m = scrape(metrics)
    assert m["aliasd_zones_broken"] == 3 and m["aliasd_zones_stale"] == 0
    assert m["aliasd_zones"] == COUNT - 3 + 1  # and the catalog
    members = set(members_of(catalog_axfr(p.port)).values())
    assert members == {f"cust{i:02d}.test." for i in range(COUNT)}  # the broken ones too

    (zones / "cust41.test.zone").write_text(zone_text(41))  # mended
    hup(p)
    p.wait_for(lambda: "reload done" in p.log())
    assert served(p) == set(range(COUNT)) - {3, 77}
    assert p.addresses("www.cust41.test") == {"192.0.2.80"}
    m = scrape(metrics)
    assert m["aliasd_zones_broken"] == 2
    assert ("reload done: 101 zones (0 added, 0 removed, 1 file(s) read again, 1 mended [cust41.test.]), "
            "2 error(s) [cust03.test., cust77.test.]") in p.log()
    assert set(members_of(catalog_axfr(p.port)).values()) == members  # no member left or came


def test_a_zone_broken_while_stopped_serves_its_last_good_data_never_an_older_serial(aliasd, tmp_path):
    zones = tmp_path / "zones.d"
    zones.mkdir()
    for i in range(3):
        (zones / f"cust{i:02d}.test.zone").write_text(zone_text(i, serial=10))
    metrics = free_port()
    p = aliasd(config(metrics), server="serial-interval = 0\n")
    path = zones / "cust01.test.zone"
    path.write_text(zone_text(1, serial=5, www="192.0.2.81"))  # an older serial: the served one goes on
    hup(p)
    p.wait_for(lambda: p.addresses("www.cust01.test") == {"192.0.2.81"})
    before = p.query("cust01.test", "SOA").answer[0][0].serial
    assert before == 11
    p.stop()

    path.write_text(zone_text(1, serial=12) + BROKEN[3][0] + "\n")  # broken while stopped
    p.start()
    assert p.addresses("www.cust01.test") == {"192.0.2.81"}  # the last good data
    after = p.query("cust01.test", "SOA").answer[0][0].serial
    assert not dns.serial.Serial(after) < dns.serial.Serial(before)
    assert f"{path}:7: {BROKEN[3][1]}; zone cust01.test. serves its last good data from the store" in p.log()
    m = scrape(metrics)
    assert m["aliasd_zones_broken"] == 1 and m["aliasd_zones_stale"] == 1
    assert served(p) == {0, 1, 2}

    path.write_text(zone_text(1, serial=12, www="192.0.2.82"))  # mended
    hup(p)
    p.wait_for(lambda: p.addresses("www.cust01.test") == {"192.0.2.82"})
    assert p.query("cust01.test", "SOA").answer[0][0].serial == 12
    m = scrape(metrics)
    assert m["aliasd_zones_broken"] == 0 and m["aliasd_zones_stale"] == 0


def test_a_dynamic_zone_broken_while_stopped_serves_every_acknowledged_update(aliasd, tmp_path):
    """Its truth is the store's: the acknowledged updates are served under
    the same serial; the mended file is merged in as a hand edit."""
    from tests.test_e2e_update import ZONE, nsupdate, serial, values
    from tests.test_e2e_update import config as update_config

    server = aliasd(update_config(), {"example.test.zone": ZONE},
                    server="serial-interval = 0\ndynamic-file-sync = 3600\n")
    for i in range(3):
        rc, out = nsupdate(server.port, f"update add h{i}.example.test 60 A 192.0.2.{100 + i}")
        assert rc == 0, out
    before = serial(server)
    server.proc.kill()  # no clean stop: the file never got the updates
    server.proc.wait()
    conf = tmp_path / "aliasd.toml"
    conf.write_text(conf.read_text().replace("dynamic-file-sync = 3600", "dynamic-file-sync = 1"))
    path = tmp_path / "example.test.zone"
    path.write_text(ZONE + "byhand A 192.0.2.300\n")  # line 9
    server.start()
    assert serial(server) == before
    assert all(values(server, f"h{i}.example.test") == {f"192.0.2.{100 + i}"} for i in range(3))
    assert (f"zone example.test.: {path}:9: A record: '192.0.2.300' is not an IPv4 address; "
            "zone example.test. serves its last good data from the store") in server.log()
    rc, out = nsupdate(server.port, "update add late.example.test 60 A 192.0.2.50")
    assert rc == 0, out  # updates go on, on top of the store's truth
    server.wait_for(lambda: "was edited by hand and not reloaded yet: not written over" in server.log())
    assert path.read_text().endswith("byhand A 192.0.2.300\n")  # the operator's edit stays for mending

    path.write_text(ZONE + "byhand A 192.0.2.46\n")  # mended
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(lambda: values(server, "byhand.example.test") == {"192.0.2.46"}, timeout=10)
    assert values(server, "late.example.test") == {"192.0.2.50"}
    assert all(values(server, f"h{i}.example.test") == {f"192.0.2.{100 + i}"} for i in range(3))
    assert dns.serial.Serial(serial(server)) > dns.serial.Serial(before)


def test_a_broken_zone_below_a_served_one_is_servfail_never_the_parents_answer(aliasd, tmp_path):
    """Its names are not the parent's (no NXDOMAIN from example.test), also
    when asked again (the fast path's cached answers)."""
    parent = "$ORIGIN example.test.\n$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.53\n"
    child = parent.replace("example.test.", "sub.example.test.") + "www A 192.0.2.300\n"
    p = aliasd('[zones."example.test"]\nfile = "p.zone"\n[zones."sub.example.test"]\nfile = "c.zone"\n',
               {"p.zone": parent, "c.zone": child})
    for _ in range(3):
        assert p.query("www.sub.example.test").rcode() == dns.rcode.SERVFAIL
        assert p.query("sub.example.test", "SOA").rcode() == dns.rcode.SERVFAIL
        assert p.query("other.example.test").rcode() == dns.rcode.NXDOMAIN
    (tmp_path / "c.zone").write_text(child.replace("192.0.2.300", "192.0.2.30"))
    hup(p)
    p.wait_for(lambda: p.addresses("www.sub.example.test") == {"192.0.2.30"})
