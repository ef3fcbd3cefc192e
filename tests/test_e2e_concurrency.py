"""End to end: slow TCP clients (a stalled zone transfer, a client that
never reads) neither block other queries nor cost the server memory."""

from __future__ import annotations

import socket
import struct
import time

import dns.message
import dns.rdatatype
import pytest

from bench.common import proc_mib
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


def test_client_that_pipelines_and_never_reads_is_bounded_and_closed(aliasd):
    """RFC 7766 slow reader: a client sends thousands of queries for a large
    answer and reads nothing. The server stops reading from it once its send
    buffer is full (its memory stays flat), keeps answering everyone else,
    and closes the connection after the idle timeout."""
    big = " ".join(f'"{"z" * 250}"' for _ in range(16))  # a ~4 KiB answer
    process = aliasd(
        '[zones."example.com"]\nfile = "example.com.zone"\n',
        {"example.com.zone": f"$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\n"
                             f"big TXT {big}\nwww A 192.0.2.1\n"},
        server="tcp-idle-timeout = 3\n",
    )
    rss_before = proc_mib(process.proc.pid)
    query = dns.message.make_query("big.example.com", "TXT").to_wire()
    framed = struct.pack("!H", len(query)) + query
    hog = socket.create_connection(("127.0.0.1", process.port))
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.setblocking(False)
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # push until the server stops reading
        try:
            sent += hog.send(framed * 64)
        except BlockingIOError:
            time.sleep(0.01)
    queries_sent = sent // len(framed)
    # Answering all of them would take over 4 KiB each; the server holds
    # at most a send buffer's worth instead.
    assert queries_sent > 2000, queries_sent
    for _ in range(20):  # everyone else is answered meanwhile, UDP and TCP
        assert process.addresses("www.example.com") == {"192.0.2.1"}
        assert process.query("www.example.com", tcp=True).answer[0][0].address == "192.0.2.1"
    rss_after = proc_mib(process.proc.pid)
    assert rss_after - rss_before < 20, (rss_before, rss_after, queries_sent)
    # Closed after the idle timeout (the last complete query was read
    # before the server paused): the abort resets the connection, so the
    # next read fails although unread answers were waiting.
    time.sleep(max(0.0, started + 1.5 + 3 + 1.5 - time.monotonic()))
    hog.setblocking(True)
    hog.settimeout(5)
    with pytest.raises(ConnectionResetError):
        for _ in range(1000):
            if not hog.recv(65536):
                break
    hog.close()
    assert process.alive()
    print(f"slow reader: {queries_sent} pipelined queries, RSS {rss_before:.1f} -> {rss_after:.1f} MiB")
