"""The hot path: each answer rendered once per zone version, then reused.

Most queries are plain: one question in class IN, no TSIG, at most an OPT
record of EDNS version 0. For those, ``cache_key`` reads the question and
the client's UDP size straight from the packet (no message parsing), and an
answer rendered earlier for the same name, type and shape is reused: only
the ID, the RD/CD flags the client controls and the question's letter case
(0x20 randomisation) are copied from the query. The shape is what else
changes the answer's bytes: the size limit, EDNS or not, the DO bit (echoed
in the answer's OPT, RFC 3225 3) and UDP or not. An entry is valid only
while its zone still serves the version it was rendered from (and no reload
changed the set of zones), so a new version never serves stale bytes.
Anything unusual (TSIG, other opcodes, compression in the question, EDNS
versions other than 0, an OPT whose options the full path would reject or
look into, transfers, CHAOS) takes the full path.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import dns.edns
import dns.name

from aliasd.base import store

_COUNTS = struct.Struct("!HHHH")
_QTAIL = struct.Struct("!HH")
_OPT = struct.Struct("!HHBBHH")
_OPTION = struct.Struct("!HH")
_DO = 0x8000  # in the OPT record's flags (RFC 3225)
#: EDNS options dnspython keeps as opaque octets: any content parses.
_OPAQUE_OPTIONS = (dns.edns.GenericOption, dns.edns.NSIDOption)
_CLIENT_FLAGS = 0x0110  # RD and CD: copied from the query
_NOT_CACHED_TYPES = frozenset({41, 249, 250, 251, 252, 255})  # OPT TKEY TSIG IXFR AXFR ANY
#: The least bound on kept answers (measured: about 950 octets each for an
#: A answer). By default the bound is this or twice the number of names
#: the zones hold, whichever is more (see ``automatic_size``).
MAX_ENTRIES = 100_000


def automatic_size(name_count: int) -> int:
    """The default bound: every name's answer for two query types fits, so
    the working set of a large zone is kept, while a flood of one-off
    queries costs at most about as much memory again as the zones do."""
    return max(MAX_ENTRIES, 2 * name_count)


class AnswerCache:
    """Kept answers, bounded, least recently used dropped first (roughly).

    Two generations: new answers go into the young one; when it holds half
    the bound it becomes the old one and the previous old one is dropped.
    A hit in the old generation is copied into the young one, so answers in
    use survive and a flood of one-off queries (every query type at every
    name, say) can neither grow memory past the bound nor flush the
    working set all at once. Every operation is a dict lookup or two.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.young: dict[bytes, CachedAnswer] = {}
        self.old: dict[bytes, CachedAnswer] = {}
        self.resize(max_entries)

    def resize(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.half = max(1, max_entries // 2)
        if len(self.young) > self.half:
            self.old, self.young = self.young, {}

    def get(self, key: bytes) -> "CachedAnswer | None":
        entry = self.young.get(key)
        if entry is None:
            entry = self.old.get(key)
            if entry is not None:
                self.put(key, entry)
        return entry

    def put(self, key: bytes, entry: "CachedAnswer") -> None:
        if len(self.young) >= self.half:
            self.old = self.young
            self.young = {}
        self.young[key] = entry

    def clear(self) -> None:
        self.young, self.old = {}, {}

    def __len__(self) -> int:
        return len(self.young) + len(self.old)


class CachedAnswer(NamedTuple):
    origin: dns.name.Name
    # The zone's wire key: the entry is valid while the authority's
    # ``zones_by_wire`` maps it to ``version`` (aliasd.zones.registry).
    origin_key: bytes
    version: object  # the ZoneVersion it was rendered from
    generation: int  # the authority's zone-set generation
    wire: bytes  # ID 0, RD/CD clear
    stat_key: tuple  # the statistics counter for this answer
    alias_owner: dns.name.Name | None  # counted as an ALIAS answer
    alias_key: tuple  # the statistics counter for ALIAS answers in this zone


def cache_key(wire: bytes, over_udp: bool, max_udp: int) -> tuple[bytes, int] | None:
    """(key, end of question) for a plain query, or None for the full path."""
    size = len(wire)
    if size < 17 or wire[2] & 0xF8:  # QR set or an opcode other than QUERY
        return None
    qd, an, ns, ar = _COUNTS.unpack_from(wire, 4)
    if qd != 1 or an or ns or ar > 1:
        return None
    i = question_end(wire, size)
    if i < 0:
        return None
    qtype, qclass = _QTAIL.unpack_from(wire, i)
    qend = i + 4
    if qclass != 1 or qtype in _NOT_CACHED_TYPES:
        return None
    if ar == 0:
        if qend != size:
            return None
        limit, edns = (512 if over_udp else 65535), 0
    else:
        if size < qend + 11 or wire[qend] != 0:
            return None
        # One OPT (ar is 1), owned by the root (one zero octet, no pointer).
        otype, payload, _, version, eflags, rdlength = _OPT.unpack_from(wire, qend + 1)
        if otype != 41 or version != 0 or qend + 11 + rdlength != size:
            return None
        if rdlength and not plain_options(wire, qend + 11, size):
            return None
        limit = min(max(512, payload), max_udp) if over_udp else 65535
        edns = 2 | (eflags & _DO) >> 13  # EDNS, and DO as the next bit up
    # One bytes object as the key (small, hashed once): the lower-cased name
    # (type and class octets are numbers, never case-folded), then the size
    # and flag shape of the answer.
    shape = bytes(((limit >> 8) & 0xFF, limit & 0xFF, edns | over_udp))
    return wire[12:i].lower() + wire[i:qend] + shape, qend


def question_end(wire: bytes, size: int) -> int:
    """Where the first question's name ends (after its root octet), or -1
    unless it is an uncompressed name of at most 255 octets followed by a
    type and a class within ``size`` (a compression pointer or garbage)."""
    i = 12
    while i < size:
        length = wire[i]
        if length == 0:
            i += 1
            return i if i - 12 <= 255 and i + 4 <= size else -1
        if length > 63:
            return -1
        i += length + 1
    return -1


def plain_options(wire: bytes, start: int, end: int) -> bool:
    """Whether ``wire[start:end]``, an OPT record's rdata, is EDNS options
    the full path accepts as they are (RFC 6891 6.1.2): option headers of
    four octets, each option's length ending within the rdata and the last
    ending exactly at its end. An option dnspython parses into fields (ECS,
    EDE, ...) may be malformed inside and takes the full path, except a
    COOKIE of a valid length (RFC 7873 4: an 8-octet client cookie and
    none or 8 to 32 octets of server cookie; aliasd does not answer them).
    """
    i = start
    while i < end:
        if i + 4 > end:
            return False  # a truncated option header
        code, length = _OPTION.unpack_from(wire, i)
        i += 4 + length
        if i > end:
            return False  # the option runs past the rdata
        if code == 10:
            if length != 8 and not 16 <= length <= 40:
                return False
        elif dns.edns.get_option_class(code) not in _OPAQUE_OPTIONS:
            return False
    return True


def missing_name(name_wire: bytes, zones: dict, soa_suffixes: dict):
    """(zone version, origin wire) if the name certainly has no records, else None.

    ``name_wire`` is lower-case. The answer is NXDOMAIN and its bytes after
    the question depend only on the zone, the name's length and the query's
    type and size shape, as long as: the zone has no wildcard and no
    delegation and is not signed (NSEC records differ per name), and no suffix of the name (below the apex) is a suffix of a
    name in the SOA record, which the SOA's compression could point into.

    This is a closest-enclosing-zone search of its own, on purpose: the
    one on names (aliasd.zones.registry.ZoneRegistry.closest_source) would need
    the question parsed into a dns.name.Name, hashed label by label in
    Python, which is what the fast path exists to avoid; here the name is
    the bytes cut from the packet, its suffixes are slices, and the same
    list of suffixes serves the SOA-compression check below.
    """
    if name_wire in zones:  # a zone apex exists
        return None
    names = list(store.suffixes(name_wire))  # the name, then each parent
    for depth in range(1, len(names)):
        origin = names[depth]
        version = zones.get(origin)
        if version is None:
            continue
        base = version.base
        if base.has_wildcards or base.cuts or base.dnames or base.exists(name_wire):
            return None
        if version.signed is not None:  # a signed NXDOMAIN proves the name's own absence
            return None
        avoid = soa_suffixes.get(origin, ())
        for inner, suffix in enumerate(names[:depth]):
            if suffix in avoid or base.exists(suffix) and inner:
                return None
        return version, origin
    return None


def template(response: bytes) -> bytes:
    """A rendered response with ID 0 and the client-controlled flags clear."""
    flags = ((response[2] << 8) | response[3]) & ~_CLIENT_FLAGS
    return b"\0\0" + bytes((flags >> 8, flags & 0xFF)) + response[4:]


def patch(entry_wire: bytes, query: bytes, qend: int) -> bytes:
    """The cached answer with this query's ID, RD/CD flags and question."""
    flags = ((entry_wire[2] << 8) | entry_wire[3]) | (((query[2] << 8) | query[3]) & _CLIENT_FLAGS)
    return query[:2] + bytes((flags >> 8, flags & 0xFF)) + entry_wire[4:12] + query[12:qend] + entry_wire[qend:]
