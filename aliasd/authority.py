"""The authority: every served zone, as its current immutable version.

It turns zone files plus the resolver's target states into ZoneVersions:
for each ALIAS it follows the target, through aliasd's own zones when the
target lies in one (ALIAS chains and in-zone CNAMEs included, loops turned
into SERVFAIL), and through the AliasResolver's upstream states otherwise.
It answers the question "which zone, which version?" for the server and
builds new versions when the resolver reports a change; a zone whose
flattened outcome did not change keeps its version object.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from twisted.logger import Logger

from aliasd.resolution import AliasResolver, Status, TargetKey
from aliasd.zone import ADDRESS_TYPES, Flattened, ZoneVersion, base_nodes
from aliasd.zonefile import ZoneSource

log = Logger()
_MAX_DEPTH = 16


@dataclasses.dataclass(frozen=True)
class _Followed:
    """Where following one ALIAS target for one type ended."""

    kind: str  # "addresses", "none", "fallback", "loop"
    rdatas: tuple[dns.rdata.Rdata, ...] = ()
    ttl: int = 0


_FALLBACK = _Followed("fallback")
_NONE = _Followed("none")


class ZoneAuthority:
    """Holds the current version of each served zone and rebuilds them."""

    def __init__(self, resolver: AliasResolver | None = None):
        self.resolver = resolver
        self.sources: dict[dns.name.Name, ZoneSource] = {}
        self.versions: Mapping[dns.name.Name, ZoneVersion] = {}
        self._bases: dict[dns.name.Name, dict] = {}
        self._outcomes: dict[dns.name.Name, dict] = {}

    # -- which zone ------------------------------------------------------

    def zone_for(self, name: dns.name.Name) -> ZoneVersion | None:
        """The version of the closest enclosing served zone, or None."""
        versions = self.versions
        while True:
            version = versions.get(name)
            if version is not None:
                return version
            if len(name) <= 1:
                return None
            name = name.parent()

    # -- loading and rebuilding -----------------------------------------

    def set_sources(self, sources: Iterable[ZoneSource]) -> None:
        """Serve exactly these zone files (at start, and later on reload)."""
        self.sources = {source.origin: source for source in sources}
        self._bases = {origin: base_nodes(s) for origin, s in self.sources.items()}
        self._outcomes = {}
        self.versions = {}
        self.rebuild()

    def rebuild(self) -> None:
        """Build new versions for zones whose ALIAS outcomes changed."""
        wanted: set[TargetKey] = set()
        versions = dict(self.versions)
        for origin, source in self.sources.items():
            flattened = {
                owner: self._flatten(source, owner, wanted)
                for owner in source.aliases
            }
            if origin in versions and self._outcomes.get(origin) == _comparable(
                flattened
            ):
                continue
            self._outcomes[origin] = _comparable(flattened)
            loops = sorted(o.to_text() for o, f in flattened.items() if f.servfail)
            if loops:
                log.warn(
                    "ALIAS loop in zone {zone}: {owners} answer SERVFAIL",
                    zone=origin.to_text(),
                    owners=", ".join(loops),
                )
            versions[origin] = ZoneVersion.build(
                source, flattened, self._bases[origin]
            )
            log.info(
                "zone {zone} version built: serial {serial}, {aliases} ALIAS",
                zone=origin.to_text(),
                serial=versions[origin].serial,
                aliases=len(source.aliases),
            )
        self.versions = versions  # one assignment: readers see old or new
        if self.resolver is not None:
            self.resolver.set_targets(wanted)

    # -- following ALIAS targets ----------------------------------------

    def _source_for(self, name: dns.name.Name) -> ZoneSource | None:
        while True:
            source = self.sources.get(name)
            if source is not None or len(name) <= 1:
                return source
            name = name.parent()

    def _flatten(
        self, source: ZoneSource, owner: dns.name.Name, wanted: set[TargetKey]
    ) -> Flattened:
        alias = source.aliases[owner]
        rrsets: dict[int, dns.rrset.RRset | None] = {}
        loop = False
        for rdtype in ADDRESS_TYPES:
            followed = self._follow(alias.target, rdtype, {owner}, wanted)
            if followed.kind == "loop":
                loop = True
                rrsets[rdtype] = None
            elif followed.kind == "none":
                rrsets[rdtype] = None
            elif followed.kind == "addresses":
                rrsets[rdtype] = dns.rrset.from_rdata_list(
                    owner, min(alias.ttl, followed.ttl), followed.rdatas
                )
        return Flattened(rrsets, servfail=loop)

    def _follow(
        self,
        target: dns.name.Name,
        rdtype: int,
        visiting: set[dns.name.Name],
        wanted: set[TargetKey],
    ) -> _Followed:
        """Follow ``target`` to its addresses of type ``rdtype``."""
        if target in visiting or len(visiting) > _MAX_DEPTH:
            return _Followed("loop")
        source = self._source_for(target)
        if source is None:
            wanted.add((target, rdtype))
            state = self.resolver.state(target, rdtype) if self.resolver else None
            if state is None or state.uses_fallback:
                return _FALLBACK
            if state.status == Status.NO_ADDRESSES:
                return _NONE
            rdatas = tuple(
                dns.rdata.from_text(dns.rdataclass.IN, rdtype, a)
                for a in state.addresses
            )
            return _Followed("addresses", rdatas, state.ttl)
        alias = source.aliases.get(target)
        if alias is not None:
            inner = self._follow(alias.target, rdtype, visiting | {target}, wanted)
            if inner.kind == "fallback":
                inner = self._static(source, target, rdtype)
            if inner.kind == "addresses":
                return _Followed("addresses", inner.rdatas, min(alias.ttl, inner.ttl))
            return inner
        cname = source.rrsets.get((target, dns.rdatatype.CNAME))
        if cname is not None:
            inner = self._follow(cname[0].target, rdtype, visiting | {target}, wanted)
            if inner.kind == "addresses":
                return _Followed("addresses", inner.rdatas, min(cname.ttl, inner.ttl))
            return inner
        return self._static(source, target, rdtype)

    @staticmethod
    def _static(source: ZoneSource, name: dns.name.Name, rdtype: int) -> _Followed:
        rrset = source.rrsets.get((name, rdtype))
        if rrset is None:
            return _NONE
        return _Followed("addresses", tuple(rrset), rrset.ttl)


def _comparable(flattened: Mapping[dns.name.Name, Flattened]):
    """A value equal for equal outcomes (RRsets compare without TTL)."""
    return {
        owner: (
            outcome.servfail,
            tuple(
                sorted(
                    (t, None if r is None else (r.ttl, tuple(sorted(x.to_text() for x in r))))
                    for t, r in outcome.rrsets.items()
                )
            ),
        )
        for owner, outcome in flattened.items()
    }
