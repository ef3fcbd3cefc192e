"""End to end: serials across restarts never go backwards nor move needlessly.

The state directory keeps each zone's served serial with a digest of its
transfer view, and the last good ALIAS addresses.
"""

from __future__ import annotations

import dns.rcode
import pytest

from tests.test_e2e_transfer import ZONE, config

pytestmark = pytest.mark.e2e


def serial(p) -> int:
    return p.query("example.com", "SOA").answer[0][0].serial


def test_restart_keeps_serial_and_addresses_when_nothing_changed(aliasd, upstream, tmp_path):
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=30)
    first = aliasd(config(upstream), {"example.com.zone": ZONE})
    first.wait_for(lambda: first.addresses("example.com") == {"203.0.113.1"})
    served = serial(first)
    assert served > 100  # moved off the file's serial when the ALIAS resolved
    first.stop()

    upstream.behave("target.upstream.test", "drop")  # upstream down during the restart
    second = aliasd(config(upstream), {"example.com.zone": ZONE})
    # Straight away: the same serial and the last good addresses, not the fallback.
    assert serial(second) == served
    assert second.addresses("example.com") == {"203.0.113.1"}
    assert "restart, view unchanged" in second.log()
    second.stop()

    upstream.set("target.upstream.test", "A", ["203.0.113.2"], ttl=30)
    third = aliasd(config(upstream), {"example.com.zone": ZONE})
    assert serial(third) in (served, served + 1)  # it may have refreshed already
    third.wait_for(lambda: third.addresses("example.com") == {"203.0.113.2"})
    assert serial(third) == served + 1


def test_newer_zone_file_serial_is_taken_and_an_older_one_never_served(aliasd, upstream, tmp_path):
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=30)
    first = aliasd(config(upstream), {"example.com.zone": ZONE})
    first.wait_for(lambda: first.addresses("example.com") == {"203.0.113.1"})
    served = serial(first)
    first.stop()

    # The operator edits the file without raising its serial: we go forward.
    edited = ZONE.replace("mail  A   192.0.2.25", "mail  A   192.0.2.26")
    second = aliasd(config(upstream), {"example.com.zone": edited})
    assert serial(second) == served + 1
    second.stop()

    # A serial far ahead in the file wins (RFC 1982 "greater").
    third = aliasd(config(upstream), {"example.com.zone": edited.replace(" 100 ", " 2030010100 ")})
    assert serial(third) == 2030010100
    assert third.query("mail.example.com").answer[0][0].address == "192.0.2.26"
    assert third.query("example.com", "SOA").rcode() == dns.rcode.NOERROR


def test_a_kill_right_after_an_alias_change_restarts_with_the_same_view_and_serial(aliasd, upstream, tmp_path):
    """The target cache is written in the transaction of the versions built
    from it: a kill -9 at any moment after a new serial is served restarts
    with the addresses served under it, the same serial, and its history
    (not the addresses of the last periodic save, a changed view, a new
    serial and a history begun again)."""
    import dns.query
    import dns.rdatatype

    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=1)
    first = aliasd(config(upstream), {"example.com.zone": ZONE})
    first.wait_for(lambda: first.addresses("example.com") == {"203.0.113.1"})
    before = serial(first)
    upstream.set("target.upstream.test", "A", ["203.0.113.2"], ttl=1)
    first.wait_for(lambda: first.addresses("example.com") == {"203.0.113.2"}, timeout=5)
    served = serial(first)
    assert served == before + 1
    first.proc.kill()  # within the cache's save interval (5 s)
    first.proc.wait()
    upstream.behave("target.upstream.test", "drop")  # nothing new from upstream meanwhile
    second = aliasd(config(upstream), {"example.com.zone": ZONE})
    assert serial(second) == served
    assert second.addresses("example.com") == {"203.0.113.2"}
    assert second.log().count("restart, view unchanged") == 1
    answers = [rr for m in dns.query.xfr("127.0.0.1", "example.com", rdtype=dns.rdatatype.IXFR, serial=before,
                                          port=second.port, timeout=5) for rr in m.answer]
    assert answers[1].rdtype == dns.rdatatype.SOA and answers[1][0].serial == before  # incremental


@pytest.mark.parametrize("shared", [False, True], ids=["own target", "shared target"])
@pytest.mark.parametrize("back_by", ["restart", "reload"])
def test_a_zone_removed_across_restarts_comes_back_with_its_history(aliasd, upstream, tmp_path, back_by, shared):
    """A zone of a [zone-directory] whose file goes away (SIGHUP: unserved,
    its state kept), stays away over two restarts, then comes back with
    its file, by a restart or by a reload: same view, same serial, and
    IXFR from each serial it served before is incremental (its history
    came back with it). Its ALIAS target's last good addresses are kept
    meanwhile, whether another zone follows it or not."""
    import signal

    from tests.test_e2e_crash import axfr, ixfr_onto, canonical, resolver_config, zone_text

    target = "lb.cdn.test."
    upstream.set(target, "A", ["198.51.100.1"], ttl=1)
    (tmp_path / "extra").mkdir()
    path = tmp_path / "extra" / "x0.test.zone"
    path.write_text(zone_text("x0.test.", alias=True))
    (tmp_path / "extra" / "x1.test.zone").write_text(zone_text("x1.test.", alias=shared))  # stays
    conf = (resolver_config(upstream) + '[zone-defaults]\nallow-transfer = ["127.0.0.1"]\n'
            '[zone-directory]\npath = "extra"\n')
    server = aliasd(conf, server="serial-interval = 0\n")
    server.wait_for(lambda: server.addresses("x0.test.") == {"198.51.100.1"})
    copies = {}
    for address in ("198.51.100.2", "198.51.100.3", "198.51.100.4"):
        zone = axfr(server.port, "x0.test.")
        copies[zone.get_soa().serial] = canonical(zone)
        upstream.set(target, "A", [address], ttl=1)
        server.wait_for(lambda a=address: server.addresses("x0.test.") == {a}, timeout=10)
    zone = axfr(server.port, "x0.test.")
    last, text = zone.get_soa().serial, canonical(zone)
    assert len(copies) == 3 and last not in copies

    path.unlink()
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(lambda: "zone x0.test. is no longer served" in server.log())
    for _ in range(2):  # two restarts without it
        server.stop()
        server.start()
        assert server.query("x0.test.", "SOA").rcode() == dns.rcode.REFUSED
    path.write_text(zone_text("x0.test.", alias=True))
    if back_by == "restart":
        server.stop()
        server.start()
    else:
        server.proc.send_signal(signal.SIGHUP)
    server.wait_for(lambda: server.query("x0.test.", "SOA").rcode() == dns.rcode.NOERROR)
    assert serial_of(server, "x0.test.") == last  # the upstream holds still: the same view
    assert f"zone x0.test. serial {last} (restart, view unchanged), 6 records, 2 ALIAS, IXFR history from serial 1" in (
        server.log())  # (1: the file's serial, before the first ALIAS change)
    assert canonical(axfr(server.port, "x0.test.")) == text
    for old, old_text in copies.items():
        zone, incremental = ixfr_onto(server.port, "x0.test.", old_text)
        assert incremental, f"IXFR from {old} (history {sorted(copies)} then {last}) not incremental"
        assert canonical(zone) == text


def serial_of(p, origin: str) -> int:
    return p.query(origin, "SOA").answer[0][0].serial
