"""From one request's wire bytes to its answer's wire bytes.

Why a module of its own: this is the one place where a DNS message becomes
an answer, whatever carried it. QueryHandler turns one request message into
its answer. Plain queries are answered from answers rendered earlier for
the same zone version (aliasd.base.fastpath); everything else, and every first
time, takes the full path: dnspython parses (keeping the raw wire for
TSIG), the answer policy picks the rcode (EDNS version, opcode, class,
CHAOS status, zones we serve or are loading), the zone version answers,
dnspython renders (EDNS(0), truncation at whole RRsets, where stock Twisted
Names cuts a message mid-record). Zone transfers go to
aliasd.answer.transfer_requests. A malformed message gets FORMERR when its header
can be read and is dropped otherwise; a bad TSIG gets the NOTAUTH reply of
aliasd.base.replies. Sockets, framing and connection limits are
aliasd.listen.transports' business.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
from twisted.logger import Logger

from aliasd.answer import directanswer
from aliasd.answer.transfer_requests import TransferRequests
from aliasd.answer.update_requests import UpdateRequests
from aliasd.base import fastpath, store
from aliasd.base.access import TransferAccess
from aliasd.base.logthrottle import LogThrottle
from aliasd.base.replies import HEADER, header_only, render, tsig_error_response
from aliasd.base.stats import Statistics
from aliasd.update import wireparse
from aliasd.update.rfc2136 import restore_ttls
from aliasd.zones.registry import NOT_LOADED
from aliasd.zones.zone import ZoneVersion
from aliasd.zones.zonefile import ALIAS_TYPE

if TYPE_CHECKING:  # the authority is assembled above this stage and handed in
    from aliasd.service.authority import ZoneAuthority

log = Logger()

_TRANSFER_TYPES = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
_NOT_QUERYABLE = (dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY)
_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
#: Our EDNS UDP payload size (DNS flag day 2020): no IP fragmentation.
DEFAULT_MAX_UDP_SIZE = 1232


class QueryHandler:
    """Answers DNS messages from the authority's current zone versions.

    ``handle`` returns the response's wire form, None when nothing must be
    sent, (for a zone transfer over TCP) an iterator of wire messages, or
    (for a dynamic update, answered once it is on disk) a Deferred that
    fires with the wire form.
    """

    def __init__(
        self,
        authority: ZoneAuthority,
        max_udp_size: int = DEFAULT_MAX_UDP_SIZE,
        access: TransferAccess | None = None,
        keyring: dict[dns.name.Name, dns.tsig.Key] | None = None,
        status=None,
        stats: Statistics | None = None,
        answer_cache_size: int | None = None,
        update_rules: dict | None = None,
    ):
        self.authority = authority
        self.status = status
        self.stats = stats if stats is not None else Statistics()
        # None: sized from the zones (fastpath.automatic_size), on reload too.
        self.answer_cache_size = answer_cache_size
        self._cache = fastpath.AnswerCache(answer_cache_size or fastpath.MAX_ENTRIES)
        # UDP answers by the query's octets after its ID (see handle_udp), bounded alike.
        self._exact = fastpath.AnswerCache(answer_cache_size or fastpath.MAX_ENTRIES)
        self._kept = None  # the fast path's entry for the last answer of ``handle``, if any
        self._cache_sized_for = None  # the number of names the bound was set for
        self.max_udp_size = max(512, max_udp_size)
        self.access = access if access is not None else TransferAccess(())
        self.keyring = keyring or {}
        self._tsig_log = LogThrottle("TSIG errors")
        self.transfers = TransferRequests(authority, self.stats)
        self.updates = UpdateRequests(authority, update_rules or {}, self.stats)

    def handle_udp(self, wire: bytes, client: str):
        """``handle`` for a UDP message. A query whose octets after the ID
        came before, and whose answer the fast path keeps, is answered from
        that answer's octets after the ID (``exact_answer``): nothing is
        parsed, looked up or patched but the ID. (The fast path's answers
        are byte for byte the full path's: tests/test_fastpath.py.)"""
        response = self.exact_answer(wire)
        if response is not None:
            return response
        self._kept = None
        response = self.handle(wire, client, over_udp=True)
        entry = self._kept
        if entry is not None:  # as the fast path answers it: the same octets answer it again
            self._exact.put(wire[2:], (response[2:], entry))
        return response

    def exact_answer(self, wire: bytes) -> bytes | None:
        """The counted answer to a UDP query seen before, while the zone
        version its answer came from is served; None otherwise. Only plain
        queries (QUERY, class IN, no TSIG, no transfer) are ever kept."""
        key = wire[2:]
        kept = self._exact.young.get(key)  # (most hits: without AnswerCache.get's call)
        if kept is None:
            kept = self._exact.get(key)
            if kept is None:
                return None
        tail, entry = kept
        served = self.authority.registry
        if served.zones_by_wire.get(entry.origin_key) is not entry.version or entry.generation != served.generation:
            return None
        if entry.alias_owner is None:
            self.stats.counters[entry.stat_key] += 1
        else:
            self._count_cached(entry)
        return wire[:2] + tail

    def handle(self, wire: bytes, client: str, over_udp: bool, tls: str | None = None):
        """The answer to ``wire`` from address ``client``.

        ``tls`` is the TLS version of a DNS-over-TLS connection (None over
        plain UDP and TCP); transfer access rules look at it.
        """
        # DNS over TLS takes the full path: its answers count as "tls".
        found = None if tls else fastpath.cache_key(wire, over_udp, self.max_udp_size)
        negative_key = None
        if found is not None:
            # What queries read (aliasd.zones.registry): the served versions and
            # the fast path's indexes, used directly on the hot path.
            served = self.authority.registry
            entry = self._cache.get(found[0])
            # Valid while its zone still serves the version it was rendered
            # from, in the same set of zones.
            if (
                entry is not None
                and served.zones_by_wire.get(entry.origin_key) is entry.version
                and entry.generation == served.generation
            ):
                self._count_cached(entry)
                self._kept = entry
                return fastpath.patch(entry.wire, wire, found[1])
            # A name that certainly does not exist: one answer per zone,
            # name length, type and size shape serves every such name.
            qend = found[1]
            missing = fastpath.missing_name(
                found[0][: qend - 16], served.zones_by_wire, served.soa_suffixes
            )
            if missing is not None:
                negative_key = missing[1] + bytes((qend - 16,)) + found[0][qend - 16 :]
                entry = self._cache.get(negative_key)
                if (
                    entry is not None
                    and served.zones_by_wire.get(entry.origin_key) is entry.version
                    and entry.generation == served.generation
                ):
                    self._count_cached(entry)
                    self._kept = entry
                    return fastpath.patch(entry.wire, wire, qend)
            direct = self._direct(found, wire, served, over_udp, negative_key)
            if direct is not None:
                return direct
        if len(wire) < HEADER.size:
            return None
        if HEADER.unpack_from(wire)[1] & dns.flags.QR:
            return None  # never answer a response
        try:
            query, tsig_error = self._parse(wire)
        except Exception:
            self.stats.inc("aliasd_malformed_total")
            return header_only(wire, dns.rcode.FORMERR)
        if tsig_error and self._tsig_log.allow():
            opcode, zone = self._tsig_context(query)
            log.info(
                "TSIG error {error} on {opcode} for zone {zone} from {client} with key {key}",
                error=dns.rcode.to_text(tsig_error, tsig=True), opcode=opcode, zone=zone,
                client=client, key=str(query.keyname),
            )
        limit = self._udp_limit(query) if over_udp else 65535
        if tsig_error:
            return tsig_error_response(query, tsig_error, self.keyring.get(query.keyname), limit)
        if query.opcode() == dns.opcode.UPDATE and query.edns < 0:  # its reply is written plainly
            key = self.keyring.get(query.keyname) if query.had_tsig else None
            return self.updates.answer(query, None, client, limit, key)
        # EDNS padding (RFC 8467) only where it hides something: over TLS.
        response = dns.message.make_response(
            query, our_payload=self.max_udp_size, pad=None if tls else 0
        )
        response.flags |= query.flags & dns.flags.CD
        if response.opt is not None:  # RFC 3225 3: DO copied into the answer
            response.ednsflags |= query.ednsflags & dns.flags.DO
        if query.opcode() == dns.opcode.UPDATE and query.edns <= 0:
            return self.updates.answer(query, response, client, limit)
        transfer, version = self._fill(query, response, client, over_udp, limit, tls)
        if transfer is not None:
            return transfer
        stat_key = self.stats.key(
            "aliasd_queries_total",
            qtype=_qtype_label(query.question[0].rdtype) if query.question else "",
            rcode=dns.rcode.to_text(response.rcode()),
            transport="udp" if over_udp else ("tls" if tls else "tcp"),
        )
        self.stats.counters[stat_key] += 1
        answer = render(response, limit)
        if (
            found is not None
            and version is not None
            and not query.had_tsig
            and response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
        ):
            if negative_key is not None and response.rcode() == dns.rcode.NXDOMAIN:
                key = negative_key  # shared by every missing name of this shape
            else:
                key = found[0]
            question = query.question[0]
            owner = None
            if question.rdtype in _ADDRESS_TYPES and question.name in version.source.aliases:
                owner = question.name
            self._remember(key, version, answer, stat_key, owner)
        return answer

    def _direct(self, found, wire: bytes, served, over_udp: bool, negative_key):
        """The first answer to a plain query written without dnspython
        (aliasd.answer.directanswer), counted and kept like the full path's; None
        when its shape needs the full path."""
        key, qend = found
        name_key = key[:qend - 16]
        zones = served.zones_by_wire
        version = None
        for suffix in store.suffixes(name_key):
            version = zones.get(suffix)
            if version is not None:
                break
        qtype = (key[qend - 16] << 8) | key[qend - 15]
        shape = key[-1]  # over UDP, EDNS, DO: see fastpath.cache_key
        if not isinstance(version, ZoneVersion):  # not ours (None), or still loading
            return self._loading(qtype, wire, qend, shape, over_udp) if version is NOT_LOADED else None
        limit = (key[-3] << 8) | key[-2]
        result = directanswer.answer(version, name_key, qtype, wire, qend, limit,
                                     bool(shape & 2), bool(shape & 4), self.max_udp_size)
        if result is None:
            return None
        answer, rcode = result
        stat_key = self.stats.key(
            "aliasd_queries_total", qtype=_qtype_label(qtype), rcode=_DIRECT_RCODES[rcode],
            transport="udp" if over_udp else "tcp",
        )
        self.stats.counters[stat_key] += 1
        owner = None
        if qtype in _ADDRESS_TYPES:
            packed = version.source.records.get(name_key)
            if packed is not None and ALIAS_TYPE in store.types_of(packed):
                owner = store.name_of(store.owner_of(packed))
                self.stats.inc("aliasd_alias_answers_total")
                if self.authority.is_stale(version.origin, owner):
                    self.stats.inc("aliasd_stale_answers_total")
        if negative_key is not None and rcode == dns.rcode.NXDOMAIN:
            key = negative_key
        self._remember(key, version, answer, stat_key, owner)
        return answer

    def _loading(self, qtype: int, wire: bytes, qend: int, shape: int, over_udp: bool) -> bytes | None:
        """The SERVFAIL of a zone still loading, written without dnspython
        and counted as the full path counts it (never kept: it stops
        answering once the zone is served)."""
        answer = directanswer.loading(qtype, wire, qend, bool(shape & 2), bool(shape & 4), self.max_udp_size)
        if answer is not None:
            self.stats.counters[self.stats.key(
                "aliasd_queries_total", qtype=_qtype_label(qtype), rcode="SERVFAIL",
                transport="udp" if over_udp else "tcp",
            )] += 1
        return answer

    def _remember(self, key, version, answer: bytes, stat_key, alias_owner) -> None:
        """Keep a rendered answer for the fast path (see aliasd.base.fastpath);
        ``alias_owner``: the ALIAS owner whose addresses it is, if so."""
        served = self.authority.registry
        if self.answer_cache_size is None and self._cache_sized_for != served.name_count:
            self._cache_sized_for = served.name_count
            self._cache.resize(fastpath.automatic_size(served.name_count))
            self._exact.resize(self._cache.max_entries)
        self._kept = fastpath.CachedAnswer(
            version.origin, version.source.key, version, served.generation,
            fastpath.template(answer), stat_key, alias_owner,
            self.stats.key("aliasd_alias_answers_total"),
        )
        self._cache.put(key, self._kept)

    def _count_cached(self, entry) -> None:
        counters = self.stats.counters
        counters[entry.stat_key] += 1
        if entry.alias_owner is not None:
            counters[entry.alias_key] += 1
            if self.authority.is_stale(entry.origin, entry.alias_owner):
                self.stats.inc("aliasd_stale_answers_total")

    def _parse(self, wire: bytes) -> tuple[dns.message.Message, int]:
        """Parse ``wire``, checking any TSIG; returns the TSIG error (0 if none)."""

        def key_for(message, name):
            key = self.keyring.get(name)
            return key if key is not None else False  # False: parse, no check

        # An UPDATE's records are applied one by one, in order (RFC 2136 3.4.2).
        one_by_one = (HEADER.unpack_from(wire)[1] >> 11) & 0xF == dns.opcode.UPDATE
        if one_by_one:
            query = wireparse.parse(wire, self.keyring)  # the common shape, without from_wire
            if query is not None:
                return query, 0
        try:
            query = dns.message.from_wire(wire, keyring=key_for, one_rr_per_rrset=one_by_one)
        except dns.tsig.BadSignature:
            error = dns.rcode.BADSIG
        except dns.tsig.BadTime:
            error = dns.rcode.BADTIME
        except (dns.tsig.BadAlgorithm, dns.tsig.BadKey):
            error = dns.rcode.BADKEY
        else:
            if query.had_tsig and query.keyname not in self.keyring:
                return query, dns.rcode.BADKEY
            if one_by_one:
                restore_ttls(query, wire)  # RFC 2136's rules look at TTLs dnspython drops
            return query, 0
        return dns.message.from_wire(wire, keyring=lambda m, n: False, one_rr_per_rrset=one_by_one), error

    def _tsig_context(self, query: dns.message.Message) -> tuple[str, str]:
        """(opcode, zone) of a request with a TSIG error, for its log line:
        UPDATE, NOTIFY, AXFR, IXFR or QUERY, and the zone it is for (a
        query's closest served zone; "?" when none)."""
        opcode = dns.opcode.to_text(query.opcode())
        if not query.question:
            return opcode, "?"
        question = query.question[0]
        if opcode == "QUERY" and question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            opcode = dns.rdatatype.to_text(question.rdtype)
        if opcode != "QUERY":
            return opcode, question.name.to_text()
        source = self.authority.registry.closest_source(question.name)
        return opcode, source.origin.to_text() if source is not None else "?"

    def _udp_limit(self, query: dns.message.Message) -> int:
        if query.edns < 0:
            return 512
        return min(max(512, query.payload), self.max_udp_size)

    def _fill(self, query, response, client: str, over_udp: bool, limit: int, tls=None):
        """Fill ``response``; return (messages of a transfer or None, the version used)."""
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
            return None, None
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return None, None
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return None, None
        question = query.question[0]
        qtype = question.rdtype
        if question.rdclass == dns.rdataclass.CH and self.status is not None:
            rcode, answer = self.status.answer(question.name, qtype, client)
            response.set_rcode(rcode)
            response.answer = answer
            return None, None
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return None, None
        if qtype in _NOT_QUERYABLE:
            response.set_rcode(dns.rcode.FORMERR)
            return None, None
        served = self.authority.registry
        version = served.zone_for(question.name)
        if version is None:
            # A zone still loading at start is ours: SERVFAIL (try again),
            # not REFUSED (a secondary would give up on us).
            loading = served.is_loading(question.name)
            response.set_rcode(dns.rcode.SERVFAIL if loading else dns.rcode.REFUSED)
            return None, None
        if qtype in _TRANSFER_TYPES:
            transfer = self.transfers.answer(
                query, response, version, client, over_udp, limit, tls,
                access=self.access, payload=self.max_udp_size,
            )
            return transfer, version
        answer = version.lookup(question.name, qtype, served.zone_for,
                                dnssec=bool(query.ednsflags & dns.flags.DO))
        if qtype in _ADDRESS_TYPES and question.name in version.source.aliases:
            self.stats.inc("aliasd_alias_answers_total")
            if self.authority.is_stale(version.origin, question.name):
                self.stats.inc("aliasd_stale_answers_total")
        response.set_rcode(answer.rcode)
        if answer.authoritative:
            response.flags |= dns.flags.AA
        response.answer = list(answer.answer)
        response.authority = list(answer.authority)
        response.additional = list(answer.additional)
        # A chain that went on into another zone depends on that zone's
        # version too: such an answer is not kept for the fast path.
        return None, (None if answer.crossed else version)


#: Query types counted under their own name; the rest count as "other", so
#: a client asking every one of the 65536 types cannot grow the counters.
_LABELLED_TYPES = {
    t: dns.rdatatype.to_text(t)
    for t in (
        dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.CNAME, dns.rdatatype.MX,
        dns.rdatatype.NS, dns.rdatatype.SOA, dns.rdatatype.TXT, dns.rdatatype.SRV,
        dns.rdatatype.PTR, dns.rdatatype.CAA, dns.rdatatype.DS, dns.rdatatype.DNSKEY,
        dns.rdatatype.HTTPS, dns.rdatatype.SVCB, dns.rdatatype.NAPTR, dns.rdatatype.TLSA,
        dns.rdatatype.SSHFP, dns.rdatatype.ANY, dns.rdatatype.AXFR, dns.rdatatype.IXFR,
    )
}


#: The rcodes of aliasd.answer.directanswer's answers, as counted (dns.rcode.to_text's).
_DIRECT_RCODES = {directanswer.NOERROR: "NOERROR", directanswer.NXDOMAIN: "NXDOMAIN"}


def _qtype_label(rdtype: int) -> str:
    return _LABELLED_TYPES.get(rdtype, "other")
