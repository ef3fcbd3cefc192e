"""End to end: zones created at runtime are served by a real ``twistd aliasd`` from the store.

The zones are created by the zone manager (aliasd.service.zonemanager, what
the HTTP API calls) in this process, on the state directory that a real
``twistd aliasd`` then starts from: it must serve them beside its
configured zones, list them in its catalog (AXFR), take UPDATEs for them
under [zone-defaults]' rules, and keep every acknowledged change across
``kill -9``. The HTTP routes are tested end to end where they are built.
"""

from __future__ import annotations

import signal
import time

import dns.name
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import dns.zone
import pytest

from aliasd.zones.catalog import member_id
from tests.test_e2e_update import OPS
from tests.test_zonemanager import CONFIG, FILE_ZONE, Server, create, rr

pytestmark = pytest.mark.e2e

N = dns.name.from_text
DEFAULTS = 'update = [{ key = "ops" }]\n'
TRANSFERS = '[catalog]\nzone = "catalog.invalid"\nallow-transfer = ["127.0.0.1"]\n'


def runtime_zone(tmp_path, clock, resolver="") -> tuple[str, int]:
    """Create new.test. (www A 192.0.2.81, after one PATCH) in the store of
    tmp_path/state; the configuration for twistd, and the zone's serial."""
    (tmp_path / "example.test.zone").write_text(FILE_ZONE)
    (tmp_path / "dyn.test.zone").write_text(FILE_ZONE.replace("example.test.", "dyn.test."))
    body = resolver + CONFIG.format(defaults=DEFAULTS, file_zone="", ops=OPS).replace(
        '[catalog]\nzone = "catalog.invalid"\n', TRANSFERS)
    (tmp_path / "inproc.toml").write_text(body)
    made = Server(tmp_path, clock, config="inproc.toml")
    create(made, "new.test.", rr("www.new.test.", dns.rdatatype.A, "192.0.2.80"))
    made.done(made.manager.patch(N("new.test."), [rr("www.new.test.", dns.rdatatype.A, "192.0.2.81")], by="admin"))
    serial = made.serial("new.test.")
    made.options.state.db.close()
    return body, serial


def update(port: int, *changes) -> int:
    """A TSIG-signed UPDATE of new.test. (key ops) over TCP; its rcode."""
    message = dns.update.UpdateMessage("new.test.", keyring=dns.tsigkeyring.from_text({"ops.": OPS}),
                                       keyname="ops.")
    for change in changes:
        message.add(*change)
    return dns.query.tcp(message, "127.0.0.1", port=port, timeout=5).rcode()


def test_zones_created_at_runtime_are_served_after_a_restart_and_kill_9(aliasd, tmp_path, clock):
    body, serial = runtime_zone(tmp_path, clock)
    server = aliasd(body, server="serial-interval = 0\n")
    assert server.addresses("www.new.test") == {"192.0.2.81"}
    assert server.query("new.test", "SOA").answer[0][0].serial == serial
    catalog = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", "catalog.invalid", port=server.port, timeout=5))
    label = member_id(N("new.test."))
    assert catalog.get_rdataset(f"{label}.zones", "PTR")[0].target == N("new.test.")
    # An UPDATE under [zone-defaults]' rules, acknowledged, survives kill -9.
    assert update(server.port, ("u", 60, "A", "192.0.2.99")) == dns.rcode.NOERROR
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    server.start()
    assert server.addresses("u.new.test") == {"192.0.2.99"}
    assert server.addresses("www.new.test") == {"192.0.2.81"}
    assert server.query("new.test", "SOA").answer[0][0].serial == serial + 1
    assert server.addresses("www.example.test") == {"192.0.2.10", "192.0.2.11"}  # the configured zones as well


def test_an_alias_of_a_runtime_zone_answers_within_a_second_of_each_change_despite_damping(
        aliasd, upstream, tmp_path, clock):
    """A change (PATCH and UPDATE take the same path: ZoneAuthority.update_source)
    that adds an ALIAS is answered with the target's addresses within 1 s,
    also when serial-rate damping (one version a minute here) would hold
    back an ALIAS change of the same zone."""
    for i in range(3):
        upstream.set(f"lb{i}.cdn.test.", "A", [f"198.51.100.{i + 1}"], ttl=60)
    resolver = f'[resolver]\nupstreams = ["{upstream.endpoint}"]\nmin-refresh = 1\n'
    body, _ = runtime_zone(tmp_path, clock, resolver)
    server = aliasd(body, server="serial-interval = 60\nserial-burst = 1\n")
    for i in range(3):
        assert update(server.port, (f"web{i}", 60, "ALIAS", f"lb{i}.cdn.test.")) == dns.rcode.NOERROR
        acknowledged = time.monotonic()
        server.wait_for(lambda i=i: server.addresses(f"web{i}.new.test") == {f"198.51.100.{i + 1}"},
                        timeout=1.0, interval=0.02)
        assert time.monotonic() - acknowledged < 1.0
