"""The upstream resolver client: Twisted Names' client, made to fit.

Stock ``twisted.names.client.Resolver`` always binds its query socket to
an IPv4 wildcard, so an IPv6-only list of upstreams could never be reached;
this subclass binds an IPv6 socket when every upstream is IPv6. (A list that
mixes both families uses IPv4 sockets and reaches only the IPv4 upstreams;
per-family resolvers come with the resolution engine work.)
"""

from __future__ import annotations

from typing import Sequence

from twisted.internet import defer
from twisted.names import client, error

from aliasd.config import Endpoint


class UpstreamResolver(client.Resolver):
    """``client.Resolver`` over the configured upstreams, IPv6 aware."""

    def __init__(self, upstreams: Sequence[Endpoint], reactor=None):
        super().__init__(
            servers=[(e.host, e.port) for e in upstreams], reactor=reactor
        )
        self._ipv6_only = all(":" in e.host for e in upstreams)

    def _connectedProtocol(self, interface=""):
        if not interface and self._ipv6_only:
            interface = "::"
        return super()._connectedProtocol(interface=interface)


class NoUpstream:
    """Stands in when no upstream is configured: every lookup fails.

    Targets inside served zones still resolve from aliasd's own data, and
    other ALIAS owners keep the addresses written beside them in the file.
    """

    def _fail(self, name, timeout=None):
        return defer.fail(error.DNSServerError(f"no upstream resolver configured for {name}"))

    lookupAddress = lookupIPV6Address = _fail
