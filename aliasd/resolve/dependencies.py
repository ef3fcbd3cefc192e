"""Following ALIAS targets, and the graph of who followed what.

Why a unit of its own: work must be proportional to what changed. Following
an ALIAS records where it went: the upstream targets it asked the resolver
about, and the served zones whose records it read. A change of one target
then re-follows only its owners, and a reload of one zone only the owners
that follow into it, not all ten thousand zones.

A target in a zone served here resolves exactly as a query for it would be
answered (ALIAS chains, CNAME, DNAME and wildcards included; a loop serves
no addresses); one at or below a delegation, or outside every served zone,
through the AliasResolver's upstream states.

``follow`` runs for every ALIAS owner of every zone rebuilt (ten thousand
zones at a start): it reads the edge dicts as plain attributes, with no
layer between.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import sys
import time
from typing import Callable, Iterable

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from twisted.logger import Logger

from aliasd.base import store
from aliasd.resolve.resolution import AliasResolver, Status, TargetKey
from aliasd.zones.zone import ADDRESS_TYPES, FlatRRsets, Flattened
from aliasd.zones.zonefile import ALIAS_RDTYPE, ZoneSource

# Logged as the authority always did: operators' filters keep working.
log = Logger(namespace="aliasd.service.authority")
_MAX_DEPTH = 16
_HASH_MOD = 2**256

Dependent = tuple  # (zone origin, ALIAS owner)


@dataclasses.dataclass(frozen=True)
class _Followed:
    """Where following one ALIAS target for one type ended."""

    kind: str  # "addresses", "none", "fallback", "loop"
    rdatas: tuple[dns.rdata.Rdata, ...] = ()
    ttl: int = 0


_FALLBACK = _Followed("fallback")
_NONE = _Followed("none")
_DELEGATED = ("delegated", None)
_NO_KEYS: frozenset = frozenset()


@functools.lru_cache(maxsize=65536)
def _rdatas(rdtype: int, addresses: tuple[str, ...]) -> tuple[dns.rdata.Rdata, ...]:
    """Address texts as rdata, shared by every owner of the same target."""
    return tuple(dns.rdata.from_text(dns.rdataclass.IN, rdtype, a) for a in addresses)


def _shared_parts(parts: tuple) -> tuple:
    """One object for equal flattened outcomes (aliasd.zones.zone.FlatRRsets):
    the owners of one target share it, as they share its rdatas.

    Looked up first by the identity of the rdatas (the owners of one
    upstream target get the very tuple of _rdatas): hashing equal parts
    hashes each rdata through its wire form, a tenth of a warm start's
    building at ten thousand zones.
    """
    key = tuple((rdtype, ttl, id(rdatas)) for rdtype, ttl, rdatas in parts)
    kept = _PARTS.get(key)
    if kept is not None and all(a[2] is b[2] for a, b in zip(kept[0], parts)):
        return kept[1]
    shared = _equal_parts(parts)
    if len(_PARTS) >= _PARTS_KEPT:
        _PARTS.clear()
    _PARTS[key] = (parts, shared)  # (holds the rdatas: their ids are not reused)
    return shared


@functools.lru_cache(maxsize=4096)
def _equal_parts(parts: tuple) -> tuple:
    return parts


#: ids of the parts' rdatas -> (those parts, the shared equal parts);
#: id(shared parts) -> (those parts, loop, _served's text)
_PARTS: dict = {}
_SERVED: dict = {}
_PARTS_KEPT = 4096


class AliasGraph:
    """Follows ALIAS owners and remembers the edges each one followed.

    ``zones`` is the authority's per-zone book-keeping (origin -> an object
    with the zone file's ``base``), ``origin_of`` the registry's cached
    closest-enclosing-zone search (aliasd.zones.registry); both are read, never
    changed, here.
    """

    def __init__(self, resolver: AliasResolver | None, zones: dict, origin_of: Callable,
                 signed: Callable[[dns.name.Name], bool] = lambda origin: False):
        self.resolver = resolver
        self._signed = signed  # is this zone signed? (its owners then take validated answers only)
        self._zones = zones
        self._origin_of = origin_of
        # Upstream target -> the (zone, owner) pairs that follow it, and back.
        self.dependents: dict[TargetKey, set[Dependent]] = {}
        # (Each owner's keys a frozenset shared by the owners of the same
        # targets, through ``_key_sets``: a set per owner was 2 MiB at ten
        # thousand apex ALIAS owners over a few targets.)
        self.targets_of: dict[Dependent, frozenset[TargetKey]] = {}
        self._key_sets: dict[frozenset, frozenset] = {}  # emptied when a target goes
        # Served zone -> the (zone, owner) pairs whose ALIAS follows into it.
        self._users: dict[dns.name.Name, set[Dependent]] = {}
        self._used_by: dict[Dependent, set[dns.name.Name]] = {}
        # Targets in zones served here -> the (zone, owner) pairs whose ALIAS
        # names them, and back: what the operator sees as in-zone targets.
        self.local: dict[TargetKey, set[Dependent]] = {}
        self._local_of: dict[Dependent, set[TargetKey]] = {}
        self.new_targets = False  # upstream targets found since the resolver was told
        # Targets found or dropped since: the resolver's set is told again
        # only then (the set of ten thousand targets, hashed at each zone
        # created, was milliseconds of the reactor for nothing).
        self.targets_changed = True
        self._targets_told = 0.0
        # Upstream targets by their names' lower-case labels: the targets a
        # zone added over them takes in are found comparing label tuples
        # (in C), not Names (in Python: 19 ms at 10,000 targets per zone
        # created). A list: one or two keys, and no Name hashed.
        self._by_name: dict[tuple, list[TargetKey]] = {}

    # -- the graph ---------------------------------------------------------

    def affected_by(self, changed: Iterable[dns.name.Name], added: Iterable[dns.name.Name]) -> dict:
        """Zone -> ALIAS owners to follow again when the zones ``changed``
        (removed, reloaded or new) change, ``added`` being the new ones:
        owners that follow into them, and owners of upstream targets that
        now lie in a served zone."""
        affected: dict[dns.name.Name, set] = {}
        for origin in changed:
            for owner_origin, owner in self._users.get(origin, ()):
                affected.setdefault(owner_origin, set()).add(owner)
        for origin in added:
            wanted = _lowered(origin)
            tail = -len(wanted)
            for labels, keys in self._by_name.items():
                if labels[tail:] == wanted:
                    for key in keys:
                        for owner_origin, owner in self.dependents[key]:
                            affected.setdefault(owner_origin, set()).add(owner)
        return affected

    def forget(self, dependent: Dependent) -> None:
        """Drop what one ALIAS owner followed, before it is followed again."""
        dependents = self.dependents
        for key in self.targets_of.pop(dependent, ()):
            _unlink(dependents, key, dependent)
            if key not in dependents:
                self.targets_changed = True
                self._key_sets.clear()
                labels = _lowered(key[0])
                same = self._by_name.get(labels)
                if same is not None and key in same:
                    same.remove(key)
                if not same:
                    self._by_name.pop(labels, None)
        for origin in self._used_by.pop(dependent, ()):
            _unlink(self._users, origin, dependent)
        for key in self._local_of.pop(dependent, ()):
            _unlink(self.local, key, dependent)

    def forget_zone(self, origin: dns.name.Name, source: ZoneSource) -> None:
        """Drop what every ALIAS owner of a zone file followed."""
        for owner in source.aliases:
            self.forget((origin, owner))

    def tell_resolver(self, queue_empty: bool) -> None:
        """Hand the upstream targets to the resolver: once the queue is
        empty, and while it is not as soon as new ones are found (at most
        five times a second), so that while thousands of zones load their
        shared targets are asked early, and zones built after the answers
        come get the addresses in their first version."""
        if self.resolver is None or not (queue_empty or self.new_targets):
            return
        now = time.monotonic()
        if queue_empty or now - self._targets_told >= 0.2:
            self.update_resolver()
            self.new_targets = False
            self._targets_told = now

    def update_resolver(self) -> None:
        """The resolver follows exactly the upstream targets now (told only
        if they changed since it was last told)."""
        if self.resolver is not None and self.targets_changed:
            self.resolver.set_targets(self.dependents)
            self.targets_changed = False

    # -- following ---------------------------------------------------------

    def reflatten(self, zone, owners: set[dns.name.Name]) -> dict[dns.name.Name, Flattened]:
        """Follow ``owners`` of ``zone`` (the authority's book-keeping) again;
        return those whose served records changed, updating the zone's
        ``served``, ``flattened`` and ``view_hash``."""
        updates = {}
        loops = []
        source = zone.source
        origin = source.origin
        for owner in owners:
            if owner not in source.aliases:
                continue  # gone with a reload
            self.forget((origin, owner))
            flattened = self.flatten(source, owner)
            served = _served(source, owner, flattened)
            previous = zone.served.get(owner)
            if previous == served and owner in zone.flattened:
                continue
            if previous is not None:
                zone.view_hash -= _owner_hash(owner, previous)
            zone.view_hash = (zone.view_hash + _owner_hash(owner, served)) % _HASH_MOD
            zone.served[owner] = served
            zone.flattened[owner] = flattened
            updates[owner] = flattened
            if flattened.loop:
                loops.append(owner.to_text())
        if loops:
            log.warn(
                "ALIAS loop in zone {zone}: {owners} serve no addresses",
                zone=origin.to_text(),
                owners=", ".join(sorted(loops)),
            )
        return updates

    def flatten(self, source: ZoneSource, owner: dns.name.Name) -> Flattened:
        alias = source.aliases[owner]
        parts = []
        loop = False
        for rdtype in ADDRESS_TYPES:
            followed = self.follow(alias.target, rdtype, {owner}, (source.origin, owner))
            if followed.kind == "loop":
                loop = True
                parts.append((rdtype, 0, None))
            elif followed.kind == "none":
                parts.append((rdtype, 0, None))
            elif followed.kind == "addresses":
                parts.append((rdtype, min(alias.ttl, followed.ttl), followed.rdatas))
        return Flattened(FlatRRsets(owner, _shared_parts(tuple(parts))) if parts else {}, loop=loop)

    def follow(
        self,
        target: dns.name.Name,
        rdtype: int,
        visiting: set[dns.name.Name],
        dependent: Dependent,
    ) -> _Followed:
        """Follow ``target`` to its addresses of type ``rdtype``.

        A target in a zone served here resolves exactly as a query for it
        would be answered (wildcards, CNAME and DNAME included, ALIAS
        followed in turn); one at or below a delegation, or outside every
        served zone, is resolved through the upstreams.
        """
        if target in visiting or len(visiting) > _MAX_DEPTH:
            return _Followed("loop")
        origin = self._origin_of(target)
        found = _DELEGATED
        if origin is not None:
            found = self._zones[origin].base.find(target, origin)
        if found[0] == "delegated":
            key = (target, rdtype)
            dependents = self.dependents.get(key)
            labels = _lowered(target)
            same = self._by_name.get(labels)
            if dependents is None:
                dependents = self.dependents[key] = set()
                self.new_targets = self.targets_changed = True
                if same is not None:
                    same.append(key)
                else:
                    self._by_name[labels] = [key]
            elif same is not None:  # the key kept there: one tuple per target, not per owner
                key = next((k for k in same if k == key), key)
            dependents.add(dependent)
            held = self.targets_of.get(dependent, _NO_KEYS)
            if key not in held:
                held = held | {key}
                self.targets_of[dependent] = self._key_sets.setdefault(held, held)
            state = self.resolver.state(target, rdtype) if self.resolver else None
            if state is not None and getattr(self.resolver, "require_validated", False) and self._signed(dependent[0]):
                state = state.secure
            if state is None or state.uses_fallback:
                return _FALLBACK
            if state.status == Status.NO_ADDRESSES:
                return _NONE
            return _Followed("addresses", _rdatas(rdtype, state.addresses), state.ttl)
        self._users.setdefault(origin, set()).add(dependent)
        self._used_by.setdefault(dependent, set()).add(origin)
        if len(visiting) == 1:  # the ALIAS's own target (not one a chain led to)
            self.local.setdefault((target, rdtype), set()).add(dependent)
            self._local_of.setdefault(dependent, set()).add((target, rdtype))
        kind, found = found
        if kind == "none":
            return _NONE
        if kind == "dname":
            new_target, ttl = found
            return _shorter(self.follow(new_target, rdtype, visiting | {target}, dependent), ttl)
        node = found
        alias = node.get(ALIAS_RDTYPE)
        if alias is not None:
            inner = self.follow(alias[0].target, rdtype, visiting | {target}, dependent)
            if inner.kind == "fallback":
                inner = _static(node, rdtype)
            return _shorter(inner, alias.ttl)
        cname = node.get(dns.rdatatype.CNAME)
        if cname is not None:
            return _shorter(self.follow(cname[0].target, rdtype, visiting | {target}, dependent), cname.ttl)
        return _static(node, rdtype)


def _static(node, rdtype: int) -> _Followed:
    """The addresses written in a zone file at a followed name."""
    rrset = node.get(rdtype)
    if rrset is None:
        return _NONE
    return _Followed("addresses", tuple(rrset), rrset.ttl)


def _shorter(followed: _Followed, ttl: int) -> _Followed:
    """Addresses found through a record of TTL ``ttl`` live no longer than it."""
    if followed.kind == "addresses":
        return _Followed("addresses", followed.rdatas, min(ttl, followed.ttl))
    return followed


def _lowered(name: dns.name.Name) -> tuple:
    """The name's labels in lower case (compared as dnspython compares names);
    kept by a CachedName (ALIAS targets are: one object per target)."""
    if isinstance(name, store.CachedName):
        return name._lowered()
    return tuple(map(bytes.lower, name.labels))


def _unlink(index: dict, key, item) -> None:
    """Remove ``item`` from the set ``index[key]``, and the key once empty."""
    members = index.get(key)
    if members is not None:
        members.discard(item)
        if not members:
            del index[key]


def _served(source: ZoneSource, owner: dns.name.Name, outcome: Flattened) -> str:
    """What an ALIAS owner serves, as text: equal views compare equal.

    A type left to the file's fallback counts as the fallback records, so
    "no addresses yet" and "no addresses" are the same view when the file
    has none; addresses compare as sorted text with their TTL, so a change
    of order is no change. Text, not a tuple: one object per owner that
    the cyclic garbage collector need not walk (its form is part of the
    view digest kept in the state directory: keep it).
    """

    rrsets = outcome.rrsets
    if isinstance(rrsets, FlatRRsets) and len(rrsets.parts) == len(ADDRESS_TYPES) \
            and all(t in rrsets for t in ADDRESS_TYPES):  # (the length first: one part per type)
        # Every type flattened: the text depends on the parts alone, which
        # the owners of one target share (_shared_parts): made once for them.
        parts = rrsets.parts
        made = _SERVED.get(id(parts))
        if made is not None and made[0] is parts and made[1] == outcome.loop:
            return made[2]
        text = _served_text(source, owner, outcome)
        if len(_SERVED) >= _PARTS_KEPT:
            _SERVED.clear()
        _SERVED[id(parts)] = (parts, outcome.loop, text)
        return text
    return _served_text(source, owner, outcome)


def _served_text(source: ZoneSource, owner: dns.name.Name, outcome: Flattened) -> str:
    rrsets = outcome.rrsets

    def one(rdtype):
        if rdtype in rrsets:
            if isinstance(rrsets, FlatRRsets):  # (its RRsets are made on first use: not here)
                raw = rrsets.raw(rdtype)
                return None if raw is None else (raw[0], _sorted_texts(raw[1]))
            rrset = rrsets[rdtype]
        else:
            rrset = source.rrsets.get((owner, rdtype))
        if rrset is None:
            return None
        return (rrset.ttl, tuple(sorted(_text(r) for r in rrset)))

    # Interned: owners of the same target serve the same text, kept once.
    return sys.intern(repr((outcome.loop, tuple(one(t) for t in ADDRESS_TYPES))))


def _text(rdata: dns.rdata.Rdata) -> str:
    """``rdata.to_text()``, made once for an rdata that thousands of owners
    share (a target's addresses: _rdatas), while it lives."""
    made = _TEXTS.get(id(rdata))
    if made is None or made[0] is not rdata:
        if len(_TEXTS) >= _TEXTS_KEPT:
            _TEXTS.clear()
        made = _TEXTS[id(rdata)] = (rdata, rdata.to_text())
    return made[1]


def _sorted_texts(rdatas: tuple) -> tuple[str, ...]:
    """The distinct texts of a target's addresses, sorted (as the RRset would
    hold them: equal rdatas once), made once per tuple that the target's
    owners share (made for each owner, the rdatas were hashed and written
    again ten thousand times at a warm start)."""
    made = _SORTED.get(id(rdatas))
    if made is None or made[0] is not rdatas:
        if len(_SORTED) >= _TEXTS_KEPT:
            _SORTED.clear()
        made = _SORTED[id(rdatas)] = (rdatas, tuple(sorted({_text(r) for r in rdatas})))
    return made[1]


#: id(rdatas) -> (that tuple, its sorted texts); id(rdata) -> (that rdata,
#: its text): each entry holds its object, so its id is not reused.
_SORTED: dict = {}
_TEXTS: dict = {}
_TEXTS_KEPT = 65536


def _owner_hash(owner: dns.name.Name, served: str) -> int:
    """One owner's share of the zone's view hash (they are summed)."""
    text = _lower_text(owner).encode() + b"|" + served.encode()
    return int.from_bytes(hashlib.sha256(text).digest(), "big")


#: Octets dnspython writes otherwise than as themselves in a name's text
#: (dns.name._escapify: these, space and control octets, and non-ASCII).
_ESCAPED = re.compile(rb'[^\x21-\x7e]|["().;\\@$]')


def _lower_text(name: dns.name.Name) -> str:
    """``name.to_text().lower()``, part of the view digest kept in the state
    directory: joined from the labels when none needs escaping (ALIAS
    owners' names do), a tenth of the cost of dnspython's label by label."""
    labels = name.labels
    joined = b".".join(labels)
    if len(labels) > 1 and labels[-1] == b"" and _ESCAPED.search(joined.replace(b".", b"")) is None \
            and joined.count(b".") == len(labels) - 1:
        return joined.decode("ascii").lower()
    return name.to_text().lower()
