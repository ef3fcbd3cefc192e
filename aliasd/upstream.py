"""The upstream resolver client: Twisted Names' client, made quiet.

Stock ``twisted.names.client.Resolver`` opens and closes a UDP socket for
every query, and Twisted logs two lines for each socket ("starting on",
"Port Closed"): with thousands of ALIAS targets that buries the log. This
subclass keeps one query socket per address family open and replaces it
with a fresh one (a new random source port) every ``rotate_after`` queries,
so source ports still change while the log stays readable.
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
