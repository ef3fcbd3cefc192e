"""DNS over UDP and TCP: from wire bytes to an answer and back.

QueryHandler turns one request message into its answer. Plain queries are
answered from answers rendered earlier for the same zone version
(aliasd.fastpath); everything else, and every first time, takes the full
path: dnspython parses (keeping the raw wire for TSIG), the zone version
answers, dnspython renders (EDNS(0), truncation at whole RRsets, where stock
Twisted Names cuts a message mid-record). Zone transfers are checked against
the access rules and come back as an iterator of messages (aliasd.transfer).
The two protocols only frame messages: one datagram each over UDP, a
two-octet length prefix over TCP with any number of queries on one
connection (RFC 7766), transfers streamed as the client reads. A malformed
message gets FORMERR when its header can be read and is dropped otherwise;
no input reaches the reactor as an error.
"""

from __future__ import annotations

import collections
import struct
import time

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
from twisted.internet import interfaces, protocol
from twisted.logger import Logger
from zope.interface import implementer
from twisted.protocols.policies import TimeoutMixin
from twisted.protocols.tls import TLSMemoryBIOFactory

from aliasd import fastpath
from aliasd.access import TransferAccess
from aliasd.authority import ZoneAuthority
from aliasd.logthrottle import LogThrottle
from aliasd.ratelimit import ResponseRateLimiter
from aliasd.stats import Statistics
from aliasd.tls import negotiated_version as tls_version
from aliasd.transfer import axfr_rrsets, ixfr_rrsets, render_answer, single_message

log = Logger()

_HEADER = struct.Struct("!HHHHHH")
_TRANSFER_TYPES = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
_NOT_QUERYABLE = (dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY)
_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
#: Our EDNS UDP payload size (DNS flag day 2020): no IP fragmentation.
DEFAULT_MAX_UDP_SIZE = 1232


class QueryHandler:
    """Answers DNS messages from the authority's current zone versions.

    ``handle`` returns the response's wire form, None when nothing must be
    sent, or (for a zone transfer over TCP) an iterator of wire messages.
    """

    def __init__(
        self,
        authority: ZoneAuthority,
        max_udp_size: int = DEFAULT_MAX_UDP_SIZE,
        access: TransferAccess | None = None,
        keyring: dict[dns.name.Name, dns.tsig.Key] | None = None,
        status=None,
        stats: Statistics | None = None,
        answer_cache_size: int | None = None,
    ):
        self.authority = authority
        self.status = status
        self.stats = stats if stats is not None else Statistics()
        # None: sized from the zones (fastpath.automatic_size), on reload too.
        self.answer_cache_size = answer_cache_size
        self._cache = fastpath.AnswerCache(answer_cache_size or fastpath.MAX_ENTRIES)
        self._cache_sized_for = None  # the number of names the bound was set for
        self.max_udp_size = max(512, max_udp_size)
        self.access = access if access is not None else TransferAccess(())
        self.keyring = keyring or {}
        self._tsig_log = LogThrottle("TSIG errors")
        self._refusal_log = LogThrottle("refused transfers")

    def handle(self, wire: bytes, client: str, over_udp: bool, tls: str | None = None):
        """The answer to ``wire`` from address ``client``.

        ``tls`` is the TLS version of a DNS-over-TLS connection (None over
        plain UDP and TCP); transfer access rules look at it.
        """
        # DNS over TLS takes the full path: its answers count as "tls".
        found = None if tls else fastpath.cache_key(wire, over_udp, self.max_udp_size)
        negative_key = None
        if found is not None:
            entry = self._cache.get(found[0])
            if (
                entry is not None
                and not entry.version.superseded
                and entry.generation == self.authority.generation
            ):
                self._count_cached(entry)
                return fastpath.patch(entry.wire, wire, found[1])
            # A name that certainly does not exist: one answer per zone,
            # name length, type and size shape serves every such name.
            qend = found[1]
            missing = fastpath.missing_name(
                found[0][: qend - 16], self.authority.zones_by_wire, self.authority.soa_suffixes
            )
            if missing is not None:
                negative_key = missing[1] + bytes((qend - 16,)) + found[0][qend - 16 :]
                entry = self._cache.get(negative_key)
                if (
                    entry is not None
                    and not entry.version.superseded
                    and entry.generation == self.authority.generation
                ):
                    self._count_cached(entry)
                    return fastpath.patch(entry.wire, wire, qend)
        if len(wire) < _HEADER.size:
            return None
        if _HEADER.unpack_from(wire)[1] & dns.flags.QR:
            return None  # never answer a response
        try:
            query, tsig_error = self._parse(wire)
        except Exception:
            self.stats.inc("aliasd_malformed_total")
            return _header_only(wire, dns.rcode.FORMERR)
        if tsig_error and self._tsig_log.allow():
            log.info(
                "TSIG error {error} from {client} for key {key}",
                error=dns.rcode.to_text(tsig_error), client=client, key=str(query.keyname),
            )
        limit = self._udp_limit(query) if over_udp else 65535
        if tsig_error:
            return _tsig_error_response(query, tsig_error, self.keyring.get(query.keyname), limit)
        # EDNS padding (RFC 8467) only where it hides something: over TLS.
        response = dns.message.make_response(
            query, our_payload=self.max_udp_size, pad=None if tls else 0
        )
        response.flags |= query.flags & dns.flags.CD
        transfer, version = self._fill(query, response, client, over_udp, limit, tls)
        if transfer is not None:
            return transfer
        stat_key = self.stats.key(
            "aliasd_queries_total",
            qtype=_qtype_label(query.question[0].rdtype) if query.question else "",
            rcode=dns.rcode.to_text(response.rcode()),
            transport="udp" if over_udp else ("tls" if tls else "tcp"),
        )
        self.stats.counters[stat_key] += 1
        answer = _render(response, limit)
        if (
            found is not None
            and version is not None
            and not query.had_tsig
            and response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
        ):
            if negative_key is not None and response.rcode() == dns.rcode.NXDOMAIN:
                key = negative_key  # shared by every missing name of this shape
            else:
                key = found[0]
            self._remember(key, version, answer, stat_key, query)
        return answer

    def _remember(self, key, version, answer: bytes, stat_key, query) -> None:
        """Keep a rendered answer for the fast path (see aliasd.fastpath)."""
        if self.answer_cache_size is None and self._cache_sized_for != self.authority.name_count:
            self._cache_sized_for = self.authority.name_count
            self._cache.resize(fastpath.automatic_size(self.authority.name_count))
        question = query.question[0]
        owner = None
        if question.rdtype in _ADDRESS_TYPES and question.name in version.source.aliases:
            owner = question.name
        self._cache.put(key, fastpath.CachedAnswer(
            version.origin, version, self.authority.generation,
            fastpath.template(answer), stat_key, owner,
            self.stats.key("aliasd_alias_answers_total"),
        ))

    def _count_cached(self, entry) -> None:
        counters = self.stats.counters
        counters[entry.stat_key] += 1
        if entry.alias_owner is not None:
            counters[entry.alias_key] += 1
            if self.authority.is_stale(entry.origin, entry.alias_owner):
                self.stats.inc("aliasd_stale_answers_total")

    def _parse(self, wire: bytes) -> tuple[dns.message.Message, int]:
        """Parse ``wire``, checking any TSIG; returns the TSIG error (0 if none)."""

        def key_for(message, name):
            key = self.keyring.get(name)
            return key if key is not None else False  # False: parse, no check

        try:
            query = dns.message.from_wire(wire, keyring=key_for)
        except dns.tsig.BadSignature:
            error = dns.rcode.BADSIG
        except dns.tsig.BadTime:
            error = dns.rcode.BADTIME
        except (dns.tsig.BadAlgorithm, dns.tsig.BadKey):
            error = dns.rcode.BADKEY
        else:
            if query.had_tsig and query.keyname not in self.keyring:
                return query, dns.rcode.BADKEY
            return query, 0
        return dns.message.from_wire(wire, keyring=lambda m, n: False), error

    def _udp_limit(self, query: dns.message.Message) -> int:
        if query.edns < 0:
            return 512
        return min(max(512, query.payload), self.max_udp_size)

    def _fill(self, query, response, client: str, over_udp: bool, limit: int, tls=None):
        """Fill ``response``; return (messages of a transfer or None, the version used)."""
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
            return None, None
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return None, None
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return None, None
        question = query.question[0]
        qtype = question.rdtype
        if question.rdclass == dns.rdataclass.CH and self.status is not None:
            rcode, answer = self.status.answer(question.name, qtype, client)
            response.set_rcode(rcode)
            response.answer = answer
            return None, None
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return None, None
        if qtype in _NOT_QUERYABLE:
            response.set_rcode(dns.rcode.FORMERR)
            return None, None
        version = self.authority.zone_for(question.name)
        if version is None:
            # A zone still loading at start is ours: SERVFAIL (try again),
            # not REFUSED (a secondary would give up on us).
            loading = self.authority.is_loading(question.name)
            response.set_rcode(dns.rcode.SERVFAIL if loading else dns.rcode.REFUSED)
            return None, None
        if qtype in _TRANSFER_TYPES:
            return self._transfer(query, response, version, client, over_udp, limit, tls), version
        answer = version.lookup(question.name, qtype)
        zone = version.origin.to_text()
        if qtype in _ADDRESS_TYPES and question.name in version.source.aliases:
            self.stats.inc("aliasd_alias_answers_total")
            if self.authority.is_stale(version.origin, question.name):
                self.stats.inc("aliasd_stale_answers_total")
        response.set_rcode(answer.rcode)
        if answer.authoritative:
            response.flags |= dns.flags.AA
        response.answer = list(answer.answer)
        response.authority = list(answer.authority)
        response.additional = list(answer.additional)
        return None, version

    def _transfer(self, query, response, version, client, over_udp, limit, tls=None):
        question = query.question[0]
        kind = dns.rdatatype.to_text(question.rdtype)
        zone = version.origin.to_text()

        def refused(reason):
            # No client label: spoofed sources would grow the counters without bound.
            self.stats.inc("aliasd_transfers_refused_total")
            if self._refusal_log.allow():
                log.info(
                    "{kind} of {zone} refused to {client}: {reason}",
                    kind=kind, zone=zone, client=client, reason=reason,
                )

        def refuse(rcode, reason):
            refused(reason)
            response.set_rcode(rcode)
            return None

        if question.name != version.origin:
            return refuse(dns.rcode.NOTAUTH, f"{question.name} is not a zone apex")
        decision = self.access.check(version.origin, client, query, tls)
        if not decision.allowed:
            if decision.tsig_error:
                refused(decision.reason)
                return _tsig_error_response(query, decision.tsig_error, None, limit)
            return refuse(decision.rcode, decision.reason)
        if question.rdtype == dns.rdatatype.AXFR:
            if over_udp:
                return refuse(dns.rcode.REFUSED, "AXFR over UDP")
            messages = self._rendered(query, version, "axfr", axfr_rrsets(version))
            return self._logged(messages, kind, "full", zone, version.serial, client, tls=tls)
        client_serial = _ixfr_serial(query)
        if client_serial is None:
            return refuse(dns.rcode.FORMERR, "IXFR without the client's SOA")
        how, rrsets = ixfr_rrsets(version, self.authority.journals.get(version.origin), client_serial)
        if over_udp:
            rrsets = list(rrsets)
            try:
                wire = single_message(query, rrsets, limit)
            except dns.exception.TooBig:
                wire = None
            if wire is None:  # does not fit: the SOA alone, so the client uses TCP
                how = "current SOA (too large for UDP)"
                try:
                    wire = next(render_answer(query, [version.soa], limit))
                except dns.exception.TooBig:  # not even that: truncated
                    how, wire = "truncated", _render(response, limit)
            self.stats.inc("aliasd_transfers_total", kind="IXFR-udp", client=client)
            log.info(
                "IXFR of {zone} serial {serial} to {client} over UDP from {old}: {how}",
                zone=zone, serial=version.serial, client=client, old=client_serial, how=how,
            )
            return wire
        slot = ("ixfr", how, client_serial if how == "incremental" else None)
        messages = self._rendered(query, version, slot, rrsets)
        return self._logged(messages, kind, how, zone, version.serial, client, client_serial, tls)

    def _rendered(self, query: dns.message.Message, version, slot, rrsets):
        """Transfer messages, rendered once per version and answer, then reused.

        Signed transfers are rendered for each request (the TSIG chain
        differs). The first complete unsigned rendering of an answer (the
        AXFR, or an IXFR from a given serial) is kept with the version;
        later requests get those messages with their own ID, RD/CD flags and
        question case, so a version is rendered once however many
        secondaries ask.
        """
        if query.had_tsig:
            return render_answer(query, rrsets)
        query_wire = query.to_wire()
        qend = 12 + len(query.question[0].name.to_wire()) + 4
        cached = version.rendered.get(slot)
        if cached is not None:
            return (fastpath.patch(t, query_wire, qend if i == 0 else 12) for i, t in enumerate(cached))
        return self._recorded(query, version, slot, rrsets)

    @staticmethod
    def _recorded(query, version, slot, rrsets):
        recorded = []
        for wire in render_answer(query, rrsets):
            recorded.append(fastpath.template(wire))
            yield wire
        version.rendered.setdefault(slot, recorded)  # only a complete answer

    def _logged(self, messages, kind, how, zone, serial, client, old=None, tls=None):
        """Pass transfer messages through; log and count once the last is out."""
        count = records = 0
        for wire in messages:
            count += 1
            records += _HEADER.unpack_from(wire)[3]
            yield wire
        self.stats.inc("aliasd_transfers_total", kind=f"{kind}-{how}", client=client)
        log.info(
            "{kind} of {zone} serial {serial} to {client}{since}{via}: {how}, {count} messages, {records} records",
            kind=kind, zone=zone, serial=serial, client=client, how=how, count=count, records=records,
            since=f" from {old}" if old is not None else "", via=f" over {tls}" if tls else "",
        )


#: Query types counted under their own name; the rest count as "other", so
#: a client asking every one of the 65536 types cannot grow the counters.
_LABELLED_TYPES = {
    t: dns.rdatatype.to_text(t)
    for t in (
        dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.CNAME, dns.rdatatype.MX,
        dns.rdatatype.NS, dns.rdatatype.SOA, dns.rdatatype.TXT, dns.rdatatype.SRV,
        dns.rdatatype.PTR, dns.rdatatype.CAA, dns.rdatatype.DS, dns.rdatatype.DNSKEY,
        dns.rdatatype.HTTPS, dns.rdatatype.SVCB, dns.rdatatype.NAPTR, dns.rdatatype.TLSA,
        dns.rdatatype.SSHFP, dns.rdatatype.ANY, dns.rdatatype.AXFR, dns.rdatatype.IXFR,
    )
}


def _qtype_label(rdtype: int) -> str:
    return _LABELLED_TYPES.get(rdtype, "other")


def _render(response: dns.message.Message, limit: int) -> bytes:
    """``response`` in at most ``limit`` octets: truncated at whole RRsets
    with TC when too large, and as a bare TC header when even the question
    (and a TSIG record) does not fit."""
    try:
        return response.to_wire(max_size=limit, prefer_truncation=True)
    except (dns.exception.TooBig, ValueError):  # ValueError: the TSIG alone is too big
        pass
    ident = response.id
    flags = response.flags | dns.flags.TC
    return _HEADER.pack(ident, flags, 0, 0, 0, 0)


def _ixfr_serial(query: dns.message.Message) -> int | None:
    for rrset in query.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return rrset[0].serial
    return None


def _tsig_error_response(
    query: dns.message.Message, error: int, key: dns.tsig.Key | None, limit: int = 65535
) -> bytes:
    """NOTAUTH with a TSIG error (RFC 8945 5.3.2): unsigned, except BADTIME.

    A BADTIME answer is signed with the (valid) key and carries the
    server's time in Other Data so the client can see the clock skew. An
    answer longer than ``limit`` (long names, over UDP) is a bare TC header.
    """
    response = _bare_response(query)
    response.set_rcode(dns.rcode.NOTAUTH)
    keyname = query.keyname
    algorithm = query.keyalgorithm
    now = int(time.time())
    if error == dns.rcode.BADTIME and key is not None:
        response.use_tsig(
            key, keyname, tsig_error=error,
            other_data=now.to_bytes(6, "big"), algorithm=algorithm,
        )
        response.request_mac = query.mac
    else:
        # An unsigned TSIG record that only carries the error.
        response.tsig = dns.message.Message._make_tsig(
            keyname, algorithm, now, 300, b"", query.id, error, b""
        )
    return _render(response, limit)


def _bare_response(query: dns.message.Message) -> dns.message.Message:
    response = dns.message.Message(id=query.id)
    response.flags = dns.flags.QR | (query.flags & dns.flags.RD)
    response.set_opcode(query.opcode())
    response.question = list(query.question)
    return response


def _header_only(wire: bytes, rcode: int) -> bytes | None:
    """A bare error response built from the request header alone."""
    ident, flags, *_ = _HEADER.unpack_from(wire)
    if flags & dns.flags.QR:
        return None
    opcode_bits = flags & 0x7800
    flags = dns.flags.QR | opcode_bits | (flags & dns.flags.RD) | (rcode & 0xF)
    return _HEADER.pack(ident, flags, 0, 0, 0, 0)


class DNSDatagramProtocol(protocol.DatagramProtocol):
    """DNS over UDP: one message per datagram, through the rate limiter
    (aliasd.ratelimit) when one is configured."""

    noisy = False

    #: Octets read per turn of the reactor. Twisted reads up to 256 KiB of
    #: datagrams at once: a secondary's burst of thousands of SOA queries
    #: (BIND starting with thousands of zones) was answered in one turn of
    #: 2 s while every other socket waited. 16 KiB is a few hundred queries.
    max_throughput = 16 * 1024

    def __init__(self, handler: QueryHandler, limiter: ResponseRateLimiter | None = None):
        self.handler = handler
        self.limiter = limiter

    def startProtocol(self) -> None:
        if hasattr(self.transport, "maxThroughput"):
            self.transport.maxThroughput = self.max_throughput

    def datagramReceived(self, data: bytes, addr) -> None:
        try:
            response = self.handler.handle(data, addr[0], over_udp=True)
        except Exception:
            log.failure("unexpected error answering a UDP message from {addr}", addr=addr)
            response = _header_only(data, dns.rcode.SERVFAIL) if len(data) >= 12 else None
        if self.limiter is not None and response is not None:
            response = self.limiter.check(addr[0], response)
        if response is None:
            return
        # Straight to the socket: the address came from recvfrom, so
        # Twisted's per-write address validation is work for nothing. A
        # full send buffer or an unreachable client drops the answer, as
        # UDP may.
        sock = getattr(self.transport, "socket", None)
        if sock is None:  # a transport that is not a socket (tests)
            self.transport.write(response, addr)
            return
        try:
            sock.sendto(response, addr)
        except OSError:
            pass


@implementer(interfaces.IPullProducer)
class _MessageStream:
    """Writes a transfer's messages one at a time, as the client reads them."""

    def __init__(self, proto: "DNSStreamProtocol", messages):
        self.proto = proto
        self.messages = messages

    def resumeProducing(self) -> None:
        try:
            wire = next(self.messages)
        except StopIteration:
            self.proto.stream_finished()
            return
        except Exception:
            log.failure("zone transfer failed; closing the connection")
            self.proto.close()
            return
        self.proto.resetTimeout()
        self.proto.transport.write(struct.pack("!H", len(wire)) + wire)

    def stopProducing(self) -> None:
        self.messages.close()


@implementer(interfaces.IPushProducer)
class DNSStreamProtocol(protocol.Protocol, TimeoutMixin):
    """DNS over TCP or TLS: length-prefixed messages, any number per connection.

    Queries are answered in order, one at a time, so a connection has at
    most one query in flight (RFC 7766 6.2.1.1 lets a server process
    pipelined queries in order). Answers go out only as fast as the client
    reads them: when the transport's send buffer fills, the protocol stops
    reading and answering until it drains (it is the transport's push
    producer), and while a zone transfer streams, further queries wait for
    it. The idle timer restarts only on a complete message or on progress
    of a transfer, so a client that trickles a message octet by octet, or
    never reads its answers, is closed after the idle timeout.
    """

    def __init__(self, handler: QueryHandler, idle_timeout: float):
        self.handler = handler
        self.idle_timeout = idle_timeout
        self._buffer = b""
        self._stream: _MessageStream | None = None
        self._paused = False
        self._closing = False
        self._tls: str | None = None

    def connectionMade(self) -> None:
        self.setTimeout(self.idle_timeout)
        self._client = self.transport.getPeer().host
        self._over_tls = interfaces.ISSLTransport.providedBy(self.transport)
        self.transport.registerProducer(self, True)

    #: Unprocessed input kept while a transfer streams; more closes the
    #: connection (a client that sends and never reads).
    max_buffered = 256 * 1024

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > self.max_buffered:
            log.warn("TCP client {client} sent {size} octets unread; closing",
                     client=self._client, size=len(self._buffer))
            self._buffer = b""
            self.transport.abortConnection()
            return
        self._process()

    def _process(self) -> None:
        while self._stream is None and not self._paused and not self._closing and len(self._buffer) >= 2:
            (length,) = struct.unpack_from("!H", self._buffer)
            if len(self._buffer) < 2 + length:
                return
            self.resetTimeout()
            message = self._buffer[2 : 2 + length]
            self._buffer = self._buffer[2 + length :]
            if self._over_tls and self._tls is None:
                self._tls = tls_version(self.transport) or "TLS"
            try:
                response = self.handler.handle(message, self._client, over_udp=False, tls=self._tls)
            except Exception:
                log.failure("unexpected error answering a TCP message")
                response = (
                    _header_only(message, dns.rcode.SERVFAIL) if len(message) >= 12 else None
                )
            if response is None:
                # Not a query we can answer: RFC 7766 lets us close.
                self.close()
                return
            if isinstance(response, bytes):
                self.transport.write(struct.pack("!H", len(response)) + response)
            else:
                self._stream = _MessageStream(self, response)
                self.transport.unregisterProducer()
                self.transport.registerProducer(self._stream, False)

    def stream_finished(self) -> None:
        if self._stream is not None and not self._closing:
            self._stream = None
            self.transport.unregisterProducer()
            self.transport.registerProducer(self, True)
            self._process()

    def close(self) -> None:
        """Close after what was written. The producer goes first: a TLS
        transport does not start its shutdown while one is registered."""
        if self._closing:
            return
        self._closing = True
        if self._stream is not None:
            self._stream.messages.close()
            self._stream = None
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    # IPushProducer: the transport's send buffer is full, or has drained.
    def pauseProducing(self) -> None:
        self._paused = True
        self.transport.pauseProducing()  # stop reading more queries

    def resumeProducing(self) -> None:
        if self._closing:
            return
        self._paused = False
        self.transport.resumeProducing()
        self._process()

    def stopProducing(self) -> None:
        self._paused = True

    def timeoutConnection(self) -> None:
        self.transport.abortConnection()

    def connectionLost(self, reason=None) -> None:
        self.setTimeout(None)
        if self._stream is not None:
            self._stream.messages.close()
            self._stream = None
        factory = getattr(self, "factory", None)
        if factory is not None:
            factory.closed(self.peer_host)
            self.factory = None


class LimitedTLSFactory(TLSMemoryBIOFactory):
    """TLS around a DNSStreamFactory, closing connections it refuses.

    Twisted's TLS factory wraps whatever the inner factory returns, None
    included, which leaves a refused connection open with no protocol:
    connection limits would turn into leaked sockets.
    """

    noisy = False

    def buildProtocol(self, addr):
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        return self.protocol(self, inner)


class DNSStreamFactory(protocol.ServerFactory):
    """Makes one DNSStreamProtocol per TCP connection, within limits.

    At most ``max_connections`` TCP clients at once, and at most
    ``max_per_client`` from one address (RFC 7766 6.2.2): a connection over
    either limit is closed at once, so one client cannot take every slot.
    Addresses in an allow-transfer list (the secondaries, which pull many
    zones at once) are held to the total only.
    """

    noisy = False

    def __init__(
        self,
        handler: QueryHandler,
        idle_timeout: float = 30.0,
        max_connections: int = 1000,
        max_per_client: int = 20,
    ):
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.open = collections.Counter()  # client address -> connections
        self.refused = 0

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        if sum(self.open.values()) >= self.max_connections or (
            host is not None
            and self.open[host] >= self.max_per_client
            and not self.handler.access.is_transfer_client(host)
        ):
            self.refused += 1
            if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                log.warn(
                    "TCP connection from {client} refused: {count} open, limit reached "
                    "({refused} refused so far)",
                    client=host, count=self.open[host] if host else 0, refused=self.refused,
                )
            return None  # Twisted closes the connection
        if host is not None:
            self.open[host] += 1
        proto = DNSStreamProtocol(self.handler, self.idle_timeout)
        proto.factory = self
        proto.peer_host = host
        return proto

    def closed(self, host: str | None) -> None:
        if host is not None:
            self.open[host] -= 1
            if self.open[host] <= 0:
                del self.open[host]
