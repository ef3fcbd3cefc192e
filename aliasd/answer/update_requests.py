"""Dynamic UPDATE requests (RFC 2136): who asks, for which zone, and when to answer.

Why a module of its own: it sits between the message path
(aliasd.answer.answers) and the zone logic (aliasd.update.rfc2136), as
aliasd.answer.transfer_requests does for transfers. It checks the zone section
(one zone of ours, class IN: else FORMERR or NOTAUTH), that the zone takes
updates (REFUSED otherwise) and is not frozen (``aliasd-ctl freeze``:
REFUSED until ``thaw``), is loaded (SERVFAIL while it is not) and that
the request is signed with TSIG (REFUSED when not: a bad signature was
answered NOTAUTH before this point). It then applies the update to the
zone's newest source, hands the new source with its journal record to the
authority, and answers NOERROR only once the authority has recorded it on
disk and serves it: the answer is a Deferred.
"""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
from twisted.logger import Logger

from aliasd.base.logthrottle import LogThrottle
from aliasd.base.replies import render
from aliasd.replicate import journaldb
from aliasd.update.rfc2136 import process

log = Logger()


class UpdateRequests:
    """Answers UPDATE messages for the zones with ``update`` rules."""

    def __init__(self, authority, rules: dict, stats):
        self.authority = authority
        self.rules = rules  # zone -> its UpdateRules (reloads replace the dict)
        self.frozen: set = set()  # zones frozen by aliasd-ctl (aliasd.update.dynamic.DynamicZones.frozen)
        self.max_records: dict = {}  # zone -> its max-records, for the zones that have one
        self.stats = stats
        self._refused_log = LogThrottle("refused updates")

    def answer(self, query: dns.message.Message, response: dns.message.Message, client: str, limit: int):
        """The reply's wire form, or a Deferred that fires with it."""
        rcode, why, zone = self._admit(query, client)
        if rcode is not None:
            return self._reply(response, rcode, limit, zone, query, client, why)
        source = self.authority.sources[zone]
        served = self.authority.versions[zone].serial
        signed = zone in self.authority.signers  # its DNSSEC records are the signer's
        outcome = process(query, source, self.rules[zone], query.keyname, served, signed)
        if outcome.rcode != dns.rcode.NOERROR or outcome.source is None:
            if outcome.rcode == dns.rcode.NOERROR and self._refused_log.allow():
                log.info("update of zone {zone} by key {key} from {client} changed nothing ({why})",
                         zone=zone.to_text(), key=query.keyname.to_text(), client=client, why=outcome.why)
            return self._reply(response, outcome.rcode, limit, zone, query, client, outcome.why)
        most = self.max_records.get(zone, 0)  # max-records, as BIND's (0: none)
        if most and outcome.source.record_count() > most:
            return self._reply(response, dns.rcode.REFUSED, limit, zone, query, client,
                               f"the zone would hold {outcome.source.record_count()} records, "
                               f"more than its max-records ({most})")
        frames = [journaldb.frame(journaldb.UPDATE, journaldb.encode_nodes(
            outcome.source.serial, outcome.touched
        ))]
        d = self.authority.update_source(outcome.source, frames, outcome.names)

        def served_now(_):
            self.stats.inc("aliasd_updates_total", rcode="NOERROR")
            log.info(
                "update of zone {zone} by key {key} from {client}: serial {serial}, "
                "{count} name(s) changed{ignored}",
                zone=zone.to_text(), key=query.keyname.to_text(), client=client,
                serial=outcome.source.serial, count=len(outcome.names),
                ignored=f" (ignored: {outcome.why})" if outcome.why else "",
            )
            response.set_rcode(dns.rcode.NOERROR)
            return render(response, limit)

        def failed(failure):
            log.error("update of zone {zone} not applied: {error}", zone=zone.to_text(),
                      error=failure.getErrorMessage())
            return self._reply(response, dns.rcode.SERVFAIL, limit, zone, query, client, "not applied")

        return d.addCallbacks(served_now, failed)

    def _admit(self, query, client):
        """(rcode, why, zone): an rcode when the request goes no further."""
        if len(query.question) != 1:
            return dns.rcode.FORMERR, "the zone section must hold one zone", None
        zone_rr = query.question[0]
        zone = zone_rr.name
        if zone_rr.rdclass != dns.rdataclass.IN:
            return dns.rcode.NOTAUTH, f"class {dns.rdataclass.to_text(zone_rr.rdclass)}", zone
        source = self.authority.sources.get(zone)
        if source is None:
            if zone in self.authority.held:  # ours, its file broken, nothing stored
                return dns.rcode.SERVFAIL, "the zone's file is broken (see the log)", zone
            return dns.rcode.NOTAUTH, "not a zone served here", zone
        if not self.rules.get(zone):
            return dns.rcode.REFUSED, "the zone takes no updates", zone
        if zone in self.frozen:
            return dns.rcode.REFUSED, "the zone is frozen (aliasd-ctl thaw takes updates again)", zone
        if zone not in self.authority.versions:
            return dns.rcode.SERVFAIL, "the zone is not loaded yet", zone
        if not query.had_tsig:
            return dns.rcode.REFUSED, "not signed with TSIG", zone
        if not any(rule.key_name == query.keyname for rule in self.rules[zone]):
            return dns.rcode.REFUSED, f"key {query.keyname} may not update this zone", zone
        return None, "", zone

    def _reply(self, response, rcode: int, limit: int, zone, query, client: str, why: str) -> bytes:
        response.set_rcode(rcode)
        label = dns.rcode.to_text(rcode)
        self.stats.inc("aliasd_updates_total", rcode=label)
        if rcode != dns.rcode.NOERROR and self._refused_log.allow():
            log.info(
                "update of zone {zone} from {client} (key {key}): {rcode}: {why}",
                zone=zone.to_text() if zone is not None else "?", client=client,
                key=query.keyname.to_text() if query.had_tsig else "none", rcode=label, why=why,
            )
        return render(response, limit)

