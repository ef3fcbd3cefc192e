"""The authority: every served zone, as its current immutable version.

It turns zone files plus the resolver's target states into ZoneVersions:
for each ALIAS it follows the target, through aliasd's own zones when the
target lies in one (ALIAS chains and in-zone CNAMEs included, loops turned
into SERVFAIL), and through the AliasResolver's upstream states otherwise.

Work is proportional to what changed: the authority remembers which ALIAS
owners depend on which upstream target, so a change of one target re-follows
only its owners, copies the previous version's node map and replaces just
those nodes. Each new version gets its serial here (aliasd.state), is
recorded in the state store before it is served, and its difference from the
previous version goes into the zone's journal (IXFR).
"""

from __future__ import annotations

import dataclasses
import functools
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
from aliasd.zone import ADDRESS_TYPES, Flattened, ZoneBase, ZoneVersion
from aliasd.zonefile import ZoneSource

log = Logger()
_MAX_DEPTH = 16
_HASH_MOD = 2**256


@dataclasses.dataclass(frozen=True)
class _Followed:
    """Where following one ALIAS target for one type ended."""

    kind: str  # "addresses", "none", "fallback", "loop"
    rdatas: tuple[dns.rdata.Rdata, ...] = ()
    ttl: int = 0


_FALLBACK = _Followed("fallback")
_NONE = _Followed("none")


@functools.lru_cache(maxsize=65536)
def _rdatas(rdtype: int, addresses: tuple[str, ...]) -> tuple[dns.rdata.Rdata, ...]:
    """Address texts as rdata, shared by every owner of the same target."""
    return tuple(dns.rdata.from_text(dns.rdataclass.IN, rdtype, a) for a in addresses)


class _Zone:
    """Book-keeping for one served zone between versions."""

    def __init__(self, source: ZoneSource):
        self.source = source
        self.base = ZoneBase.of(source)
        self.source_digest = _source_digest(source)
        self.flattened: dict[dns.name.Name, Flattened] = {}
        self.served: dict[dns.name.Name, tuple] = {}
        self.view_hash = 0  # sum of the owners' hashes: updated per owner
        # Changes not yet published as a version (serial-rate damping).
        self.pending: dict[dns.name.Name, Flattened] = {}
        self.tokens: float | None = None  # full burst until first used
        self.refilled_at = 0.0
        self.flush_call = None


class ZoneAuthority:
    """Holds the current version of each served zone and rebuilds them.

    ``on_new_serial`` is called with every version whose serial is new (and
    with each zone's first version): that is when secondaries are notified.

    Serial-rate damping: each zone may publish ``serial_burst`` new versions
    at once, then one per ``serial_interval`` seconds; changes that arrive
    meanwhile are batched into the next version (one serial, one NOTIFY).
    A target that answers a different subset of a pool on every query thus
    moves the serial at most once per interval. Loads and reloads are never
    held back. ``serial_interval = 0`` turns damping off.
    """

    def __init__(
        self,
        resolver: AliasResolver | None = None,
        state=None,
        journal_size: int = 100,
        on_new_serial: Callable[[ZoneVersion], None] = lambda version: None,
        clock=None,
        serial_interval: float = 0.0,
        serial_burst: int = 3,
    ):
        self.resolver = resolver
        self.clock = clock
        self.serial_interval = serial_interval if clock is not None else 0.0
        self.serial_burst = max(1, serial_burst)
        self.state = state if state is not None else MemoryStateStore()
        self.journal_size = journal_size
        self.on_new_serial = on_new_serial
        self.sources: dict[dns.name.Name, ZoneSource] = {}
        self._versions: Mapping[dns.name.Name, ZoneVersion] = {}
        self.zones_by_wire: dict[bytes, ZoneVersion] = {}
        self.soa_suffixes: dict[bytes, frozenset] = {}
        # Moves on every set_sources: answers cached for the old set of
        # zones (aliasd.fastpath) are not reused even where versions match.
        self.generation = 0
        self.journals: dict[dns.name.Name, Journal] = {}
        self._zones: dict[dns.name.Name, _Zone] = {}
        self._source_cache: dict[dns.name.Name, ZoneSource | None] = {}
        self._digests: dict[dns.name.Name, str] = {}
        # Upstream target -> the (zone, owner) pairs that follow it, and back.
        self._dependents: dict[TargetKey, set[tuple[dns.name.Name, dns.name.Name]]] = {}
        self._targets_of: dict[tuple[dns.name.Name, dns.name.Name], set[TargetKey]] = {}

    @property
    def versions(self) -> Mapping[dns.name.Name, ZoneVersion]:
        """The version each zone serves now."""
        return self._versions

    @versions.setter
    def versions(self, new: Mapping[dns.name.Name, ZoneVersion]) -> None:
        # Mark what is replaced, so answers cached from it are not reused
        # (aliasd.fastpath checks a flag instead of looking the zone up).
        for origin, old in self._versions.items():
            if new.get(origin) is not old:
                old.superseded = True
        self._versions = new
        # Lower-case wire forms for the negative fast path (aliasd.fastpath).
        self.zones_by_wire = {o.canonicalize().to_wire(): v for o, v in new.items()}
        self.soa_suffixes = {
            o.canonicalize().to_wire(): frozenset(
                suffix.canonicalize().to_wire()
                for name in (v.soa[0].mname, v.soa[0].rname)
                for suffix in _suffixes(name)
            )
            for o, v in new.items()
        }

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

    def is_stale(self, origin: dns.name.Name, owner: dns.name.Name) -> bool:
        """Does this ALIAS owner serve addresses kept past an upstream failure?"""
        if self.resolver is None or not self.resolver.any_stale:
            return False
        for key in self._targets_of.get((origin, owner), ()):
            state = self.resolver.state(*key)
            if state is not None and state.status is Status.STALE:
                return True
        return False

    # -- loading and rebuilding -----------------------------------------

    @staticmethod
    def prepare(sources: Iterable[ZoneSource]) -> dict:
        """The per-file work of loading (name index, digest), done once.

        Pure computation on the new files: a reload runs it in a thread so
        that queries go on being answered meanwhile.
        """
        return {source.origin: _Zone(source) for source in sources}

    def set_sources(self, sources: Iterable[ZoneSource], prepared: dict | None = None) -> None:
        """Serve exactly these zone files (at start, and later on reload)."""
        sources = list(sources)
        self.generation += 1
        if prepared is None:
            prepared = self.prepare(sources)
        self.sources = {source.origin: source for source in sources}
        self._source_cache: dict[dns.name.Name, ZoneSource | None] = {}
        for zone in self._zones.values():  # changes held back for old data
            if zone.flush_call is not None and zone.flush_call.active():
                zone.flush_call.cancel()
        for origin in list(self.journals):
            if origin not in self.sources:
                del self.journals[origin]
        self._zones = {s.origin: prepared.get(s.origin) or _Zone(s) for s in sources}
        self.rebuild()

    def rebuild(self, changed: Iterable[TargetKey] | None = None) -> None:
        """Build new versions where ALIAS outcomes changed.

        ``changed`` names the upstream targets whose state changed; only
        their owners are followed again. None follows every owner.
        """
        if changed is None:
            self._dependents = {}
            self._targets_of = {}
            owners = {
                origin: list(zone.source.aliases) for origin, zone in self._zones.items()
            }
        else:
            owners = {}
            for key in changed:
                for origin, owner in self._dependents.get(key, ()):
                    owners.setdefault(origin, []).append(owner)
        versions = {o: v for o, v in self.versions.items() if o in self._zones}
        published: list[tuple[ZoneVersion | None, ZoneVersion]] = []
        for origin, zone_owners in owners.items():
            zone = self._zones[origin]
            updates = self._reflatten(zone, set(zone_owners))
            old = versions.get(origin)
            if old is not None and not updates and old.source is zone.source:
                continue
            zone.pending.update(updates)
            if old is not None and changed is not None and not self._take_token(zone):
                self._flush_later(zone)
                continue
            versions[origin] = self._publish(zone, old)
            published.append((old, versions[origin]))
        self.versions = versions  # one assignment: readers see old or new
        if self.resolver is not None:
            self.resolver.set_targets(self._dependents)
        self._announce(published)

    def _announce(self, published) -> None:
        for old, version in published:
            if old is None or old.serial != version.serial:
                self.on_new_serial(version)

    # -- serial-rate damping ------------------------------------------------

    def _take_token(self, zone: _Zone) -> bool:
        """May this zone publish a new version now? (token bucket)"""
        if not self.serial_interval:
            return True
        now = self.clock.seconds()
        if zone.tokens is None:
            zone.tokens, zone.refilled_at = float(self.serial_burst), now
        zone.tokens = min(
            float(self.serial_burst), zone.tokens + (now - zone.refilled_at) / self.serial_interval
        )
        zone.refilled_at = now
        if zone.tokens >= 1.0 - 1e-9:  # float dust must not stall a flush
            zone.tokens = max(0.0, zone.tokens - 1.0)
            return True
        return False

    def _flush_later(self, zone: _Zone) -> None:
        if zone.flush_call is not None and zone.flush_call.active():
            return
        delay = max(0.001, (1.0 - zone.tokens) * self.serial_interval)
        zone.flush_call = self.clock.callLater(delay, self._flush, zone.source.origin)
        log.info(
            "zone {zone}: ALIAS changes held back for {delay:.0f}s (serial-interval)",
            zone=zone.source.origin.to_text(),
            delay=delay,
        )

    def _flush(self, origin: dns.name.Name) -> None:
        """Publish the changes held back for ``origin`` as one version."""
        zone = self._zones.get(origin)
        if zone is None or origin not in self.versions:
            return
        zone.flush_call = None
        if not zone.pending:
            return
        if not self._take_token(zone):
            self._flush_later(zone)
            return
        versions = dict(self.versions)
        old = versions[origin]
        versions[origin] = self._publish(zone, old)
        self.versions = versions
        self._announce([(old, versions[origin])])

    def _publish(self, zone: _Zone, old: ZoneVersion | None) -> ZoneVersion:
        updates, zone.pending = zone.pending, {}
        if zone.flush_call is not None and zone.flush_call.active():
            zone.flush_call.cancel()
        zone.flush_call = None
        return self._new_version(zone, updates, old)

    def _reflatten(self, zone: _Zone, owners: set[dns.name.Name]) -> dict[dns.name.Name, Flattened]:
        """Follow ``owners`` again; return those whose served records changed."""
        updates = {}
        loops = []
        for owner in owners:
            flattened = self._flatten(zone.source, owner)
            served = _served(zone.source, owner, flattened)
            previous = zone.served.get(owner)
            if previous == served and owner in zone.flattened:
                continue
            if previous is not None:
                zone.view_hash -= _owner_hash(owner, previous)
            zone.view_hash = (zone.view_hash + _owner_hash(owner, served)) % _HASH_MOD
            zone.served[owner] = served
            zone.flattened[owner] = flattened
            updates[owner] = flattened
            if flattened.servfail:
                loops.append(owner.to_text())
        if loops:
            log.warn(
                "ALIAS loop in zone {zone}: {owners} answer SERVFAIL",
                zone=zone.source.origin.to_text(),
                owners=", ".join(sorted(loops)),
            )
        return updates

    def _new_version(
        self, zone: _Zone, updates: dict[dns.name.Name, Flattened], old: ZoneVersion | None
    ) -> ZoneVersion:
        """Build, number, record and journal the next version of a zone."""
        source = zone.source
        origin = source.origin
        digest = hashlib.sha256(f"{zone.source_digest}:{zone.view_hash:x}".encode()).hexdigest()
        previous = self.state.load_zone(origin) if old is None else ZoneState(
            old.serial, self._digests.get(origin, "")
        )
        changed = previous is None or previous.digest != digest
        serial = next_serial(source.serial, previous.serial if previous else None, changed)
        if previous is None or serial != previous.serial or changed:
            self.state.save_zone(origin, ZoneState(serial, digest))
        self._digests[origin] = digest
        same_source = old is not None and old.source is source
        if same_source:
            version = ZoneVersion.build(source, updates, zone.base, serial=serial, previous=old)
        else:
            version = ZoneVersion.build(source, zone.flattened, zone.base, serial=serial)
        journal = self.journals.setdefault(origin, Journal(self.journal_size))
        if old is not None and old.serial != serial:
            journal.add(difference(old, version, updates if same_source else None))
        if old is None:
            why = "first load" if previous is None else (
                "restart, view unchanged" if not changed else "restart, view changed"
            )
        else:
            why = f"{len(updates)} ALIAS owner(s) changed"
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
        """The served zone file that ``name`` falls in (cached per load)."""
        try:
            return self._source_cache[name]
        except KeyError:
            pass
        found, walk = None, name
        while True:
            found = self.sources.get(walk)
            if found is not None or len(walk) <= 1:
                break
            walk = walk.parent()
        self._source_cache[name] = found
        return found

    def _flatten(self, source: ZoneSource, owner: dns.name.Name) -> Flattened:
        alias = source.aliases[owner]
        rrsets: dict[int, dns.rrset.RRset | None] = {}
        loop = False
        for rdtype in ADDRESS_TYPES:
            followed = self._follow(alias.target, rdtype, {owner}, (source.origin, owner))
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
        dependent: tuple[dns.name.Name, dns.name.Name],
    ) -> _Followed:
        """Follow ``target`` to its addresses of type ``rdtype``."""
        if target in visiting or len(visiting) > _MAX_DEPTH:
            return _Followed("loop")
        source = self._source_for(target)
        if source is None:
            self._dependents.setdefault((target, rdtype), set()).add(dependent)
            self._targets_of.setdefault(dependent, set()).add((target, rdtype))
            state = self.resolver.state(target, rdtype) if self.resolver else None
            if state is None or state.uses_fallback:
                return _FALLBACK
            if state.status == Status.NO_ADDRESSES:
                return _NONE
            return _Followed("addresses", _rdatas(rdtype, state.addresses), state.ttl)
        alias = source.aliases.get(target)
        if alias is not None:
            inner = self._follow(alias.target, rdtype, visiting | {target}, dependent)
            if inner.kind == "fallback":
                inner = self._static(source, target, rdtype)
            if inner.kind == "addresses":
                return _Followed("addresses", inner.rdatas, min(alias.ttl, inner.ttl))
            return inner
        cname = source.rrsets.get((target, dns.rdatatype.CNAME))
        if cname is not None:
            inner = self._follow(cname[0].target, rdtype, visiting | {target}, dependent)
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


def _suffixes(name: dns.name.Name):
    while len(name) > 1:
        yield name
        name = name.parent()


def _source_digest(source: ZoneSource) -> str:
    """A digest of a zone file's records (serial aside), computed once per load.

    A sum of per-RRset hashes over canonical wire forms: independent of the
    order of records in the file and cheap for large zones (no sorting).
    """
    total = 0
    for (name, rdtype), rrset in source.rrsets.items():
        if rdtype == dns.rdatatype.SOA:
            soa = rrset[0]
            rdatas = [soa.replace(serial=0).to_digestable()]
        else:
            rdatas = sorted(r.to_digestable() for r in rrset)
        h = hashlib.sha256(name.canonicalize().to_wire())
        h.update(rdtype.to_bytes(2, "big") + rrset.ttl.to_bytes(4, "big"))
        for rdata in rdatas:
            h.update(len(rdata).to_bytes(2, "big") + rdata)
        total = (total + int.from_bytes(h.digest(), "big")) % _HASH_MOD
    return f"{total:064x}"


def _served(source: ZoneSource, owner: dns.name.Name, outcome: Flattened) -> tuple:
    """What an ALIAS owner serves, as a plain value: equal views compare equal.

    A type left to the file's fallback counts as the fallback records, so
    "no addresses yet" and "no addresses" are the same view when the file
    has none; addresses compare as sorted text with their TTL, so a change
    of order is no change.
    """

    def one(rdtype):
        if rdtype in outcome.rrsets:
            rrset = outcome.rrsets[rdtype]
        else:
            rrset = source.rrsets.get((owner, rdtype))
        if rrset is None:
            return None
        return (rrset.ttl, tuple(sorted(r.to_text() for r in rrset)))

    return (outcome.servfail, tuple(one(t) for t in ADDRESS_TYPES))


def _owner_hash(owner: dns.name.Name, served: tuple) -> int:
    """One owner's share of the zone's view hash (they are summed)."""
    text = f"{owner.to_text().lower()}|{served!r}".encode()
    return int.from_bytes(hashlib.sha256(text).digest(), "big")
