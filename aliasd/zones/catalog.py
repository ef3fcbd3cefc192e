"""RFC 9432 (version 2) catalog zones, built from the set of served zones.

A catalog zone lists member zones as PTR records; secondaries that consume
it (BIND ``catalog-zones``, Knot ``catalog-role: interpret``) start and
stop serving zones as the catalog changes, so a zone added to aliasd
reaches every secondary with no configuration change on their side. The
catalog is an ordinary zone: transferred by AXFR/IXFR and NOTIFYed like
any other. This module only builds its records; it does no I/O.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rrset

from aliasd.base import store
from aliasd.zones.zonefile import ZoneSource

#: The catalog schema version this module writes (RFC 9432 4.2.1).
VERSION = "2"
#: TTL of every record: it has no meaning for catalog consumers (RFC 9432 4).
TTL = 0
#: SOA timers: NOTIFY drives updates, refresh is the safety net; a huge
#: expire keeps secondaries from dropping every member zone when the primary
#: is unreachable for a while (as RFC 9432's example does).
REFRESH, RETRY, EXPIRE, MINIMUM = 3600, 600, 2147483646, 0

_INVALID = dns.name.from_text("invalid.")
_IN = dns.rdataclass.IN
_PTR_TYPE = dns.rdatatype.PTR


class _PTR(dns.rdtypes.ANY.PTR.PTR):
    """A PTR whose uncompressed wire form skips dnspython's per-suffix Names.

    Hashing an rdata (every RRset insert, every digest) renders it
    uncompressed; for 100,000 members that was most of the build time.
    Compressed rendering (answers, transfers) is dnspython's own.
    """

    __slots__ = ()

    def _to_wire(self, file, compress=None, origin=None, canonicalize=False):
        if compress is None:
            file.write(self.target.to_wire(None, None, origin, canonicalize))
        else:
            super()._to_wire(file, compress, origin, canonicalize)


def _ptr(target: dns.name.Name) -> _PTR:
    """A PTR rdata made the way unpickling makes one: the target is already
    a valid absolute Name, and validating it again cost more than the rest."""
    rdata = _PTR.__new__(_PTR)
    rdata.__setstate__({"rdclass": _IN, "rdtype": _PTR_TYPE, "rdcomment": None, "target": target})
    return rdata


def member_id(zone: dns.name.Name, generation: int = 0) -> str:
    """The member's unique label: SHA-1 hex of the lower-cased wire name.

    It depends on the zone name alone, so every restart and every aliasd
    instance gives a zone the same label; a changed label would make
    consumers drop and re-add the zone (RFC 9432 4.1, 5.4). 40 hex digits:
    a valid DNS label. BIND documents the same construction.
    ``generation`` (above 0: a zone deleted and created again at runtime)
    changes the label on purpose: that is RFC 9432's member reset (5.6).
    """
    return _label(zone.to_wire(canonicalize=True), generation)


def _label(canonical_wire: bytes, generation: int = 0) -> str:
    if generation:
        canonical_wire += b"#%d" % generation
    return hashlib.sha1(canonical_wire, usedforsecurity=False).hexdigest()


def catalog_source(
    origin: dns.name.Name,
    members: Iterable[dns.name.Name],
    path: Path | None = None,
    generations: dict | None = None,
) -> ZoneSource:
    """The catalog zone ``origin`` listing ``members`` (RFC 9432 version 2).

    Serial 1: aliasd's serial logic (aliasd.base.state.next_serial) moves the
    served serial on whenever the content changes, like any zone file's.
    The catalog itself is never listed; a member named twice (in any case)
    is listed once. The same set of members always gives the same records.
    ``generations``: zone -> its generation (see member_id), for the zones
    that have one.
    """
    if not origin.is_absolute():
        raise ValueError(f"catalog zone name {origin} is not absolute")
    soa = dns.rdtypes.ANY.SOA.SOA(
        _IN, dns.rdatatype.SOA, _INVALID, _INVALID, 1, REFRESH, RETRY, EXPIRE, MINIMUM
    )
    rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}

    def put(owner: dns.name.Name, rdata) -> None:
        rrset = dns.rrset.RRset(owner, _IN, rdata.rdtype)
        rrset.add(rdata, TTL)
        rrsets[(owner, rdata.rdtype)] = rrset

    put(origin, soa)
    put(origin, dns.rdtypes.ANY.NS.NS(_IN, dns.rdatatype.NS, _INVALID))
    version = dns.name.Name((b"version",) + origin.labels)
    put(version, dns.rdtypes.ANY.TXT.TXT(_IN, dns.rdatatype.TXT, [VERSION]))

    zones_labels = (b"zones",) + origin.labels
    chosen: dict[bytes, dns.name.Name] = {}
    for member in members:
        if not member.is_absolute():
            raise ValueError(f"member zone name {member} is not absolute")
        if member == origin:  # case-insensitive
            continue
        key = member.to_wire(canonicalize=True)
        previous = chosen.get(key)
        # Case variants of one zone: keep one, whatever the input order.
        if previous is None or member.to_text() < previous.to_text():
            chosen[key] = member
    generations = generations or {}
    for key in sorted(chosen):
        member = chosen[key]
        owner = dns.name.Name((_label(key, generations.get(member, 0)).encode(),) + zones_labels)
        put(owner, _ptr(member))
    return ZoneSource.from_rrsets(
        origin, path if path is not None else Path(f"<catalog {origin.to_text()}>"), rrsets.values()
    )


def member_owner(catalog: dns.name.Name, member: dns.name.Name, generation: int = 0) -> dns.name.Name:
    """The owner of ``member``'s PTR in the catalog ``catalog`` (``<id>.zones.<catalog>``)."""
    return dns.name.Name((_label(member.to_wire(canonicalize=True), generation).encode(), b"zones")
                         + catalog.labels)


def with_members_changed(catalog: ZoneSource, added: dict, removed: dict) -> ZoneSource | None:
    """``catalog`` with a few members added and removed (member -> its
    generation), as catalog_source would build it, for what it costs: a
    zone created or deleted at runtime changes one record, not ten
    thousand. None when a case variant of a listed member is added (the
    whole catalog is built then)."""
    origin = catalog.origin
    records = dict(catalog.records)
    touched: dict[bytes, bytes | None] = {}
    for member, generation in removed.items():
        key = store.key_of(member_owner(origin, member, generation))
        if key in records:
            touched[key] = None
            del records[key]
    for member, generation in added.items():
        if member == origin:
            continue
        rrset = dns.rrset.RRset(member_owner(origin, member, generation), _IN, _PTR_TYPE)
        rrset.add(_ptr(member), TTL)
        (key, packed), = store.pack_rrsets([rrset]).items()
        if key in records:
            return None
        records[key] = touched[key] = packed
    return catalog.updated(records, touched)
