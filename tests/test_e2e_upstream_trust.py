"""End to end: what aliasd takes from its upstreams, and what it signs.

Against a loopback upstream that records every query as it arrives
(tests/upstream.py): query IDs and source ports are random, the name's
letters are in random case (0x20) and an answer that does not echo that
case is dropped as spoofed. With ``[resolver] require-validated`` a signed
zone serves only addresses the upstream validated (AD set), while an
unsigned zone with the same ALIAS target goes on serving every answer.
"""

from __future__ import annotations

import json
import signal
import textwrap

import pytest

from tests.test_e2e_ctl import ctl
from tests.test_e2e_resolution import ZONE, config

pytestmark = pytest.mark.e2e

TARGET = "target.upstream.test"


def test_queries_use_random_ids_ports_and_letter_case(aliasd, upstream):
    upstream.set(TARGET, "A", ["203.0.113.10"], ttl=1)
    p = aliasd(config(upstream), {"example.com.zone": ZONE})
    p.wait_for(lambda: len([r for r in upstream.received if r[0].lower() == TARGET + "."]) >= 12, timeout=20)
    asked = [r for r in upstream.received if r[0].lower() == TARGET + "."]
    names = {name for name, _, _, _ in asked}
    ids = [query_id for _, query_id, _, _ in asked]
    ports = [port for _, _, port, _ in asked]
    assert len(names) >= len(asked) - 2  # 17 letters: a repeat is a 1 in 131072 chance
    assert any(n != n.lower() for n in names) and any(n != n.upper() for n in names)
    assert len(set(ids)) == len(ids) and max(ids) - min(ids) > 1000
    assert len(set(ports)) >= 3  # from a pool of sockets, picked at random
    assert all(ad for _, _, _, ad in asked)  # every query asks whether the upstream validated


def test_an_answer_that_does_not_echo_the_case_is_dropped(aliasd, upstream):
    upstream.set(TARGET, "A", ["203.0.113.11"], ttl=1)
    p = aliasd(config(upstream), {"example.com.zone": ZONE})
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.11"})
    upstream.behave(TARGET, "spoof-case")  # right ID and port, the name in lower case, other addresses
    p.wait_for(lambda: "question is not the one asked" in p.log(), timeout=15)
    p.wait_for(lambda: "ALIAS target target.upstream.test. A: stale" in p.log())
    assert p.addresses("example.com") == {"203.0.113.11"}  # the last good ones, never 198.18.0.66
    assert "198.18.0.66" not in p.log()


SIGNED = ZONE.replace("example.com.", "signed.test.")


def both(upstream, require: bool) -> str:
    text = config(upstream, extra=f"require-validated = {'true' if require else 'false'}")
    return text.replace("serve-stale = 30", "serve-stale = 3") + """
        [zones."signed.test"]
        file = "signed.test.zone"
        dnssec = true
        """


def test_signed_zones_serve_only_what_the_upstream_validated(aliasd, upstream, tmp_path):
    upstream.set(TARGET, "A", ["203.0.113.20"], ttl=1)
    upstream.validated(TARGET)
    fallback = SIGNED.replace("@     60 ALIAS target.upstream.test.",
                              "@     60 ALIAS target.upstream.test.\n    @     60 A 192.0.2.99")
    p = aliasd(both(upstream, True), {"example.com.zone": ZONE, "signed.test.zone": fallback},
               server="serial-interval = 0\n")
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.20"} == p.addresses("signed.test"))
    upstream.validated(TARGET, False)  # no longer validated (or a spoofer who cannot set AD)
    upstream.set(TARGET, "A", ["203.0.113.21"], ttl=1)
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.21"})
    assert p.addresses("signed.test") == {"203.0.113.20"}  # served stale, not the unvalidated answer
    p.wait_for(lambda: p.addresses("signed.test") == {"192.0.2.99"})  # serve-stale over: the file's fallback
    assert p.addresses("example.com") == {"203.0.113.21"}
    assert ("ALIAS target target.upstream.test. A for signed zones: expired (not validated by the upstream "
            "(no AD)) -> zone file fallback") in p.log()
    upstream.validated(TARGET)
    p.wait_for(lambda: p.addresses("signed.test") == {"203.0.113.21"})
    # Turned off by a reload: the signed zone takes every answer again.
    upstream.validated(TARGET, False)
    upstream.set(TARGET, "A", ["203.0.113.22"], ttl=1)
    conf = tmp_path / "aliasd.toml"
    conf.write_text(conf.read_text().replace("require-validated = true", "require-validated = false"))
    p.proc.send_signal(signal.SIGHUP)
    p.wait_for(lambda: p.addresses("signed.test") == {"203.0.113.22"} == p.addresses("example.com"))


HEAD = """\
$TTL 60
@     SOA ns1 hostmaster 1 3600 600 86400 60
      NS  ns1
ns1   A   192.0.2.53
"""
CDN = "$ORIGIN cdn.test.\n" + HEAD + "www   1 A 192.0.2.80\n"
CHILD = ("$ORIGIN signed.test.\n" + HEAD
         + "@     ALIAS www.cdn.test.\nplain ALIAS www.upstream.test.\nplain A   192.0.2.99\n")


def test_with_unbound_validating_a_signed_target_is_served_and_an_unsigned_one_is_not(aliasd, upstream, tmp_path):
    """The real thing: Unbound anchored at a signed target zone (served by a
    second aliasd) validates its answers (AD); a target in an unsigned zone
    (the test upstream, stubbed in Unbound) is insecure, so no AD. The signed
    zone takes the first and not the second; the unsigned zone takes both."""
    from tests.aliasd_process import AliasdProcess, free_port
    from tests.validators import Unbound, anchors_from_server

    cdn_dir = tmp_path / "cdn"
    cdn_dir.mkdir()
    (cdn_dir / "cdn.test.zone").write_text(textwrap.dedent(CDN))
    cdn_port = free_port()
    (cdn_dir / "aliasd.toml").write_text(textwrap.dedent(f"""\
        [server]
        listen = ["127.0.0.1"]
        port = {cdn_port}
        state-dir = "state"
        [zones."cdn.test"]
        file = "cdn.test.zone"
        dnssec = true
        """))
    cdn = AliasdProcess(["--config", str(cdn_dir / "aliasd.toml")], cdn_dir, cdn_port).start()
    upstream.set("www.upstream.test", "A", ["203.0.113.30"], ttl=1)
    unsigned_stub = f"""
        local-zone: "upstream.test." transparent
        stub-zone:
        name: "upstream.test."
        stub-addr: 127.0.0.1@{upstream.port}
        stub-prime: no
        """
    try:
        with Unbound(tmp_path / "unbound", extra=unsigned_stub).start(
                "cdn.test", cdn_port, anchors_from_server("cdn.test", cdn_port)) as unbound:
            assert unbound.ad("www.cdn.test")[:2] == (0, True)
            assert unbound.ad("www.upstream.test")[:2] == (0, False)
            text = f"""
                [resolver]
                upstreams = ["127.0.0.1:{unbound.port}"]
                min-refresh = 1
                require-validated = true
                [zones."example.com"]
                file = "example.com.zone"
                [zones."signed.test"]
                file = "signed.test.zone"
                dnssec = true
                """
            unsigned = ZONE.replace("@     60 ALIAS target.upstream.test.", "@     60 ALIAS www.upstream.test.")
            p = aliasd(text, {"example.com.zone": unsigned, "signed.test.zone": CHILD}, server="serial-interval = 0\n")
            p.wait_for(lambda: p.addresses("signed.test") == {"192.0.2.80"}, timeout=20)
            p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.30"})
            assert p.addresses("plain.signed.test") == {"192.0.2.99"}  # insecure target: the file's fallback
            assert "ALIAS target www.upstream.test. A for signed zones: pending (not validated" in p.log()
            status = ctl(tmp_path, "zone-status", "signed.test", json_out=True).stdout
            validated = {(a["target"], t["type"]): t["validated"]["status"]
                         for a in json.loads(status)["aliases"] for t in a["upstream"]}
            assert validated[("www.cdn.test.", "A")] == "resolved"
            assert validated[("www.upstream.test.", "A")] == "pending"
    finally:
        cdn.stop()
