"""Master files with ALIAS records, parsed by dnspython into a ZoneSource.

This module knows the file format and the zone rules that can be checked on
the file alone (SOA at the apex, one ALIAS per owner, no ALIAS beside a
CNAME, nothing outside the zone). It does not resolve anything.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path
from typing import Mapping

import dns.exception
import dns.name
import dns.node
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.nsbase
import dns.rrset
import dns.tokenizer
import dns.zone
import dns.zonefile

from aliasd import store

#: The private-use type code that other servers use for ALIAS.
ALIAS_TYPE = 65401


class ALIAS(dns.rdtypes.nsbase.UncompressedNS):
    """ALIAS target: a CNAME-like name whose addresses the owner serves.

    Uncompressed on the wire, as RFC 3597 requires for a type that other
    software does not know.
    """


def _register_alias_type() -> None:
    try:
        dns.rdata.register_type(ALIAS, ALIAS_TYPE, "ALIAS")
    except dns.rdata.RdatatypeExists:
        pass  # already registered by an earlier import


_register_alias_type()
ALIAS_RDTYPE = dns.rdatatype.RdataType.make(ALIAS_TYPE)


def type_text(rdtype: int) -> str:
    """The mnemonic of a record type, ALIAS included."""
    if rdtype == ALIAS_TYPE:
        return "ALIAS"
    return dns.rdatatype.to_text(rdtype)


class ZoneFileError(Exception):
    """A zone file that cannot be served; the message names file and line."""


@dataclasses.dataclass(frozen=True)
class AliasRecord:
    """One ALIAS rule: A/AAAA queries at ``owner`` get ``target``'s addresses."""

    owner: dns.name.Name
    ttl: int
    target: dns.name.Name


@dataclasses.dataclass(frozen=True, eq=False)
class ZoneSource:
    """What one zone file says, checked, with absolute names.

    ``records`` maps each owner's lookup key (aliasd.store.key_of) to its
    packed RRsets, ALIAS included, in file order; ``aliases`` maps each
    ALIAS owner to its rule. Compared by identity: the authority tells a
    reloaded file from an unchanged one by the object it gets.
    """

    origin: dns.name.Name
    path: Path
    records: Mapping[bytes, bytes]
    aliases: Mapping[dns.name.Name, AliasRecord]

    @classmethod
    def of(cls, origin: dns.name.Name, path: Path, records: dict[bytes, bytes]) -> "ZoneSource":
        """A source from packed records; finds the ALIAS rules among them."""
        aliases = {}
        for packed in records.values():
            for rdtype, ttl, _, start, end in store.directory(packed):
                if rdtype == ALIAS_TYPE:
                    owner = store.name_of(store.owner_of(packed))
                    target = store.name_of(next(store.rdata_wires(packed, start, end)))
                    aliases[owner] = AliasRecord(owner, ttl, target)
        return cls(origin, path, records, aliases)

    @classmethod
    def from_rrsets(cls, origin: dns.name.Name, path: Path, rrsets) -> "ZoneSource":
        return cls.of(origin, path, store.pack_rrsets(rrsets))

    @functools.cached_property
    def key(self) -> bytes:
        return store.key_of(self.origin)

    @functools.cached_property
    def soa_wire(self) -> tuple[int, bytes]:
        """(TTL, rdata) of the apex SOA, read without decoding it."""
        packed = self.records[self.key]
        for rdtype, ttl, _, start, end in store.directory(packed):
            if rdtype == dns.rdatatype.SOA:
                return ttl, next(store.rdata_wires(packed, start, end))
        raise KeyError("no SOA")  # load_zone_file never makes such a source

    def soa_with(self, serial: int) -> dns.rrset.RRset:
        """The apex SOA RRset with ``serial`` in place of the file's."""
        ttl, wire = self.soa_wire
        wire = wire[:-20] + serial.to_bytes(4, "big") + wire[-16:]
        owner = store.name_of(store.owner_of(self.records[self.key]))
        return store.decode_rrset(owner, dns.rdatatype.SOA, ttl, [wire])

    @property
    def soa(self) -> dns.rrset.RRset:
        return self.soa_with(self.serial)

    @property
    def serial(self) -> int:
        return int.from_bytes(self.soa_wire[1][-20:-16], "big")

    @functools.cached_property
    def digest(self) -> str:
        """A digest of the records (serial aside): equal content, equal digest.

        A sum of per-owner hashes over the packed records: independent of
        the order of owners in the file, no sorting of owners, no decoding.
        """
        total = 0
        for key, packed in self.records.items():
            h = hashlib.sha256(key)
            for rdtype, ttl, wires in store.raw_rrsets(packed):
                if rdtype == dns.rdatatype.SOA:
                    wires = [w[:-20] + bytes(4) + w[-16:] for w in wires]
                h.update(rdtype.to_bytes(2, "big") + ttl.to_bytes(4, "big"))
                for wire in sorted(wires):
                    h.update(len(wire).to_bytes(2, "big") + wire)
            total = (total + int.from_bytes(h.digest(), "big")) % 2**256
        return f"{total:064x}"

    @property
    def rrsets(self) -> "RRsetView":
        """The records as dnspython RRsets keyed by (owner, type), decoded on use."""
        return RRsetView(self.records)

    def record_count(self) -> int:
        return sum(count for packed in self.records.values() for _, _, count, _, _ in store.directory(packed))


class RRsetView(Mapping):
    """A zone's packed records seen as {(owner, type): RRset}."""

    __slots__ = ("_records",)

    def __init__(self, records: Mapping[bytes, bytes]):
        self._records = records

    def __getitem__(self, item) -> dns.rrset.RRset:
        name, rdtype = item
        packed = self._records.get(store.key_of(name))
        if packed is None:
            raise KeyError(item)
        return store.PackedNode(packed)[rdtype]

    def get(self, item, default=None):
        try:
            return self[item]
        except KeyError:
            return default

    def __iter__(self):
        for packed in self._records.values():
            owner = store.name_of(store.owner_of(packed))
            for rdtype in store.types_of(packed):
                yield owner, dns.rdatatype.RdataType.make(rdtype)

    def __len__(self) -> int:
        return sum(len(store.types_of(packed)) for packed in self._records.values())


class _RuleViolation(Exception):
    """A bad record; the reader knows the line where it starts."""


class _CheckingReader(dns.zonefile.Reader):
    """dnspython's master-file reader, strict where aliasd needs it.

    It remembers where each record starts (so rule violations name the right
    line) and rejects out-of-zone data, which dnspython skips silently.
    """

    record_where: tuple[str, int] = ("", 0)

    def _rr_line(self) -> None:
        self.record_where = self.tok.where()
        try:
            super()._rr_line()
        except dns.exception.SyntaxError as e:
            # dnspython would name the line where the tokenizer stopped,
            # which is the next one when the record's last field is bad.
            raise _RuleViolation(str(e) or "syntax error") from None

    def _eat_line(self) -> None:
        raise dns.exception.SyntaxError(
            f"{self.last_name} is outside the zone {self.zone_origin}"
        )


#: Types that may stand beside a CNAME (DNSSEC and friends).
_NEUTRAL_TYPES = frozenset(dns.node._neutral_types)


def _check_record(origin: dns.name.Name, txn, name, rdataset) -> None:
    """Enforce aliasd's zone rules as each RRset is added by the reader."""
    rdtype = rdataset.rdtype
    if rdtype == dns.rdatatype.SOA and name != origin:
        raise _RuleViolation(f"SOA record at {name}, which is not the zone apex {origin}")
    if rdtype == ALIAS_RDTYPE and len(rdataset) > 1:
        raise _RuleViolation(f"more than one ALIAS at {name}")
    node = txn.get_node(name)
    if node is None:
        return
    if rdtype == dns.rdatatype.SOA and node.get_rdataset(dns.rdataclass.IN, rdtype):
        raise _RuleViolation(f"a second SOA record at {name}")
    present = {rds.rdtype for rds in node.rdatasets} - _NEUTRAL_TYPES
    if rdtype in _NEUTRAL_TYPES:
        return
    if rdtype == dns.rdatatype.CNAME and present - {dns.rdatatype.CNAME}:
        others = ", ".join(sorted(type_text(t) for t in present))
        raise _RuleViolation(f"CNAME at {name} beside other data ({others})")
    if rdtype != dns.rdatatype.CNAME and dns.rdatatype.CNAME in present:
        raise _RuleViolation(
            f"{type_text(rdtype)} at {name} beside a CNAME"
        )


def load_zone_file(origin: dns.name.Name | str, path: Path | str) -> ZoneSource:
    """Parse and check the master file at ``path`` for zone ``origin``.

    Raises ZoneFileError with ``file:line: reason`` on any problem.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ZoneFileError(f"{path}: cannot read zone file: {e.strerror}") from None
    return parse_zone(origin, path, data)


def parse_zone(origin: dns.name.Name | str, path: Path, data: bytes) -> ZoneSource:
    """Check and compile the master file content ``data`` (read from ``path``).

    The common syntax goes through aliasd.masterfile, which writes packed
    records directly; anything it does not handle, and every file with a
    problem, goes through dnspython's reader, whose errors name the line.
    """
    if isinstance(origin, str):
        origin = dns.name.from_text(origin)
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise ZoneFileError(f"{path}: not a text file: {e}") from None
    from aliasd import masterfile  # imports this module (the ALIAS type)

    try:
        return ZoneSource.of(origin, path, masterfile.read_records(text, origin))
    except masterfile.NotSimple:
        pass
    zone = dns.zone.Zone(origin, dns.rdataclass.IN, relativize=False)
    reader = None
    try:
        with zone.writer(True) as txn:
            txn.check_put_rdataset(lambda t, n, r: _check_record(origin, t, n, r))
            tok = dns.tokenizer.Tokenizer(text, str(path))
            reader = _CheckingReader(tok, dns.rdataclass.IN, txn, allow_include=True)
            reader.read()
    except (_RuleViolation, ValueError) as e:
        # ValueError: dnspython's own check for an SOA away from the apex.
        if reader is None:
            raise
        filename, line = reader.record_where
        reason = "SOA record away from the zone apex" if isinstance(e, ValueError) else e
        raise ZoneFileError(f"{filename}:{line}: {reason}") from None
    except dns.exception.SyntaxError as e:
        raise ZoneFileError(str(e)) from None
    except dns.exception.DNSException as e:
        raise ZoneFileError(f"{path}: {e}") from None
    rrsets = []
    has_soa = False
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            rrset = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype, rdataset.covers)
            rrset.update(rdataset)
            rrsets.append(rrset)
            has_soa = has_soa or (rdataset.rdtype == dns.rdatatype.SOA and name == origin)
    if not has_soa:
        raise ZoneFileError(f"{path}: no SOA record at the zone apex {origin}")
    return ZoneSource.from_rrsets(origin, path, rrsets)
