"""UPDATE messages of the common shape read from the wire, TSIG checked.

Why a module of its own: dnspython's ``dns.message.from_wire`` was the
largest single cost of an UPDATE on the reactor (its message factory,
section bookkeeping and RRset lookups, then restore_ttls reading the
records a second time). Most UPDATEs have one shape: a zone section of one
SOA in class IN, prerequisites and updates in class IN, ANY or NONE, no
EDNS, and a TSIG of a known key as the only additional record. ``parse``
reads that shape with dnspython's public pieces (``dns.name.from_wire``,
``dns.rdata.from_wire``, the TSIG rdata class, ``dns.tsig.validate``) into
a WireUpdate: what the update path reads of a dnspython message, with the
same RRsets the full parse gives (one RR per RRset, TTLs as sent). The
update records of the commonest types (A, AAAA, TXT: rdata without names,
whose wire form is canonical) are kept as wire and checked, and become
dnspython RRsets only when read: an UPDATE of those alone, without
prerequisites, is applied to the packed records directly
(aliasd.update.rfc2136.process), and dnspython's rdata objects and RRset
hashing were a third of the parse. It returns None for anything else, any
error included: the caller then parses in full, which also writes every
error answer (FORMERR, NOTAUTH, BADSIG, BADTIME, BADKEY), so those stay
dnspython's.
"""

from __future__ import annotations

import struct
import time

import dns.exception
import dns.flags
import dns.name
import dns.opcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig

from aliasd.base import store

_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_TYPE_CLASS = struct.Struct("!HH")
_TSIG_TIMES = struct.Struct("!HIHH")  # time signed (48 bits), fudge, MAC size
_TSIG_TAIL = struct.Struct("!HHH")  # original ID, error, other size
_IN = dns.rdataclass.IN
_ANY = dns.rdataclass.ANY
_NONE = dns.rdataclass.NONE
_SOA = dns.rdatatype.SOA
_TSIG = dns.rdatatype.TSIG
_SPECIAL = frozenset({dns.rdatatype.OPT, dns.rdatatype.TSIG})
_A = dns.rdatatype.A
_AAAA = dns.rdatatype.AAAA
_TXT = dns.rdatatype.TXT
#: Types whose rdata holds no name, so that its wire form in a message is
#: its uncompressed and canonical form: kept as wire (WireUpdate.plain).
PLAIN_TYPES = frozenset({_A, _AAAA, _TXT})
_UPDATE_FLAGS = int(dns.opcode.to_flags(dns.opcode.UPDATE))
_KIND = int(dns.flags.QR) | 0x7800  # QR and the opcode bits


#: Names read uncompressed, by their wire form: the zone, the key and its
#: algorithm come in every UPDATE (bounded: cleared when full).
_NAMES: dict[bytes, dns.name.Name] = {}
_NAMES_MAX = 1024


class WireUpdate:
    """A signed UPDATE as the update path reads a dnspython message
    (aliasd.answer.update_requests, aliasd.update.rfc2136.process,
    aliasd.base.replies.plain_reply): no EDNS, its TSIG validated. Not a
    dns.message.Message, whose construction and TSIG RRset (its rdata
    hashed, so rendered) cost as much as the TSIG check."""

    __slots__ = ("id", "flags", "question", "prerequisite", "_update", "plain", "wire", "keyname", "mac")

    edns = -1
    had_tsig = True

    def __init__(self, msg_id: int, flags: dns.flags.Flag, question: list, wire: bytes):
        self.id = msg_id
        self.flags = flags
        self.question = question
        self.prerequisite: list[dns.rrset.RRset] = []
        # Each update record: an RRset, or a PlainRecord until ``update`` is read.
        self._update: list = []
        #: The update records as PlainRecords when every one is of PLAIN_TYPES
        #: and there are no prerequisites (else None): what
        #: aliasd.update.rfc2136 applies to the packed records directly.
        self.plain: list[PlainRecord] | None = None
        self.wire = wire
        self.keyname: dns.name.Name | None = None
        self.mac: bytes | None = None

    @property
    def update(self) -> list[dns.rrset.RRset]:
        """The update section as dnspython RRsets (one RR each, TTLs as sent)."""
        section = self._update
        for i, rr in enumerate(section):
            if isinstance(rr, PlainRecord):
                section[i] = rr.rrset()
        return section

    def opcode(self) -> dns.opcode.Opcode:
        return dns.opcode.Opcode.UPDATE


class PlainRecord:
    """An update record of PLAIN_TYPES as read: its rdata (None: empty)
    still wire, checked well formed. ``deleting``: as an RRset's (None,
    class ANY or NONE)."""

    __slots__ = ("name", "rdtype", "deleting", "ttl", "rdata")

    def __init__(self, name: dns.name.Name, rdtype: int, deleting, ttl: int, rdata: bytes | None):
        self.name = name
        self.rdtype = rdtype
        self.deleting = deleting
        self.ttl = ttl
        self.rdata = rdata

    def rrset(self) -> dns.rrset.RRset:
        """The RRset dnspython's UpdateMessage reads for this record."""
        if self.rdata is None:
            rrset = dns.rrset.RRset(self.name, _IN, self.rdtype, dns.rdatatype.NONE, self.deleting)
        else:
            rd = dns.rdata.from_wire(_IN, self.rdtype, self.rdata, 0, len(self.rdata))
            rrset = dns.rrset.RRset(self.name, _IN, self.rdtype, rd.covers(), self.deleting)
            rrset.add(rd)
        rrset.ttl = self.ttl
        return rrset


def _plain_rdata(rdtype: int, wire: bytes, at: int, rdlen: int) -> bytes:
    """The rdata of a PLAIN_TYPES record, checked as dnspython's parse would
    (_Unusual where it might not take it: the full parse decides)."""
    if rdtype == _A:
        if rdlen != 4:
            raise _Unusual
    elif rdtype == _AAAA:
        if rdlen != 16:
            raise _Unusual
    else:  # TXT: one or more counted strings, filling the rdata exactly
        if rdlen == 0:
            raise _Unusual
        i, end = at, at + rdlen
        while i < end:
            i += wire[i] + 1
        if i != end:
            raise _Unusual
    rdata = wire[at:at + rdlen]
    if len(rdata) != rdlen:
        raise _Unusual
    return rdata


class _Unusual(Exception):
    """The message is not of the common shape: the full parse decides."""


def parse(wire: bytes, keyring: dict) -> WireUpdate | None:
    """The UPDATE in ``wire`` with its TSIG validated by a key of
    ``keyring``, or None when the full parse must decide (another shape,
    an unknown key, a bad signature or time, a malformed record)."""
    try:
        return _parse(wire, keyring)
    except (_Unusual, dns.exception.DNSException, ValueError, IndexError, struct.error):
        return None


def _parse(wire: bytes, keyring: dict) -> WireUpdate:
    if len(wire) < 12:
        raise _Unusual
    msg_id, flags, zocount, prcount, upcount, adcount = _HEADER.unpack_from(wire)
    if flags & _KIND != _UPDATE_FLAGS or zocount != 1 or adcount != 1:
        raise _Unusual
    zone, used = _name(wire, 12)
    at = 12 + used
    rdtype, rdclass = _TYPE_CLASS.unpack_from(wire, at)
    if rdtype != _SOA or rdclass != _IN:
        raise _Unusual
    at += 4
    message = WireUpdate(msg_id, dns.flags.Flag(flags), [dns.rrset.RRset(zone, _IN, _SOA)], wire)
    at = _records(wire, at, prcount, message.prerequisite, True)
    at = _records(wire, at, upcount, message._update, False)
    if not prcount and all(type(rr) is PlainRecord for rr in message._update):
        message.plain = list(message._update)
    tsig_start = at
    keyname, used = _name(wire, at)
    at += used
    rdtype, rdclass, _, rdlen = _RR.unpack_from(wire, at)
    at += 10
    if rdtype != _TSIG or rdclass != _ANY or at + rdlen != len(wire):
        raise _Unusual
    key = keyring.get(keyname)
    if key is None:
        raise _Unusual
    rd = _tsig_rdata(wire, at, rdlen)
    dns.tsig.validate(wire, key, keyname, rd, int(time.time()), None, tsig_start)
    message.keyname = keyname
    message.mac = rd.mac
    return message


def _records(wire: bytes, at: int, count: int, section: list, prerequisites: bool) -> int:
    """Read ``count`` records into ``section`` as dnspython's UpdateMessage
    does (class ANY or NONE: a deletion in class IN, empty where it must
    be), each its own RRset, with the TTL as sent (restore_ttls)."""
    for _ in range(count):
        name, used = _name(wire, at)
        at += used
        rdtype, rdclass, ttl, rdlen = _RR.unpack_from(wire, at)
        at += 10
        if rdtype in _SPECIAL:
            raise _Unusual
        deleting = None
        empty = False
        if rdclass == _ANY or rdclass == _NONE:
            deleting = rdclass
            empty = rdclass == _ANY or prerequisites
            rdclass = _IN
        elif rdclass != _IN:
            raise _Unusual
        if rdtype in PLAIN_TYPES and not prerequisites:
            if empty:
                if rdlen:
                    raise _Unusual
                section.append(PlainRecord(name, rdtype, deleting, ttl, None))
            else:
                section.append(PlainRecord(name, rdtype, deleting, ttl, _plain_rdata(rdtype, wire, at, rdlen)))
            at += rdlen
            continue
        if empty:
            if rdlen:
                raise _Unusual
            rrset = dns.rrset.RRset(name, rdclass, rdtype, dns.rdatatype.NONE, deleting)
        else:
            rd = dns.rdata.from_wire(rdclass, rdtype, wire, at, rdlen)
            rrset = dns.rrset.RRset(name, rdclass, rdtype, rd.covers(), deleting)
            rrset.add(rd)
        rrset.ttl = ttl
        section.append(rrset)
        at += rdlen
    return at


def _tsig_rdata(wire: bytes, at: int, rdlen: int) -> dns.rdtypes.ANY.TSIG.TSIG:
    """The TSIG rdata at ``at``, its fields read with struct and given to
    dnspython's TSIG class (its wire parser costs three times as much)."""
    end = at + rdlen
    algorithm, used = _name(wire, at)
    at += used
    high, low, fudge, mac_size = _TSIG_TIMES.unpack_from(wire, at)
    at += _TSIG_TIMES.size
    mac = wire[at:at + mac_size]
    at += mac_size
    original_id, error, other_size = _TSIG_TAIL.unpack_from(wire, at)
    at += _TSIG_TAIL.size
    if len(mac) != mac_size or at + other_size != end:
        raise _Unusual
    return dns.rdtypes.ANY.TSIG.TSIG(_ANY, _TSIG, algorithm, (high << 32) | low, fudge, mac,
                                     original_id, error, wire[at:end])


def _name(wire: bytes, at: int) -> tuple[dns.name.Name, int]:
    """dns.name.from_wire's (name, octets used); a name without compression
    is made from its labels (a third of from_wire's cost: a challenge name
    is new in every UPDATE) and then found by its octets."""
    end = at
    length = wire[end]
    while length:
        if length >= 64:  # a compression pointer (or a bad label): dnspython follows it
            return dns.name.from_wire(wire, at)
        end += length + 1
        length = wire[end]
    end += 1
    raw = wire[at:end]
    name = _NAMES.get(raw)
    if name is None:
        name = store.name_of(raw)  # (its labels as they are, checked by Name; its hash kept)
        if len(_NAMES) >= _NAMES_MAX:
            _NAMES.clear()
        _NAMES[raw] = name
    return name, end - at
