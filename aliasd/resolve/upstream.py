"""The upstream resolver clients: Twisted Names' client, quiet, hardened, failing over.

Stock ``twisted.names.client.Resolver`` opens and closes a UDP socket for
every query, and Twisted logs two lines for each socket ("starting on",
"Port Closed"): with thousands of ALIAS targets that buries the log.
UpstreamResolver keeps a small pool of query sockets per address family
(``pool_size``, each on a port the kernel picks at random), sends each
query from one of them picked at random, and replaces each with a fresh
one (a new random port) after ``rotate_after`` queries, so source ports
change from query to query while the log stays readable. A socket that is
replaced is closed as soon as the last query sent from it has its answer
or gives up. A truncated UDP answer is retried over TCP by Twisted's client.

Spoofed answers: aliasd signs the addresses it resolves, so a forged
upstream answer would be served with a valid signature. Besides the random
query ID (Twisted's, from os.urandom) and source port, each UDP query's
name has its letters in random case ("0x20", draft-vixie-dnsext-dns0x20):
an answer whose question section is not the very octets sent (name, case,
type, class) is dropped unread (``spoofed`` counts them) and the real
answer is still awaited. Every query has the AD bit set (RFC 6840 §5.7),
so a validating upstream says in its answer's AD bit whether it validated
the data; lookups return an ``Answer`` (the usual (answers, authority,
additional) tuple) whose ``authenticated`` says so.

Only public Twisted APIs are used: ``client.Resolver.queryUDP`` (the
documented way the client sends a UDP query, which ``lookupAddress`` and
friends go through) is overridden to send from the kept sockets, made with
``dns.DNSDatagramProtocol`` and ``reactor.listenUDP``.

FailoverResolver asks the configured upstreams in turn: SERVFAIL, REFUSED,
a timeout or garbage from one sends the question to the next; NXDOMAIN or an
answer ends it. The upstream that answered last is asked first next time.

``close()`` (when the upstreams change on reload, or at stop) cancels every
lookup still waiting (its Deferred fails with CancelledError at once, so
nothing is left hanging), closes every UDP socket and TCP connection, and
makes later queries on the closed client fail without opening a socket.
"""

from __future__ import annotations

import random
import secrets
from typing import Sequence

from twisted.internet import defer
from twisted.internet.abstract import isIPv6Address
from twisted.logger import Logger
from twisted.names import client, dns, error

from aliasd.base.config import Endpoint
from aliasd.base.logthrottle import LogThrottle

log = Logger()
_spoof_log = LogThrottle("upstream answers with a mismatched question", burst=5)


class Answer(tuple):
    """(answers, authority, additional), and whether the upstream validated them (AD)."""

    authenticated: bool = False

    def __new__(cls, sections, authenticated: bool):
        made = super().__new__(cls, sections)
        made.authenticated = authenticated
        return made


def mixed_case(name: bytes, rng: random.Random | None = None) -> bytes:
    """``name`` with each ASCII letter in random case (0x20 randomisation)."""
    bits = (rng or _rng).getrandbits(max(len(name), 1))
    return bytes(c ^ 0x20 if (0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A) and bits >> i & 1 else c
                 for i, c in enumerate(name))


_rng = secrets.SystemRandom()


class _QueryProtocol(dns.DNSDatagramProtocol):
    """UDP queries with AD set; answers whose question is not what was sent are dropped."""

    def __init__(self, controller, reactor=None):
        super().__init__(controller, reactor=reactor)
        self._questions: dict[int, bytes] = {}  # query ID -> question section sent

    def writeMessage(self, message, address) -> None:
        message.authenticData = 1
        wire = message.toStr()
        if len(self._questions) > 2 * len(self.liveMessages) + 64:  # forget timed-out ones
            self._questions = {i: q for i, q in self._questions.items() if i in self.liveMessages}
        self._questions[message.id] = wire[12:]  # the header is 12 octets; a query has only its question
        self.transport.write(wire, address)

    def datagramReceived(self, data: bytes, addr) -> None:
        if len(data) >= 12:
            query_id = int.from_bytes(data[:2], "big")
            sent = self._questions.get(query_id)
            if sent is not None and query_id in self.liveMessages and data[12:12 + len(sent)] != sent:
                self.controller.spoofed += 1
                if _spoof_log.allow():
                    log.warn("upstream answer from {address} dropped: its question is not the one asked "  # noqa: G010
                             "(name case, type or class differ: spoofed?)", address=f"{addr[0]}:{addr[1]}")
                return
        super().datagramReceived(data, addr)


class _StreamProtocol(dns.DNSProtocol):
    """TCP queries (after a truncated answer) with AD set too."""

    def writeMessage(self, message):
        message.authenticData = 1
        super().writeMessage(message)


class _StreamFactory(client.DNSClientFactory):
    def buildProtocol(self, addr):
        made = _StreamProtocol(self.controller)
        made.factory = self
        return made


class UpstreamClosed(error.ResolverError):
    """The client was closed (upstreams changed, or the service stopped)."""


class UpstreamResolver(client.Resolver):
    """``client.Resolver`` over the configured upstreams, with reused sockets."""

    rotate_after = 100
    pool_size = 8

    def __init__(self, upstreams: Sequence[Endpoint], reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        super().__init__(servers=[(e.host, e.port) for e in upstreams], reactor=reactor)
        self.reactor = reactor
        self.factory = _StreamFactory(self, self.factory.timeout)
        self.factory.noisy = False  # TCP retries of truncated answers
        self.closed = False
        self.spoofed = 0  # answers dropped: their question was not the one sent
        # interface -> [[protocol, queries sent from it], ...] (up to pool_size)
        self._sockets: dict[str, list[list]] = {}
        # Queries waiting for an answer, per socket; replaced sockets are
        # closed when theirs drop to zero.
        self._outstanding: dict[dns.DNSDatagramProtocol, int] = {}
        self._retired: set[dns.DNSDatagramProtocol] = set()
        self._queries: set[defer.Deferred] = set()  # queryUDP calls not finished

    # -- sending -----------------------------------------------------------

    def queryUDP(self, queries, timeout=None):
        """Send ``queries`` over UDP from a kept socket; each server in turn
        for each timeout, as ``client.Resolver.queryUDP`` does. Fails with
        ``defer.TimeoutError`` when every try timed out."""
        if self.closed:
            return defer.fail(UpstreamClosed("upstream client closed"))
        timeouts = tuple(timeout if timeout is not None else self.timeout)
        queries = [dns.Query(mixed_case(q.name.name), q.type, q.cls) for q in queries]
        d = self._send(queries, timeouts)
        self._queries.add(d)
        d.addBoth(self._sent, d)
        return d

    def _sent(self, result, d):
        self._queries.discard(d)
        return result

    @defer.inlineCallbacks
    def _send(self, queries, timeouts):
        last_protocol, query_id = None, None
        for timeout in timeouts:
            for address in self.servers:
                if self.closed:
                    raise UpstreamClosed("upstream client closed")
                protocol = self._socket_for(address)
                self._outstanding[protocol] = self._outstanding.get(protocol, 0) + 1
                try:
                    # A resend from the same socket keeps the query ID, so a
                    # late answer to the first try still counts.
                    same = protocol is last_protocol
                    message = yield protocol.query(
                        address, queries, timeout, query_id if same else None
                    )
                except dns.DNSQueryTimeoutError as e:
                    last_protocol, query_id = protocol, e.id
                    continue
                finally:
                    self._release(protocol)
                return message
        raise defer.TimeoutError(queries)

    def _socket_for(self, address) -> dns.DNSDatagramProtocol:
        """A socket of the pool picked at random (the pool is opened whole
        at the first query, so the sockets held stay the same number; each
        is replaced once it has sent ``rotate_after`` queries)."""
        interface = "::" if isIPv6Address(address[0]) else ""
        pool = self._sockets.get(interface)
        if pool is None:
            pool = self._sockets[interface] = [[self._listen(interface), 0] for _ in range(self.pool_size)]
        slot = _rng.randrange(len(pool))
        entry = pool[slot]
        if entry[1] >= self.rotate_after:
            self._retire(entry[0])
            entry = pool[slot] = [self._listen(interface), 0]
        entry[1] += 1
        return entry[0]

    def _listen(self, interface: str) -> dns.DNSDatagramProtocol:
        protocol = _QueryProtocol(self, reactor=self.reactor)
        protocol.noisy = False
        # Port 0: the kernel picks a random ephemeral source port.
        self.reactor.listenUDP(0, protocol, interface=interface)
        return protocol

    def _release(self, protocol: dns.DNSDatagramProtocol) -> None:
        left = self._outstanding.get(protocol, 1) - 1
        if left > 0:
            self._outstanding[protocol] = left
            return
        self._outstanding.pop(protocol, None)
        if protocol in self._retired:
            self._retired.discard(protocol)
            _stop(protocol)

    def _retire(self, protocol: dns.DNSDatagramProtocol) -> None:
        """A replaced socket: closed once its outstanding queries are done."""
        if self._outstanding.get(protocol):
            self._retired.add(protocol)
        else:
            _stop(protocol)

    def filterAnswers(self, message):
        """Twisted's (answers, authority, additional), as an Answer that
        also says whether the upstream validated it (its AD bit)."""
        result = super().filterAnswers(message)
        if isinstance(result, tuple):
            return Answer(result, bool(message.authenticData))
        return result

    # -- TCP (truncated answers) --------------------------------------------

    def connectionMade(self, protocol):
        if self.closed:  # a TCP connection that completes after close()
            protocol.transport.loseConnection()
            return
        super().connectionMade(protocol)

    # -- closing ------------------------------------------------------------

    @property
    def open_sockets(self) -> int:
        """UDP query sockets open now (in use or waiting for answers)."""
        return sum(len(pool) for pool in self._sockets.values()) + len(self._retired)

    def close(self) -> None:
        """Cancel the queries still waiting, close every socket and TCP
        connection; later queries fail at once (UpstreamClosed)."""
        self.closed = True
        for d in list(self._queries):
            d.cancel()
        for d, _, _ in list(self.pending):  # TCP queries waiting for a connection
            d.cancel()
        del self.pending[:]
        for pool in self._sockets.values():
            for protocol, _ in pool:
                _stop(protocol)
        for protocol in list(self._retired):
            _stop(protocol)
        self._sockets.clear()
        self._retired.clear()
        self._outstanding.clear()
        for connection in list(self.connections):
            _cancel_timeouts(connection)
            connection.transport.loseConnection()


def _cancel_timeouts(protocol) -> None:
    """Stop the timers of queries no one waits for any more (their Deferreds
    were cancelled), so nothing fires after the socket is gone."""
    for _, timer in list((protocol.liveMessages or {}).values()):
        if timer.active():
            timer.cancel()


def _stop(protocol: dns.DNSDatagramProtocol) -> None:
    _cancel_timeouts(protocol)
    if protocol.transport is not None:
        protocol.transport.stopListening()


class FailoverResolver:
    """One UpstreamResolver per upstream, asked in turn until one answers."""

    def __init__(self, upstreams: Sequence[Endpoint], reactor=None):
        self.endpoints = list(upstreams)
        self.resolvers = [UpstreamResolver([e], reactor) for e in upstreams]
        self.preferred = 0
        self.closed = False
        self._lookups: set[defer.Deferred] = set()

    def lookupAddress(self, name, timeout=None):
        return self._lookup("lookupAddress", name, timeout)

    def lookupIPV6Address(self, name, timeout=None):
        return self._lookup("lookupIPV6Address", name, timeout)

    def _lookup(self, method: str, name: str, timeout) -> defer.Deferred:
        if self.closed:
            return defer.fail(UpstreamClosed(f"upstream client closed; {name} not asked"))
        d = self._failover(method, name, timeout)
        self._lookups.add(d)
        d.addBoth(self._done, d)
        return d

    def _done(self, result, d):
        self._lookups.discard(d)
        return result

    @defer.inlineCallbacks
    def _failover(self, method: str, name: str, timeout):
        count = len(self.resolvers)
        last_failure = None
        for step in range(count):
            if self.closed:
                raise UpstreamClosed(f"upstream client closed; {name} not asked")
            index = (self.preferred + step) % count
            try:
                result = yield getattr(self.resolvers[index], method)(name, timeout=timeout)
            except error.DNSNameError:
                self.preferred = index
                raise  # NXDOMAIN is an answer, not a failure
            except defer.CancelledError:
                raise  # the caller gave up: ask no other upstream
            except Exception as e:
                last_failure = e
                continue
            self.preferred = index
            return result
        raise last_failure

    @property
    def in_flight(self) -> int:
        """Lookups not finished yet."""
        return len(self._lookups)

    @property
    def open_sockets(self) -> int:
        return sum(r.open_sockets for r in self.resolvers)

    def close(self) -> None:
        """Cancel the lookups still waiting and close every client."""
        self.closed = True
        for d in list(self._lookups):
            d.cancel()
        for resolver in self.resolvers:
            resolver.close()


class NoUpstream:
    """Stands in when no upstream is configured: every lookup fails.

    Targets inside served zones still resolve from aliasd's own data, and
    other ALIAS owners keep the addresses written beside them in the file.
    """

    def _fail(self, name, timeout=None):
        return defer.fail(error.DNSServerError(f"no upstream resolver configured for {name}"))

    lookupAddress = lookupIPV6Address = _fail

    def close(self) -> None:
        pass
