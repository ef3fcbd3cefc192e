"""The upstream resolver clients: Twisted Names' client, quiet and failing over.

Stock ``twisted.names.client.Resolver`` opens and closes a UDP socket for
every query, and Twisted logs two lines for each socket ("starting on",
"Port Closed"): with thousands of ALIAS targets that buries the log.
UpstreamResolver keeps one query socket per address family open and
replaces it with a fresh one (a new random source port) every
``rotate_after`` queries, so source ports still change while the log stays
readable. A truncated UDP answer is retried over TCP by Twisted's client.

FailoverResolver asks the configured upstreams in turn: SERVFAIL, REFUSED,
a timeout or garbage from one sends the question to the next; NXDOMAIN or an
answer ends it. The upstream that answered last is asked first next time.
"""

from __future__ import annotations

from typing import Sequence

from twisted.internet import defer
from twisted.internet.abstract import isIPv6Address
from twisted.names import client, error

from aliasd.config import Endpoint


class UpstreamResolver(client.Resolver):
    """``client.Resolver`` over the configured upstreams, with reused sockets."""

    rotate_after = 1000

    def __init__(self, upstreams: Sequence[Endpoint], reactor=None):
        super().__init__(servers=[(e.host, e.port) for e in upstreams], reactor=reactor)
        self.factory.noisy = False  # TCP retries of truncated answers
        self._sockets: dict[str, tuple[object, int]] = {}

    def _query(self, address, *args):
        interface = "::" if isIPv6Address(address[0]) else ""
        protocol, used = self._sockets.get(interface, (None, 0))
        if protocol is None or used >= self.rotate_after:
            old = protocol
            protocol = self._connectedProtocol(interface=interface)
            protocol.noisy = False
            used = 0
            if old is not None:
                # Let its outstanding queries finish, then close it.
                self._reactor.callLater(30, old.transport.stopListening)
        self._sockets[interface] = (protocol, used + 1)
        return protocol.query(address, *args)

    def close(self) -> None:
        """Close the query sockets (at service stop)."""
        for protocol, _ in self._sockets.values():
            protocol.transport.stopListening()
        self._sockets.clear()


class FailoverResolver:
    """One UpstreamResolver per upstream, asked in turn until one answers."""

    def __init__(self, upstreams: Sequence[Endpoint], reactor=None):
        self.endpoints = list(upstreams)
        self.resolvers = [UpstreamResolver([e], reactor) for e in upstreams]
        self.preferred = 0

    def lookupAddress(self, name, timeout=None):
        return self._lookup("lookupAddress", name, timeout)

    def lookupIPV6Address(self, name, timeout=None):
        return self._lookup("lookupIPV6Address", name, timeout)

    @defer.inlineCallbacks
    def _lookup(self, method: str, name: str, timeout):
        count = len(self.resolvers)
        last_failure = None
        for step in range(count):
            index = (self.preferred + step) % count
            try:
                result = yield getattr(self.resolvers[index], method)(name, timeout=timeout)
            except error.DNSNameError:
                self.preferred = index
                raise  # NXDOMAIN is an answer, not a failure
            except Exception as e:
                last_failure = e
                continue
            self.preferred = index
            return result
        raise last_failure

    def close(self) -> None:
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
