"""End to end: a slow zone transfer neither blocks queries nor sees a torn zone."""

from __future__ import annotations

import socket
import struct
import time

import dns.message
import dns.rdatatype
import pytest

from tests.helpers import recv_exactly

pytestmark = pytest.mark.e2e

RECORDS = 30000


def zone_text() -> str:
    lines = [
        "$ORIGIN example.com.",
        "$TTL 300",
        "@ SOA ns1 hostmaster 1 86400 600 864000 120",
        "@ NS ns1",
        "@ 60 ALIAS target.upstream.test.",
        "ns1 A 192.0.2.53",
    ]
    lines += [f"host{i} A 10.1.{i >> 8 & 255}.{i & 255}" for i in range(RECORDS)]
    return "\n".join(lines) + "\n"


def read_message(s) -> dns.message.Message:
    (length,) = struct.unpack("!H", recv_exactly(s, 2))
    return dns.message.from_wire(recv_exactly(s, length), xfr=True, one_rr_per_rrset=True)


def test_stalled_axfr_keeps_its_version_while_queries_see_the_new_one(aliasd, upstream):
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=30)
    p = aliasd(
        f"""
        [resolver]
        upstreams = ["{upstream.endpoint}"]
        min-refresh = 1
        max-refresh = 1
        [zones."example.com"]
        file = "example.com.zone"
        allow-transfer = ["127.0.0.1"]
        """,
        {"example.com.zone": zone_text()},
    )
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.1"})
    start_serial = p.query("example.com", "SOA").answer[0][0].serial
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow secondary
        s.settimeout(10)
        s.connect(("127.0.0.1", p.port))
        wire = dns.message.make_query("example.com", "AXFR").to_wire()
        s.sendall(struct.pack("!H", len(wire)) + wire)
        first = read_message(s)  # then stop reading: the transfer stalls
        # Meanwhile the ALIAS target changes and a new version is served.
        upstream.set("target.upstream.test", "A", ["203.0.113.2"], ttl=30)
        p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.2"})
        started = time.monotonic()
        for i in range(50):
            assert p.query(f"host{i}.example.com").answer
        assert time.monotonic() - started < 5
        assert p.query("example.com", "SOA").answer[0][0].serial == start_serial + 1
        # Now drain the transfer: it is the version it started with, whole.
        messages = [first]
        while True:
            m = read_message(s)
            messages.append(m)
            if m.answer and m.answer[-1].rdtype == dns.rdatatype.SOA:
                break
    rrs = [rrset for m in messages for rrset in m.answer]
    assert rrs[0][0].serial == rrs[-1][0].serial == start_serial
    apex_a = {rd.address for r in rrs if r.rdtype == dns.rdatatype.A and r.name.to_text() == "example.com." for rd in r}
    assert apex_a == {"203.0.113.1"}
    assert sum(len(r) for r in rrs) == RECORDS + 5  # SOA, NS, apex A, ns1 A, hosts, SOA
    assert len(messages) > 3
