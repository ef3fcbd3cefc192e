"""End to end: AXFR, IXFR, serials and access control on a real process.

dnspython's transfer client (dns.query.xfr / inbound_xfr) pulls the zone
and the test checks it record by record against the expected view.
"""

from __future__ import annotations

import time

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest

pytestmark = pytest.mark.e2e

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQ="
ZONE = """\
    $ORIGIN example.com.
    $TTL 300
    @     SOA ns1 hostmaster 100 86400 600 864000 120
          NS  ns1
          MX  10 mail
    @     60 ALIAS target.upstream.test.
    @     A   192.0.2.1
    ns1   A   192.0.2.53
    mail  A   192.0.2.25
    www   ALIAS target.upstream.test.
    txt   TXT "{0}" "{0}" "{0}"
    """.format("t" * 200)


def config(upstream, extra="") -> str:
    return f"""
        [resolver]
        upstreams = ["{upstream.endpoint}"]
        min-refresh = 1
        max-refresh = 1
        timeout = 0.3
        [keys.xfr]
        algorithm = "hmac-sha256"
        secret = "{SECRET}"
        [zones."example.com"]
        file = "example.com.zone"
        allow-transfer = ["127.0.0.0/8", "::1"]
        {extra}
        """


def axfr(port, keyring=None, keyname=None):
    zone = dns.zone.Zone("example.com", relativize=False)
    query, _ = dns.xfr.make_query(zone, serial=None, keyring=keyring, keyname=keyname)
    dns.query.inbound_xfr("127.0.0.1", zone, query=query, port=port, timeout=5, lifetime=10)
    return zone


def records(zone) -> set[tuple[str, str, int, str]]:
    return {
        (name.to_text(), dns.rdatatype.to_text(rds.rdtype), rds.ttl, rd.to_text())
        for name, node in zone.nodes.items()
        for rds in node.rdatasets
        for rd in rds
        if rds.rdtype != dns.rdatatype.SOA
    }


def expected(addresses: list[str], ttl: int = 30) -> set[tuple[str, str, int, str]]:
    view = {
        ("example.com.", "NS", 300, "ns1.example.com."),
        ("example.com.", "MX", 300, "10 mail.example.com."),
        ("ns1.example.com.", "A", 300, "192.0.2.53"),
        ("mail.example.com.", "A", 300, "192.0.2.25"),
        ("txt.example.com.", "TXT", 300, " ".join([f'"{"t" * 200}"'] * 3)),
    }
    view |= {("example.com.", "A", min(60, ttl), a) for a in addresses}
    view |= {("www.example.com.", "A", min(300, ttl), a) for a in addresses}
    return view


@pytest.fixture
def server(aliasd, upstream):
    upstream.set("target.upstream.test", "A", ["203.0.113.1", "203.0.113.2"], ttl=30)
    p = aliasd(config(upstream), {"example.com.zone": ZONE})
    p.wait_for(lambda: p.addresses("www.example.com") == {"203.0.113.1", "203.0.113.2"})
    return p


def soa_serial(p) -> int:
    return p.query("example.com", "SOA").answer[0][0].serial


def test_axfr_has_flattened_addresses_and_never_the_alias(server):
    zone = axfr(server.port)
    assert records(zone) == expected(["203.0.113.1", "203.0.113.2"])
    assert zone.get_soa().serial == soa_serial(server)


def test_serial_moves_once_per_change_and_ixfr_sends_the_difference(server, upstream):
    before = soa_serial(server)
    old_zone = axfr(server.port)
    upstream.set("target.upstream.test", "A", ["203.0.113.9"], ttl=30)
    server.wait_for(lambda: server.addresses("example.com") == {"203.0.113.9"})
    after = soa_serial(server)
    assert after == before + 1
    # IXFR from the old serial: only the ALIAS owners' addresses change.
    query = dns.message.make_query("example.com", "IXFR")
    query.authority.append(dns.rrset.from_text("example.com.", 0, "IN", "SOA", f"ns1. h. {before} 1 1 1 1"))
    responses = list(_tcp_stream(server.port, query))
    answer = [rrset for r in responses for rrset in r.answer]
    texts = [(r.name.to_text(), dns.rdatatype.to_text(r.rdtype), sorted(x.to_text() for x in r)) for r in answer]
    at = [i for i, t in enumerate(texts) if t[1] == "SOA"]
    assert [int(texts[i][2][0].split()[2]) for i in at] == [after, before, after, after]
    removed = {(n, a) for n, t, rs in texts[at[1] + 1 : at[2]] for a in rs}
    added = {(n, a) for n, t, rs in texts[at[2] + 1 : at[3]] for a in rs}
    assert removed == {(o, a) for o in ("example.com.", "www.example.com.") for a in ("203.0.113.1", "203.0.113.2")}
    assert added == {("example.com.", "203.0.113.9"), ("www.example.com.", "203.0.113.9")}
    # dnspython applies the IXFR to its copy and gets the same as a fresh AXFR.
    dns.query.inbound_xfr(
        "127.0.0.1", old_zone, port=server.port, timeout=5,
        query=dns.xfr.make_query(old_zone, serial=before)[0],
    )
    assert records(old_zone) == records(axfr(server.port)) == expected(["203.0.113.9"])


def test_reordered_addresses_do_not_bump_the_serial(server, upstream):
    before = soa_serial(server)
    upstream.set("target.upstream.test", "A", ["203.0.113.2", "203.0.113.1"], ttl=30)
    time.sleep(2.5)  # two refresh rounds
    assert soa_serial(server) == before


def test_ixfr_current_serial_gets_single_soa_and_unknown_serial_gets_full_zone(server):
    current = soa_serial(server)
    for serial, kind in ((current, "current"), (current - 50, "full")):
        query = dns.message.make_query("example.com", "IXFR")
        query.authority.append(dns.rrset.from_text("example.com.", 0, "IN", "SOA", f"ns1. h. {serial} 1 1 1 1"))
        answer = [rrset for r in _tcp_stream(server.port, query) for rrset in r.answer]
        if kind == "current":
            assert len(answer) == 1 and answer[0].rdtype == dns.rdatatype.SOA
        else:
            assert answer[0].rdtype == answer[-1].rdtype == dns.rdatatype.SOA
            assert len(answer) > 3 and all(r.rdtype != 65401 for r in answer)


def test_ixfr_over_udp_too_large_becomes_single_soa(server):
    # Serial 1 is unknown: the answer would be the whole zone (over 700
    # octets with the TXT record), which does not fit in 512.
    query = dns.message.make_query("example.com", "IXFR", use_edns=False)
    query.authority.append(dns.rrset.from_text("example.com.", 0, "IN", "SOA", "ns1. h. 1 1 1 1 1"))
    response = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=2)
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.SOA]
    assert response.answer[0][0].serial == soa_serial(server)
    assert "too large for UDP" in server.log()
    # With room enough (EDNS 1232) the same question gets the whole zone.
    query = dns.message.make_query("example.com", "IXFR", use_edns=0, payload=1232)
    query.authority.append(dns.rrset.from_text("example.com.", 0, "IN", "SOA", "ns1. h. 1 1 1 1 1"))
    response = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=2)
    assert len(response.answer) > 3 and response.answer[0].rdtype == dns.rdatatype.SOA


def test_axfr_over_udp_is_refused(server):
    response = dns.query.udp(dns.message.make_query("example.com", "AXFR"), "127.0.0.1", port=server.port, timeout=2)
    assert response.rcode() == dns.rcode.REFUSED


def test_transfer_from_a_disallowed_address_is_refused_and_logged(aliasd, upstream, tmp_path):
    p = aliasd(config(upstream).replace('["127.0.0.0/8", "::1"]', '["127.0.0.2/32"]'), {"example.com.zone": ZONE})
    response = p.query("example.com", "AXFR", tcp=True)
    assert response.rcode() == dns.rcode.REFUSED
    assert "AXFR of example.com. refused to 127.0.0.1: address not in allow-transfer" in p.log()
    # From 127.0.0.2 (a loopback address Linux answers from) it is allowed.
    q = dns.message.make_query("example.com", "AXFR")
    r = dns.query.tcp(q, "127.0.0.1", port=p.port, timeout=5, source="127.0.0.2")
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0].rdtype == dns.rdatatype.SOA


def _tcp_stream(port, query):
    """Send an IXFR ``query`` over TCP; dnspython reads until the answer ends."""
    serial = query.authority[0][0].serial
    return dns.query.xfr(
        "127.0.0.1", "example.com", rdtype=dns.rdatatype.IXFR, serial=serial,
        port=port, timeout=5, lifetime=10, relativize=False,
    )
