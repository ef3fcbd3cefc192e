"""End to end: the Prometheus endpoint of a real process, scraped over
HTTP, and the log lines and levels an operator reads."""

from __future__ import annotations

import base64
import re
import signal
import socket
import struct
import textwrap
import time
import urllib.error
import urllib.request

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from tests.aliasd_process import free_port
from tests.helpers import recv_exactly
from tests.test_e2e_notify import NotifyListener
from tests.test_e2e_transfer import ZONE

pytestmark = pytest.mark.e2e


def metrics_text(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def metrics_config(metrics_port: int, upstream) -> str:
    """The endpoint on ``metrics_port`` and ``upstream`` for the targets."""
    return (f'[statistics]\nlisten = "127.0.0.1:{metrics_port}"\n'
            f'[resolver]\nupstreams = ["{upstream.endpoint}"]\nmin-refresh = 1\n')


def scrape(port: int) -> dict[str, float]:
    body = metrics_text(port)
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    assert "# TYPE aliasd_queries_total counter" in body
    return values


def test_counters_follow_queries_transfers_notify_and_resolution(aliasd, upstream):
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=30)
    listener = NotifyListener("127.0.0.1")
    metrics_port = free_port()
    try:
        p = aliasd(
            metrics_config(metrics_port, upstream) + textwrap.dedent(f"""
            [zones."example.com"]
            file = "example.com.zone"
            allow-transfer = ["127.0.0.1"]
            notify = ["{listener.endpoint}"]
            """),
            {"example.com.zone": ZONE},
        )
        p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.1"})
        for _ in range(5):
            p.query("www.example.com", "A")
        p.query("missing.example.com", "A")
        p.query("example.com", "AXFR", tcp=True)
        p.wait_for(lambda: "acknowledged" in p.log())
        m = scrape(metrics_port)
        www = 'aliasd_queries_total{qtype="A",rcode="NOERROR",transport="udp"}'
        assert m[www] >= 6  # five for www, and the test's own polling of the apex
        assert m['aliasd_queries_total{qtype="A",rcode="NXDOMAIN",transport="udp"}'] == 1
        assert m['aliasd_alias_answers_total'] >= 5
        assert m['aliasd_transfers_total{client="127.0.0.1",kind="AXFR-full"}'] == 1
        assert m['aliasd_notify_total{outcome="acknowledged"}'] >= 1
        assert m['aliasd_upstream_answers_total{outcome="addresses"}'] >= 1
        serial = p.query("example.com", "SOA").answer[0][0].serial
        assert m['aliasd_zone_serial{zone="example.com."}'] == serial
        assert m['aliasd_alias_targets{status="resolved"}'] == 1
        before = m[www]
        p.query("www.example.com", "A")
        assert scrape(metrics_port)[www] == before + 1
        assert m["process_resident_memory_bytes"] > 0  # prometheus_client's process metrics
        request = urllib.request.Request(
            f"http://127.0.0.1:{metrics_port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            assert response.read().endswith(b"# EOF\n")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/other", timeout=5)
        assert "GET /metrics" not in p.log()  # no access log line per scrape
    finally:
        listener.close()


OPS_SECRET = base64.b64encode(b"aliasd statistics test key, 32 o").decode()


def zone_text(origin: str, serial: int, records: str) -> str:
    """A zone with an SOA, the apex NS and its address, then ``records``."""
    return (f"$ORIGIN {origin}\n$TTL 300\n@ SOA ns1 hostmaster {serial} 86400 600 864000 120\n"
            f"@ NS ns1\nns1 A 192.0.2.53\n{records}")


MIXED_ZONE = zone_text("example.com.", 2026120704, """\
lb    A   192.0.2.80
lb    AAAA 2001:db8::80
@     ALIAS target.upstream.test.
@     A   192.0.2.1
www   ALIAS lb
shop  ALIAS lb.example.com.
""")
SIGNED_ZONE = zone_text("signed.test.", 1, "app ALIAS lb.example.com.\n")


def ops_update(secret: str, name: str, value: str) -> dns.update.UpdateMessage:
    ring = dns.tsigkeyring.from_text({"ops.": (dns.tsig.HMAC_SHA256, secret)})
    update = dns.update.UpdateMessage("example.com.", keyring=ring, keyname="ops.")
    update.add(name, 60, "TXT", value)
    return update


def test_metrics_after_a_mixed_run(aliasd, upstream):
    """Upstream and in-zone ALIAS targets, TSIG updates (one with a wrong
    secret), a signed zone: the gauges count what is there, serials print
    as integers, and the bad secret is logged as BADSIG on UPDATE."""
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=30)
    metrics_port = free_port()
    p = aliasd(
        metrics_config(metrics_port, upstream) + textwrap.dedent(f"""
        [keys.ops]
        secret = "{OPS_SECRET}"
        [zones."example.com"]
        file = "example.com.zone"
        update = [ {{ key = "ops", name = "_acme-challenge.*", types = ["TXT"] }} ]
        [zones."signed.test"]
        file = "signed.test.zone"
        dnssec = true
        allow-transfer = ["127.0.0.1"]
        [dnssec]
        signature-validity = 86400
        refresh-before = 3600
        """),
        {"example.com.zone": MIXED_ZONE, "signed.test.zone": SIGNED_ZONE},
        server="serial-interval = 0\n",
    )
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.1"})
    assert p.addresses("www.example.com") == {"192.0.2.80"}
    good = ops_update(OPS_SECRET, "_acme-challenge.www", "ok")
    assert dns.query.tcp(good, "127.0.0.1", port=p.port, timeout=5).rcode() == dns.rcode.NOERROR
    wrong = base64.b64encode(b"not the secret of the ops key!!!").decode()
    bad = ops_update(wrong, "_acme-challenge.www", "bad")
    answer = dns.message.from_wire(_raw_tcp(p.port, bad.to_wire()), keyring=False)
    assert answer.rcode() == dns.rcode.NOTAUTH and answer.tsig_error == dns.rcode.BADSIG
    line = p.wait_for(lambda: re.search(r"TSIG error (\S+) on (\S+) for zone (\S+) from 127\.0\.0\.1", p.log()))
    assert line.groups() == ("BADSIG", "UPDATE", "example.com."), p.log()
    assert "BADVERS" not in p.log()

    serial = p.query("example.com", "SOA").answer[0][0].serial
    assert serial > 2026120704  # the update's
    text = metrics_text(metrics_port)
    m = scrape(metrics_port)
    # Serials as a secondary shows them; every aliasd value is a plain number.
    assert f'aliasd_zone_serial{{zone="example.com."}} {serial}' in text.splitlines(), text
    assert not [x for x in text.splitlines() if x.startswith("aliasd_") and re.search(r" \S*e\+", x)], text
    # Targets, per address type: the upstream one (A resolved, no AAAA
    # there) and lb.example.com., served here, for A and AAAA (www, shop
    # and signed.test's app all name it).
    assert m['aliasd_alias_targets{status="resolved"}'] == 1
    assert m['aliasd_alias_targets{status="no-addresses"}'] == 1
    assert m['aliasd_alias_targets{status="in-zone"}'] == 2
    assert m['aliasd_updates_total{rcode="NOERROR"}'] == 1
    assert m["aliasd_store_commit_failures_total"] == 0
    assert 0 < m["aliasd_store_bytes_used"] < m["aliasd_store_bytes_limit"] == 2 * 1024**3 + 1024**3
    # The signatures' time left: the earliest RRSIG expiration in the signed zone.
    transfer = dns.query.xfr("127.0.0.1", "signed.test.", port=p.port, timeout=5)
    expirations = [rd.expiration for message in transfer for rrset in message.answer
                   if rrset.rdtype == dns.rdatatype.RRSIG for rd in rrset]
    assert expirations
    left = scrape(metrics_port)["aliasd_signature_expiry_seconds"]
    assert abs(left - (min(expirations) - time.time())) <= 5, (left, min(expirations))
    assert 3600 - 5 < left <= 86400  # between refresh-before and signature-validity
    # CH TXT targets.aliasd. names the in-zone target too.
    q = dns.message.make_query("targets.aliasd.", "TXT", rdclass="CH")
    lines = {s.decode() for rrset in dns.query.tcp(q, "127.0.0.1", port=p.port, timeout=5).answer
             for rd in rrset for s in rd.strings}
    assert "lb.example.com. A in-zone zone example.com. for 3 ALIAS owner(s)" in lines, lines
    assert any(x.startswith("target.upstream.test. A resolved 203.0.113.1") for x in lines), lines


def _raw_tcp(port: int, wire: bytes) -> bytes:
    """One message over TCP without dnspython checking the TSIG of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        length = struct.unpack("!H", recv_exactly(s, 2))[0]
        return recv_exactly(s, length)


LEVELS_ZONE = zone_text("example.com.", 1, """\
www   ALIAS target.upstream.test.
loop  ALIAS loop2
loop2 ALIAS loop
""")
RESOLVED = "ALIAS target target.upstream.test. A: resolved"  # resolution, info
LOOP = "ALIAS loop in zone example.com."  # warn
STARTED = re.compile(r"aliasd \S+ started")  # info


def levels_config(upstream, log: str) -> str:
    return f"""
        [resolver]
        upstreams = ["{upstream.endpoint}"]
        min-refresh = 1
        [log]
        {log}
        [zones."example.com"]
        file = "example.com.zone"
        """


def version_bind(p) -> tuple[int, list[bytes]]:
    response = p.query("version.bind.", "TXT", rdclass="CH")
    return response.rcode(), [s for rrset in response.answer for rd in rrset for s in rd.strings]


def test_log_level_warn_keeps_warnings_only_and_version_none_refuses(aliasd, upstream):
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=1)
    p = aliasd(levels_config(upstream, 'level = "warn"'), {"example.com.zone": LEVELS_ZONE},
               server='version = "none"\n')
    p.wait_for(lambda: p.addresses("www.example.com") == {"203.0.113.1"})
    p.wait_for(lambda: upstream.count("target.upstream.test") >= 3, timeout=15)  # refreshed meanwhile
    log = p.log()
    assert LOOP in log, log
    assert not STARTED.search(log) and RESOLVED not in log and "starting up" not in log, log
    assert "#info]" not in log and "#debug]" not in log, log
    assert version_bind(p) == (dns.rcode.REFUSED, [])
    response = p.query("version.server.", "TXT", rdclass="CH")
    assert response.rcode() == dns.rcode.REFUSED


def test_a_category_follows_its_own_level_and_a_reload_changes_it(aliasd, upstream, tmp_path):
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=1)
    # Resolution at debug, the rest at warn: every refresh is logged.
    p = aliasd(levels_config(upstream, 'level = "warn"\nresolution = "debug"'), {"example.com.zone": LEVELS_ZONE},
               server='version = "ns1 of example"\n')
    p.wait_for(lambda: RESOLVED in p.log())
    p.wait_for(lambda: "ALIAS target target.upstream.test. A: resolved, unchanged" in p.log(), timeout=15)
    assert "[aliasd.resolve.resolution#debug]" in p.log()
    assert not STARTED.search(p.log()) and LOOP in p.log()
    assert version_bind(p) == (dns.rcode.NOERROR, [b"ns1 of example"])
    p.stop()

    # Resolution at error, the rest at info: no target line, the others.
    offset = len(p.log())  # the same log file
    p = aliasd(levels_config(upstream, 'resolution = "error"'), {"example.com.zone": LEVELS_ZONE})
    p.wait_for(lambda: p.addresses("www.example.com") == {"203.0.113.1"})
    p.wait_for(lambda: STARTED.search(p.log()[offset:]))
    assert version_bind(p)[1][0].startswith(b"aliasd ")
    upstream.set("target.upstream.test", "A", ["203.0.113.2"], ttl=1)
    p.wait_for(lambda: p.addresses("www.example.com") == {"203.0.113.2"}, timeout=15)
    log = p.log()[offset:]
    assert "ALIAS target" not in log and "#info] zone example.com. serial" in log, log

    # A reload sets the levels again (resolution back to the default), and
    # the version text.
    conf = tmp_path / "aliasd.toml"
    conf.write_text(conf.read_text().replace('resolution = "error"', "")
                    .replace('state-dir = "state"\n', 'state-dir = "state"\nversion = "reloaded"\n'))
    p.proc.send_signal(signal.SIGHUP)
    p.wait_for(lambda: "reload done" in p.log())
    assert version_bind(p) == (dns.rcode.NOERROR, [b"reloaded"])
    upstream.set("target.upstream.test", "A", ["203.0.113.3"], ttl=1)
    p.wait_for(lambda: "ALIAS target target.upstream.test. A: resolved -> 203.0.113.3" in p.log(), timeout=15)
