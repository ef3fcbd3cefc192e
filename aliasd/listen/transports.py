"""DNS over UDP, TCP and TLS: framing, flow control and connection limits.

Why a module of its own: the transports only carry messages, and every
message they carry is answered by aliasd.answer.answers.QueryHandler. UDP takes
one message per datagram (through the rate limiter of aliasd.listen.ratelimit
when one is configured). TCP and TLS take a two-octet length prefix with
any number of queries on one connection (RFC 7766), answered in order as
fast as the client reads them; a zone transfer's messages are streamed as
the client reads. The TCP factory bounds connections in total and per
client, and the TLS factory closes the connections it refuses. An
unexpected error answering a message is logged and answered SERVFAIL; no
input reaches the reactor as an error.
"""

from __future__ import annotations

import socket
import struct

import dns.rcode
from twisted.application import service
from twisted.internet import defer, interfaces, protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from aliasd.answer.answers import QueryHandler
from aliasd.base.replies import header_only
from aliasd.listen.connections import ConnectionCounts, SharedConnectionCounts
from aliasd.listen.ratelimit import ResponseRateLimiter

log = Logger()


class DNSDatagramProtocol(protocol.DatagramProtocol):
    """DNS over UDP: one message per datagram, through the rate limiter
    (aliasd.listen.ratelimit) when one is configured."""

    noisy = False

    #: Octets read per turn of the reactor. Twisted reads up to 256 KiB of
    #: datagrams at once: a secondary's burst of thousands of SOA queries
    #: (BIND starting with thousands of zones) was answered in one turn of
    #: 2 s while every other socket waited. 16 KiB is a few hundred queries.
    max_throughput = 16 * 1024

    def __init__(self, handler: QueryHandler, limiter: ResponseRateLimiter | None = None):
        self.handler = handler
        self.limiter = limiter

    #: Socket buffer sizes asked for (octets). The kernel's default receive
    #: buffer holds only a few hundred small datagrams: a burst (a secondary
    #: checking thousands of serials) arriving while the reactor is busy
    #: for a fraction of a second overflowed it, and queries were dropped.
    socket_buffer = 8 * 1024 * 1024

    def startProtocol(self) -> None:
        if hasattr(self.transport, "maxThroughput"):
            self.transport.maxThroughput = self.max_throughput
        sock = getattr(self.transport, "socket", None)
        if sock is not None:
            _grow_buffers(sock, self.socket_buffer)

    def datagramReceived(self, data: bytes, addr) -> None:
        try:
            response = self.handler.handle_udp(data, addr[0])
        except Exception:
            log.failure("unexpected error answering a UDP message from {addr}", addr=addr)
            response = header_only(data, dns.rcode.SERVFAIL) if len(data) >= 12 else None
        if isinstance(response, defer.Deferred):  # an UPDATE: answered once recorded
            response.addCallback(self.send, addr)
            response.addErrback(lambda f: log.failure("answering an UPDATE from {addr}", f, addr=addr))
            return
        self.send(response, addr)

    def answer_batch(self, batch, sock, unkept) -> int:
        """Read one batch of datagrams from ``sock`` (an
        aliasd.listen.mmsg.DatagramBatch) and answer it; how many were read.
        A query seen before is answered from the handler's exact answers
        (one dict lookup, no other layer), through the rate limiter, and
        its answer sent with the others in one sendmmsg, to the source as
        the kernel wrote it; ``unkept(data, i)`` takes datagram i otherwise."""
        limiter = self.limiter
        limit = None
        if limiter is not None:
            check, address = limiter.check, batch.address

            def limit(i: int, response: bytes) -> bytes | None:
                try:
                    return check(address(i)[0], response)
                except Exception:  # as send's callers: logged, that answer alone lost
                    log.failure("rate limiting a UDP answer")
                    return None

        return batch.serve(sock.fileno(), self.handler.exact_answer, limit, unkept)

    def send(self, response: bytes | None, addr) -> None:
        """``response`` to ``addr``, through the rate limiter if there is one."""
        if response is None:
            return
        if self.limiter is not None:
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


def _grow_buffers(sock, size: int) -> None:
    """Ask for ``size``-octet socket buffers: past the system's cap where
    allowed (root, before privileges are dropped: SO_*BUFFORCE), else up
    to the cap (net.core.rmem_max / wmem_max)."""
    for force, plain in ((getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF),
                         (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF)):
        for option in (force, plain):
            if option is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, size)
                break
            except OSError:
                continue


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
        self._pending: defer.Deferred | None = None  # an UPDATE being recorded

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
        while (self._stream is None and not self._paused and not self._closing
               and self._pending is None and len(self._buffer) >= 2):
            (length,) = struct.unpack_from("!H", self._buffer)
            if len(self._buffer) < 2 + length:
                return
            self.resetTimeout()
            message = self._buffer[2 : 2 + length]
            self._buffer = self._buffer[2 + length :]
            if self._over_tls and self._tls is None:
                # (pyOpenSSL is imported only by a server with TLS: start-up time)
                from aliasd.listen.tls import negotiated_version

                self._tls = negotiated_version(self.transport) or "TLS"
            try:
                response = self.handler.handle(message, self._client, over_udp=False, tls=self._tls)
            except Exception:
                log.failure("unexpected error answering a TCP message")
                response = (
                    header_only(message, dns.rcode.SERVFAIL) if len(message) >= 12 else None
                )
            if isinstance(response, defer.Deferred):
                # An UPDATE, answered once it is recorded: later messages wait (in order).
                self._pending = response
                response.addErrback(lambda f: log.failure("answering an UPDATE", f) and None)
                response.addCallback(self._answered)
                return
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

    def _answered(self, response: bytes | None) -> None:
        self._pending = None
        if self._closing or self.transport is None:
            return
        if response is None:
            self.close()
            return
        self.resetTimeout()
        self.transport.write(struct.pack("!H", len(response)) + response)
        self._process()

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
        # Open connections; shared with the worker processes once they run (aliasd.listen.connections).
        self.counts: ConnectionCounts | SharedConnectionCounts = ConnectionCounts()
        self.refused = 0

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        counts = self.counts
        # Counted first, then checked: with worker processes accepting at
        # the same moment, two connections over a limit are both refused,
        # rather than both let in.
        counts.opened(host)
        if counts.total() > self.max_connections or (
            host is not None
            and counts.of(host) > self.max_per_client
            and not self.handler.access.is_transfer_client(host)
        ):
            counts.closed(host)
            self.refused += 1
            if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                log.warn(
                    "TCP connection from {client} refused: {count} open, limit reached "
                    "({refused} refused so far)",
                    client=host, count=counts.of(host) if host else 0, refused=self.refused,
                )
            return None  # Twisted closes the connection
        proto = DNSStreamProtocol(self.handler, self.idle_timeout)
        proto.factory = self
        proto.peer_host = host
        return proto

    def closed(self, host: str | None) -> None:
        self.counts.closed(host)


class StreamListener(service.Service):
    """Listens for DNS over TCP on one address, as twistd's TCPServer
    does (before privileges drop), and keeps the listening port: worker
    processes (aliasd.service.workers) accept on its socket too."""

    def __init__(self, reactor, port: int, factory: protocol.ServerFactory, interface: str = ""):
        self.reactor = reactor
        self.portnum = port
        self.factory = factory
        self.interface = interface
        self.port = None  # the IListeningPort, once listening

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self.port = self.reactor.listenTCP(self.portnum, self.factory, interface=self.interface)

    def startService(self) -> None:
        super().startService()
        if self.port is None:
            self.port = self.reactor.listenTCP(self.portnum, self.factory, interface=self.interface)

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None
