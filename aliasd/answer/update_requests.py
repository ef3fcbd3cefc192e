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

import collections

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
from twisted.logger import Logger

from aliasd.base.logthrottle import LogThrottle
from aliasd.base.replies import plain_reply, render
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
        self._applied: dict = {}  # zone -> (key name, client, Outcome) of the updates answered this turn

    def answer(self, query: dns.message.Message, response: dns.message.Message | None, client: str, limit: int,
               key=None):
        """The reply's wire form, or a Deferred that fires with it. Without
        ``response`` (a query without EDNS) the reply is written by
        plain_reply, signed with ``key``."""
        rcode, why, zone, rules = self._admit(query, client)
        if rcode is not None:
            return self._reply(response, rcode, limit, zone, query, client, why, key)
        authority = self.authority
        source = authority.registry.sources[zone]  # (not ``sources``: that ends records_private)
        served = authority.versions[zone].serial
        signed = zone in authority.signers  # its DNSSEC records are the signer's
        outcome = process(query, source, rules, query.keyname, served, signed,
                          max_records=self.max_records.get(zone, 0),  # as BIND's (0: none)
                          reuse=authority.records_private(zone, source))
        if outcome.rcode != dns.rcode.NOERROR or outcome.source is None:
            if outcome.rcode == dns.rcode.NOERROR and self._refused_log.allow():
                log.info("update of zone {zone} by key {key} from {client} changed nothing ({why})",
                         zone=zone.to_text(), key=query.keyname.to_text(), client=client, why=outcome.why)
            return self._reply(response, outcome.rcode, limit, zone, query, client, outcome.why, key)
        frames = [journaldb.frame(journaldb.UPDATE, journaldb.encode_nodes(
            outcome.source.serial, outcome.touched
        ))]
        d = authority.update_source(outcome.source, frames, outcome.names, previous=outcome.previous, private=True)

        def served_now(_):
            self.stats.inc("aliasd_updates_total", rcode="NOERROR")
            self._note_applied(zone, query.keyname, client, outcome)
            return _wire(query, response, dns.rcode.NOERROR, limit, key)

        def failed(failure):
            log.error("update of zone {zone} not applied: {error}", zone=zone.to_text(),
                      error=failure.getErrorMessage())
            return self._reply(response, dns.rcode.SERVFAIL, limit, zone, query, client, "not applied", key)

        return d.addCallbacks(served_now, failed)

    def _note_applied(self, zone, keyname, client: str, outcome) -> None:
        """Log an applied update: the updates answered in one turn of the
        reactor (those that shared a commit) in one line per zone, so the
        log costs a line per commit, not per update."""
        applied = self._applied.get(zone)
        if applied is None:
            applied = self._applied[zone] = []
            clock = getattr(self.authority, "clock", None)
            if clock is None:
                applied.append((keyname, client, outcome))
                self._log_applied()
                return
            if len(self._applied) == 1:
                clock.callLater(0, self._log_applied)
        applied.append((keyname, client, outcome))

    def _log_applied(self) -> None:
        applied, self._applied = self._applied, {}
        for zone, updates in applied.items():
            ignored = "; ".join(f"{o.why} (serial {o.source.serial})" for _, _, o in updates if o.why)
            if len(updates) == 1:
                keyname, client, outcome = updates[0]
                log.info(
                    "update of zone {zone} by key {key} from {client}: serial {serial}, "
                    "{count} name(s) changed{ignored}",
                    zone=zone.to_text(), key=keyname.to_text(), client=client,
                    serial=outcome.source.serial, count=len(outcome.names),
                    ignored=f" (ignored: {outcome.why})" if outcome.why else "",
                )
                continue
            senders = collections.Counter((keyname, client) for keyname, client, _ in updates)
            log.info(
                "{total} updates of zone {zone}: serials {first} to {last}, {count} name(s) changed, "
                "by {senders}{ignored}",
                total=len(updates), zone=zone.to_text(),
                first=updates[0][2].source.serial, last=updates[-1][2].source.serial,
                count=sum(len(o.names) for _, _, o in updates),
                senders=", ".join(f"key {k.to_text()} from {c}" + (f" ({n})" if n > 1 else "")
                                  for (k, c), n in senders.items()),
                ignored=f" (ignored: {ignored})" if ignored else "",
            )

    def _admit(self, query, client):
        """(rcode, why, zone, its rules): an rcode when the request goes no
        further. The zone is the served origin's own Name object once it is
        found: dnspython hashes and compares a parsed Name label by label,
        the origin's hash is kept and identity settles each later lookup."""
        if len(query.question) != 1:
            return dns.rcode.FORMERR, "the zone section must hold one zone", None, None
        zone_rr = query.question[0]
        zone = zone_rr.name
        if zone_rr.rdclass != dns.rdataclass.IN:
            return dns.rcode.NOTAUTH, f"class {dns.rdataclass.to_text(zone_rr.rdclass)}", zone, None
        source = self.authority.registry.sources.get(zone)
        if source is None:
            if zone in self.authority.held:  # ours, its file broken, nothing stored
                return dns.rcode.SERVFAIL, "the zone's file is broken (see the log)", zone, None
            return dns.rcode.NOTAUTH, "not a zone served here", zone, None
        zone = source.origin
        rules = self.rules.get(zone)
        if not rules:
            return dns.rcode.REFUSED, "the zone takes no updates", zone, None
        if zone in self.frozen:
            return dns.rcode.REFUSED, "the zone is frozen (aliasd-ctl thaw takes updates again)", zone, None
        if zone not in self.authority.versions:
            return dns.rcode.SERVFAIL, "the zone is not loaded yet", zone, None
        if not query.had_tsig:
            return dns.rcode.REFUSED, "not signed with TSIG", zone, None
        if not any(rule.key_name == query.keyname for rule in rules):
            return dns.rcode.REFUSED, f"key {query.keyname} may not update this zone", zone, None
        return None, "", zone, rules

    def _reply(self, response, rcode: int, limit: int, zone, query, client: str, why: str, key) -> bytes:
        label = dns.rcode.to_text(rcode)
        self.stats.inc("aliasd_updates_total", rcode=label)
        if rcode != dns.rcode.NOERROR and self._refused_log.allow():
            log.info(
                "update of zone {zone} from {client} (key {key}): {rcode}: {why}",
                zone=zone.to_text() if zone is not None else "?", client=client,
                key=query.keyname.to_text() if query.had_tsig else "none", rcode=label, why=why,
            )
        return _wire(query, response, rcode, limit, key)


def _wire(query, response, rcode: int, limit: int, key) -> bytes:
    """The reply with ``rcode``: ``response`` rendered, or without one, written plainly."""
    if response is None:
        return plain_reply(query, rcode, limit, key)
    response.set_rcode(rcode)
    return render(response, limit)

