"""RRset changes (the HTTP API's PATCH and POST) applied to a zone's records.

Why a module of its own: this is the editing logic of the API alone, no
network, disk or reactor, as aliasd.update.rfc2136 is for UPDATE (whose
working copy and serial rules it reuses). Unlike an UPDATE, which skips
what would break the zone (RFC 2136 3.4.2), a change here is all or
nothing: every record is parsed and every owner it touches checked
against the rules a zone file obeys (aliasd.zones.zonefile) before
anything is built, and the first problem refuses the whole change with
the record named.
"""

from __future__ import annotations

import dataclasses
import types

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from aliasd.base import store
from aliasd.update.rfc2136 import (
    _CNAME,
    _META,
    _NEUTRAL,
    _NS,
    _SOA,
    _Working,
    next_source,
)
from aliasd.zones.zonefile import ALIAS_TYPE, ZoneSource, signer_conflicts, type_text


@dataclasses.dataclass(frozen=True)
class RRsetChange:
    """One RRset of a PATCH or POST (PowerDNS's ``rrsets`` entries)."""

    name: dns.name.Name  # absolute owner name
    rdtype: int  # dns.rdatatype value; aliasd.base.store.ALIAS_TYPE for "ALIAS"
    changetype: str  # "REPLACE" or "DELETE"
    ttl: int | None = None  # REPLACE: required
    records: tuple[str, ...] = ()  # REPLACE: rdata in presentation form, names absolute


class ZoneChangeError(Exception):
    """A change refused; nothing was changed. ``status`` is the HTTP status
    the API answers (404 unknown zone, 409 zone exists, 422 bad record /
    not editable / quota, 503 store failure), ``str(e)`` the message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _bad(message: str) -> ZoneChangeError:
    return ZoneChangeError(422, message)


def _label(change: RRsetChange) -> str:
    return f"{change.name.to_text()} {type_text(change.rdtype)}"


def parse_rrset(origin: dns.name.Name, change: RRsetChange) -> dns.rrset.RRset | None:
    """The RRset a REPLACE sets (None for DELETE, or REPLACE with no
    records), every record parsed by dnspython as its type; raises
    ZoneChangeError naming the record at fault."""
    if change.changetype not in ("REPLACE", "DELETE"):
        raise _bad(f"RRset {_label(change)}: changetype must be REPLACE or DELETE, not {change.changetype!r}")
    if not change.name.is_absolute() or not change.name.is_subdomain(origin):
        raise _bad(f"RRset {_label(change)}: name is out of zone {origin.to_text()}")
    if change.rdtype in _META or change.rdtype == dns.rdatatype.NONE:
        raise _bad(f"RRset {_label(change)}: not a record type a zone holds")
    if change.changetype == "DELETE" or not change.records:
        return None
    if change.ttl is None or not 0 <= change.ttl < 2**31:
        raise _bad(f"RRset {_label(change)}: a TTL between 0 and 2147483647 is required")
    rrset = dns.rrset.RRset(change.name, dns.rdataclass.IN, change.rdtype)
    for text in change.records:
        try:
            rd = dns.rdata.from_text(dns.rdataclass.IN, change.rdtype, text, origin=None)
            rd.to_wire()  # a relative name in the rdata fails here
        except dns.name.NeedAbsoluteNameOrOrigin:
            raise _bad(f"record {change.name.to_text()} {type_text(change.rdtype)} {text!r}: "
                       "names in the content must be absolute (end with a dot)") from None
        except (dns.exception.DNSException, ValueError, TypeError) as e:
            raise _bad(f"record {change.name.to_text()} {type_text(change.rdtype)} {text!r}: "
                       f"does not parse as {type_text(change.rdtype)}: {e}") from None
        rrset.add(rd, change.ttl)
    return rrset


def check_node(origin: dns.name.Name, name: dns.name.Name, rrsets: dict, signed: bool) -> None:
    """The rules of a zone file at one owner (raises ZoneChangeError)."""
    present = {t for t, r in rrsets.items() if r is not None and len(r)}
    at = name.to_text()
    if _SOA in present and name != origin:
        raise _bad(f"RRset {at} SOA: an SOA stands only at the zone apex {origin.to_text()}")
    if name == origin:
        for rdtype in (_SOA, _NS):
            if rdtype not in present:
                raise _bad(f"RRset {at} {type_text(rdtype)}: the zone apex needs its {type_text(rdtype)} records")
    for rdtype in (_SOA, _CNAME, ALIAS_TYPE):
        if rdtype in present and len(rrsets[rdtype]) > 1:
            raise _bad(f"RRset {at} {type_text(rdtype)}: only one {type_text(rdtype)} record per name")
    others = present - _NEUTRAL - {_CNAME}
    if _CNAME in present and others:
        names = ", ".join(sorted(type_text(t) for t in others))
        raise _bad(f"RRset {at} CNAME: a CNAME cannot stand beside other data ({names})")
    if signed:
        conflicts = signer_conflicts(origin, name, present)
        if conflicts:
            raise _bad(f"RRset {at} {type_text(conflicts[0][0])}: {conflicts[0][1]}")


def _apply(work: _Working, origin: dns.name.Name, changes, signed: bool) -> None:
    """Every change on the working copy, checked (raises ZoneChangeError)."""
    seen = set()
    parsed = []
    for change in changes:
        key = (store.key_of(change.name), change.rdtype)
        if key in seen:
            raise _bad(f"RRset {_label(change)}: given twice in one change")
        seen.add(key)
        parsed.append((change, parse_rrset(origin, change)))
    touched = {}
    for change, rrset in parsed:
        node = work.node(change.name)
        if rrset is None:
            node.pop(change.rdtype, None)
        else:
            node[change.rdtype] = rrset
        touched[store.key_of(change.name)] = True
    for key in touched:
        check_node(origin, work.nodes[key][0], work.nodes[key][1], signed)


def build_zone(origin: dns.name.Name, path, changes, signed: bool) -> ZoneSource:
    """A new zone's source from its RRsets (a POST); raises ZoneChangeError."""
    work = _Working(types.SimpleNamespace(records={}))
    if not any(c.name == origin and c.rdtype == _SOA for c in changes):
        raise _bad(f"zone {origin.to_text()}: no SOA record (give one, or set [api] default-soa)")
    _apply(work, origin, changes, signed)
    if store.key_of(origin) not in work.nodes:
        check_node(origin, origin, {}, signed)
    name, apex = work.nodes[store.key_of(origin)]
    work.nodes[store.key_of(origin)] = (name, dict(sorted(apex.items(), key=lambda item: item[0] != _SOA)))
    records = {k: v for k, v in work.packed().items() if v is not None}
    return ZoneSource.of(origin, path, records)


@dataclasses.dataclass
class Patched:
    """A PATCH applied: the next source, each touched owner's packed node
    (None: gone; what the journal records) and the owners' names."""

    source: ZoneSource
    touched: dict
    names: list


def patch_zone(source: ZoneSource, changes, signed: bool, served_serial: int | None) -> Patched | None:
    """``source`` with ``changes`` applied (None: they change nothing); the
    serial moves as for an UPDATE (aliasd.update.rfc2136). Raises ZoneChangeError."""
    origin = source.origin
    work = _Working(source)
    _apply(work, origin, changes, signed)
    if not work.packed():
        return None
    apex = work.nodes.get(source.key)
    given = next(iter(apex[1][_SOA])).serial if apex is not None else None
    return Patched(*next_source(work, source, given, served_serial))


def check_max_records(source: ZoneSource, limit: int) -> None:
    """Refuse a zone over its ``max-records`` (0: no limit)."""
    count = source.record_count()
    if limit and count > limit:
        raise _bad(f"zone {source.origin.to_text()}: {count} records would exceed its max-records ({limit})")
