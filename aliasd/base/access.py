"""Who may transfer a zone: allowed networks and required TSIG keys.

A transfer request is allowed when the client's address lies in one of the
zone's ``allow-transfer`` networks (any address if the list is empty but a
key is required) and, when the zone names a ``transfer-key``, the request
was signed with that key (its signature has been checked by then). With
neither configured, nobody may transfer the zone. Over TLS (RFC 9103) the
same rules apply, and the connection must use TLS 1.3; a zone with
``transfer-tls-only`` is transferred over TLS only.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import dns.message
import dns.name
import dns.rcode
import dns.tsig

from aliasd.base.config import KeySettings, ZoneSettings


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    rcode: int = dns.rcode.NOERROR
    tsig_error: int = 0
    reason: str = ""


def client_address(client: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client's address as given by the transport (scope id dropped,
    IPv4-mapped IPv6 unwrapped), or None if it is not an IP address."""
    try:
        address = ipaddress.ip_address(client.split("%")[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def keyring_from(keys: tuple[KeySettings, ...]) -> dict[dns.name.Name, dns.tsig.Key]:
    """dnspython TSIG keys by name, from the configuration."""
    ring = {}
    for key in keys:
        name = dns.name.from_text(key.name)
        ring[name] = dns.tsig.Key(name, key.secret, key.algorithm)
    return ring


def _rule(zone: ZoneSettings, made: dict) -> tuple:
    """A zone's (networks, TSIG key name, TLS only); zones with the same
    settings share one (ten thousand zones on their defaults: one tuple
    and key name, not one each)."""
    settings = (tuple(zone.allow_transfer), zone.transfer_key, zone.transfer_tls_only)
    rule = made.get(settings)
    if rule is None:
        key = dns.name.from_text(zone.transfer_key) if zone.transfer_key else None
        rule = made[settings] = (settings[0], key, zone.transfer_tls_only)
    return rule


class TransferAccess:
    """Decides on AXFR/IXFR requests, zone by zone."""

    def __init__(self, zones: tuple[ZoneSettings, ...]):
        made: dict = {}
        self._rules = {z.name: _rule(z, made) for z in zones}
        # Zones share their defaults: ten thousand zones, a handful of networks.
        self._all_networks = frozenset(net for nets, _, _ in self._rules.values() for net in nets)

    def changed(self, name: dns.name.Name, zone: ZoneSettings | None) -> TransferAccess:
        """These rules with one zone's replaced (None: the zone is gone), for
        a zone created or deleted at runtime: the others' are copied, not
        made again (thousands of zones)."""
        access = TransferAccess(())
        access._rules = dict(self._rules)
        access._rules.pop(name, None)
        if zone is not None:
            access._rules[name] = _rule(zone, {})
            access._all_networks = self._all_networks | frozenset(zone.allow_transfer)
        else:
            access._all_networks = frozenset(net for nets, _, _ in access._rules.values() for net in nets)
        return access

    def is_transfer_client(self, client: str) -> bool:
        """Is ``client`` in some zone's allow-transfer networks (a secondary)?

        Secondaries pull thousands of zones over many TCP connections at
        once; the per-client connection limit does not apply to them.
        """
        address = client_address(client)
        return address is not None and any(address in net for net in self._all_networks)

    def required_key(self, zone: dns.name.Name) -> dns.name.Name | None:
        return self._rules.get(zone, ((), None, False))[1]

    def check(
        self, zone: dns.name.Name, client: str, query: dns.message.Message, tls: str | None = None
    ) -> Decision:
        """``tls`` is the connection's TLS version, None without TLS."""
        networks, key, tls_only = self._rules.get(zone, ((), None, False))
        if not networks and key is None:
            return Decision(False, dns.rcode.REFUSED, reason="no allow-transfer or transfer-key for the zone")
        if tls is not None and tls != "TLSv1.3":
            return Decision(False, dns.rcode.REFUSED, reason=f"zone transfer over {tls}; RFC 9103 needs TLSv1.3")
        if tls_only and tls is None:
            return Decision(False, dns.rcode.REFUSED, reason="transfer-tls-only: TLS required")
        if networks:
            address = client_address(client)
            if address is None:
                return Decision(False, dns.rcode.REFUSED, reason="unknown client address")
            if not any(address in net for net in networks):
                return Decision(False, dns.rcode.REFUSED, reason="address not in allow-transfer")
        if key is not None:
            if not query.had_tsig:
                return Decision(False, dns.rcode.REFUSED, reason=f"unsigned, key {key} required")
            if query.keyname != key:
                return Decision(
                    False, dns.rcode.NOTAUTH, dns.rcode.BADKEY,
                    reason=f"signed with key {query.keyname}, key {key} required",
                )
        return Decision(True)
