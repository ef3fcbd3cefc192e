"""Immutable zone versions and the authoritative answer algorithm.

A ZoneVersion is one complete, prepared picture of a zone as served: the
records of its file with each ALIAS owner's A/AAAA replaced by the flattened
addresses. It is never edited; a change (a re-resolution, a reload) builds a
new version that replaces the old one in one assignment, so a query (or,
later, a transfer) that holds a version sees one consistent zone.

The answer algorithm follows RFC 1034 4.3.2 with the negative answers of
RFC 2308 and the wildcards of RFC 4592. This module does not know about wire
formats, sockets or upstream resolvers.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Iterable, Iterator, Mapping

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from aliasd.zonefile import ALIAS_RDTYPE, ZoneSource

A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
ADDRESS_TYPES = (A, AAAA)
_MAX_CNAME_CHAIN = 16

Node = Mapping[int, dns.rrset.RRset]


@dataclasses.dataclass(frozen=True)
class Answer:
    """What to answer for one question, before it is put on the wire."""

    rcode: int
    authoritative: bool
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    additional: tuple[dns.rrset.RRset, ...] = ()


def _negative_soa(soa: dns.rrset.RRset) -> dns.rrset.RRset:
    """The SOA for negative answers: TTL = min(SOA TTL, MINIMUM) (RFC 2308 3).

    A copy keeps the rdata's stored hash: hashing an SOA renders both of
    its names, which at ten thousand zones per change adds up."""
    negative = soa.copy()
    negative.ttl = min(soa.ttl, soa[0].minimum)
    return negative


@dataclasses.dataclass(frozen=True)
class ZoneBase:
    """What every version built from one zone file shares.

    The file's RRsets grouped by owner, every existing name (empty
    non-terminals included, RFC 4592 2.2.2) and the delegation points.
    Flattening only replaces A/AAAA at ALIAS owners, which exist in the file
    already, so the name index never changes between versions: it is
    computed once per load, not once per version.
    """

    nodes: dict[dns.name.Name, Node]  # never mutated: copied by each build
    names: frozenset
    cuts: frozenset
    # For the negative fast path (aliasd.fastpath.missing_name): every
    # existing name as lower-case wire, and whether any wildcard exists.
    name_wires: frozenset = frozenset()
    has_wildcards: bool = False

    @classmethod
    def of(cls, source: ZoneSource) -> "ZoneBase":
        grouped: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = {}
        for (name, rdtype), rrset in source.rrsets.items():
            grouped.setdefault(name, {})[rdtype] = rrset
        nodes = {name: MappingProxyType(node) for name, node in grouped.items()}
        names: set[dns.name.Name] = set()
        for name in nodes:
            while name not in names and name.is_subdomain(source.origin):
                names.add(name)
                if name == source.origin:
                    break
                name = name.parent()
        cuts = frozenset(
            name for name, node in nodes.items()
            if name != source.origin and dns.rdatatype.NS in node
        )
        return cls(
            nodes,
            frozenset(names),
            cuts,
            frozenset(n.canonicalize().to_wire() for n in names),
            any(n.labels and n.labels[0] == b"*" for n in names),
        )


@dataclasses.dataclass(frozen=True)
class Flattened:
    """The outcome of following one ALIAS, per address type.

    ``rrsets`` maps A/AAAA to the RRset to serve at the owner; a type that
    maps to None has no addresses (NODATA); a type that is absent keeps the
    records written beside the ALIAS in the file (the fallback).
    ``servfail`` marks an owner whose ALIAS cannot be followed (a loop).
    """

    rrsets: Mapping[int, dns.rrset.RRset | None] = dataclasses.field(
        default_factory=dict
    )
    servfail: bool = False


class ZoneVersion:
    """One immutable version of a zone: prepared records and a serial."""

    def __init__(
        self,
        source: ZoneSource,
        base: ZoneBase,
        nodes: dict[dns.name.Name, Node],
        servfail_owners: Iterable[dns.name.Name] = (),
        serial: int | None = None,
    ):
        """Takes ownership of ``nodes`` (a fresh dict nobody else changes)."""
        self.source = source
        self.origin = source.origin
        soa = nodes[source.origin][dns.rdatatype.SOA]
        if serial is not None and serial != soa[0].serial:
            soa = dns.rrset.from_rdata(soa.name, soa.ttl, soa[0].replace(serial=serial))
            apex = dict(nodes[source.origin])
            apex[dns.rdatatype.SOA] = soa
            nodes[source.origin] = MappingProxyType(apex)
        self.soa = soa
        self.serial = soa[0].serial
        self.negative_soa = _negative_soa(self.soa)
        # A plain dict (copies fast, keeping hashes); never changed after this.
        self._nodes = nodes
        # Wire renderings of this version, kept for reuse (aliasd.server),
        # and whether a newer version has replaced it (set by the authority).
        self.rendered: dict[str, object] = {}
        self.superseded = False
        self._servfail = frozenset(servfail_owners)
        self._names = base.names
        self._cuts = base.cuts
        self.base = base

    @property
    def name_count(self) -> int:
        """How many names exist in the zone (empty non-terminals included)."""
        return len(self._names)

    @classmethod
    def build(
        cls,
        source: ZoneSource,
        flattened: Mapping[dns.name.Name, Flattened],
        base: ZoneBase | None = None,
        serial: int | None = None,
        previous: "ZoneVersion | None" = None,
    ) -> "ZoneVersion":
        """Make a version from a zone file and ALIAS outcomes.

        ``serial`` replaces the file's SOA serial (see aliasd.state). With
        ``previous`` (a version of the same file), only the owners in
        ``flattened`` are rebuilt and every other node is shared.
        """
        base = base if base is not None else ZoneBase.of(source)
        nodes = (previous._nodes if previous is not None else base.nodes).copy()
        servfail = set(previous._servfail) if previous is not None else set()
        for owner, outcome in flattened.items():
            servfail.discard(owner)
            if outcome.servfail:
                servfail.add(owner)
            node = dict(base.nodes.get(owner, {}))  # the file's records, fallback included
            for rdtype, rrset in outcome.rrsets.items():
                if rrset is None:
                    node.pop(rdtype, None)
                else:
                    node[rdtype] = rrset
            nodes[owner] = MappingProxyType(node)
        return cls(source, base, nodes, servfail, serial)

    def node(self, name: dns.name.Name) -> Node | None:
        """The records at ``name`` as served, or None."""
        return self._nodes.get(name)

    def names(self) -> Iterable[dns.name.Name]:
        return self._nodes.keys()

    def transfer_rrsets(self) -> Iterator[dns.rrset.RRset]:
        """The transfer view, SOA first: every RRset but the ALIAS rules.

        ALIAS owners carry the A/AAAA they were flattened to, so secondaries
        copy addresses, never a record type they cannot follow.
        """
        yield self.soa
        for node in self._nodes.values():
            for rdtype, rrset in node.items():
                if rdtype != dns.rdatatype.SOA and rdtype != ALIAS_RDTYPE:
                    yield rrset

    # -- the answer algorithm -------------------------------------------

    def lookup(self, qname: dns.name.Name, qtype: int) -> Answer:
        """Answer ``qname``/``qtype`` authoritatively from this version."""
        answers: list[dns.rrset.RRset] = []
        seen: set[dns.name.Name] = set()
        name = qname
        while True:
            cut = self._find_cut(name, qtype)
            if cut is not None:
                return self._referral(cut, answers)
            node = self._nodes.get(name)
            if node is None:
                if name in self._names:
                    return self._nodata(answers)
                node = self._wildcard(name)
                if node is None:
                    return Answer(
                        dns.rcode.NXDOMAIN, True, tuple(answers), (self.negative_soa,)
                    )
            elif name in self._servfail and qtype in (A, AAAA, dns.rdatatype.ANY):
                return Answer(dns.rcode.SERVFAIL, False)
            if qtype == dns.rdatatype.ANY:
                answers.extend(rrset for t, rrset in node.items() if t != ALIAS_RDTYPE)
                return Answer(dns.rcode.NOERROR, True, tuple(answers))
            rrset = node.get(qtype)
            if rrset is not None:
                answers.append(rrset)
                return Answer(dns.rcode.NOERROR, True, tuple(answers))
            cname = node.get(dns.rdatatype.CNAME)
            if cname is None or qtype == dns.rdatatype.CNAME:
                return self._nodata(answers)
            answers.append(cname)
            seen.add(name)
            name = cname[0].target
            if (
                not name.is_subdomain(self.origin)
                or name in seen
                or len(seen) >= _MAX_CNAME_CHAIN
            ):
                return Answer(dns.rcode.NOERROR, True, tuple(answers))

    def _nodata(self, answers: list[dns.rrset.RRset]) -> Answer:
        return Answer(dns.rcode.NOERROR, True, tuple(answers), (self.negative_soa,))

    def _find_cut(self, name: dns.name.Name, qtype: int) -> dns.name.Name | None:
        """The highest delegation at or above ``name``, if any.

        A DS query at the cut itself belongs to this (the parent) zone.
        """
        if not self._cuts:
            return None
        found = None
        candidate = name
        while candidate != self.origin:
            if candidate in self._cuts and not (
                candidate == name and qtype == dns.rdatatype.DS
            ):
                found = candidate
            candidate = candidate.parent()
        return found

    def _referral(self, cut: dns.name.Name, answers: list[dns.rrset.RRset]) -> Answer:
        """A referral to the child zone at ``cut``, with glue (AA clear)."""
        ns = self._nodes[cut][dns.rdatatype.NS]
        glue = []
        for rdata in ns:
            target = rdata.target
            if target.is_subdomain(cut):
                node = self._nodes.get(target, {})
                glue.extend(node[t] for t in ADDRESS_TYPES if t in node)
        # Answers already collected (a CNAME into the delegation) stay
        # authoritative; the referral alone is not.
        return Answer(
            dns.rcode.NOERROR, bool(answers), tuple(answers), (ns,), tuple(glue)
        )

    def _wildcard(self, name: dns.name.Name) -> Node | None:
        """Records synthesised from ``*.<closest encloser>`` (RFC 4592), or None."""
        encloser = name.parent()
        while encloser not in self._names:
            if encloser == self.origin or not encloser.is_subdomain(self.origin):
                return None
            encloser = encloser.parent()
        source = self._nodes.get(dns.name.Name((b"*",) + encloser.labels))
        if source is None:
            return None
        node = {}
        for rdtype, rrset in source.items():
            node[rdtype] = dns.rrset.from_rdata_list(name, rrset.ttl, list(rrset))
        return node
