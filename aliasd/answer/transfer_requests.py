"""AXFR and IXFR requests: who gets a transfer, what it is, what is logged.

aliasd.replicate.transfer renders a transfer's messages; this module decides what a
transfer request gets. Only a zone apex is transferred, and only to clients
the access rules allow (aliasd.base.access: networks, TSIG key, TLS only). An
IXFR over UDP is answered in one message, or with the SOA alone so that the
client asks again over TCP; AXFR over UDP is refused. The messages of a
transfer over TCP are passed through a generator that counts and logs the
transfer once its last message is out. Refusals are counted without a
client label and logged through a throttle: the source address of a refused
request may be spoofed. Each allowed transfer is noted in the secondaries'
table (aliasd.replicate.secondaries): the serial an IXFR asks from, and the
serial served once the last message is out.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
from twisted.logger import Logger

from aliasd.base.access import TransferAccess, client_address
from aliasd.base.logthrottle import LogThrottle
from aliasd.base.replies import HEADER, render, tsig_error_response
from aliasd.base.stats import Statistics
from aliasd.replicate.secondaries import SecondaryTable
from aliasd.replicate.transfer import (
    axfr_rrsets,
    ixfr_rrsets,
    render_answer,
    single_message,
    transfer_messages,
)

if TYPE_CHECKING:  # the authority is assembled above this stage and handed in
    from aliasd.service.authority import ZoneAuthority

log = Logger()

#: More RRsets than this cannot fit one UDP message (64 KiB, at least 11 octets each).
_UDP_RRSETS = 6000


class TransferRequests:
    """Answers the AXFR and IXFR requests that reach a zone's version.

    ``answer`` returns None after setting a refusal's rcode in ``response``,
    the wire form of a single reply (a TSIG error, an IXFR over UDP), or an
    iterator of wire messages for the transport to stream.
    """

    def __init__(self, authority: ZoneAuthority, stats: Statistics, secondaries: SecondaryTable | None = None):
        self.authority = authority  # for the journals of IXFR
        self.stats = stats
        self.secondaries = secondaries  # None: not noted (unit tests)
        self._refusal_log = LogThrottle("refused transfers")

    def answer(
        self, query, response, version, client, over_udp, limit, tls=None,
        *, access: TransferAccess, payload: int,
    ):
        """The reply to a transfer request; ``access`` holds the rules, ``payload``
        is the EDNS payload size the answers advertise."""
        question = query.question[0]
        kind = dns.rdatatype.to_text(question.rdtype)
        zone = version.origin.to_text()

        def refused(reason):
            # No client label: spoofed sources would grow the counters without bound.
            self.stats.inc("aliasd_transfers_refused_total")
            if self._refusal_log.allow():
                log.info(
                    "{kind} of {zone} refused to {client}: {reason}",
                    kind=kind, zone=zone, client=client, reason=reason,
                )

        def refuse(rcode, reason):
            refused(reason)
            response.set_rcode(rcode)
            return None

        if question.name != version.origin:
            return refuse(dns.rcode.NOTAUTH, f"{question.name} is not a zone apex")
        decision = access.check(version.origin, client, query, tls)
        if not decision.allowed:
            if decision.tsig_error:
                refused(decision.reason)
                return tsig_error_response(query, decision.tsig_error, None, limit)
            return refuse(decision.rcode, decision.reason)
        secondary = (version.origin, str(client_address(client) or client),
                     query.keyname.to_text() if query.had_tsig else None)
        if question.rdtype == dns.rdatatype.AXFR:
            if over_udp:
                return refuse(dns.rcode.REFUSED, "AXFR over UDP")
            self._heard(secondary, None, kind)
            messages = transfer_messages(query, version, "axfr", axfr_rrsets(version), payload)
            return self._logged(messages, kind, "full", zone, version.serial, client, tls=tls, secondary=secondary)
        client_serial = _ixfr_serial(query)
        if client_serial is None:
            return refuse(dns.rcode.FORMERR, "IXFR without the client's SOA")
        self._heard(secondary, client_serial, kind)
        how, rrsets = ixfr_rrsets(version, self.authority.journals.get(version.origin), client_serial)
        if over_udp:
            # At most one message: the records are taken only while they can fit.
            rrsets = list(itertools.islice(rrsets, _UDP_RRSETS + 1))
            try:
                wire = single_message(query, rrsets, limit, payload) if len(rrsets) <= _UDP_RRSETS else None
            except dns.exception.TooBig:
                wire = None
            if wire is None:  # does not fit: the SOA alone, so the client uses TCP
                how = "current SOA (too large for UDP)"
                try:
                    wire = next(render_answer(query, [version.soa], limit, payload))
                except dns.exception.TooBig:  # not even that: truncated
                    how, wire = "truncated", render(response, limit)
            self.stats.inc("aliasd_transfers_total", kind="IXFR-udp", client=client)
            if how not in ("current SOA (too large for UDP)", "truncated"):
                self._heard(secondary, version.serial, kind, complete=True)
            log.info(
                "IXFR of {zone} serial {serial} to {client} over UDP from {old}: {how}",
                zone=zone, serial=version.serial, client=client, old=client_serial, how=how,
            )
            return wire
        slot = ("ixfr", how, client_serial if how == "incremental" else None)
        messages = transfer_messages(query, version, slot, rrsets, payload)
        return self._logged(messages, kind, how, zone, version.serial, client, client_serial, tls, secondary)

    def _heard(self, secondary: tuple, serial: int | None, kind: str, complete: bool = False) -> None:
        if self.secondaries is not None:
            origin, address, key = secondary
            self.secondaries.heard(origin, address, key, serial, kind, complete)

    def _logged(self, messages, kind, how, zone, serial, client, old=None, tls=None, secondary=None):
        """Pass transfer messages through; log and count once the last is out."""
        count = records = 0
        for wire in messages:
            count += 1
            records += HEADER.unpack_from(wire)[3]
            yield wire
        self.stats.inc("aliasd_transfers_total", kind=f"{kind}-{how}", client=client)
        if secondary is not None:
            self._heard(secondary, serial, kind, complete=True)
        log.info(
            "{kind} of {zone} serial {serial} to {client}{since}{via}: {how}, {count} messages, {records} records",
            kind=kind, zone=zone, serial=serial, client=client, how=how, count=count, records=records,
            since=f" from {old}" if old is not None else "", via=f" over {tls}" if tls else "",
        )


def _ixfr_serial(query: dns.message.Message) -> int | None:
    for rrset in query.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return rrset[0].serial
    return None
