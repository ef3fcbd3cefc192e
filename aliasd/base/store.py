"""The compact zone store: each owner's records as one bytes object.

Why: a DNS host serves thousands of small zones. As dnspython objects a
record costs about 2 KiB and building them dominates start-up; as wire
bytes a record costs little more than its wire size, a snapshot of them is
a plain ``marshal`` dump, and versions of a zone share them unchanged.
Records are decoded into dnspython RRsets only when an answer, a transfer
or a difference needs them (``PackedNode``); rendered answers are kept by
the fast path, so a name's records are decoded about once per version.

A packed node is::

    owner length (1 octet), owner name in uncompressed wire form, letter
    case as written; then per RRset (in dnspython's order: the type
    written last comes last):
    type (2), TTL (4), number of records (2), length of the records (4),
    and each record as rdata length (2) and rdata in uncompressed wire form.

A zone's records are a dict from the owner's lower-case wire name (the
lookup key) to its packed node, in the order the owners first appeared.
"""

from __future__ import annotations

import struct
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

_IN = dns.rdataclass.IN
#: The ALIAS record type's code (private use range, as PowerDNS); registered
#: with dnspython by ``aliasd.zones.zonefile``.
ALIAS_TYPE = 65401
_RRSET_HEAD = struct.Struct("!HIHI")
_RDLEN = struct.Struct("!H")

#: One RRset before packing: (type, TTL, rdatas in uncompressed wire form).
RawRRset = tuple[int, int, Sequence[bytes]]


class CachedName(dns.name.Name):
    """A dnspython Name that computes its hash once.

    dnspython hashes a name byte by byte in Python on every dict lookup;
    the authority keys its zone and ALIAS dependency maps by name, and at
    ten thousand zones that was the largest single cost of re-versioning.
    Equal to, and hashed like, a plain Name.
    """

    __slots__ = ("_hash", "_lower")

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            value = dns.name.Name.__hash__(self)
            object.__setattr__(self, "_hash", value)  # Name is immutable otherwise
            return value

    def _lowered(self) -> tuple:
        try:
            return self._lower
        except AttributeError:
            value = tuple(label.lower() for label in self.labels)
            object.__setattr__(self, "_lower", value)
            return value

    def __eq__(self, other) -> bool:
        # dnspython compares names label by label in Python (fullcompare),
        # and its hash collides for names alike (z1029. and z1030.): a dict
        # of ten thousand numbered zones compared tens of thousands of them
        # at each reload. Two CachedNames compare their lower-case labels,
        # kept, as tuples (in C); the same name from another parse has the
        # same labels.
        if isinstance(other, CachedName):
            return self.labels == other.labels or self._lowered() == other._lowered()
        if isinstance(other, dns.name.Name) and self.labels == other.labels:
            return True
        return dns.name.Name.__eq__(self, other)

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)

    def __reduce__(self):
        return CachedName, (self.labels,)


def cached(name: dns.name.Name) -> CachedName:
    return name if isinstance(name, CachedName) else CachedName(name.labels)


def key_of(name: dns.name.Name) -> bytes:
    """The lookup key of a name: its lower-case uncompressed wire form."""
    return name.to_wire(canonicalize=True)


def name_of(wire: bytes) -> dns.name.Name:
    """The absolute name whose uncompressed wire form is ``wire``."""
    labels = []
    i = 0
    while True:
        length = wire[i]
        labels.append(wire[i + 1:i + 1 + length])
        if length == 0:
            return CachedName(labels)
        i += length + 1


def name_end(wire: bytes, i: int = 0) -> int:
    """Where the uncompressed name starting at ``i`` ends."""
    while wire[i]:
        i += wire[i] + 1
    return i + 1


def suffixes(key: bytes) -> Iterator[bytes]:
    """``key`` and each of its parents' keys, the root (``b"\\0"``) last."""
    i = 0
    while True:
        yield key[i:]
        if key[i] == 0:
            return
        i += key[i] + 1


def pack(owner: bytes, rrsets: Iterable[RawRRset]) -> bytes:
    """A packed node from the owner's wire name and its RRsets."""
    parts = [bytes((len(owner),)), owner]
    for rdtype, ttl, rdatas in rrsets:
        body = b"".join(_RDLEN.pack(len(r)) + r for r in rdatas)
        parts.append(_RRSET_HEAD.pack(rdtype, ttl, len(rdatas), len(body)))
        parts.append(body)
    return b"".join(parts)


def owner_of(packed: bytes) -> bytes:
    """The owner's wire name as written."""
    return packed[1:1 + packed[0]]


def directory(packed: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, TTL, count, start, end) of each RRset, without decoding it."""
    i = 1 + packed[0]
    size = len(packed)
    while i < size:
        rdtype, ttl, count, length = _RRSET_HEAD.unpack_from(packed, i)
        i += _RRSET_HEAD.size
        yield rdtype, ttl, count, i, i + length
        i += length


def types_of(packed: bytes) -> list[int]:
    return [entry[0] for entry in directory(packed)]


def rdata_wires(packed: bytes, start: int, end: int) -> Iterator[bytes]:
    i = start
    while i < end:
        (length,) = _RDLEN.unpack_from(packed, i)
        i += 2
        yield packed[i:i + length]
        i += length


def raw_rrsets(packed: bytes) -> Iterator[RawRRset]:
    for rdtype, ttl, _, start, end in directory(packed):
        yield rdtype, ttl, list(rdata_wires(packed, start, end))


def serial_offset(packed: bytes) -> int | None:
    """Where the SOA serial of a packed node starts (None: it has no SOA).
    An SOA RRset holds one record, whose rdata ends with serial, refresh,
    retry, expire and minimum."""
    for rdtype, _, _, _, end in directory(packed):
        if rdtype == dns.rdatatype.SOA:
            return end - 20
    return None


def same_but_serial(old: bytes, new: bytes) -> bool:
    """Whether two packed nodes differ at most in their SOA serial (an
    update's apex): what depends on content alone need not be redone."""
    if len(old) != len(new):
        return False
    at = serial_offset(new)
    return at is not None and old[:at] == new[:at] and old[at + 4:] == new[at + 4:]


def with_serial(soa_rdata: bytes, serial: int) -> bytes:
    """An SOA rdata (uncompressed wire) with ``serial`` in place of its own."""
    return soa_rdata[:-20] + serial.to_bytes(4, "big") + soa_rdata[-16:]


def decode_rrset(name: dns.name.Name, rdtype: int, ttl: int, wires: Iterable[bytes],
                 covers: int = 0) -> dns.rrset.RRset:
    """An RRset from rdatas in wire form (``covers``: the type an RRSIG RRset covers)."""
    rdtype = dns.rdatatype.RdataType.make(rdtype)
    rrset = dns.rrset.RRset(name, _IN, rdtype, covers)
    rrset.update_ttl(ttl)
    for wire in wires:
        rrset.add(dns.rdata.from_wire(_IN, rdtype, wire, 0, len(wire)))
    return rrset


def pack_rrsets(rrsets: Iterable[dns.rrset.RRset]) -> dict[bytes, bytes]:
    """Records for a zone from dnspython RRsets (the order is kept)."""
    grouped: dict[bytes, tuple[bytes, list[RawRRset]]] = {}
    for rrset in rrsets:
        key = key_of(rrset.name)
        entry = grouped.get(key)
        if entry is None:
            entry = grouped[key] = (rrset.name.to_wire(), [])
        entry[1].append((rrset.rdtype, rrset.ttl, [rd.to_wire() for rd in rrset]))
    return {key: pack(owner, raw) for key, (owner, raw) in grouped.items()}


# -- canonical forms (RFC 4034 6.2) ------------------------------------------

def _lower_after(offset: int) -> Callable[[bytes], bytes]:
    """Fixed fields up to ``offset``, then nothing but names."""
    return lambda wire: wire[:offset] + wire[offset:].lower()


def _soa(wire: bytes) -> bytes:
    end = name_end(wire, name_end(wire))
    return wire[:end].lower() + wire[end:]


def _naptr(wire: bytes) -> bytes:
    offset = 4  # order, preference; then flags, services, regexp (kept as they are)
    for _ in range(3):
        offset += wire[offset] + 1
    return wire[:offset] + wire[offset:].lower()


def _rrsig(wire: bytes) -> bytes:
    end = name_end(wire, 18)
    return wire[:18] + wire[18:end].lower() + wire[end:]


# A name's wire form lowers like its labels: length octets are at most 63,
# below ASCII 'A', so bytes.lower() touches only the labels' letters.
T = dns.rdatatype
#: rdtype -> its canonical form (RFC 4034 6.2) from its wire, for the types
#: dnspython lower-cases (its ``to_digestable``; not NSEC, per RFC 6840
#: 5.1); every other type's canonical form is its wire as dnspython writes
#: it, which is how the store holds it. The signer (aliasd.dnssec.rrsig) and the
#: zone digest (aliasd.zones.zonefile) both use it.
CANONICAL: dict[int, Callable[[bytes], bytes]] = {
    T.NS: bytes.lower, T.CNAME: bytes.lower, T.PTR: bytes.lower, T.DNAME: bytes.lower,
    T.RP: bytes.lower,
    T.MX: _lower_after(2), T.AFSDB: _lower_after(2), T.RT: _lower_after(2), T.KX: _lower_after(2),
    T.PX: _lower_after(2),
    T.SRV: _lower_after(6),
    T.SOA: _soa, T.NAPTR: _naptr, T.RRSIG: _rrsig, T.SIG: _rrsig,
}
del T


def canonical_rdata(rdtype: int, wire: bytes) -> bytes:
    """The canonical form of an rdata given in uncompressed wire form."""
    canonical = CANONICAL.get(rdtype)
    return wire if canonical is None else canonical(wire)



class PackedNode(Mapping[int, dns.rrset.RRset]):
    """The RRsets at one name, decoded on first use, type by type.

    ``overrides`` replaces RRsets of some types (an RRset) or removes them
    (None): the flattened A/AAAA of an ALIAS owner, the apex SOA with the
    served serial. A type only in ``overrides`` comes after the packed ones.
    ``name`` is the owner to give the RRsets (a wildcard's expansion takes
    the query name).
    """

    __slots__ = ("packed", "name", "serial", "_entries", "_decoded", "_overridden")

    def __init__(self, packed: bytes, name: dns.name.Name | None = None,
                 overrides: Mapping[int, dns.rrset.RRset | None] | None = None,
                 serial: int | None = None):
        """``serial`` replaces the SOA serial (the served one) when the SOA
        is decoded."""
        self.packed = packed
        self.name = name
        self.serial = serial
        entries = {entry[0]: entry for entry in directory(packed)}
        decoded: dict[int, dns.rrset.RRset] = {}
        self._overridden = overrides or {}
        if overrides:
            for rdtype, rrset in overrides.items():
                if rrset is None:
                    entries.pop(rdtype, None)
                else:
                    entries.setdefault(rdtype, None)
                    decoded[rdtype] = rrset
        self._entries = entries
        self._decoded = decoded

    def __getitem__(self, rdtype: int) -> dns.rrset.RRset:
        rrset = self._decoded.get(rdtype)
        if rrset is None:
            entry = self._entries[rdtype]  # KeyError for an absent type
            if self.name is None:
                self.name = name_of(owner_of(self.packed))
            _, ttl, _, start, end = entry
            wires = rdata_wires(self.packed, start, end)
            if rdtype == dns.rdatatype.SOA and self.serial is not None:
                wires = [with_serial(w, self.serial) for w in wires]
            rrset = decode_rrset(self.name, rdtype, ttl, wires)
            self._decoded[rdtype] = rrset
        return rrset

    def wires(self, rdtype: int) -> tuple[int, list[bytes]]:
        """(TTL, rdatas in wire form) of one RRset as served (the SOA with
        ``serial``), decoding nothing that is packed (aliasd.answer.directanswer,
        aliasd.dnssec.signer)."""
        override = self._decoded.get(rdtype)
        if override is not None and rdtype in self._overridden:
            return override.ttl, [rdata.to_wire() for rdata in override]
        _, ttl, _, start, end = self._entries[rdtype]
        wires = list(rdata_wires(self.packed, start, end))
        if rdtype == dns.rdatatype.SOA and self.serial is not None:
            wires = [with_serial(w, self.serial) for w in wires]
        return ttl, wires

    def _raw(self, rdtype: int) -> bytes | None:
        """The packed form of one RRset of the file (None: overridden or absent)."""
        entry = self._entries.get(rdtype)
        if entry is None or rdtype in self._overridden or (rdtype == dns.rdatatype.SOA and self.serial is not None):
            return None
        return self.packed[entry[3] - _RRSET_HEAD.size:entry[4]]

    def same_as(self, other: "PackedNode", rdtype: int) -> bool:
        """Whether both nodes serve the file's same records of ``rdtype``
        (decoding neither), or the same override object."""
        if rdtype in self._overridden or rdtype in other._overridden:
            return self._overridden.get(rdtype, 0) is other._overridden.get(rdtype, 1)
        mine = self._raw(rdtype)
        return mine is not None and mine == other._raw(rdtype)

    def get(self, rdtype: int, default=None):
        if rdtype in self._entries:
            return self[rdtype]
        return default

    def __contains__(self, rdtype) -> bool:
        return rdtype in self._entries

    def __iter__(self) -> Iterator[int]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
