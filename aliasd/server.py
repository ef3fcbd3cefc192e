"""DNS over UDP and TCP: from wire bytes to an answer and back.

QueryHandler turns one request message into one response message, using
dnspython for parsing and rendering (it keeps the raw wire, renders EDNS(0)
and truncates at whole RRsets, where stock Twisted Names cuts a message
mid-record). The two protocols only frame messages: one datagram each over
UDP, a two-octet length prefix over TCP with any number of queries on one
connection (RFC 7766). A malformed message gets FORMERR when its header can
be read and is dropped otherwise; no input reaches the reactor as an error.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
from twisted.internet import protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

from aliasd.authority import ZoneAuthority

log = Logger()

_HEADER = struct.Struct("!HHHHHH")
_TRANSFER_TYPES = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
_NOT_QUERYABLE = (dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY)
#: Our EDNS UDP payload size (DNS flag day 2020): no IP fragmentation.
DEFAULT_MAX_UDP_SIZE = 1232


class QueryHandler:
    """Answers DNS messages from the authority's current zone versions."""

    def __init__(self, authority: ZoneAuthority, max_udp_size: int = DEFAULT_MAX_UDP_SIZE):
        self.authority = authority
        self.max_udp_size = max(512, max_udp_size)

    def handle(self, wire: bytes, over_udp: bool) -> bytes | None:
        """The response to ``wire``, or None when nothing must be sent."""
        if len(wire) < _HEADER.size:
            return None
        try:
            query = dns.message.from_wire(wire, continue_on_error=False)
        except dns.message.UnknownTSIGKey:
            return _header_only(wire, dns.rcode.NOTAUTH)
        except Exception:
            return _header_only(wire, dns.rcode.FORMERR)
        if query.flags & dns.flags.QR:
            return None  # never answer a response
        response = dns.message.make_response(query, our_payload=self.max_udp_size)
        response.flags |= query.flags & dns.flags.CD
        self._fill(query, response, over_udp)
        if over_udp:
            limit = 512 if query.edns < 0 else min(
                max(512, query.payload), self.max_udp_size
            )
        else:
            limit = 65535
        return response.to_wire(max_size=limit, prefer_truncation=True)

    def _fill(self, query: dns.message.Message, response: dns.message.Message, over_udp: bool) -> None:
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
            return
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return
        question = query.question[0]
        qtype = question.rdtype
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return
        if qtype in _NOT_QUERYABLE:
            response.set_rcode(dns.rcode.FORMERR)
            return
        version = self.authority.zone_for(question.name)
        if version is None:
            response.set_rcode(dns.rcode.REFUSED)
            return
        if qtype in _TRANSFER_TYPES:
            log.info(
                "zone transfer of {zone} refused: transfers are not served yet",
                zone=version.origin.to_text(),
            )
            response.set_rcode(dns.rcode.REFUSED)
            return
        answer = version.lookup(question.name, qtype)
        response.set_rcode(answer.rcode)
        if answer.authoritative:
            response.flags |= dns.flags.AA
        response.answer = list(answer.answer)
        response.authority = list(answer.authority)
        response.additional = list(answer.additional)


def _header_only(wire: bytes, rcode: int) -> bytes | None:
    """A bare error response built from the request header alone."""
    ident, flags, *_ = _HEADER.unpack_from(wire)
    if flags & dns.flags.QR:
        return None
    opcode_bits = flags & 0x7800
    flags = dns.flags.QR | opcode_bits | (flags & dns.flags.RD) | (rcode & 0xF)
    return _HEADER.pack(ident, flags, 0, 0, 0, 0)


class DNSDatagramProtocol(protocol.DatagramProtocol):
    """DNS over UDP: one message per datagram."""

    noisy = False

    def __init__(self, handler: QueryHandler):
        self.handler = handler

    def datagramReceived(self, data: bytes, addr) -> None:
        try:
            response = self.handler.handle(data, over_udp=True)
        except Exception:
            log.failure("unexpected error answering a UDP message from {addr}", addr=addr)
            response = _header_only(data, dns.rcode.SERVFAIL) if len(data) >= 12 else None
        if response is not None:
            self.transport.write(response, addr)


class DNSStreamProtocol(protocol.Protocol, TimeoutMixin):
    """DNS over TCP: length-prefixed messages, any number per connection."""

    def __init__(self, handler: QueryHandler, idle_timeout: float):
        self.handler = handler
        self.idle_timeout = idle_timeout
        self._buffer = b""

    def connectionMade(self) -> None:
        self.setTimeout(self.idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self._buffer += data
        while len(self._buffer) >= 2:
            (length,) = struct.unpack_from("!H", self._buffer)
            if len(self._buffer) < 2 + length:
                return
            message = self._buffer[2 : 2 + length]
            self._buffer = self._buffer[2 + length :]
            try:
                response = self.handler.handle(message, over_udp=False)
            except Exception:
                log.failure("unexpected error answering a TCP message")
                response = (
                    _header_only(message, dns.rcode.SERVFAIL) if len(message) >= 12 else None
                )
            if response is None:
                # Not a query we can answer: RFC 7766 lets us close.
                self.transport.loseConnection()
                return
            self.transport.write(struct.pack("!H", len(response)) + response)

    def timeoutConnection(self) -> None:
        self.transport.loseConnection()

    def connectionLost(self, reason=None) -> None:
        self.setTimeout(None)


class DNSStreamFactory(protocol.ServerFactory):
    """Makes one DNSStreamProtocol per TCP connection."""

    noisy = False

    def __init__(self, handler: QueryHandler, idle_timeout: float = 30.0):
        self.handler = handler
        self.idle_timeout = idle_timeout

    def buildProtocol(self, addr):
        return DNSStreamProtocol(self.handler, self.idle_timeout)
