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
import hashlib
from typing import Callable, Iterable, Mapping

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from twisted.logger import Logger

from aliasd.journal import Journal, difference
from aliasd.resolution import AliasResolver, Status, TargetKey
from aliasd.state import MemoryStateStore, ZoneState, next_serial
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
    """Holds the current version of each served zone and rebuilds them.

    Each new version gets its serial here (aliasd.state.next_serial), is
    recorded in the state store before it is served, and its difference from
    the previous version goes into the zone's journal. ``on_new_serial`` is
    called with every version whose serial is new (and with each zone's
    first version), which is when secondaries must be notified.
    """

    def __init__(
        self,
        resolver: AliasResolver | None = None,
        state=None,
        journal_size: int = 100,
        on_new_serial: Callable[[ZoneVersion], None] = lambda version: None,
    ):
        self.resolver = resolver
        self.state = state if state is not None else MemoryStateStore()
        self.journal_size = journal_size
        self.on_new_serial = on_new_serial
        self.sources: dict[dns.name.Name, ZoneSource] = {}
        self.versions: Mapping[dns.name.Name, ZoneVersion] = {}
        self.journals: dict[dns.name.Name, Journal] = {}
        self._bases: dict[dns.name.Name, dict] = {}
        self._source_digests: dict[dns.name.Name, str] = {}
        self._outcomes: dict[dns.name.Name, dict] = {}
        self._digests: dict[dns.name.Name, str] = {}

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
        self._source_digests = {o: _source_digest(s) for o, s in self.sources.items()}
        self._outcomes = {}
        self.rebuild()

    def rebuild(self) -> None:
        """Build new versions for zones whose ALIAS outcomes changed."""
        wanted: set[TargetKey] = set()
        versions = {o: v for o, v in self.versions.items() if o in self.sources}
        new_serials: list[ZoneVersion] = []
        for origin, source in self.sources.items():
            flattened = {
                owner: self._flatten(source, owner, wanted)
                for owner in source.aliases
            }
            outcome = _comparable(source, flattened)
            if origin in versions and self._outcomes.get(origin) == outcome:
                continue
            self._outcomes[origin] = outcome
            loops = sorted(o.to_text() for o, f in flattened.items() if f.servfail)
            if loops:
                log.warn(
                    "ALIAS loop in zone {zone}: {owners} answer SERVFAIL",
                    zone=origin.to_text(),
                    owners=", ".join(loops),
                )
            old = versions.get(origin)
            version = self._new_version(source, flattened, outcome, old)
            versions[origin] = version
            if old is None or old.serial != version.serial:
                new_serials.append(version)
        self.versions = versions  # one assignment: readers see old or new
        if self.resolver is not None:
            self.resolver.set_targets(wanted)
        for version in new_serials:
            self.on_new_serial(version)

    def _new_version(self, source, flattened, outcome, old: ZoneVersion | None) -> ZoneVersion:
        """Build, number, record and journal the next version of a zone."""
        origin = source.origin
        digest = hashlib.sha256(
            (self._source_digests[origin] + repr(sorted(outcome.items()))).encode()
        ).hexdigest()
        stored = self.state.load_zone(origin) if old is None else None
        if old is not None:
            previous = ZoneState(old.serial, self._digests.get(origin, ""))
        else:
            previous = stored
        changed = previous is None or previous.digest != digest
        serial = next_serial(source.serial, previous.serial if previous else None, changed)
        if previous is None or serial != previous.serial or changed:
            self.state.save_zone(origin, ZoneState(serial, digest))
        self._digests[origin] = digest
        version = ZoneVersion.build(source, flattened, self._bases[origin], serial=serial)
        journal = self.journals.setdefault(origin, Journal(self.journal_size))
        if old is not None and old.serial != serial:
            journal.add(difference(old, version))
        why = "first load" if old is None else "ALIAS addresses changed"
        if previous is not None and old is None:
            why = "restart, view unchanged" if not changed else "restart, view changed"
        log.info(
            "zone {zone} serial {serial} ({why}), {records} RRsets, {aliases} ALIAS",
            zone=origin.to_text(),
            serial=serial,
            why=why,
            records=len(source.rrsets),
            aliases=len(source.aliases),
        )
        return version

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


def _source_digest(source: ZoneSource) -> str:
    """A digest of a zone file's records (serial aside), computed once per load."""
    h = hashlib.sha256()
    for (name, rdtype), rrset in sorted(source.rrsets.items()):
        if rdtype == dns.rdatatype.SOA:
            soa = rrset[0]
            h.update(f"{name} {rrset.ttl} SOA {soa.mname} {soa.rname} {soa.refresh} "
                     f"{soa.retry} {soa.expire} {soa.minimum}\n".encode())
            continue
        rdatas = " | ".join(sorted(r.to_text() for r in rrset))
        h.update(f"{name} {rrset.ttl} {rdtype} {rdatas}\n".encode())
    return h.hexdigest()


def _comparable(source: ZoneSource, flattened: Mapping[dns.name.Name, Flattened]):
    """What the ALIAS owners serve, as a plain value: equal views compare equal.

    A type left to the file's fallback counts as the fallback records, so
    "no addresses yet" and "no addresses" are the same view when the file
    has none; addresses compare as sorted text with their TTL.
    """

    def served(owner, rdtype, outcome):
        rrset = outcome.rrsets[rdtype] if rdtype in outcome.rrsets else source.rrsets.get((owner, rdtype))
        if rrset is None:
            return None
        return (rrset.ttl, tuple(sorted(r.to_text() for r in rrset)))

    return {
        owner: (outcome.servfail, tuple(served(owner, t, outcome) for t in ADDRESS_TYPES))
        for owner, outcome in flattened.items()
    }
