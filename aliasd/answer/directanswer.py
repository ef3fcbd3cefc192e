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

A signed zone's negative answers share most of their records: every
NXDOMAIN and NODATA carries the negative SOA and its RRSIG, and every
missing name under one closest encloser the same proof of the encloser
and of its wildcard (RFC 5155 7.2.2); only the NSEC3 covering the next
closer name differs. So each version keeps those records as written
(``SignedParts``: the wire after the owner, which is compressed against
each question), and a flood of made-up names costs the hash, the search
and one denial record each, not eight records (NSEC3) read from the store.
"""

from __future__ import annotations

import struct
import weakref

import dns.rdatatype

from aliasd.base import fastpath, store
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
NXDOMAIN, NOERROR = 3, 0


#: The query types whose answer at a zone still loading is SERVFAIL on the
#: full path too (those it refuses or answers otherwise are not written here).
_NOT_LOADING_TYPES = frozenset({T.OPT, T.TSIG, T.TKEY})
_SERVFAIL = 2


def loading(qtype: int, query: bytes, qend: int, edns: bool, dnssec: bool, payload: int) -> bytes | None:
    """The SERVFAIL for a plain query at a zone whose first version is not
    served yet (start-up at thousands of zones; a held zone), as the full
    path writes it (no AA; RD and CD copied; our OPT, DO echoed); None for
    the full path.

    Why: clients ask while thousands of zones load, and each of those
    answers took dnspython's parse and render (at a warm start of 10,000
    zones under many_zones.py's probe, 44 % of py-spy's samples until ready).
    """
    if qtype in _NOT_LOADING_TYPES:
        return None
    flags = 0x8000 | _SERVFAIL | (((query[2] << 8) | query[3]) & _CLIENT_FLAGS)
    parts = [query[:2], flags.to_bytes(2, "big"), _HEADER_TAIL.pack(1, 0, 0, 1 if edns else 0), query[12:qend]]
    if edns:
        parts.append(b"\0" + _RR_HEAD.pack(T.OPT, payload, _DO if dnssec else 0, 0))
    return b"".join(parts)


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
    vacant = version.vacant
    # As served: flattened addresses, the SOA's serial, the signer's records.
    node = version.node_at(name_key) if name_key not in vacant else None
    if node is not None:
        if qtype in node:
            ttl, rdatas = node.wires(qtype)
            records = _tails(qtype, ttl, rdatas)
            if signed is not None:
                signatures = _signature_tails(signed, name_key, qtype, ttl)
                if signatures is None:
                    return None
                records += signatures
            # Each owner a pointer to the question's name.
            return _finish(query, qend, NOERROR, len(records), 0, _QUESTION.join((b"", *records)),
                           limit, edns, dnssec, payload)
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
    # Owners in the zone: their labels and a pointer to the zone's name,
    # which ends the question's name.
    origin_at = 12 + len(name_key) - len(base.origin_key)
    apex = bytes((0xC0 | origin_at >> 8, origin_at & 0xFF))
    if signed is None:
        ttl, soa = version.negative_soa_wire
        return _finish(query, qend, rcode, 0, 1, apex + _tails(T.SOA, ttl, (soa,))[0],
                       limit, edns, dnssec, payload)
    parts = signed_parts(version)
    soa = parts.soa
    if soa is None:
        return None
    chunks = [apex.join(soa)]
    count = len(soa) - 1
    for owner_key in proof:
        found = parts.denial(owner_key)
        if found is None:
            return None
        prefix, records = found
        chunks.append((prefix + apex).join(records))
        count += len(records) - 1
    return _finish(query, qend, rcode, 0, count, b"".join(chunks), limit, edns, dnssec, payload)


_QUESTION = b"\xc0\x0c"  # a pointer to the question's name


def _finish(query: bytes, qend: int, rcode: int, answers: int, authorities: int, records: bytes,
            limit: int, edns: bool, dnssec: bool, payload: int) -> tuple[bytes, int] | None:
    """The answer: the query's ID, RD and CD, its question, then
    ``records`` (``answers`` in the answer section, ``authorities`` in the
    authority section) and our OPT record if the query had one."""
    flags = _QR_AA | rcode | (((query[2] << 8) | query[3]) & _CLIENT_FLAGS)
    wire = b"".join((
        query[:2], flags.to_bytes(2, "big"), _HEADER_TAIL.pack(1, answers, authorities, 1 if edns else 0),
        query[12:qend], records,
        b"\0" + _RR_HEAD.pack(T.OPT, payload, _DO if dnssec else 0, 0) if edns else b"",
    ))
    if len(wire) > limit:
        return None  # the full path truncates at whole RRsets
    return wire, rcode


def _tails(rdtype: int, ttl: int, rdatas) -> list[bytes]:
    """The wire records of one RRset less their owner name."""
    head = _RR_HEAD.pack
    return [head(rdtype, 1, ttl, len(rdata)) + rdata for rdata in rdatas]


def _signature_tails(signed, key: bytes, covered: int, ttl: int | None) -> list[bytes] | None:
    """The RRSIGs covering ``covered`` at ``key``, less their owner, with
    ``ttl`` (that of the RRset as served; None: as stored); None if none."""
    packed = signed.signatures.get(key)
    if packed is None:
        return None
    for rdtype, stored_ttl, _, start, end in store.directory(packed):
        if rdtype == covered:
            return _tails(T.RRSIG, stored_ttl if ttl is None else ttl, store.rdata_wires(packed, start, end))
    return None


#: Denial records kept per version (``SignedParts.denial``): those of the
#: closest enclosers and wildcards asked about stay, while a flood of
#: made-up names, whose covering records are all different, keeps at most
#: this many (about 300 octets each).
DENIALS_KEPT = 4096


class SignedParts:
    """The records negative answers of one signed version share, as wire
    less their owner: the negative SOA with its RRSIG, and each NSEC or
    NSEC3 record asked for with its RRSIG, written once.

    One per version (``signed_parts``), made on first use and gone with
    the version (it holds the version's signatures, not the version): a
    version never changes (aliasd.zones.zone), so neither does what is
    kept here, and a new version starts empty.
    """

    __slots__ = ("signed", "soa", "_denials", "_type", "_origin_len")

    def __init__(self, version: ZoneVersion):
        signed = self.signed = version.signed
        origin_key = version.base.origin_key
        ttl, rdata = version.negative_soa_wire
        sigs = _signature_tails(signed, origin_key, T.SOA, ttl)
        # The negative SOA and its RRSIG(s), each less its owner (the apex),
        # after an empty one as ``denial``'s; None when the SOA is not
        # signed (the full path answers).
        self.soa = None if sigs is None else (b"", *_tails(T.SOA, ttl, (rdata,)), *sigs)
        self._denials = fastpath.AnswerCache(DENIALS_KEPT)
        self._type = T.NSEC3 if signed.nsec3 else T.NSEC
        self._origin_len = len(origin_key)

    def denial(self, owner_key: bytes) -> tuple[bytes, tuple[bytes, ...]] | None:
        """(the owner's labels below the apex, its denial record and
        RRSIG(s) less the owner) at ``owner_key``; None if it has none.
        The records come after an empty one: joined with the owner's name,
        each is a whole record."""
        denials = self._denials
        found = denials.young.get(owner_key)  # (most hits: without AnswerCache.get's call)
        if found is None:
            found = denials.get(owner_key)
            if found is None:
                found = self._read_denial(owner_key)
                if found is None:
                    return None
                denials.put(owner_key, found)
        return found

    def _read_denial(self, owner_key: bytes) -> tuple[bytes, tuple[bytes, ...]] | None:
        signed = self.signed
        packed = signed.records.get(owner_key)
        if packed is None:
            return None
        denial_type = self._type
        for rdtype, ttl, _, start, end in store.directory(packed):
            if rdtype == denial_type:
                owner = store.owner_of(packed)
                tails = (b"", *_tails(rdtype, ttl, store.rdata_wires(packed, start, end)),
                         *(_signature_tails(signed, owner_key, rdtype, None) or ()))
                return owner[:len(owner) - self._origin_len], tails
        return None


#: Each signed version's parts, made on first use. Weak keys: they go with
#: the version (as aliasd.replicate.transfer's renderings do).
_parts: "weakref.WeakKeyDictionary[ZoneVersion, SignedParts]" = weakref.WeakKeyDictionary()


def signed_parts(version: ZoneVersion) -> SignedParts:
    """The kept parts of a signed version's negative answers."""
    parts = _parts.get(version)
    if parts is None:
        parts = _parts[version] = SignedParts(version)
    return parts
