"""First answers to plain queries, written from the packed records.

Why: the fast path (aliasd.base.fastpath) reuses answers rendered earlier, but
the first answer to each name took dnspython's way: the query parsed, the
RRsets decoded, the answer rendered. With DO in a signed zone that cost
about 0.8 ms for an address and 2 ms for an NXDOMAIN with its NSEC3
proofs (1,300 and 450 first answers a second), and a flood of made-up
names at a signed zone is nothing but first answers. The common shapes
are written here from the wire the zone keeps (aliasd.base.store), without
decoding a record:

- a name's own RRset (flattened ALIAS addresses included), with its RRSIG
  when the query has DO and the zone is signed;
- NODATA at a name, or at an empty non-terminal, with the SOA and, signed,
  the NSEC or NSEC3 proof;
- NXDOMAIN where no wildcard answers, likewise.

Everything else (names at or below a delegation or a DNAME, wildcards,
CNAMEs, RRSIG, ANY, answers that would not fit) returns None and
takes the full path, which stays the reference: the tests compare every
shape written here with the full path's answer. The records are written
the way the full path's are, in the same order, TTLs and letter case; owner
names are compressed against the question, rdata names are not
(compression there is optional, RFC 1035 4.1.4), and the answer may be a
few octets longer.
"""

from __future__ import annotations

import struct

import dns.rdatatype

from aliasd.base import store
from aliasd.zones.zone import ZoneVersion
from aliasd.zones.zonefile import ALIAS_TYPE

T = dns.rdatatype
_RR_HEAD = struct.Struct("!HHIH")  # type, class, TTL, rdata length
_HEADER_TAIL = struct.Struct("!HHHH")
_QR_AA = 0x8400
_CLIENT_FLAGS = 0x0110  # RD and CD: copied from the query
_DO = 0x8000
#: Left to the full path: RRSIG and ALIAS (never answered as such), and
#: what fastpath.cache_key already refuses.
_FULL_PATH_TYPES = frozenset({T.RRSIG, ALIAS_TYPE})
NXDOMAIN, NOERROR, SERVFAIL = 3, 0, 2


def answer(version: ZoneVersion, name_key: bytes, qtype: int, query: bytes, qend: int,
           limit: int, edns: bool, dnssec: bool, payload: int) -> tuple[bytes, int] | None:
    """(the answer's wire, its rcode) for a plain query, or None for the full path.

    ``name_key`` is the question's name in lower-case wire form, within
    ``version``'s zone; ``query[12:qend]`` is its question as sent. ``edns``:
    the query has an OPT record, whose DO bit is ``dnssec``; ``payload``
    is our UDP size for the answer's OPT; ``limit`` the answer's size limit.
    """
    if qtype in _FULL_PATH_TYPES:
        return None
    base = version.base
    if (base.cuts or base.dnames) and base.redirected(name_key):
        return None
    signed = version.signed if dnssec else None
    origin_len = len(base.origin_key)
    writer = _Writer(12 + len(name_key) - origin_len, origin_len)
    vacant = version.vacant
    # As served: flattened addresses, the SOA's serial, the signer's records.
    node = version.node_at(name_key) if name_key not in vacant else None
    if node is not None:
        if qtype in node:
            ttl, rdatas = node.wires(qtype)
            writer.add(writer.answer, _QUESTION, qtype, ttl, rdatas)
            if signed is not None and not writer.signature(writer.answer, signed, name_key, _QUESTION, qtype, ttl):
                return None
            return writer.finish(query, qend, NOERROR, limit, edns, dnssec, payload)
        if T.CNAME in node:
            return None
        proof = [signed.matching_owner(name_key)] if signed is not None else ()
        rcode = NOERROR
    elif name_key in base.empty_non_terminals and name_key not in vacant:
        proof = version.proof_owners(name_key, "ent") if signed is not None else ()
        rcode = NOERROR
    elif base.has_wildcards and base.closest_encloser_wildcard(name_key, vacant) is not None:
        return None
    else:
        proof = version.proof_owners(name_key, "nxdomain") if signed is not None else ()
        rcode = NXDOMAIN
    ttl, soa = version.negative_soa_wire
    apex = writer.pointer
    writer.add(writer.authority, apex, T.SOA, ttl, (soa,))
    if signed is not None:
        if not writer.signature(writer.authority, signed, base.origin_key, apex, T.SOA, ttl):
            return None
        denial_type = T.NSEC3 if signed.nsec3 else T.NSEC
        for owner_key in proof:
            if not writer.denial(signed, owner_key, denial_type):
                return None
    return writer.finish(query, qend, rcode, limit, edns, dnssec, payload)


def not_loaded(query: bytes, qend: int, edns: bool, dnssec: bool, payload: int) -> bytes:
    """SERVFAIL to a plain query in a zone configured but not served yet
    (loading at start, or held: its file broken), as the full path writes
    it: not authoritative, the question, our OPT. While ten thousand zones
    load, every query at them took dnspython's way (about 0.1 ms each: the
    bench's probes of the zones cost the start more than building a fifth
    of them)."""
    flags = 0x8000 | SERVFAIL | (((query[2] << 8) | query[3]) & _CLIENT_FLAGS)
    parts = [query[:2], flags.to_bytes(2, "big"), _HEADER_TAIL.pack(1, 0, 0, 1 if edns else 0), query[12:qend]]
    if edns:
        parts.append(b"\0" + _RR_HEAD.pack(T.OPT, payload, _DO if dnssec else 0, 0))
    return b"".join(parts)


_QUESTION = b"\xc0\x0c"  # a pointer to the question's name


class _Writer:
    """The sections of one answer as wire records, counted. Owners are
    compressed against the question: the name itself at offset 12, a name
    in the zone as its own labels and a pointer to the zone's name, which
    ends the question's name at ``origin_at``."""

    __slots__ = ("pointer", "origin_len", "answer", "authority")

    def __init__(self, origin_at: int, origin_len: int):
        self.pointer = bytes((0xC0 | origin_at >> 8, origin_at & 0xFF))
        self.origin_len = origin_len
        self.answer: list[bytes] = []
        self.authority: list[bytes] = []  # (one wire record per entry: the counts are the lengths)

    def owner(self, owner_wire: bytes) -> bytes:
        return owner_wire[:len(owner_wire) - self.origin_len] + self.pointer

    def add(self, section: list, owner: bytes, rdtype: int, ttl: int, rdatas) -> None:
        head = _RR_HEAD.pack
        for rdata in rdatas:
            section.append(owner + head(rdtype, 1, ttl, len(rdata)) + rdata)

    def signature(self, section: list, signed, key: bytes, owner: bytes, covered: int, ttl: int | None) -> bool:
        """Append the RRSIGs covering ``covered`` at ``key`` with ``ttl``
        (that of the RRset as served; None: as stored); False if none."""
        packed = signed.signatures.get(key)
        if packed is None:
            return False
        for rdtype, stored_ttl, _, start, end in store.directory(packed):
            if rdtype == covered:
                self.add(section, owner, T.RRSIG, stored_ttl if ttl is None else ttl,
                         store.rdata_wires(packed, start, end))
                return True
        return False

    def denial(self, signed, owner_key: bytes, denial_type: int) -> bool:
        """Append the NSEC or NSEC3 record at ``owner_key`` and its RRSIG."""
        packed = signed.records.get(owner_key)
        if packed is None:
            return False
        for rdtype, ttl, _, start, end in store.directory(packed):
            if rdtype == denial_type:
                owner = self.owner(store.owner_of(packed))
                self.add(self.authority, owner, rdtype, ttl, store.rdata_wires(packed, start, end))
                self.signature(self.authority, signed, owner_key, owner, rdtype, None)
                return True
        return False

    def finish(self, query: bytes, qend: int, rcode: int, limit: int, edns: bool, dnssec: bool,
               payload: int) -> tuple[bytes, int] | None:
        flags = _QR_AA | rcode | (((query[2] << 8) | query[3]) & _CLIENT_FLAGS)
        counts = _HEADER_TAIL.pack(1, len(self.answer), len(self.authority), 1 if edns else 0)
        parts = [query[:2], flags.to_bytes(2, "big"), counts, query[12:qend], *self.answer, *self.authority]
        if edns:
            parts.append(b"\0" + _RR_HEAD.pack(T.OPT, payload, _DO if dnssec else 0, 0))
        wire = b"".join(parts)
        if len(wire) > limit:
            return None  # the full path truncates at whole RRsets
        return wire, rcode
