"""RFC 2136 dynamic UPDATE applied to a zone's source records.

Why a module of its own: this is the zone-editing logic alone, with no
network, disk or reactor in it. ``process`` takes a parsed UPDATE message,
the zone's current source and the key's rules, and returns the rcode and,
when something changed, the next ZoneSource plus the owner nodes it
touched (what the journal records). The caller (aliasd.answer.update_requests)
checks TSIG and the zone, hands the new source to the authority, and
answers once it is recorded.

The steps are RFC 2136 section 3: prerequisites (3.2) against the zone as
it is, a pre-scan of the update section (3.4.1: names in the zone, classes
and types, and the key's rules, RFC 2136 3.3 leaves the policy to us),
then the updates in order (3.4.2). A prerequisite, or a deletion (class
ANY or NONE), whose TTL is not 0 is a FORMERR (3.2.5, 3.4.1.3). Updates
that would break the zone are ignored as 3.4.2 says: a CNAME beside other
data, other data beside a CNAME, SOA or NS deletions at the apex, an SOA
that is not newer. aliasd adds its own: an ALIAS replaces the owner's
ALIAS (one per owner, like a CNAME), and no ALIAS beside a CNAME. In a
zone aliasd signs, the records its signer makes (DNSKEY, RRSIG, NSEC,
NSEC3, NSEC3PARAM, CDS, CDNSKEY) are neither added nor deleted, and a DS
stands only at a delegation: such an update is REFUSED, as one the key's
rules do not allow, since the zone file written back from it could not be
loaded. Nothing is applied unless everything passes: the new source is
built from a working copy.
"""

from __future__ import annotations

import dataclasses
import itertools
import struct
from typing import Iterable

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.serial

from aliasd.base import store
from aliasd.base.store import key_of
from aliasd.zones.zonefile import (
    ALIAS_TYPE,
    DNSSEC_TYPES,
    ZoneSource,
    signer_conflicts,
    type_text,
)

_ANY = dns.rdataclass.ANY
_NONE = dns.rdataclass.NONE
_SOA = dns.rdatatype.SOA
_NS = dns.rdatatype.NS
_CNAME = dns.rdatatype.CNAME
#: Types that may stand beside a CNAME (and be added where one is).
_NEUTRAL = frozenset({dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.KEY})
#: Meta types that no update may add (RFC 2136 3.4.1.3).
_META = frozenset({
    dns.rdatatype.ANY, dns.rdatatype.AXFR, dns.rdatatype.IXFR, dns.rdatatype.MAILA,
    dns.rdatatype.MAILB, dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY,
})


@dataclasses.dataclass
class Outcome:
    """What an UPDATE did: its rcode, and when the zone changed, the new
    source and each touched owner's packed node (None: the owner is gone)."""

    rcode: int
    source: ZoneSource | None = None
    touched: dict[bytes, bytes | None] = dataclasses.field(default_factory=dict)
    names: list[dns.name.Name] = dataclasses.field(default_factory=list)
    why: str = ""  # for the log: why it was refused, or what was ignored
    # Each touched owner's packed node before the update (None: absent): what
    # the authority's incremental ZoneBase.updated compares with.
    previous: dict[bytes, bytes | None] = dataclasses.field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, rcode: int, why: str):
        super().__init__(why)
        self.rcode = rcode


class _Working:
    """The touched owners of a zone, decoded and editable; the rest stays packed."""

    def __init__(self, source: ZoneSource):
        self.source = source
        self.nodes: dict[bytes, tuple[dns.name.Name, dict[int, dns.rrset.RRset]]] = {}

    def node(self, name: dns.name.Name) -> dict[int, dns.rrset.RRset]:
        key = store.key_of(name)
        entry = self.nodes.get(key)
        if entry is None:
            packed = self.source.records.get(key)
            rrsets = {}
            if packed is not None:
                owner = store.name_of(store.owner_of(packed))
                decoded = store.PackedNode(packed, owner)
                rrsets = {rdtype: decoded[rdtype] for rdtype in decoded}  # fresh objects: ours to change
                name = owner
            entry = self.nodes[key] = (name, rrsets)
        return entry[1]

    def packed(self) -> dict[bytes, bytes | None]:
        """Each touched owner's node as packed now (None: empty), unchanged ones left out."""
        out = {}
        for key, (name, rrsets) in self.nodes.items():
            packed = None
            if rrsets:
                packed = store.pack(name.to_wire(), [
                    (r.rdtype, r.ttl, [rd.to_wire() for rd in r]) for r in rrsets.values() if len(r)
                ])
            if packed != self.source.records.get(key):
                out[key] = packed
        return out


def _in_zone(name: dns.name.Name, origin: dns.name.Name) -> bool:
    return name.is_subdomain(origin)


def restore_ttls(message, wire: bytes) -> None:
    """Give each prerequisite and update RR of ``message`` (parsed from
    ``wire`` one RR per RRset) the TTL it was sent with.

    dnspython keeps no TTL for an RR without rdata (every class ANY or NONE
    prerequisite, a class ANY deletion) and reads one above 2**31 - 1 as 0;
    RFC 2136 makes any TTL but 0 there a FORMERR, so it is read again here.
    """
    zone_count, = struct.unpack_from("!H", wire, 4)
    at = 12
    for _ in range(zone_count):
        at = _past_name(wire, at) + 4  # name, type, class
    for rrset in itertools.chain(message.prerequisite, message.update):
        at = _past_name(wire, at)
        rrset.ttl, rdlength = struct.unpack_from("!4xIH", wire, at)  # after type and class
        at += 10 + rdlength


def _past_name(wire: bytes, at: int) -> int:
    """Where the name at ``at`` ends in a message dnspython has parsed (so
    well formed): its labels, up to the root or a compression pointer."""
    while True:
        length = wire[at]
        if length == 0:
            return at + 1
        if length >= 0xC0:
            return at + 2
        at += length + 1


def _check_prerequisites(prereqs: Iterable[dns.rrset.RRset], source: ZoneSource, work: _Working) -> None:
    """RFC 2136 3.2, against the zone before any update."""
    origin = source.origin
    value_sets: dict[tuple, dns.rrset.RRset] = {}
    for rr in prereqs:
        if rr.ttl != 0:
            raise _Refused(dns.rcode.FORMERR, f"prerequisite at {rr.name} with TTL {rr.ttl}, not 0")
        if not _in_zone(rr.name, origin):
            raise _Refused(dns.rcode.NOTZONE, f"prerequisite name {rr.name} is not in zone {origin}")
        node = work.node(rr.name)
        present = {t for t, r in node.items() if len(r)}
        if rr.deleting == _ANY:
            if rr.rdtype == dns.rdatatype.ANY:
                if not present:
                    raise _Refused(dns.rcode.NXDOMAIN, f"prerequisite: {rr.name} has no records")
            elif rr.rdtype not in present:
                raise _Refused(dns.rcode.NXRRSET, f"prerequisite: no {type_text(rr.rdtype)} at {rr.name}")
        elif rr.deleting == _NONE:
            if rr.rdtype == dns.rdatatype.ANY:
                if present:
                    raise _Refused(dns.rcode.YXDOMAIN, f"prerequisite: {rr.name} has records")
            elif rr.rdtype in present:
                raise _Refused(dns.rcode.YXRRSET, f"prerequisite: {type_text(rr.rdtype)} at {rr.name} exists")
        elif rr.deleting is None and rr.rdclass == dns.rdataclass.IN:
            if rr.rdtype in _META:
                raise _Refused(dns.rcode.FORMERR, f"prerequisite with meta type {type_text(rr.rdtype)}")
            key = (store.key_of(rr.name), rr.rdtype)
            collected = value_sets.get(key)
            if collected is None:
                collected = value_sets[key] = dns.rrset.RRset(rr.name, rr.rdclass, rr.rdtype)
            for rd in rr:
                collected.add(rd)
        else:
            raise _Refused(dns.rcode.FORMERR, f"prerequisite in class {dns.rdataclass.to_text(rr.rdclass)}")
    for (_, rdtype), wanted in value_sets.items():
        have = work.node(wanted.name).get(rdtype)
        if have is None or set(have) != set(wanted):
            raise _Refused(dns.rcode.NXRRSET, f"prerequisite: {type_text(rdtype)} at {wanted.name} differs")


def _prescan(updates, source: ZoneSource, work: _Working, key: dns.name.Name, rules, signed: bool) -> None:
    """RFC 2136 3.4.1: every update in the zone, well formed, and allowed."""
    origin = source.origin
    for rr in updates:
        if not _in_zone(rr.name, origin):
            raise _Refused(dns.rcode.NOTZONE, f"{rr.name} is not in zone {origin}")
        if rr.deleting is not None and rr.ttl != 0:
            raise _Refused(dns.rcode.FORMERR, f"deletion at {rr.name} with TTL {rr.ttl}, not 0")
        if signed and rr.rdtype in DNSSEC_TYPES:
            raise _Refused(dns.rcode.REFUSED, f"{'adding' if rr.deleting is None else 'deleting'} "
                           f"{type_text(rr.rdtype)} at {rr.name}: aliasd makes the DNSSEC records "
                           f"of the signed zone {origin} itself")
        if rr.deleting is None:
            if rr.rdclass != dns.rdataclass.IN or rr.rdtype in _META:
                raise _Refused(dns.rcode.FORMERR, f"cannot add a {type_text(rr.rdtype)} record")
            touched = [rr.rdtype]
        elif rr.deleting == _ANY:
            if rr.rdtype in _META - {dns.rdatatype.ANY}:
                raise _Refused(dns.rcode.FORMERR, f"cannot delete {type_text(rr.rdtype)}")
            if rr.rdtype == dns.rdatatype.ANY:
                touched = [t for t in work.node(rr.name) if not (rr.name == origin and t in (_SOA, _NS))]
            else:
                touched = [rr.rdtype]
        elif rr.deleting == _NONE:
            if rr.rdtype in _META:
                raise _Refused(dns.rcode.FORMERR, f"cannot delete {type_text(rr.rdtype)} records")
            touched = [rr.rdtype]
        else:
            raise _Refused(dns.rcode.FORMERR, "update in an unknown class")
        if not touched:  # deleting all at an empty name: some rule must cover the name
            if not any(rule.allows(key, rr.name, None, origin) for rule in rules):
                raise _Refused(dns.rcode.REFUSED, f"key {key} may not change {rr.name}")
        for rdtype in touched:
            if not any(rule.allows(key, rr.name, rdtype, origin) for rule in rules):
                raise _Refused(
                    dns.rcode.REFUSED,
                    f"key {key} may not change {type_text(rdtype)} at {rr.name}",
                )


def _add(rr: dns.rrset.RRset, origin: dns.name.Name, node: dict, ignored: list) -> None:
    rdtype = rr.rdtype
    others = {t for t, r in node.items() if len(r)} - _NEUTRAL
    if rdtype == _SOA and rr.name != origin:
        ignored.append(f"SOA at {rr.name}, not the apex")
        return
    if rdtype == _CNAME and others - {_CNAME}:
        ignored.append(f"CNAME at {rr.name} beside other data")
        return
    if rdtype not in _NEUTRAL and rdtype != _CNAME and _CNAME in others:
        ignored.append(f"{type_text(rdtype)} at {rr.name} beside a CNAME")
        return
    current = node.get(rdtype)
    if rdtype in (_SOA, _CNAME, ALIAS_TYPE) and current is not None and len(current):
        rd = next(iter(rr))
        if rdtype == _SOA and not dns.serial.Serial(rd.serial) > dns.serial.Serial(next(iter(current)).serial):
            ignored.append(f"SOA with serial {rd.serial}, not newer")
            return
        # One per owner: the new one replaces the old (RFC 2136 3.4.2.2).
        node[rdtype] = dns.rrset.from_rdata(current.name, rr.ttl, rd)
        return
    if current is None:
        current = node[rdtype] = dns.rrset.RRset(rr.name, dns.rdataclass.IN, rdtype)
    for rd in rr:
        current.add(rd)
    current.ttl = rr.ttl  # the RRset takes the TTL of the record added last (as BIND does)


def _delete(rr: dns.rrset.RRset, origin: dns.name.Name, node: dict, ignored: list) -> None:
    at_apex = rr.name == origin
    if rr.deleting == _ANY:
        for rdtype in list(node) if rr.rdtype == dns.rdatatype.ANY else [rr.rdtype]:
            if at_apex and rdtype in (_SOA, _NS):
                if rr.rdtype != dns.rdatatype.ANY:
                    ignored.append(f"deleting the apex {type_text(rdtype)}")
                continue
            node.pop(rdtype, None)
        return
    # class NONE: delete single records
    if rr.rdtype == _SOA:
        ignored.append("deleting the SOA")
        return
    current = node.get(rr.rdtype)
    if current is None:
        return
    keep = dns.rrset.RRset(current.name, current.rdclass, current.rdtype)
    keep.update_ttl(current.ttl)
    for rd in current:
        if rd not in rr:
            keep.add(rd)
    if at_apex and rr.rdtype == _NS and not len(keep):
        ignored.append("deleting the last apex NS")
        return
    if len(keep):
        node[rr.rdtype] = keep
    else:
        del node[rr.rdtype]


def _with_serial(packed: bytes, serial: int) -> bytes:
    """A packed apex node with ``serial`` in its SOA."""
    at = store.serial_offset(packed)
    if at is None:
        raise ValueError("no SOA at the apex")
    return packed[:at] + serial.to_bytes(4, "big") + packed[at + 4:]


def next_update_serial(current: int, served: int | None) -> int:
    """The serial after an update: one past the newer of the source's and
    the served one (RFC 1982), never backwards."""
    base = current
    if served is not None and dns.serial.Serial(served) > dns.serial.Serial(current):
        base = served
    return (base + 1) % 2**32 or 1


def next_source(work: _Working, source: ZoneSource, soa_serial: int | None, served_serial: int | None):
    """The working copy's changes as the zone's next source: (source, each
    touched owner's packed node or None, their names). The serial moves: to
    ``soa_serial`` (an SOA the change set) when that is newer than the
    served one, else one past the newer of the source's and the served."""
    new, touched, names, _ = _next(work, source, soa_serial, served_serial)
    return new, touched, names


def _next(work: _Working, source: ZoneSource, soa_serial: int | None, served_serial: int | None,
          reuse: bool = False, max_records: int = 0):
    """next_source, and each touched owner's node before; (None, count, ...)
    when the zone would hold more than ``max_records`` (0: no limit).

    With ``reuse``, ``source.records`` is changed in place and becomes the
    new source's: the caller vouches that nothing else reads it (the
    authority's ``records_private``), since a dict of ten thousand owners
    copied for every update was the largest cost that grew with the zone.
    Nothing is changed when the update is refused.
    """
    origin = source.origin
    serial = _serial_after(source, soa_serial, served_serial)
    if source.key in work.nodes:
        apex = work.node(origin)
        soa = next(iter(apex[_SOA]))
        apex[_SOA] = dns.rrset.from_rdata(apex[_SOA].name, apex[_SOA].ttl, soa.replace(serial=serial))
    touched = work.packed()
    names = {k: work.nodes[k][0] for k in touched}
    return _finish(source, touched, names, serial, reuse, max_records)


def _serial_after(source: ZoneSource, soa_serial: int | None, served_serial: int | None) -> int:
    """The update's serial: ``soa_serial`` (an SOA the update set) when it
    is newer than the served one, else next_update_serial."""
    if soa_serial is None or (served_serial is not None
                              and not dns.serial.Serial(soa_serial) > dns.serial.Serial(served_serial)):
        return next_update_serial(source.serial, served_serial)
    return soa_serial


def _finish(source: ZoneSource, touched: dict, names: dict, serial: int, reuse: bool, max_records: int):
    """The new source from ``touched`` (each changed owner's packed node,
    None: gone; the apex's, if there, with ``serial`` already) and the
    owners' ``names``: (source, touched, their names, their nodes before)."""
    if source.key not in touched:  # the apex changes only by its serial: patched in its packed form
        touched[source.key] = _with_serial(source.records[source.key], serial)
        names[source.key] = source.origin
    current = source.records
    previous = {k: current.get(k) for k in touched}
    if max_records:
        source.record_count()  # (counted on the records before they change; the new source derives its count)
    # A clone of the hash table when copied: dict() re-inserts every key once a key was deleted.
    records = current if reuse else current.copy()
    new = source.updated(records, touched, previous)
    if max_records and new.record_count() > max_records:
        return None, new.record_count(), None, None
    for k, packed in touched.items():
        if packed is None:
            records.pop(k, None)
        else:
            records[k] = packed
    return new, touched, [names[k] for k in touched], previous


def _plain(records, source: ZoneSource, rules, key: dns.name.Name, served_serial: int | None,
           signed: bool, max_records: int, reuse: bool) -> Outcome | None:
    """``process`` for an UPDATE of PlainRecords alone (aliasd.update.wireparse:
    A, AAAA and TXT, no prerequisites), on the packed nodes: their rdata
    wire is their canonical form, so records compare by their octets, and
    no dnspython RRset is made, decoded or rendered. None when the update
    is refused, ignores a record (a CNAME at the name) or changes nothing:
    ``process`` then decides it in full, with the same result."""
    origin = source.origin
    current = source.records
    nodes: dict[bytes, tuple[bytes, list]] = {}  # key -> (owner wire, [[type, TTL, rdatas]])
    names: dict[bytes, dns.name.Name] = {}
    for rr in records:
        name = rr.name
        if not name.is_subdomain(origin) or rr.deleting is not None and rr.ttl != 0:
            return None
        rdtype = rr.rdtype
        if not any(rule.allows(key, name, rdtype, origin) for rule in rules):
            return None
        k = key_of(name)
        node = nodes.get(k)
        if node is None:
            packed = current.get(k)
            if packed is None:
                node = nodes[k] = (name.to_wire(), [])
                names[k] = name
            else:
                node = nodes[k] = (store.owner_of(packed), [list(r) for r in store.raw_rrsets(packed)])
                names[k] = None  # decoded below, if touched
        rrsets = node[1]
        rrset = next((r for r in rrsets if r[0] == rdtype), None)
        if rr.deleting is None:
            if any(r[0] == _CNAME for r in rrsets):
                return None  # ignored beside a CNAME: said by process
            if rrset is None:
                rrsets.append([rdtype, rr.ttl, [rr.rdata]])
            else:
                if rr.rdata not in rrset[2]:
                    rrset[2].append(rr.rdata)
                rrset[1] = rr.ttl  # the RRset takes the TTL of the record added last (as BIND does)
        elif rrset is not None:
            if rr.deleting == _ANY:
                rrsets.remove(rrset)
            else:
                kept = [rd for rd in rrset[2] if rd != rr.rdata]
                if kept:
                    rrset[2] = kept
                else:
                    rrsets.remove(rrset)
    touched = {}
    apex = source.key
    for k, (owner, rrsets) in nodes.items():
        packed = store.pack(owner, rrsets) if rrsets else None
        if packed != current.get(k) or k == apex:  # (the apex: its serial, below)
            touched[k] = packed
    if len(touched) == (apex in nodes):
        return None
    for k in touched:
        if names[k] is None:
            names[k] = store.name_of(nodes[k][0])
    if signed:
        for k, packed in touched.items():
            if packed is not None and signer_conflicts(origin, names[k], store.types_of(packed)):
                return None
    serial = _serial_after(source, None, served_serial)
    if apex in touched:  # where the dnspython path has it too: where the update first named it
        touched[apex] = _with_serial(touched[apex], serial)
    new, touched, names, previous = _finish(source, touched, names, serial, reuse, max_records)
    if new is None:
        return None
    return Outcome(dns.rcode.NOERROR, new, touched, names, "", previous)


def process(message, source: ZoneSource, rules, key: dns.name.Name, served_serial: int | None,
            signed: bool = False, max_records: int = 0, reuse: bool = False) -> Outcome:
    """Apply an UPDATE message (parsed with one RR per RRset, its TTLs as
    sent: restore_ttls) to ``source``, a zone that aliasd signs if ``signed``.

    An update that would leave more than ``max_records`` records (0: no
    limit, BIND's max-records) is REFUSED. With ``reuse`` the new source
    takes ``source.records``, changed in place (see ``_next``). An UPDATE of
    the commonest shape is applied to the packed records (``_plain``)."""
    plain = getattr(message, "plain", None)
    if plain is not None:
        outcome = _plain(plain, source, rules, key, served_serial, signed, max_records, reuse)
        if outcome is not None:
            return outcome
    work = _Working(source)
    origin = source.origin
    try:
        _check_prerequisites(message.prerequisite, source, work)
        _prescan(message.update, source, work, key, rules, signed)
    except _Refused as e:
        return Outcome(e.rcode, why=str(e))
    ignored: list[str] = []
    soa_set = False
    for rr in message.update:
        node = work.node(rr.name)
        if rr.deleting is None:
            before = node.get(_SOA)
            _add(rr, origin, node, ignored)
            soa_set = soa_set or (rr.rdtype == _SOA and node.get(_SOA) is not before)
        else:
            _delete(rr, origin, node, ignored)
    touched = work.packed()
    if not touched:
        return Outcome(dns.rcode.NOERROR, why="; ".join(ignored) or "no change")
    if signed:
        # Checked on the result: the same update may add the NS that makes
        # a DS's owner a delegation, or delete it from under one.
        for k, packed in touched.items():
            if packed is not None:
                conflicts = signer_conflicts(origin, work.nodes[k][0], store.types_of(packed))
                if conflicts:
                    return Outcome(dns.rcode.REFUSED, why=conflicts[0][1])
    serial = next(iter(work.node(origin)[_SOA])).serial if soa_set else None
    new, touched, names, previous = _next(work, source, serial, served_serial, reuse, max_records)
    if new is None:
        return Outcome(dns.rcode.REFUSED, why=f"the zone would hold {touched} records, "
                                              f"more than its max-records ({max_records})")
    return Outcome(dns.rcode.NOERROR, new, touched, names, "; ".join(ignored), previous)
