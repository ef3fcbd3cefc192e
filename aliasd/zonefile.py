"""Master files with ALIAS records, parsed by dnspython into a ZoneSource.

This module knows the file format and the zone rules that can be checked on
the file alone (SOA at the apex, one ALIAS per owner, no ALIAS beside a
CNAME, nothing outside the zone). It does not resolve anything.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
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


@dataclasses.dataclass(frozen=True)
class ZoneSource:
    """What one zone file says, checked, with absolute names.

    ``rrsets`` maps (owner, type) to the RRset as written, ALIAS included;
    ``aliases`` maps each ALIAS owner to its rule.
    """

    origin: dns.name.Name
    path: Path
    rrsets: Mapping[tuple[dns.name.Name, int], dns.rrset.RRset]
    aliases: Mapping[dns.name.Name, AliasRecord]

    @property
    def soa(self) -> dns.rrset.RRset:
        return self.rrsets[(self.origin, dns.rdatatype.SOA)]

    @property
    def serial(self) -> int:
        return self.soa[0].serial


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
    if isinstance(origin, str):
        origin = dns.name.from_text(origin)
    try:
        text = path.read_text()
    except OSError as e:
        raise ZoneFileError(f"{path}: cannot read zone file: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ZoneFileError(f"{path}: not a text file: {e}") from None
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
    rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    aliases: dict[dns.name.Name, AliasRecord] = {}
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            rrset = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype, rdataset.covers)
            rrset.update(rdataset)
            rrsets[(name, rdataset.rdtype)] = rrset
            if rdataset.rdtype == ALIAS_RDTYPE:
                aliases[name] = AliasRecord(name, rdataset.ttl, rdataset[0].target)
    if (origin, dns.rdatatype.SOA) not in rrsets:
        raise ZoneFileError(f"{path}: no SOA record at the zone apex {origin}")
    return ZoneSource(
        origin=origin,
        path=path,
        rrsets=MappingProxyType(rrsets),
        aliases=MappingProxyType(aliases),
    )
