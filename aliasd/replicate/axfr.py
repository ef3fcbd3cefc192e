"""AXFR messages written straight from a zone version's packed records.

Why: decoding every record into dnspython objects and rendering them again
took most of the reactor's time while a secondary pulled ten thousand
zones (and 12 s for a zone of 120,000 records). The packed records
(aliasd.base.store) already are wire form: a message is the header, the
question, each record's owner, type, class, TTL and rdata as stored, and
the OPT record when the query had EDNS. Owner names are compressed against
the zone's name (a pointer to the question, or to the first owner of a
later message, which carries no question); names inside rdata are left
uncompressed, which every DNS implementation reads (RFC 1035 4.1.4 makes
compression optional). Only unsigned transfers come here: a signed one is
rendered by aliasd.replicate.transfer, which keeps the TSIG chain.
"""

from __future__ import annotations

import struct
from typing import Iterator

import dns.rdatatype

from aliasd.base import store
from aliasd.zones.zone import ZoneVersion
from aliasd.zones.zonefile import ALIAS_TYPE

_HEADER = struct.Struct("!HHHHHH")
_RR_TAIL = struct.Struct("!HHIH")  # type, class IN, TTL, rdata length
_SOA = dns.rdatatype.SOA
_SKIPPED = (_SOA, ALIAS_TYPE)
_RRSIG = dns.rdatatype.RRSIG
_IN = 1
MAX_MESSAGE_SIZE = 65535


def _records(version: ZoneVersion) -> Iterator[tuple[bytes, int, int, bytes]]:
    """(owner wire, type, TTL, rdata wire) for the whole view, SOA first and last."""
    soa_ttl, soa_rdata = version.source.soa_wire
    soa_rdata = store.with_serial(soa_rdata, version.serial)
    apex = store.owner_of(version.source.records[version.base.origin_key])
    yield apex, _SOA, soa_ttl, soa_rdata
    overlay = version.overlay
    signed = version.signed
    records = version.source.records
    for key, packed in records.items():
        owner = store.owner_of(packed)
        overrides = overlay.get(key)
        for rdtype, ttl, _, start, end in store.directory(packed):
            if rdtype in _SKIPPED:
                continue
            if overrides and rdtype in overrides:
                continue  # replaced: written below from the override
            for rdata in store.rdata_wires(packed, start, end):
                yield owner, rdtype, ttl, rdata
        if overrides:
            for rdtype, rrset in overrides.items():
                if rrset is not None:
                    for rdata in rrset:
                        yield owner, rdtype, rrset.ttl, rdata.to_wire()
        if signed is not None:
            yield from _packed(signed.records.get(key))
            yield from _packed(signed.signatures.get(key), _RRSIG)
    if signed is not None:
        for key, packed in signed.records.items():
            if key not in records:  # NSEC3 owners
                yield from _packed(packed)
                yield from _packed(signed.signatures.get(key), _RRSIG)
    yield apex, _SOA, soa_ttl, soa_rdata


def _packed(packed: bytes | None, as_type: int | None = None):
    """Every record of a packed node; ``as_type`` (RRSIG) for signature
    nodes, whose entries are typed by the type they cover."""
    if not packed:
        return
    owner = store.owner_of(packed)
    for rdtype, ttl, _, start, end in store.directory(packed):
        for rdata in store.rdata_wires(packed, start, end):
            yield owner, as_type or rdtype, ttl, rdata


def axfr_messages(
    version: ZoneVersion, ident: int, flags: int, question: bytes, opt: bytes = b"",
    max_size: int = MAX_MESSAGE_SIZE,
) -> Iterator[bytes]:
    """The AXFR of ``version`` as messages of at most ``max_size`` octets.

    ``question`` is the query's question section (its name in the query's
    letter case, type, class), ``flags`` the response flags, ``opt`` the
    OPT record for every message (empty without EDNS).
    """
    origin_len = len(version.base.origin_key)
    room = max_size - len(opt)
    first = True
    parts: list[bytes] = []
    size = count = 0
    pointer = b""  # to the zone's name in this message

    def start():
        nonlocal parts, size, count, pointer, first
        head = question if first else b""
        parts, size, count = [head], _HEADER.size + len(head), 0
        pointer = b"\xc0\x0c" if first else b""

    def finish() -> bytes:
        qd = 1 if first else 0
        header = _HEADER.pack(ident, flags, qd, count, 0, 1 if opt else 0)
        return header + b"".join(parts) + opt

    start()
    for owner, rdtype, ttl, rdata in _records(version):
        prefix = owner[:len(owner) - origin_len]
        if pointer:
            name = prefix + pointer
        else:
            name = owner
        record = name + _RR_TAIL.pack(rdtype, _IN, ttl, len(rdata)) + rdata
        if size + len(record) > room and count:
            yield finish()
            first = False
            start()
            name = owner
            record = name + _RR_TAIL.pack(rdtype, _IN, ttl, len(rdata)) + rdata
        if size + len(record) > room:
            raise ValueError(f"a record of {version.origin} exceeds {max_size} octets")
        if not pointer:  # later owners point at the zone name inside this one
            at = size + len(prefix)
            if at < 0x4000:
                pointer = bytes((0xC0 | at >> 8, at & 0xFF))
        parts.append(record)
        size += len(record)
        count += 1
    yield finish()
