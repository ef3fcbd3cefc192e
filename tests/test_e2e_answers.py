"""End to end: authoritative answers from a real twistd aliasd over UDP and TCP.

Queries come from dnspython and from dig, as a resolver or an operator
would send them.
"""

from __future__ import annotations

import select
import socket
import struct
import subprocess
import time

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.conftest import need
from tests.helpers import recv_exactly

pytestmark = pytest.mark.e2e

BIG_TXT = " ".join(f'"{i:03d}-{"x" * 60}"' for i in range(20))
ZONE = f"""\
    $ORIGIN example.com.
    $TTL 300
    @        SOA ns1 hostmaster 7 3600 600 86400 120
             NS  ns1
    ns1      A   192.0.2.53
    www      A   192.0.2.10
    alias    CNAME www
    outside  CNAME www.example.org.
    a.b.c    TXT "deep"
    *.wild   A   192.0.2.99
    child    NS  ns.child
    ns.child A   192.0.2.77
    big      TXT {BIG_TXT}
    """


@pytest.fixture
def server(aliasd):
    return aliasd(
        """
        [zones."example.com"]
        file = "example.com.zone"
        """,
        {"example.com.zone": ZONE},
    )


def test_positive_answer_is_authoritative_over_udp_tcp_and_ipv6(server):
    for kwargs in ({}, {"tcp": True}, {"host": "::1"}):
        response = server.query("www.example.com", "A", **kwargs)
        assert response.rcode() == dns.rcode.NOERROR
        assert response.flags & dns.flags.AA
        assert not response.flags & dns.flags.RA
        assert response.answer[0][0].address == "192.0.2.10"


def test_nxdomain_and_nodata_carry_soa_with_negative_ttl(server):
    nx = server.query("missing.example.com", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.flags & dns.flags.AA
    (soa,) = nx.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.ttl == 120  # min(300, 120)
    nodata = server.query("www.example.com", "MX")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA
    ent = server.query("b.c.example.com", "TXT")  # empty non-terminal
    assert ent.rcode() == dns.rcode.NOERROR and not ent.answer


def test_cname_followed_inside_zone_not_outside(server):
    response = server.query("alias.example.com", "A")
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    outside = server.query("outside.example.com", "A")
    assert [r.rdtype for r in outside.answer] == [dns.rdatatype.CNAME]
    assert outside.rcode() == dns.rcode.NOERROR


def test_delegation_is_a_referral_with_glue_and_no_aa(server):
    response = server.query("host.child.example.com", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.flags & dns.flags.AA
    assert not response.answer
    assert response.authority[0].rdtype == dns.rdatatype.NS
    assert response.additional[0][0].address == "192.0.2.77"


def test_wildcard_synthesises_under_the_query_name(server):
    response = server.query("anything.wild.example.com", "A")
    assert response.answer[0].name.to_text() == "anything.wild.example.com."
    assert response.answer[0][0].address == "192.0.2.99"


def test_names_outside_every_zone_are_refused(server):
    response = server.query("www.example.org", "A")
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.RA


def test_unknown_opcode_is_notimp_and_bad_edns_version_is_badvers(server):
    for opcode in (dns.opcode.STATUS, dns.opcode.NOTIFY, 3):
        q = dns.message.make_query("example.com", "SOA")
        q.set_opcode(opcode)
        response = dns.query.udp(q, "127.0.0.1", port=server.port, timeout=2)
        assert response.rcode() == dns.rcode.NOTIMP, opcode
    q = dns.message.make_query("example.com", "SOA", use_edns=1)
    response = dns.query.udp(q, "127.0.0.1", port=server.port, timeout=2)
    assert response.rcode() == dns.rcode.BADVERS
    assert response.edns == 0


def test_udp_answer_truncated_to_client_size_and_whole_over_tcp(server):
    plain = server.query("big.example.com", "TXT", use_edns=False)
    assert plain.flags & dns.flags.TC
    assert len(plain.to_wire()) <= 512
    small = server.query("big.example.com", "TXT", use_edns=0, payload=1232)
    assert small.flags & dns.flags.TC  # the TXT set is ~1.4 KB
    assert small.edns == 0  # OPT kept in a truncated answer
    large = server.query("big.example.com", "TXT", use_edns=0, payload=4096)
    assert large.flags & dns.flags.TC  # our own limit is 1232 (no fragments)
    whole = server.query("big.example.com", "TXT", tcp=True)
    assert not whole.flags & dns.flags.TC
    assert len(whole.answer[0][0].strings) == 20


def test_several_pipelined_queries_on_one_tcp_connection(server):
    names = ["www.example.com", "missing.example.com", "ns1.example.com"]
    queries = [dns.message.make_query(n, "A") for n in names]
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries)))
        answers = []
        for _ in queries:
            (length,) = struct.unpack("!H", recv_exactly(s, 2))
            answers.append(dns.message.from_wire(recv_exactly(s, length)))
    assert [a.id for a in answers] == [q.id for q in queries]
    assert [a.rcode() for a in answers] == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.NOERROR]


def test_malformed_packets_never_crash_the_server(server):
    garbage = [
        b"",
        b"\x00",
        b"\x12\x34" + b"\x00" * 9,  # 11 bytes: no full header, dropped
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # pointer loop
        b"\x12\x34\x01\x00\x00\x05\x00\x00\x00\x00\x00\x00\x03www",  # counts lie
        bytes(range(256)) * 4,
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        for packet in garbage:
            s.sendto(packet, ("127.0.0.1", server.port))
        s.sendto(garbage[3], ("127.0.0.1", server.port))
        reply = _first_reply_with_id(s, 0x1234)
    assert reply is not None
    assert reply[3] & 0x0F == dns.rcode.FORMERR
    assert server.query("www.example.com").rcode() == dns.rcode.NOERROR
    assert server.alive()


def _first_reply_with_id(s, ident):
    try:
        while True:
            data, _ = s.recvfrom(65535)
            if struct.unpack("!H", data[:2])[0] == ident:
                return data
    except socket.timeout:
        return None


def test_transfers_are_refused_without_allow_transfer_or_key(server):
    response = server.query("example.com", "AXFR", tcp=True)
    assert response.rcode() == dns.rcode.REFUSED
    assert "AXFR of example.com. refused to 127.0.0.1: no allow-transfer or transfer-key" in server.log()


def test_dig_sees_an_authoritative_answer_and_tc_without_edns(server):
    dig = need("dig")
    out = subprocess.run(
        [dig, "@127.0.0.1", "-p", str(server.port), "+norec", "www.example.com", "A"],
        capture_output=True, text=True, timeout=10,
    ).stdout
    assert "status: NOERROR" in out and " aa" in out.split("flags:")[1].split(";")[0]
    assert "192.0.2.10" in out
    out = subprocess.run(
        [dig, "@127.0.0.1", "-p", str(server.port), "+norec", "+noedns", "+ignore", "big.example.com", "TXT"],
        capture_output=True, text=True, timeout=10,
    ).stdout
    assert " tc" in out.split("flags:")[1].split(";")[0]
    out = subprocess.run(
        [dig, "@127.0.0.1", "-p", str(server.port), "+edns=1", "+noednsnegotiation", "example.com", "SOA"],
        capture_output=True, text=True, timeout=10,
    ).stdout
    assert "status: BADVERS" in out


def test_one_client_cannot_take_every_tcp_slot(aliasd):
    """A client opening one connection more than tcp-max-per-client has one
    closed by the server at once, and keeps the others. Which one: with
    worker processes accepting at the same moment, not always the last
    (the limit holds for the server as a whole)."""
    p = aliasd(
        '[zones."example.com"]\nfile = "example.com.zone"\n',
        {"example.com.zone": ZONE},
        server="tcp-max-per-client = 3\n",
    )
    conns = [socket.create_connection(("127.0.0.1", p.port), timeout=3) for _ in range(4)]
    try:
        closed = closed_by_the_server(conns, within=3.0, then=0.5)
        assert len(closed) == 1, f"{len(closed)} of 4 connections closed by the server"
        q = dns.message.make_query("www.example.com", "A")
        for s in conns:
            if s not in closed:  # the three kept are answered
                dns.query.send_tcp(s, q, time.time() + 3)
                assert dns.query.receive_tcp(s, time.time() + 3)[0].answer[0][0].address == "192.0.2.10"
        # Another address still gets in and is answered over TCP.
        r = dns.query.tcp(q, "127.0.0.1", port=p.port, timeout=3, source="127.0.0.2")
        assert r.answer[0][0].address == "192.0.2.10"
        p.wait_for(lambda: "TCP connection from 127.0.0.1 refused" in p.log())
    finally:
        for s in conns:
            s.close()
    # Once they close, the client is welcome again (as soon as the server has seen them close).
    def answered() -> bool:
        try:
            return bool(p.query("www.example.com", tcp=True).answer)
        except (ConnectionError, EOFError):
            return False

    p.wait_for(answered)


def closed_by_the_server(conns: list[socket.socket], within: float, then: float) -> list[socket.socket]:
    """The connections the server closes (EOF or reset) within ``within``
    seconds, waiting ``then`` more after the first for any other."""
    closed: list[socket.socket] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ready, _, _ = select.select([s for s in conns if s not in closed], [], [],
                                    max(0.0, deadline - time.monotonic()))
        for s in ready:
            try:
                data = s.recv(1, socket.MSG_PEEK)
            except ConnectionError:
                data = b""
            if data == b"":
                closed.append(s)
        if closed:
            deadline = min(deadline, time.monotonic() + then)
    return closed


def test_dname_cross_zone_cnames_and_alias_type_queries(aliasd):
    """Issue 12.6/12.7: a DNAME synthesises a CNAME (RFC 6672); a CNAME into
    another zone served here is followed there (also the second time, when
    the first answer could have been kept); type 65401 is NODATA, as on a
    secondary, which never gets the ALIAS record."""
    p = aliasd(
        """
        [zones."example.com"]
        file = "example.com.zone"
        allow-transfer = ["127.0.0.1"]
        [zones."other.test"]
        file = "other.test.zone"
        """,
        {
            "example.com.zone": """\
                $ORIGIN example.com.
                $TTL 300
                @       SOA ns1 hostmaster 7 3600 600 86400 120
                        NS  ns1
                        ALIAS www.other.test.
                ns1     A   192.0.2.53
                old     60 DNAME new
                x.new   A   192.0.2.5
                www     CNAME www.other.test.
                """,
            "other.test.zone": """\
                $ORIGIN other.test.
                $TTL 300
                @       SOA ns1 hostmaster 3 3600 600 86400 120
                        NS  ns1
                ns1     A   192.0.2.54
                www     A   192.0.2.80
                """,
        },
    )
    r = p.query("x.old.example.com", "A")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert [(a.name.to_text(), a.rdtype, a.ttl) for a in r.answer] == [
        ("old.example.com.", dns.rdatatype.DNAME, 60),
        ("x.old.example.com.", dns.rdatatype.CNAME, 60),
        ("x.new.example.com.", dns.rdatatype.A, 300),
    ]
    for _ in range(2):
        r = p.query("www.example.com", "A")
        assert [a.rdtype for a in r.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
        assert r.answer[1][0].address == "192.0.2.80"
    r = p.query("example.com", "TYPE65401")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority
    assert p.addresses("example.com") == {"192.0.2.80"}  # the ALIAS followed into other.test
    axfr = dns.query.xfr("127.0.0.1", "example.com", port=p.port, relativize=False)
    transferred = {(rrset.name.to_text(), rrset.rdtype) for m in axfr for rrset in m.answer}
    assert ("old.example.com.", dns.rdatatype.DNAME) in transferred
    assert ("example.com.", 65401) not in transferred
