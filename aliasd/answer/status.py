"""What each ALIAS resolves to now, for operators: CHAOS-class TXT answers.

From a loopback address only (anyone else gets REFUSED):

    dig @127.0.0.1 -p 5353 +tcp CH TXT aliases.aliasd.   # one line per ALIAS owner
    dig @127.0.0.1 -p 5353 +tcp CH TXT targets.aliasd.   # one line per upstream target
    dig @127.0.0.1 -p 5353 CH TXT version.bind.          # "aliasd VERSION"

``version.bind`` and ``version.server`` are answered to anyone, with
``[server] version`` if set (REFUSED when it is "none", as BIND's
``version none``).

An owner line says what the current version serves at the owner and how
the zone's serial stands; a target line says the target's state (resolved,
no-addresses, stale, expired, pending), its addresses, when it was last
refreshed, when it refreshes next, and the last failure if any; a target
in a zone served here is "in-zone", answered from that zone's data.
"""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from aliasd import __version__
from aliasd.base.access import client_address
from aliasd.zones.zone import ADDRESS_TYPES

ALIASES = dns.name.from_text("aliases.aliasd.")
TARGETS = dns.name.from_text("targets.aliasd.")
VERSION_NAMES = (dns.name.from_text("version.bind."), dns.name.from_text("version.server."))


def _txt(owner: dns.name.Name, lines: list[str]) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(owner, dns.rdataclass.CH, dns.rdatatype.TXT)
    for line in lines or ["(none)"]:
        chunks = [line[i : i + 255] for i in range(0, len(line), 255)] or [""]
        quoted = " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
        rrset.add(dns.rdata.from_text(dns.rdataclass.CH, dns.rdatatype.TXT, quoted), 0)
    return rrset


def _ago(now: float, then: float | None) -> str:
    return "never" if then is None else f"{now - then:.0f}s ago"


class StatusReporter:
    """Answers CH TXT questions about the authority and the resolver."""

    def __init__(self, authority, resolver, clock, version: str | None = None):
        self.authority = authority
        self.resolver = resolver
        self.clock = clock
        self.version = version  # [server] version (reloads change it)
        # The worker process a query came through (aliasd.service.workers), named in the answer.
        self.via: str | None = None

    def answer(self, qname: dns.name.Name, qtype: int, client: str) -> tuple[int, list[dns.rrset.RRset]]:
        """(rcode, answer RRsets) for a CHAOS-class question."""
        hidden = self.version is not None and self.version.lower() == "none"
        if qname in VERSION_NAMES and qtype in (dns.rdatatype.TXT, dns.rdatatype.ANY) and not hidden:
            text = self.version if self.version is not None else f"aliasd {__version__}"
            return dns.rcode.NOERROR, [_txt(qname, [text])]
        if qname not in (ALIASES, TARGETS):
            return dns.rcode.REFUSED, []
        if not _is_loopback(client):
            return dns.rcode.REFUSED, []
        if qtype not in (dns.rdatatype.TXT, dns.rdatatype.ANY):
            return dns.rcode.NOERROR, []
        lines = self._aliases() if qname == ALIASES else self._targets()
        if self.via is not None:
            lines.append(f"answered by {self.via}")
        return dns.rcode.NOERROR, [_txt(qname, lines)]

    def _aliases(self) -> list[str]:
        lines = []
        for origin, version in sorted(self.authority.versions.items()):
            for owner, alias in sorted(version.source.aliases.items()):
                node = version.node(owner) or {}
                served = []
                for rdtype in ADDRESS_TYPES:
                    rrset = node.get(rdtype)
                    kind = dns.rdatatype.to_text(rdtype)
                    if rrset is None:
                        served.append(f"{kind} none")
                    else:
                        addresses = " ".join(sorted(r.to_text() for r in rrset))
                        served.append(f"{kind} {addresses} ttl {rrset.ttl}")
                lines.append(
                    f"{owner} ALIAS {alias.target} serial {version.serial}: " + "; ".join(served)
                )
        return lines

    def _targets(self) -> list[str]:
        lines = self._local_targets()
        if self.resolver is None:
            return lines
        now = self.clock.seconds()
        for (name, rdtype), state in sorted(self.resolver.targets.items()):
            addresses = " ".join(state.addresses) if state.addresses else "-"
            line = (
                f"{name} {dns.rdatatype.to_text(rdtype)} {state.status.value} {addresses}"
                f" ttl {state.ttl} refreshed {_ago(now, state.last_refresh)}"
                f" next in {max(0.0, state.next_due - now):.0f}s"
            )
            if state.failure:
                line += f" last failure {state.failure} ({state.failures} in a row)"
            lines.append(line)
        return lines


    def _local_targets(self) -> list[str]:
        """Targets in zones served here: answered from their zone's data."""
        registry = self.authority.registry
        lines = []
        for (name, rdtype), owners in sorted(self.authority.graph.local.items()):
            zone = registry.origin_of(name)
            lines.append(f"{name} {dns.rdatatype.to_text(rdtype)} in-zone zone {zone}"
                         f" for {len(owners)} ALIAS owner(s)")
        return lines


def _is_loopback(client: str) -> bool:
    address = client_address(client)
    return address is not None and address.is_loopback
