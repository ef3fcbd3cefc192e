"""Unit tests: wire handling of QueryHandler and the TCP framing.

The end-to-end tests send the same kinds of packets to a real process;
these pin down each rule on its own, with StringTransport for TCP.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent

from aliasd.answer.answers import QueryHandler
from aliasd.base.access import TransferAccess
from aliasd.base.config import ZoneSettings
from aliasd.listen.transports import DNSDatagramProtocol, DNSStreamFactory
from aliasd.service.authority import ZoneAuthority
from tests.helpers import zone_source

SOURCE = zone_source(
    "example.com",
    """\
    $ORIGIN example.com.
    @   300 SOA ns1 h 1 3600 600 86400 60
    www 300 A 192.0.2.1
    big 300 TXT """ + " ".join(f'"{"y" * 200}"' for _ in range(8)) + "\n",
)


@pytest.fixture
def handler():
    authority = ZoneAuthority()
    authority.set_sources([SOURCE])
    return QueryHandler(authority, max_udp_size=1232)


def ask(handler, query, udp=True):
    wire = handler.handle(query.to_wire() if hasattr(query, "to_wire") else query, "127.0.0.1", over_udp=udp)
    return None if wire is None else dns.message.from_wire(wire)


def test_answer_copies_id_question_rd_and_cd(handler):
    q = dns.message.make_query("www.example.com", "A")
    q.flags |= dns.flags.CD
    r = ask(handler, q)
    assert r.id == q.id and r.question == q.question
    assert r.flags & dns.flags.RD and r.flags & dns.flags.CD and r.flags & dns.flags.AA
    assert not r.flags & dns.flags.RA


def test_short_packets_and_responses_are_dropped(handler):
    assert handler.handle(b"\x00" * 11, "127.0.0.1", over_udp=True) is None
    r = dns.message.make_response(dns.message.make_query("www.example.com", "A"))
    assert handler.handle(r.to_wire(), "127.0.0.1", over_udp=True) is None


def test_unparsable_query_gets_formerr_with_its_id(handler):
    wire = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example"
    response = handler.handle(wire, "127.0.0.1", over_udp=True)
    ident, flags = struct.unpack("!HH", response[:4])
    assert ident == 0xABCD and flags & dns.flags.QR and flags & 0xF == dns.rcode.FORMERR
    assert len(response) == 12


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, 3, 15])
def test_other_opcodes_are_notimp(handler, opcode):
    q = dns.message.make_query("example.com", "SOA")
    q.set_opcode(opcode)
    wire = handler.handle(q.to_wire(), "127.0.0.1", over_udp=True)
    ident, flags = struct.unpack("!HH", wire[:4])
    assert flags & 0xF == dns.rcode.NOTIMP and (flags >> 11) & 0xF == opcode


def test_edns_version_above_zero_is_badvers(handler):
    r = ask(handler, dns.message.make_query("example.com", "SOA", use_edns=1))
    assert r.rcode() == dns.rcode.BADVERS and r.edns == 0 and not r.answer


def test_two_questions_and_meta_types_are_formerr(handler):
    q = dns.message.make_query("www.example.com", "A")
    q.question.append(q.question[0])
    assert ask(handler, q).rcode() == dns.rcode.FORMERR
    for rdtype in ("OPT", "TSIG"):
        assert ask(handler, dns.message.make_query("example.com", rdtype)).rcode() == dns.rcode.FORMERR


def test_other_classes_and_outside_names_are_refused(handler):
    assert ask(handler, dns.message.make_query("example.com", "SOA", rdclass="CH")).rcode() == dns.rcode.REFUSED
    assert ask(handler, dns.message.make_query("example.org", "SOA")).rcode() == dns.rcode.REFUSED


def test_signed_query_with_unknown_key_is_notauth(handler):
    q = dns.message.make_query("example.com", "SOA")
    q.use_tsig(dns.tsigkeyring.from_text({"k.": "c2VjcmV0"}))
    wire = handler.handle(q.to_wire(), "127.0.0.1", over_udp=True)
    assert struct.unpack("!HH", wire[:4])[1] & 0xF == dns.rcode.NOTAUTH


def test_truncation_follows_client_size_and_our_limit(handler):
    plain = ask(handler, dns.message.make_query("big.example.com", "TXT", use_edns=False))
    assert plain.flags & dns.flags.TC and not plain.answer
    fits = ask(handler, dns.message.make_query("big.example.com", "TXT", use_edns=0, payload=4096))
    assert fits.flags & dns.flags.TC  # ~1.6 KB exceeds our 1232
    handler.max_udp_size = 4096
    fits = ask(handler, dns.message.make_query("big.example.com", "TXT", use_edns=0, payload=4096))
    assert not fits.flags & dns.flags.TC and fits.answer
    small = ask(handler, dns.message.make_query("big.example.com", "TXT", use_edns=0, payload=1000))
    assert small.flags & dns.flags.TC and small.edns == 0
    tcp = ask(handler, dns.message.make_query("big.example.com", "TXT"), udp=False)
    assert not tcp.flags & dns.flags.TC


def test_datagram_protocol_answers_to_the_sender(handler):
    proto = DNSDatagramProtocol(handler)
    sent = []

    class Transport:
        def write(self, data, addr):
            sent.append((data, addr))

    proto.transport = Transport()
    q = dns.message.make_query("www.example.com", "A")
    proto.datagramReceived(q.to_wire(), ("127.0.0.1", 4242))
    proto.datagramReceived(b"junk", ("127.0.0.1", 4242))
    assert len(sent) == 1 and sent[0][1] == ("127.0.0.1", 4242)


def test_datagram_protocol_survives_handler_bugs(handler):
    proto = DNSDatagramProtocol(handler)
    sent = []

    class Transport:
        def write(self, data, addr):
            sent.append(data)

    proto.transport = Transport()
    handler.authority = None  # every lookup now raises
    q = dns.message.make_query("www.example.com", "A")
    proto.datagramReceived(q.to_wire(), ("127.0.0.1", 1))
    assert struct.unpack("!HH", sent[0][:4])[1] & 0xF == dns.rcode.SERVFAIL


def framed(message) -> bytes:
    wire = message.to_wire()
    return struct.pack("!H", len(wire)) + wire


def read_framed(data: bytes) -> list[dns.message.Message]:
    out = []
    while data:
        (length,) = struct.unpack("!H", data[:2])
        out.append(dns.message.from_wire(data[2 : 2 + length]))
        data = data[2 + length :]
    return out


def test_tcp_handles_pipelined_and_split_messages(handler):
    proto = DNSStreamFactory(handler, idle_timeout=30).buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    queries = [dns.message.make_query(n, "A") for n in ("www.example.com", "nope.example.com", "example.com")]
    stream = b"".join(framed(q) for q in queries)
    proto.dataReceived(stream[:5])  # split inside the first message
    assert transport.value() == b""
    proto.dataReceived(stream[5:])
    answers = read_framed(transport.value())
    assert [a.id for a in answers] == [q.id for q in queries]
    assert [a.rcode() for a in answers] == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.NOERROR]
    proto.connectionLost(None)


def test_tcp_idle_connection_is_closed(handler):
    from twisted.internet import task

    clock = task.Clock()
    proto = DNSStreamFactory(handler, idle_timeout=5).buildProtocol(None)
    proto.callLater = clock.callLater
    transport = StringTransport()
    proto.makeConnection(transport)
    clock.advance(4)
    proto.dataReceived(framed(dns.message.make_query("www.example.com", "A")))
    clock.advance(4)
    assert not transport.disconnecting
    clock.advance(1.5)
    assert transport.disconnecting


def test_chaos_status_is_for_loopback_clients_only(handler):
    from twisted.internet import task

    from aliasd.answer.status import StatusReporter

    handler.status = StatusReporter(handler.authority, None, task.Clock())
    q = dns.message.make_query("aliases.aliasd.", "TXT", rdclass="CH")
    for client, rcode in (("127.0.0.1", dns.rcode.NOERROR), ("::1", dns.rcode.NOERROR),
                          ("192.0.2.7", dns.rcode.REFUSED), ("2001:db8::7", dns.rcode.REFUSED)):
        wire = handler.handle(q.to_wire(), client, over_udp=False)
        assert dns.message.from_wire(wire).rcode() == rcode, client
    version = dns.message.make_query("version.bind.", "TXT", rdclass="CH")
    r = dns.message.from_wire(handler.handle(version.to_wire(), "192.0.2.7", over_udp=True))
    assert r.answer[0][0].strings[0].startswith(b"aliasd ")


def test_tcp_connections_are_capped_per_client_and_in_total(handler):
    from twisted.internet.address import IPv4Address

    factory = DNSStreamFactory(handler, idle_timeout=30, max_connections=3, max_per_client=2)

    def connect(host):
        proto = factory.buildProtocol(IPv4Address("TCP", host, 5000))
        if proto is not None:
            proto.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", host, 5000)))
        return proto

    a1, a2 = connect("192.0.2.1"), connect("192.0.2.1")
    assert a1 and a2 and connect("192.0.2.1") is None  # per-client limit
    b1 = connect("192.0.2.2")
    assert b1 and connect("192.0.2.3") is None  # total limit
    a1.connectionLost(None)
    assert connect("192.0.2.3") is not None  # a slot freed
    assert factory.refused == 2
    # The connections that got in are served as usual.
    b1.dataReceived(framed(dns.message.make_query("www.example.com", "A")))
    assert read_framed(b1.transport.value())[0].rcode() == dns.rcode.NOERROR


def test_secondaries_are_held_to_the_total_tcp_limit_only(handler):
    """A secondary pulling thousands of zones opens many connections at once."""
    from twisted.internet.address import IPv4Address

    handler.access = TransferAccess(
        (ZoneSettings(dns.name.from_text("example.com"), Path("x"),
                      allow_transfer=(ipaddress.ip_network("198.51.100.0/24"),)),)
    )
    factory = DNSStreamFactory(handler, idle_timeout=30, max_connections=6, max_per_client=2)

    def connect(host):
        proto = factory.buildProtocol(IPv4Address("TCP", host, 5000))
        if proto is not None:
            proto.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", host, 5000)))
        return proto

    assert all(connect("198.51.100.9") for _ in range(5))  # past the per-client limit
    assert connect("192.0.2.1") and connect("192.0.2.1") is None  # others are not
    assert connect("198.51.100.9") is None  # the total still holds


def test_tcp_client_that_floods_without_reading_is_dropped(handler):
    proto = DNSStreamFactory(handler, idle_timeout=30).buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"\xff\xff" + b"x" * (300 * 1024))  # a 64 KiB message promised, far more sent
    assert transport.disconnecting or getattr(transport, "disconnected", False)


def test_tcp_stops_reading_and_answering_while_the_client_does_not_read(handler):
    """Backpressure: with the send buffer full (the transport pauses its
    producer) no query is answered and reading stops; on resume the queued
    queries are answered in order."""
    proto = DNSStreamFactory(handler, idle_timeout=30).buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    assert transport.producer is proto and transport.streaming
    proto.pauseProducing()  # what the transport does when its buffer is full
    assert transport.producerState == "paused"  # the protocol stopped reading
    queries = [dns.message.make_query(f"n{i}.example.com", "A") for i in range(3)]
    proto.dataReceived(b"".join(framed(q) for q in queries))
    assert transport.value() == b""
    proto.resumeProducing()
    assert transport.producerState == "producing"
    assert [a.id for a in read_framed(transport.value())] == [q.id for q in queries]


def test_tcp_message_trickled_slowly_does_not_keep_the_connection(handler):
    """A slow writer: octets that never complete a message do not restart
    the idle timer, so the connection closes after the idle timeout."""
    from twisted.internet import task

    clock = task.Clock()
    proto = DNSStreamFactory(handler, idle_timeout=5).buildProtocol(None)
    proto.callLater = clock.callLater
    transport = StringTransport()
    proto.makeConnection(transport)
    wire = framed(dns.message.make_query("www.example.com", "A"))
    for octet in wire[:3]:
        clock.advance(1.5)
        proto.dataReceived(bytes([octet]))
    clock.advance(0.4)  # 4.9 s: an octet every 1.5 s, no complete message
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting  # 5 s after connecting, although octets kept coming


def test_tcp_transfer_hands_the_producer_back_to_queries(handler):
    handler.access = TransferAccess(
        (ZoneSettings(dns.name.from_text("example.com"), Path("x"),
                      allow_transfer=(ipaddress.ip_network("127.0.0.0/8"),)),)
    )
    proto = DNSStreamFactory(handler, idle_timeout=30).buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000))
    proto.makeConnection(transport)
    axfr = dns.message.make_query("example.com", "AXFR")
    after = dns.message.make_query("www.example.com", "A")
    proto.dataReceived(framed(axfr) + framed(after))
    assert transport.producer is not proto and not transport.streaming  # the transfer streams
    while transport.producer is not proto:
        transport.producer.resumeProducing()
    answers = read_framed(transport.value())
    assert answers[0].id == axfr.id and answers[-1].id == after.id
    assert transport.streaming  # the protocol is the push producer again


def test_a_zone_still_loading_answers_servfail_then_its_records(clock):
    """Start-up with many zones serves them as they load (aliasd.service.tap):
    until a zone's first version is served it is ours but not ready."""
    authority = ZoneAuthority(clock=clock)
    authority.set_sources([SOURCE])  # queued: nothing built before the clock runs
    handler = QueryHandler(authority, max_udp_size=1232)
    assert ask(handler, dns.message.make_query("www.example.com", "A")).rcode() == dns.rcode.SERVFAIL
    assert ask(handler, dns.message.make_query("example.net", "SOA")).rcode() == dns.rcode.REFUSED
    clock.advance(0)
    clock.advance(0)
    assert not authority.busy
    r = ask(handler, dns.message.make_query("www.example.com", "A"))
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "192.0.2.1"


@pytest.mark.parametrize("udp", [True, False])
def test_do_bit_is_copied_into_every_answer_to_an_edns_query(handler, udp):
    """RFC 3225 3: the DO bit of the query is copied into the response,
    whatever the answer; asked twice (the second from the kept answer),
    and alternating, so no answer carries another query's DO."""
    questions = [
        ("www.example.com", "A", {}, dns.rcode.NOERROR),
        ("www.example.com", "MX", {}, dns.rcode.NOERROR),  # NODATA
        ("nope.example.com", "A", {}, dns.rcode.NXDOMAIN),
        ("example.org", "SOA", {}, dns.rcode.REFUSED),
        ("example.com", "SOA", {"use_edns": 1}, dns.rcode.BADVERS),
    ]
    for do in (True, False, True, True, False, False):
        for name, rdtype, extra, rcode in questions:
            kwargs = {"use_edns": 0, "payload": 1232, **extra}
            r = ask(handler, dns.message.make_query(name, rdtype, want_dnssec=do, **kwargs), udp)
            assert r.rcode() == rcode and r.edns == 0, (name, rdtype)
            assert bool(r.ednsflags & dns.flags.DO) == do, (name, rdtype, do)


def transfer_handler(handler, key=None):
    handler.access = TransferAccess(
        (ZoneSettings(dns.name.from_text("example.com"), Path("x"),
                      allow_transfer=(ipaddress.ip_network("127.0.0.0/8"),),
                      transfer_key=key.name.to_text() if key else None),)
    )
    if key is not None:
        handler.keyring = {key.name: key}
    return handler


def test_axfr_and_ixfr_to_an_edns_query_carry_an_opt_with_the_do_bit(handler):
    """RFC 6891 7 / RFC 5936 2.2.5: an OPT in each message of the answer to
    an EDNS transfer request (as BIND does), with our payload size and DO
    echoed; the kept rendering of the version answers the next ones alike."""
    transfer_handler(handler)
    origin = dns.name.from_text("example.com")
    for shape in ({}, {"use_edns": 0, "want_dnssec": True}, {"use_edns": 0}, {}, {"use_edns": 0, "want_dnssec": True}):
        q = dns.message.make_query("example.com", "AXFR", **shape)
        wires = list(handler.handle(q.to_wire(), "127.0.0.1", over_udp=False))
        for wire in wires:
            m = dns.message.from_wire(wire, xfr=True)
            assert m.id == q.id and m.answer
            if shape:
                assert m.edns == 0 and m.payload == 1232
                assert bool(m.ednsflags & dns.flags.DO) == shape.get("want_dnssec", False)
            else:
                assert m.opt is None
    # IXFR over UDP from an older serial not in the journal: the whole zone in one datagram.
    q = dns.message.make_query("example.com", "IXFR", use_edns=0, payload=4096, want_dnssec=True)
    q.authority.append(dns.rrset.from_text(origin, 0, "IN", "SOA", f"ns1. h. {2**32 - 5} 1 1 1 1"))
    handler.max_udp_size = 4096
    r = dns.message.from_wire(handler.handle(q.to_wire(), "127.0.0.1", over_udp=True), xfr=True)
    assert len(r.answer) > 1 and r.edns == 0 and r.payload == 4096 and r.ednsflags & dns.flags.DO


def test_signed_edns_axfr_has_opt_then_tsig_in_every_message(handler):
    key = dns.tsig.Key("xfr.", b"0123456789abcdef0123456789abcdef", "hmac-sha256")
    transfer_handler(handler, key)
    q = dns.message.make_query("example.com", "AXFR", use_edns=0, want_dnssec=True)
    q.use_tsig({key.name: key}, key.name)
    for _ in range(2):  # signed transfers are never kept: rendered again
        wires = list(handler.handle(q.to_wire(), "127.0.0.1", over_udp=False))
        ctx = None
        for wire in wires:
            m = dns.message.from_wire(wire, keyring={key.name: key}, request_mac=q.mac, xfr=True,
                                      tsig_ctx=ctx, multi=True)  # checks the signature
            ctx = m.tsig_ctx
            assert m.had_tsig and m.opt is not None and m.ednsflags & dns.flags.DO


def test_a_child_zone_still_loading_is_not_answered_by_its_parent(clock):
    """While a served child zone waits for its first version, neither the
    full path nor the negative fast path answers its names from the parent."""
    parent = zone_source("example.com", "$ORIGIN example.com.\n@ 300 SOA ns h 1 1 1 1 1\n@ 300 NS ns\nns 300 A 192.0.2.53\n")
    child = zone_source("sub.example.com", "$ORIGIN sub.example.com.\n@ 300 SOA ns h 1 1 1 1 1\n@ 300 NS ns\nwww 300 A 192.0.2.9\n")
    authority = ZoneAuthority(clock=clock)
    authority.set_sources([parent], wait=True)
    handler = QueryHandler(authority, max_udp_size=1232)
    for name in ("xx.example.com", "abcdef.example.com"):  # negative answers of these shapes are kept
        assert ask(handler, dns.message.make_query(name, "A")).rcode() == dns.rcode.NXDOMAIN
    authority.set_sources([parent, child])  # the child is queued, not built yet
    assert ask(handler, dns.message.make_query("abcdef.example.com", "A")).rcode() == dns.rcode.NXDOMAIN
    for name in ("www.sub.example.com", "zz.sub.example.com"):  # the latter: the same shape
        assert ask(handler, dns.message.make_query(name, "A")).rcode() == dns.rcode.SERVFAIL, name
    clock.advance(0)
    clock.advance(0)
    r = ask(handler, dns.message.make_query("www.sub.example.com", "A"))
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "192.0.2.9"
    assert ask(handler, dns.message.make_query("zz.sub.example.com", "A")).rcode() == dns.rcode.NXDOMAIN


def test_udp_sockets_get_large_buffers():
    """The default receive buffer holds a few hundred datagrams; a burst
    while the reactor is busy must not be dropped (as root, past the cap)."""
    import os
    import socket

    from aliasd.listen.transports import _grow_buffers

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        default = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        _grow_buffers(s, 8 * 1024 * 1024)
        grown = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if os.geteuid() == 0:
            assert grown >= 8 * 1024 * 1024 > default
        else:
            assert grown >= default


@pytest.mark.parametrize(("make", "opcode", "zone"), [
    (lambda: dns.message.make_query("example.com.", "AXFR"), "AXFR", "example.com."),
    (lambda: dns.message.make_query("www.example.com.", "A"), "QUERY", "example.com."),
    (lambda: dns.message.make_query("www.elsewhere.test.", "A"), "QUERY", "?"),
    (lambda: dns.message.Message(), "QUERY", "?"),  # no question at all
])
def test_tsig_errors_are_logged_by_their_tsig_name_with_opcode_and_zone(handler, log_events, make, opcode, zone):
    """Issue 21: rcode 16 is BADSIG in a TSIG record (BADVERS is EDNS's)."""
    handler.keyring = {dns.name.from_text("k."): dns.tsig.Key("k.", b"the secret of the key")}
    query = make()
    query.use_tsig(dns.tsig.Key("k.", b"another secret"))
    response = dns.message.from_wire(handler.handle(query.to_wire(), "127.0.0.1", over_udp=False), keyring=False)
    assert response.rcode() == dns.rcode.NOTAUTH and response.tsig_error == dns.rcode.BADSIG
    [line] = [formatEvent(e) for e in log_events if "TSIG error" in e.get("log_format", "")]
    assert line == f"TSIG error BADSIG on {opcode} for zone {zone} from 127.0.0.1 with key k."
