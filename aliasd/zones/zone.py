"""Immutable zone versions and the authoritative answer algorithm.

A ZoneVersion is one complete, prepared picture of a zone as served: the
records of its file with each ALIAS owner's A/AAAA replaced by the flattened
addresses. It is never edited; a change (a re-resolution, a reload) builds a
new version that replaces the old one in one assignment, so a query (or,
later, a transfer) that holds a version sees one consistent zone.

The answer algorithm follows RFC 1034 4.3.2 with the negative answers of
RFC 2308 and the wildcards of RFC 4592. This module does not know about wire
formats, sockets or upstream resolvers.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator, Mapping

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rrset

from aliasd.base import store
from aliasd.base.store import PackedNode
from aliasd.zones.zonefile import ALIAS_RDTYPE, ZoneSource

A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
ADDRESS_TYPES = (A, AAAA)
_MAX_CNAME_CHAIN = 16

Node = Mapping[int, dns.rrset.RRset]
_NOTHING: frozenset = frozenset()


@dataclasses.dataclass(frozen=True)
class Answer:
    """What to answer for one question, before it is put on the wire."""

    rcode: int
    authoritative: bool
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    additional: tuple[dns.rrset.RRset, ...] = ()
    # The chain went on into another served zone: the answer depends on
    # that zone's version too (the fast path does not keep it).
    crossed: bool = False


def _negative_soa(soa: dns.rrset.RRset) -> dns.rrset.RRset:
    """The SOA for negative answers: TTL = min(SOA TTL, MINIMUM) (RFC 2308 3).

    A copy keeps the rdata's stored hash: hashing an SOA renders both of
    its names, which at ten thousand zones per change adds up."""
    negative = soa.copy()
    negative.ttl = min(soa.ttl, soa[0].minimum)
    return negative


def _joined(authority: tuple, proofs: list) -> tuple:
    """``authority`` and then the ``proofs`` not in it yet, each RRset once:
    two steps of a chain may need the same NSEC record."""
    joined = list(authority)
    for rrset in proofs:
        if rrset not in joined:
            joined.append(rrset)
    return tuple(joined)


def parents_below(key: bytes, origin_key: bytes) -> list[bytes]:
    """The keys of the names strictly between ``key`` and the zone's apex."""
    out = []
    parents = store.suffixes(key)
    next(parents)
    for parent in parents:
        if len(parent) <= len(origin_key):
            break
        out.append(parent)
    return out


#: The NS and DNAME type codes as a packed owner's RRset headers hold them.
_NS_CODE = dns.rdatatype.NS.to_bytes(2, "big")
_DNAME_CODE = dns.rdatatype.DNAME.to_bytes(2, "big")


@dataclasses.dataclass(frozen=True, slots=True, weakref_slot=True)
class ZoneBase:
    """What every version built from one zone file shares.

    Every existing name's lookup key (empty non-terminals included,
    RFC 4592 2.2.2) and the delegation points. Flattening only replaces
    A/AAAA at ALIAS owners, which exist in the file already, so these never
    change between versions: they are computed once per load.
    """

    origin_key: bytes
    records: Mapping[bytes, bytes]  # the file's (aliasd.zones.zonefile.ZoneSource)
    # The names that exist without records of their own (RFC 4592 2.2.2).
    empty_non_terminals: frozenset
    cuts: frozenset  # delegation points (names below the apex with NS)
    has_wildcards: bool = False
    dnames: frozenset = frozenset()  # owners of DNAME records (RFC 6672)
    # Made on first use (slots, not a dict per zone): names with owners
    # below them (``_below``) and the keys of cuts and DNAMEs (``redirected``).
    _below_counts: dict | None = dataclasses.field(default=None, init=False, repr=False, compare=False)
    _redirect_keys: frozenset | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def exists(self, key: bytes) -> bool:
        """Whether the name with lookup ``key`` exists (also read by the
        negative fast path, aliasd.base.fastpath.missing_name)."""
        return key in self.records or key in self.empty_non_terminals

    @property
    def name_count(self) -> int:
        return len(self.records) + len(self.empty_non_terminals)

    @classmethod
    def of(cls, source: ZoneSource) -> "ZoneBase":
        origin_key = source.key
        records = source.records
        empty: set[bytes] = set()
        cuts = []
        wildcards = False
        dnames = []
        for key, packed in records.items():
            wildcards = wildcards or key.startswith(b"\x01*")
            # Only NS and DNAME matter here: an owner whose octets hold
            # neither type code has neither (most owners: their RRsets are
            # not walked; 11 -> 8 us per zone of many_zones.py's).
            types = store.types_of(packed) if _NS_CODE in packed or _DNAME_CODE in packed else ()
            if dns.rdatatype.DNAME in types:
                dnames.append(store.name_of(store.owner_of(packed)))
            if key != origin_key:
                i = key[0] + 1  # the parents' keys, up to one that exists
                suffix = key[i:]
                while suffix not in records and suffix not in empty and suffix != b"\0":
                    empty.add(suffix)
                    i += key[i] + 1
                    suffix = key[i:]
                if dns.rdatatype.NS in types:
                    cuts.append(store.name_of(store.owner_of(packed)))
        empty.difference_update(records)  # an owner written after a name below it
        return cls(
            origin_key,
            records,
            frozenset(empty) if empty else _NOTHING,
            frozenset(cuts) if cuts else _NOTHING,
            wildcards,
            frozenset(dnames) if dnames else _NOTHING,
        )

    def updated(self, records: Mapping[bytes, bytes], touched, previous: Mapping | None = None) -> "ZoneBase":
        """This base for ``records``, which differ from its own only at the
        owner keys ``touched`` (a dynamic update): recomputed for those
        owners and their parents alone, not the whole zone.

        Whether a name without records still exists depends on the owners
        below it: ``below`` counts them per parent (made on the first
        update of a zone, then carried from base to base). ``previous``:
        the touched owners' nodes before, when ``records`` is this base's
        own dict changed in place (aliasd.update.rfc2136).
        """
        origin_key = self.origin_key
        below = dict(self._below(previous))
        empty = set(self.empty_non_terminals)
        cuts, dnames = set(self.cuts), set(self.dnames)
        wildcards = self.has_wildcards
        gone_wildcard = False
        for key in touched:
            packed = records.get(key)
            was = previous[key] is not None if previous is not None else key in self.records
            name = None  # made only where a cut or a DNAME may come or go (most updates: none)
            if cuts or dnames:
                name = store.name_of(store.owner_of(packed) if packed is not None else key)
                cuts.discard(name)
                dnames.discard(name)
            if packed is not None:
                types = store.types_of(packed)
                if dns.rdatatype.NS in types and key != origin_key:
                    cuts.add(name or store.name_of(store.owner_of(packed)))
                if dns.rdatatype.DNAME in types:
                    dnames.add(name or store.name_of(store.owner_of(packed)))
                wildcards = wildcards or key.startswith(b"\x01*")
            else:
                gone_wildcard = gone_wildcard or key.startswith(b"\x01*")
            if was == (packed is not None) or key == origin_key:
                continue  # the owner stays (or stays away): no name appears or goes
            step = 1 if packed is not None else -1
            for parent in parents_below(key, origin_key):
                count = below.get(parent, 0) + step
                if count:
                    below[parent] = count
                else:
                    below.pop(parent, None)
            for name_key in (key, *parents_below(key, origin_key)):
                if name_key not in records and below.get(name_key, 0) > 0:
                    empty.add(name_key)
                else:
                    empty.discard(name_key)
        if gone_wildcard:
            wildcards = any(k.startswith(b"\x01*") for k in records)
        base = ZoneBase(
            origin_key, records,
            frozenset(empty) if empty else _NOTHING,
            frozenset(cuts) if cuts else _NOTHING,
            wildcards,
            frozenset(dnames) if dnames else _NOTHING,
        )
        object.__setattr__(base, "_below_counts", below)
        return base

    def _below(self, previous: Mapping | None = None) -> dict:
        counts = self._below_counts
        if counts is None:
            counts = {}
            keys = self.records
            if previous is not None:  # the records were changed in place: counted as they were
                keys = set(keys)
                for key, packed in previous.items():
                    if packed is None:
                        keys.discard(key)
                    else:
                        keys.add(key)
            for key in keys:
                if key != self.origin_key:
                    for parent in parents_below(key, self.origin_key):
                        counts[parent] = counts.get(parent, 0) + 1
            object.__setattr__(self, "_below_counts", counts)
        return counts

    def redirected(self, key: bytes) -> bool:
        """Is the name with lookup ``key``, or a name above it in the zone, a
        delegation point or a DNAME owner (aliasd.answer.directanswer leaves such
        names to the full path)?"""
        keys = self._redirect_keys
        if keys is None:
            keys = frozenset(store.key_of(name) for name in self.cuts | self.dnames)
            object.__setattr__(self, "_redirect_keys", keys)
        if keys:
            for suffix in store.suffixes(key):
                if suffix == self.origin_key:
                    return False
                if suffix in keys:
                    return True
        return False

    def cut_above(self, name: dns.name.Name, origin: dns.name.Name, qtype: int = 0) -> dns.name.Name | None:
        """The highest delegation at or above ``name``, if any.

        A DS query at the cut itself belongs to this (the parent) zone.
        """
        if not self.cuts:
            return None
        found = None
        candidate = name
        while len(candidate) > len(origin):
            if candidate in self.cuts and not (candidate == name and qtype == dns.rdatatype.DS):
                found = candidate
            candidate = candidate.parent()
        return found

    def dname_above(self, name: dns.name.Name, origin: dns.name.Name) -> dns.name.Name | None:
        """The highest DNAME owner strictly above ``name`` (RFC 6672 3.2), if any."""
        if not self.dnames:
            return None
        found = None
        candidate = name
        while len(candidate) > len(origin):
            candidate = candidate.parent()
            if candidate in self.dnames:
                found = candidate
        return found

    def has_names_below(self, key: bytes) -> bool:
        return self._below().get(key, 0) > 0

    def closest_encloser_wildcard(self, key: bytes, vacant: frozenset = frozenset()) -> bytes | None:
        """The key of ``*.<closest encloser>`` of a name that does not exist
        (RFC 4592), or None when there is no such wildcard. ``vacant``:
        names that exist in the file but not in the served view
        (ZoneVersion.vacant)."""
        parents = store.suffixes(key)
        next(parents)
        for encloser in parents:
            if self.exists(encloser) and encloser not in vacant:
                wildcard = b"\x01*" + encloser
                return wildcard if wildcard in self.records and wildcard not in vacant else None
            if encloser == self.origin_key or encloser == b"\0":
                return None
        return None

    def find(self, name: dns.name.Name, origin: dns.name.Name) -> tuple[str, object]:
        """Where a query for ``name`` lands in the file's own records (what
        following an ALIAS into this zone needs, before any flattening):

        - ``("delegated", cut)``: at or below a delegation, not ours;
        - ``("dname", (target, ttl))``: rewritten by a DNAME above it;
        - ``("node", node)``: its records, or a wildcard's, owned by ``name``;
        - ``("none", None)``: it does not exist or has no records.
        """
        cut = self.cut_above(name, origin)
        dname = self.dname_above(name, origin)
        if cut is not None and (dname is None or len(cut) < len(dname)):
            return "delegated", cut
        if dname is not None:
            rrset = PackedNode(self.records[store.key_of(dname)], dname)[dns.rdatatype.DNAME]
            try:
                return "dname", (name.relativize(dname).concatenate(rrset[0].target), rrset.ttl)
            except dns.name.NameTooLong:
                return "none", None
        key = store.key_of(name)
        packed = self.records.get(key)
        if packed is None:
            if key in self.empty_non_terminals:
                return "none", None
            wildcard = self.closest_encloser_wildcard(key)
            if wildcard is None:
                return "none", None
            packed = self.records[wildcard]
        return "node", PackedNode(packed, name)


class FlatRRsets(Mapping):
    """A flattened ALIAS owner's A/AAAA as Flattened.rrsets maps them, each
    RRset made on first use.

    Why: ten thousand apex ALIAS owners over a few targets share their
    rdatas (aliasd.resolve.dependencies), but an RRset per owner and type
    (with its set of rdatas) cost about 370 bytes, most of a zone's
    flattened view, for zones mostly asked much later or never. ``parts``:
    (type, TTL, rdatas) per type, rdatas None for a type with no
    addresses (it maps to None).
    """

    __slots__ = ("owner", "parts", "_made")

    def __init__(self, owner: dns.name.Name, parts: tuple):
        self.owner = owner
        self.parts = parts
        self._made: dict | None = None

    def __getitem__(self, rdtype: int) -> dns.rrset.RRset | None:
        for t, ttl, rdatas in self.parts:
            if t == rdtype:
                if rdatas is None:
                    return None
                made = self._made
                if made is None:
                    made = self._made = {}
                rrset = made.get(rdtype)
                if rrset is None:  # (kept: compared by identity, as PackedNode.same_as does)
                    rrset = made[rdtype] = dns.rrset.from_rdata_list(self.owner, ttl, rdatas)
                return rrset
        raise KeyError(rdtype)

    def __contains__(self, rdtype) -> bool:
        for part in self.parts:  # (a loop, not any() over a generator: asked per owner at every build)
            if part[0] == rdtype:
                return True
        return False

    def __iter__(self) -> Iterator[int]:
        return (t for t, _, _ in self.parts)

    def __len__(self) -> int:
        return len(self.parts)

    def raw(self, rdtype: int) -> tuple[int, tuple] | None:
        """(TTL, rdatas) of one type without making its RRset (None: no addresses)."""
        for t, ttl, rdatas in self.parts:
            if t == rdtype:
                return None if rdatas is None else (ttl, rdatas)
        raise KeyError(rdtype)

    def has_addresses(self) -> bool:
        return any(rdatas is not None for _, _, rdatas in self.parts)

    def __reduce__(self):
        return FlatRRsets, (self.owner, self.parts)


@dataclasses.dataclass(frozen=True, slots=True)
class Flattened:
    """The outcome of following one ALIAS, per address type.

    ``rrsets`` maps A/AAAA to the RRset to serve at the owner; a type that
    maps to None has no addresses (NODATA); a type that is absent keeps the
    records written beside the ALIAS in the file (the fallback).
    ``loop`` marks an owner whose ALIAS leads back to itself: it serves no
    addresses (NODATA), on the primary exactly as on its secondaries,
    which only see the transfer view. Slots: one per ALIAS owner.
    """

    rrsets: Mapping[int, dns.rrset.RRset | None] = dataclasses.field(
        default_factory=dict
    )
    loop: bool = False


class ZoneVersion:
    """One immutable version of a zone: prepared records and a serial.

    The file's packed records are shared by every version of that file;
    a version adds only its own SOA and the flattened A/AAAA of its ALIAS
    owners (``overlay``), so a new version costs what changed, not the zone.
    What others keep about a version lives with them: whether it is still
    served is the registry's ``zones_by_wire`` (aliasd.zones.registry), its
    transfer renderings are aliasd.replicate.transfer's.

    Slots, with what is made on first use in slots of its own: ten thousand
    versions, and a dict each grew to 380 bytes once its SOA was asked.
    """

    __slots__ = ("source", "origin", "serial", "_records", "_overlay", "loop_keys", "base", "signed",
                 "_soa", "_negative_soa", "_negative_soa_wire", "_vacant", "__weakref__")
    #: What a worker process gets (aliasd.listen.frames): not the file's
    #: records, which come with its source, nor what is made on first use.
    _PICKLED = ("source", "origin", "serial", "_overlay", "loop_keys", "base", "signed")

    def __init__(
        self,
        source: ZoneSource,
        base: ZoneBase,
        overlay: dict[bytes, Mapping[int, dns.rrset.RRset | None]],
        loop_keys: Iterable[bytes] = (),
        serial: int | None = None,
    ):
        """Takes ownership of ``overlay`` (a fresh dict nobody else changes)."""
        self.source = source
        self.origin = source.origin
        self.serial = serial if serial is not None else source.serial
        self._records = source.records
        self._overlay = overlay
        self.loop_keys = frozenset(loop_keys) if loop_keys else _NOTHING  # ALIAS owners in a loop (aliasd-check reports them)
        self.base = base
        # The DNSSEC records of a signed zone (aliasd.dnssec.signer.Signed), or None.
        self.signed = None
        self._soa = self._negative_soa = self._negative_soa_wire = self._vacant = None

    def __getstate__(self) -> dict:
        """Pickled for a worker process (aliasd.listen.frames) without the
        file's records, which come with its source."""
        return {name: getattr(self, name) for name in self._PICKLED}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self._records = self.source.records
        self._soa = self._negative_soa = self._negative_soa_wire = self._vacant = None

    def with_signatures(self, signed) -> "ZoneVersion":
        """This version, signed: the same records plus ``signed``'s."""
        version = ZoneVersion(self.source, self.base, self._overlay, self.loop_keys, self.serial)
        version.signed = signed
        version._vacant = self._vacant  # the same records: the same names serve nothing
        return version

    # Decoded on first use: ten thousand versions are built at start, and
    # most are first asked for their SOA much later, or never.
    @property
    def soa(self) -> dns.rrset.RRset:
        soa = self._soa
        if soa is None:
            soa = self._soa = self.source.soa_with(self.serial)
        return soa

    @property
    def overlay(self) -> Mapping[bytes, Mapping[int, dns.rrset.RRset | None]]:
        """The flattened A/AAAA per ALIAS owner key (None: no addresses),
        over the file's records (read by aliasd.replicate.axfr)."""
        return self._overlay

    @property
    def soa_packed(self) -> bytes:
        """The apex SOA with this version's serial, packed (aliasd.base.store)."""
        ttl, wire = self.source.soa_wire
        wire = store.with_serial(wire, self.serial)
        return store.pack(store.owner_of(self._records[self.base.origin_key]), [(dns.rdatatype.SOA, ttl, [wire])])

    @property
    def negative_soa(self) -> dns.rrset.RRset:
        soa = self._negative_soa
        if soa is None:
            soa = self._negative_soa = _negative_soa(self.soa)
        return soa

    @property
    def negative_soa_wire(self) -> tuple[int, bytes]:
        """(TTL, rdata) of ``negative_soa``, without decoding it (aliasd.answer.directanswer)."""
        found = self._negative_soa_wire
        if found is None:
            ttl, wire = self.source.soa_wire
            minimum = int.from_bytes(wire[-4:], "big")
            found = self._negative_soa_wire = min(ttl, minimum), store.with_serial(wire, self.serial)
        return found

    @property
    def name_count(self) -> int:
        """How many names exist in the zone (empty non-terminals included)."""
        return self.base.name_count

    @classmethod
    def build(
        cls,
        source: ZoneSource,
        flattened: Mapping[dns.name.Name, Flattened],
        base: ZoneBase | None = None,
        serial: int | None = None,
        previous: "ZoneVersion | None" = None,
    ) -> "ZoneVersion":
        """Make a version from a zone file and ALIAS outcomes.

        ``serial`` replaces the file's SOA serial (see aliasd.base.state). With
        ``previous`` (a version of the same file), only the owners in
        ``flattened`` change and the rest of its overlay is kept.
        """
        base = base if base is not None else ZoneBase.of(source)
        overlay = dict(previous._overlay) if previous is not None else {}
        loops = set(previous.loop_keys) if previous is not None else set()
        keys = []
        for owner, outcome in flattened.items():
            key = store.key_of(owner)
            keys.append(key)
            loops.discard(key)
            if outcome.loop:
                loops.add(key)
            if outcome.rrsets:
                overlay[key] = outcome.rrsets
            else:
                overlay.pop(key, None)  # the file's records, fallback included
        version = cls(source, base, overlay, loops, serial)
        if previous is not None and previous.source is source and previous.base is base \
                and previous._vacant is not None:
            # The same names serve nothing as before: ``vacant`` is kept, not
            # computed again over every ALIAS owner (on the reactor).
            before = previous._vacant
            if all(version._serves_nothing(key) == (key in before) for key in keys):
                version._vacant = before
        return version

    @property
    def vacant(self) -> frozenset:
        """Names of the file that do not exist in the served view: ALIAS
        owners serving nothing (no addresses and nothing written beside the
        ALIAS), and the empty non-terminals that only they were below.

        The view the secondaries get has no record there, so for them the
        name does not exist; here it does not either (NXDOMAIN, no place in
        the NSEC or NSEC3 chain), or the two would answer differently and
        a signed zone's chain would hold a name without records.
        """
        found = self._vacant
        if found is None:
            found = self._vacant = self._find_vacant()
        return found

    def _find_vacant(self) -> frozenset:
        base = self.base
        empty = [key for key in map(store.key_of, self.source.aliases) if self._serves_nothing(key)]
        if not empty:
            return _NOTHING
        # A name is vacant when every owner below it (if any) is vacant too.
        vacant_below: dict[bytes, int] = {}
        for key in empty:
            for parent in parents_below(key, base.origin_key):
                vacant_below[parent] = vacant_below.get(parent, 0) + 1
        below = base._below() if vacant_below else {}
        vacant = {key for key in empty if below.get(key, 0) == vacant_below.get(key, 0)}
        for parent, count in vacant_below.items():
            if below.get(parent, 0) == count and (parent in base.empty_non_terminals or parent in vacant):
                vacant.add(parent)
        return frozenset(vacant)

    def _serves_nothing(self, key: bytes) -> bool:
        """Is this an ALIAS owner (not the apex) with no record as served?"""
        packed = self._records.get(key)
        if packed is None or key == self.base.origin_key:
            return False
        overrides = self._overlay.get(key) or {}
        if overrides.has_addresses() if isinstance(overrides, FlatRRsets) else \
                any(rrset is not None for rrset in overrides.values()):
            return False
        return not any(t != ALIAS_RDTYPE and t not in overrides for t in store.types_of(packed))

    def exists(self, key: bytes) -> bool:
        """Whether the name exists in the served view (``vacant``)."""
        return self.base.exists(key) and key not in self.vacant

    def node_at(self, key: bytes) -> PackedNode | None:
        """The records at the name with lookup ``key``, as served, or None."""
        packed = self._records.get(key)
        if packed is None:
            return None
        overrides = self._overlay.get(key)
        signed = self.signed
        if signed is not None:
            extra = signed.records.get(key)  # NSEC, the apex DNSKEY, ...
            if extra is not None:  # its RRsets appended, packed (the signer's types win)
                packed += extra[1 + extra[0]:]
        if key == self.base.origin_key:
            return PackedNode(packed, None, overrides, self.serial)
        return PackedNode(packed, None, overrides)

    def node(self, name: dns.name.Name) -> Node | None:
        """The records at ``name`` as served, or None."""
        return self.node_at(store.key_of(name))

    def keys(self) -> Iterable[bytes]:
        """The lookup key of every owner."""
        return self._records.keys()

    def names(self) -> Iterator[dns.name.Name]:
        for packed in self._records.values():
            yield store.name_of(store.owner_of(packed))

    def transfer_rrsets(self) -> Iterator[dns.rrset.RRset]:
        """The transfer view, SOA first: every RRset but the ALIAS rules.

        ALIAS owners carry the A/AAAA they were flattened to, so secondaries
        copy addresses, never a record type they cannot follow. A signed
        zone adds its DNSSEC records and signatures.
        """
        yield self.soa
        signed = self.signed
        for key in self._records:
            node = self.node_at(key)
            for rdtype in node:
                if rdtype != dns.rdatatype.SOA and rdtype != ALIAS_RDTYPE:
                    yield node[rdtype]
            if signed is not None:
                yield from self.signatures_of(key)
        if signed is not None:
            for key, packed in signed.records.items():
                if key not in self._records:  # NSEC3 owners
                    node = PackedNode(packed)
                    for rdtype in node:
                        yield node[rdtype]
                    yield from self.signatures_of(key)

    def signatures_of(self, key: bytes) -> Iterator[dns.rrset.RRset]:
        """The RRSIG RRsets at the owner with lookup ``key`` (signed zones)."""
        packed = self.signed.signatures.get(key) if self.signed is not None else None
        if not packed:
            return
        owner = store.name_of(store.owner_of(packed))
        for rdtype, ttl, _, start, end in store.directory(packed):
            yield store.decode_rrset(owner, dns.rdatatype.RRSIG, ttl, store.rdata_wires(packed, start, end), rdtype)

    # -- the answer algorithm -------------------------------------------

    def lookup(self, qname: dns.name.Name, qtype: int, zone_for=None, dnssec: bool = False) -> Answer:
        """Answer ``qname``/``qtype`` authoritatively from this version.

        ``zone_for`` (a name -> the served version it falls in, or None)
        lets a CNAME or DNAME chain go on into another zone served here:
        RFC 1034 4.3.2 step 3a goes back to step 1, which picks the zone.
        Without it the chain stops where it leaves this zone. ``dnssec``
        (the query's DO bit) adds, in signed zones, the RRSIGs and the
        NSEC or NSEC3 proofs of RFC 4035 3.1 and RFC 5155 7.2.
        """
        answers: list[dns.rrset.RRset] = []
        # For each CNAME a wildcard answered on the way, the proof that no
        # closer name exists: a validator needs it for every such step,
        # whatever the chain ends in (RFC 4035 3.1.3.3, RFC 5155 7.2.6).
        proofs: list[dns.rrset.RRset] = []
        seen: set[dns.name.Name] = set()
        name = qname
        version = self
        while True:
            answer = version._step(name, qtype, answers, dnssec and version.signed is not None, proofs)
            if answer is not None:
                if proofs:
                    answer = dataclasses.replace(answer, authority=_joined(answer.authority, proofs))
                if version is not self:
                    answer = dataclasses.replace(answer, crossed=True)
                return answer
            seen.add(name)
            name = next(r for r in reversed(answers) if r.rdtype == dns.rdatatype.CNAME)[0].target
            if name in seen or len(seen) >= _MAX_CNAME_CHAIN:
                return Answer(dns.rcode.NOERROR, True, tuple(answers), _joined((), proofs),
                              crossed=version is not self)
            if zone_for is not None:
                following = zone_for(name)
            else:
                following = version if name.is_subdomain(version.origin) else None
            if following is None:  # the chain leaves what we serve
                return Answer(dns.rcode.NOERROR, True, tuple(answers), _joined((), proofs),
                              crossed=version is not self)
            version = following

    def _step(self, name: dns.name.Name, qtype: int, answers: list, dnssec: bool, proofs: list) -> Answer | None:
        """One step of RFC 1034 4.3.2 in this zone: the final answer, or
        None with a CNAME (written or synthesised from a DNAME) appended to
        ``answers`` whose target the chain goes on with. ``dnssec``: this
        zone is signed and the query has DO; a CNAME a wildcard answers
        then appends its proof to ``proofs`` (the final answer has its own
        authority section)."""
        base = self.base
        cut = base.cut_above(name, self.origin, qtype)
        dname = base.dname_above(name, self.origin)
        if cut is not None and (dname is None or len(cut) < len(dname)):
            return self._referral(cut, answers, dnssec)
        if dname is not None:
            return self._synthesise(name, dname, answers, dnssec)
        key = store.key_of(name)
        vacant = self.vacant
        node = self.node_at(key) if key not in vacant else None
        wildcard = None  # the key of the wildcard that answers, if one does
        if node is None:
            if key in base.empty_non_terminals and key not in vacant:
                return self._nodata(answers, self._proof(key, "ent") if dnssec else (), dnssec)
            wildcard = base.closest_encloser_wildcard(key, vacant)
            if wildcard is None:
                return Answer(dns.rcode.NXDOMAIN, True, tuple(answers),
                              self._negative(dnssec) + (self._proof(key, "nxdomain") if dnssec else ()))
            node = self._expand(name, wildcard)
        signing_key = wildcard if wildcard is not None else key
        # A wildcard's answer proves that no closer name exists (RFC 4035 3.1.3.3).
        closer = self._proof(key, "wildcard") if dnssec and wildcard is not None else ()
        if qtype == dns.rdatatype.ANY:
            for t, rrset in node.items():
                if t != ALIAS_RDTYPE:
                    self._add(answers, rrset, signing_key, dnssec)
            return Answer(dns.rcode.NOERROR, True, tuple(answers), closer)
        # ALIAS itself is never answered: secondaries do not have it either.
        rrset = node.get(qtype) if qtype != ALIAS_RDTYPE else None
        if rrset is not None:
            self._add(answers, rrset, signing_key, dnssec)
            return Answer(dns.rcode.NOERROR, True, tuple(answers), closer)
        cname = node.get(dns.rdatatype.CNAME)
        if cname is None or qtype == dns.rdatatype.CNAME:
            proof = ()
            if dnssec:  # the name (or the wildcard) exists without this type
                proof = self._proof(key, "wildcard-nodata", wildcard) if wildcard is not None else self.signed.matching(key)
            return self._nodata(answers, tuple(proof), dnssec)
        self._add(answers, cname, signing_key, dnssec)
        proofs.extend(closer)
        return None

    def _add(self, answers: list, rrset: dns.rrset.RRset, key: bytes, dnssec: bool) -> None:
        """Append ``rrset`` and, when ``dnssec``, its signature (the one
        made at ``key``: a wildcard's, owned by the name it answers)."""
        answers.append(rrset)
        if dnssec:
            sig = self.signed.signatures_at(key, rrset.name, rrset.rdtype, rrset.ttl)
            if sig is not None:
                answers.append(sig)

    def _negative(self, dnssec: bool) -> tuple:
        """The SOA of a negative answer (RFC 2308 3), signed when ``dnssec``."""
        soa = self.negative_soa
        if not dnssec:
            return (soa,)
        sig = self.signed.signatures_at(self.base.origin_key, soa.name, dns.rdatatype.SOA, soa.ttl)
        return (soa, sig) if sig is not None else (soa,)

    def _proof(self, key: bytes, kind: str, wildcard: bytes | None = None) -> tuple:
        """The NSEC or NSEC3 records that prove a negative (or wildcard)
        answer for the name ``key`` (RFC 4035 3.1.3, RFC 5155 7.2)."""
        denial_at = self.signed._denial_at
        return tuple(rrset for owner in self.proof_owners(key, kind, wildcard) for rrset in denial_at(owner))

    def proof_owners(self, key: bytes, kind: str, wildcard: bytes | None = None) -> list[bytes]:
        """The owner keys of the denial records ``_proof`` gives, each once,
        in order (aliasd.answer.directanswer writes them without dnspython)."""
        signed = self.signed
        base = self.base
        # The closest encloser: the longest existing parent of the name.
        suffixes = list(store.suffixes(key))
        encloser_at = next(
            i for i, k in enumerate(suffixes) if self.exists(k) or k == base.origin_key or k == b"\0"
        )
        encloser = suffixes[encloser_at]
        next_closer = suffixes[encloser_at - 1] if encloser_at > 0 else key
        star = b"\x01*" + encloser
        matching, covering = signed.matching_owner, signed.covering_owner
        if signed.nsec3:
            if kind == "ent":
                owners = [matching(key)]
            elif kind == "nxdomain":
                owners = [matching(encloser), covering(next_closer), covering(star)]
            elif kind == "wildcard":
                owners = [covering(next_closer)]
            else:  # wildcard-nodata
                owners = [matching(encloser), covering(next_closer), matching(wildcard)]
        else:
            if kind in ("ent", "wildcard"):
                owners = [covering(key)]
            elif kind == "nxdomain":
                owners = [covering(key), covering(star)]
            else:  # wildcard-nodata
                owners = [covering(key), matching(wildcard)]
        unique = []
        for owner in owners:
            if owner is not None and owner not in unique:
                unique.append(owner)
        return unique

    def _synthesise(self, name: dns.name.Name, owner: dns.name.Name, answers: list, dnssec: bool = False) -> Answer | None:
        """The DNAME at ``owner`` and the CNAME it synthesises for ``name``
        (RFC 6672 2.2, 3.1); YXDOMAIN when the new name is too long. The
        synthesised CNAME is not signed (RFC 6672 5.3.1)."""
        dname = self.node(owner)[dns.rdatatype.DNAME]
        self._add(answers, dname, store.key_of(owner), dnssec)
        try:
            target = name.relativize(owner).concatenate(dname[0].target)
        except dns.name.NameTooLong:
            return Answer(dns.rcode.YXDOMAIN, True, tuple(answers))
        cname = dns.rdtypes.ANY.CNAME.CNAME(dns.rdataclass.IN, dns.rdatatype.CNAME, target)
        answers.append(dns.rrset.from_rdata(name, dname.ttl, cname))
        return None

    def _nodata(self, answers: list[dns.rrset.RRset], proof: tuple = (), dnssec: bool = False) -> Answer:
        return Answer(dns.rcode.NOERROR, True, tuple(answers), self._negative(dnssec) + proof)

    def _referral(self, cut: dns.name.Name, answers: list[dns.rrset.RRset], dnssec: bool = False) -> Answer:
        """A referral to the child zone at ``cut``, with glue (AA clear);
        signed: the DS and its signature, or the proof that there is none."""
        node = self.node(cut)
        ns = node[dns.rdatatype.NS]
        glue = []
        for rdata in ns:
            target = rdata.target
            if target.is_subdomain(cut):
                glue_node = self.node(target) or {}
                glue.extend(glue_node[t] for t in ADDRESS_TYPES if t in glue_node)
        authority = [ns]
        if dnssec:
            key = store.key_of(cut)
            ds = node.get(dns.rdatatype.DS)
            if ds is not None:
                self._add(authority, ds, key, True)
            else:
                authority.extend(self.signed.matching(key))
        # Answers already collected (a CNAME into the delegation) stay
        # authoritative; the referral alone is not.
        return Answer(
            dns.rcode.NOERROR, bool(answers), tuple(answers), tuple(authority), tuple(glue)
        )

    def _expand(self, name: dns.name.Name, wildcard: bytes) -> Node:
        """Records synthesised for ``name`` from the wildcard at ``wildcard`` (RFC 4592)."""
        source = self.node_at(wildcard)
        return {
            rdtype: dns.rrset.from_rdata_list(name, rrset.ttl, list(rrset))
            for rdtype, rrset in source.items()
            if rdtype != dns.rdatatype.NSEC  # the wildcard's own, not the name's
        }
