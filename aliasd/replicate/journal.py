"""Differences between consecutive zone versions, kept for IXFR (RFC 1995).

A Journal holds one zone's Differences, oldest first, bounded by the octets
they take (``journal-max-usage``, as Knot bounds each zone's journal) and
optionally by their number (``journal-size``). ``since(serial)`` returns
the chain of differences that takes a secondary from ``serial`` to the
current version, or None when that serial is not in the journal (the
secondary then gets the whole zone).

A difference recorded in the state store is kept in memory as its serials,
size and record key only, and read back from the store when an IXFR needs
it: a history of thousands of updates costs little memory. The newest few
stay decoded, for the secondaries that are one or two versions behind
(what NOTIFY brings).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable, Iterable

import dns.name
import dns.rdatatype
import dns.rrset

from aliasd.base import store
from aliasd.base.config import DEFAULT_JOURNAL_MAX_USAGE
from aliasd.zones.zone import ZoneVersion
from aliasd.zones.zonefile import ALIAS_RDTYPE

_SKIPPED = (dns.rdatatype.SOA, ALIAS_RDTYPE)


@dataclasses.dataclass(frozen=True)
class Difference:
    """What changed from one served version to the next.

    The two SOAs are kept packed (aliasd.base.store), decoded when an IXFR needs
    them: journals of ten thousand zones would otherwise hold a dozen
    objects per difference for the cyclic garbage collector to walk. So are
    the records removed and added: each RRset a packed node of its own
    (``pack_rrset``), as the journal records them, decoded into RRsets
    (``removed``, ``added``) only by an IXFR; a difference per UPDATE was
    otherwise decoded into RRsets to be encoded again for its record.
    """

    old_soa_packed: bytes
    new_soa_packed: bytes
    removed_packed: tuple[bytes, ...]
    added_packed: tuple[bytes, ...]

    @property
    def removed(self) -> tuple[dns.rrset.RRset, ...]:
        return tuple(unpack_rrset(p) for p in self.removed_packed)

    @property
    def added(self) -> tuple[dns.rrset.RRset, ...]:
        return tuple(unpack_rrset(p) for p in self.added_packed)

    @property
    def old_soa(self) -> dns.rrset.RRset:
        return store.PackedNode(self.old_soa_packed)[dns.rdatatype.SOA]

    @property
    def new_soa(self) -> dns.rrset.RRset:
        return store.PackedNode(self.new_soa_packed)[dns.rdatatype.SOA]

    @property
    def old_serial(self) -> int:
        return int.from_bytes(self.old_soa_packed[-20:-16], "big")

    @property
    def new_serial(self) -> int:
        return int.from_bytes(self.new_soa_packed[-20:-16], "big")


def pack_rrset(rrset: dns.rrset.RRset) -> bytes:
    """An RRset as a packed node of its own (a Difference's, a journal record's)."""
    return store.pack(rrset.name.to_wire(), [(rrset.rdtype, rrset.ttl, [rd.to_wire() for rd in rrset])])


def unpack_rrset(packed: bytes) -> dns.rrset.RRset:
    node = store.PackedNode(packed)
    return node[next(iter(node))]


def _served_node(version: ZoneVersion, key: bytes):
    """The records at ``key`` as served (an NSEC3 owner's too), or {}."""
    node = version.node_at(key)
    if node is None and version.signed is not None and key in version.signed.records:
        node = store.PackedNode(version.signed.records[key])
    return node or {}


def _signed_changes(old, new) -> set[bytes]:
    """Owner keys whose DNSSEC records or signatures differ (compared packed)."""
    changed = set()
    for attribute in ("records", "signatures"):
        a = getattr(old, attribute) if old is not None else {}
        b = getattr(new, attribute) if new is not None else {}
        if a is b:
            continue
        changed.update(k for k, v in b.items() if a.get(k) != v)
        changed.update(k for k in a if k not in b)
    return changed


def _compare_signatures(old: ZoneVersion, new: ZoneVersion, key: bytes, removed: list, added: list) -> None:
    """The RRSIGs at ``key`` that went and came, compared packed per covered
    type: only those that differ are decoded (signatures are the bulk of a
    signed zone's change, and decoding every RRSIG at the apex of each of a
    thousand zones was most of re-signing them)."""
    a = old.signed.signatures.get(key) if old.signed is not None else None
    b = new.signed.signatures.get(key) if new.signed is not None else None
    if a == b:
        return
    before = _signature_sets(a)
    after = _signature_sets(b)
    owner = None
    for covered in sorted(before.keys() | after.keys()):
        x, y = before.get(covered), after.get(covered)
        if x == y:
            continue
        if owner is None:
            owner = store.owner_of(a if a is not None else b)
        same_ttl = x is not None and y is not None and x[0] == y[0]
        gone = [w for w in x[1] if not same_ttl or w not in y[1]] if x is not None else []
        fresh = [w for w in y[1] if not same_ttl or w not in x[1]] if y is not None else []
        if gone:
            removed.append(store.pack(owner, [(dns.rdatatype.RRSIG, x[0], sorted(gone))]))
        if fresh:
            added.append(store.pack(owner, [(dns.rdatatype.RRSIG, y[0], sorted(fresh))]))


def _signature_sets(packed: bytes | None) -> dict[int, tuple[int, frozenset]]:
    """Covered type -> (TTL, RRSIG rdata wires) of a packed signatures node."""
    if packed is None:
        return {}
    return {
        covered: (ttl, frozenset(store.rdata_wires(packed, start, end)))
        for covered, ttl, _, start, end in store.directory(packed)
    }


def _compare(before, after, rdtype: int, removed: list, added: list) -> None:
    """What of the RRset of ``rdtype`` at node ``before`` went and what of
    ``after``'s came (a TTL change: all of both), compared and packed in
    wire form (PackedNode.wires: nothing decoded), records alike by their
    canonical form as dnspython compares them. Whole RRsets are kept as
    they are: fewer objects per entry."""
    a = before.wires(rdtype) if rdtype in before else None
    b = after.wires(rdtype) if rdtype in after else None
    if a is not None and b is not None and a[0] == b[0]:
        canonical = store.CANONICAL.get(rdtype)
        if canonical is None:
            was, now = set(a[1]), set(b[1])
            gone = [w for w in a[1] if w not in now]
            fresh = [w for w in b[1] if w not in was]
        else:
            was, now = {canonical(w) for w in a[1]}, {canonical(w) for w in b[1]}
            gone = [w for w in a[1] if canonical(w) not in now]
            fresh = [w for w in b[1] if canonical(w) not in was]
    else:
        gone = a[1] if a is not None else ()
        fresh = b[1] if b is not None else ()
    if gone:
        removed.append(store.pack(store.owner_of(before.packed), [(rdtype, a[0], gone)]))
    if fresh:
        added.append(store.pack(store.owner_of(after.packed), [(rdtype, b[0], fresh)]))


def difference(
    old: ZoneVersion, new: ZoneVersion, names: Iterable[dns.name.Name] | None = None,
    keys: Iterable[bytes] | None = None,
) -> Difference:
    """The records removed and added between two versions of one zone.

    ``names`` (or their lookup ``keys``) limits the comparison to the owners
    known to have changed; otherwise, for versions of the same zone file only
    the ALIAS owners can differ, and for different files the whole view is
    compared. A record whose TTL changed is removed and added again.
    """
    if keys is None and names is not None:
        keys = [store.key_of(name) for name in names]
    elif keys is None and old.source is new.source:
        keys = [store.key_of(name) for name in old.source.aliases]
    elif keys is None:
        keys = dict.fromkeys(old.keys())
        keys.update(dict.fromkeys(new.keys()))
    if old.signed is not None or new.signed is not None:
        keys = dict.fromkeys(keys)
        keys.update(dict.fromkeys(_signed_changes(old.signed, new.signed)))
    removed: list[bytes] = []
    added: list[bytes] = []
    for key in keys:
        before = _served_node(old, key)
        after = _served_node(new, key)
        for rdtype in sorted(set(before) | set(after)):
            if rdtype in _SKIPPED:
                continue
            if before and after and before.same_as(after, rdtype):
                continue  # the same packed records (or override) in both: unchanged
            _compare(before, after, rdtype, removed, added)
        if old.signed is not None or new.signed is not None:
            _compare_signatures(old, new, key, removed, added)
    return Difference(old.soa_packed, new.soa_packed, tuple(removed), tuple(added))


#: Default bound of one zone's history: octets of its journal records.
DEFAULT_MAX_USAGE = DEFAULT_JOURNAL_MAX_USAGE


def estimated_size(diff: Difference) -> int:
    """About the octets of a difference's journal record (for journals
    kept in memory only, which have no record to measure)."""
    size = 64 + len(diff.old_soa_packed) + len(diff.new_soa_packed)
    for packed in diff.removed_packed + diff.added_packed:
        owner = store.owner_of(packed)
        labels = len(store.name_of(owner))
        (_, _, count, start, end), = store.directory(packed)
        size += labels * 8 + 12 + (end - start) + 4 * count  # (rdata lengths are 2 octets of each 8)
    return size


@dataclasses.dataclass(slots=True)
class _Entry:
    old_serial: int
    new_serial: int
    size: int  # octets of its journal record
    key: bytes | None  # its record in the state store (None: in memory only)
    diff: Difference | None  # decoded (None: read from the store when needed)


class Journal:
    """The differences of one zone, oldest first, within ``max_usage``
    octets and, when ``depth`` is set, that many differences (the newest
    is always kept). ``load`` reads a recorded difference back from the
    state store by its key."""

    #: Differences kept decoded in memory (the newest), when they are recorded.
    keep_decoded = 3

    def __init__(self, max_usage: int = DEFAULT_MAX_USAGE, depth: int | None = None,
                 load: Callable[[bytes], Difference] | None = None):
        self.max_usage = max_usage
        self.depth = depth
        self.load = load
        self._entries: collections.deque[_Entry] = collections.deque()
        self.usage = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def oldest_serial(self) -> int | None:
        """The oldest serial an IXFR can start from (None: no history)."""
        return self._entries[0].old_serial if self._entries else None

    def add(self, diff: Difference, size: int | None = None, key: bytes | None = None) -> list[bytes]:
        """Keep ``diff`` (recorded as ``key``, ``size`` octets); returns the
        keys of the recorded differences it pushed out."""
        dropped = []
        if self._entries and self._entries[-1].new_serial != diff.old_serial:
            dropped = self.clear()  # a gap: older entries no longer chain
        self._append(_Entry(diff.old_serial, diff.new_serial,
                            size if size is not None else estimated_size(diff), key, diff))
        return dropped + self.trim()

    def add_recorded(self, old_serial: int, new_serial: int, size: int, key: bytes) -> list[bytes]:
        """Keep a difference that is in the store, without decoding it
        (start-up); returns the keys of those a gap pushed out."""
        dropped = []
        if self._entries and self._entries[-1].new_serial != old_serial:
            dropped = self.clear()
        self._append(_Entry(old_serial, new_serial, size, key, None))
        return dropped

    def _append(self, entry: _Entry) -> None:
        self._entries.append(entry)
        self.usage += entry.size
        if len(self._entries) > self.keep_decoded:
            older = self._entries[-self.keep_decoded - 1]
            if older.key is not None and self.load is not None:
                older.diff = None

    def trim(self) -> list[bytes]:
        """Drop the oldest differences past the bounds; their record keys."""
        dropped = []
        while len(self._entries) > 1 and (
            self.usage > self.max_usage or (self.depth is not None and len(self._entries) > self.depth)
        ):
            key = self.drop_oldest()
            if key is not None:
                dropped.append(key)
        return dropped

    def drop_oldest(self) -> bytes | None:
        """Forget the oldest difference; its record key (None: none, or in memory only)."""
        if not self._entries:
            return None
        entry = self._entries.popleft()
        self.usage -= entry.size
        return entry.key

    def clear(self) -> list[bytes]:
        keys = [e.key for e in self._entries if e.key is not None]
        self._entries.clear()
        self.usage = 0
        return keys

    def _difference(self, entry: _Entry) -> Difference:
        return entry.diff if entry.diff is not None else self.load(entry.key)

    def differences(self) -> list[Difference]:
        """Every difference kept, oldest first."""
        return [self._difference(e) for e in self._entries]

    def since(self, serial: int) -> list[Difference] | None:
        """Differences from ``serial`` to the newest version, or None."""
        chain = self.chain(serial)
        return None if chain is None else [self._difference(e) for e in chain]

    def chain(self, serial: int) -> list[_Entry] | None:
        """The entries from ``serial`` to the newest version (not decoded:
        ``difference`` reads each when it is needed), or None."""
        for i, entry in enumerate(self._entries):
            if entry.old_serial == serial:
                return list(self._entries)[i:]
        return None

    def difference(self, entry: _Entry) -> Difference:
        """An entry's difference, read back from the store if need be."""
        return self._difference(entry)
