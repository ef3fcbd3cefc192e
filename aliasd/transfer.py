"""Zone transfer answers: AXFR (RFC 5936) and IXFR (RFC 1995) as messages.

A transfer is a sequence of RRsets (the transfer view of one ZoneVersion,
or the journal's differences) packed into as many DNS messages as needed,
each well below 64 KiB, and, when the request was signed, each signed with
TSIG in one chain as RFC 8945 requires for multi-message answers. Messages
are produced lazily, one at a time, so the TCP protocol can write them as
the client reads and other clients are served in between.
"""

from __future__ import annotations

import time
from typing import Iterable, Iterator

import dns.exception
import dns.flags
import dns.message
import dns.rdatatype
import dns.renderer
import dns.rrset
import dns.serial
import dns.tsig

from aliasd.journal import Journal
from aliasd.zone import ZoneVersion

#: TSIG record size beyond its two names: RR header, fixed fields, a MAC
#: of up to 64 octets (HMAC-SHA512), six octets of other data, and margin.
_TSIG_FIXED = 128
MAX_MESSAGE_SIZE = 65535


def axfr_rrsets(version: ZoneVersion) -> Iterator[dns.rrset.RRset]:
    """The whole transfer view, SOA first and last (RFC 5936 2.2)."""
    yield from version.transfer_rrsets()
    yield version.soa


def ixfr_rrsets(
    version: ZoneVersion, journal: Journal | None, client_serial: int
) -> tuple[str, list[dns.rrset.RRset] | Iterator[dns.rrset.RRset]]:
    """What an IXFR from ``client_serial`` gets, and what kind of answer it is.

    - ``"current"``: the client is up to date (or ahead): the single SOA;
    - ``"incremental"``: SOA, then per difference old SOA, removed records,
      new SOA, added records, then SOA again (RFC 1995 4);
    - ``"full"``: the client's serial is not in the journal: AXFR form.
    """
    if dns.serial.Serial(client_serial) >= dns.serial.Serial(version.serial):
        return "current", [version.soa]
    diffs = journal.since(client_serial) if journal is not None else None
    if not diffs or diffs[-1].new_serial != version.serial:
        return "full", axfr_rrsets(version)
    rrsets = [version.soa]
    for diff in diffs:
        rrsets.append(diff.old_soa)
        rrsets.extend(diff.removed)
        rrsets.append(diff.new_soa)
        rrsets.extend(diff.added)
    rrsets.append(version.soa)
    return "incremental", rrsets


class _Signer:
    """Signs each message of one answer in a single TSIG chain."""

    def __init__(self, response: dns.message.Message, request_mac: bytes):
        self.key = response.keyring
        self.keyname = response.keyname
        self.template = response.tsig[0]
        self.request_mac = request_mac
        self.ctx = None

    def sign(self, renderer: dns.renderer.Renderer) -> None:
        tsig, self.ctx = dns.tsig.sign(
            renderer.get_wire(),
            self.key,
            self.template,
            int(time.time()),
            self.request_mac,
            self.ctx,
            True,
        )
        renderer.add_rrset(dns.renderer.ADDITIONAL, dns.rrset.from_rdata(self.keyname, 0, tsig))
        renderer.write_header()


def render_answer(
    query: dns.message.Message,
    rrsets: Iterable[dns.rrset.RRset],
    max_size: int = MAX_MESSAGE_SIZE,
) -> Iterator[bytes]:
    """Pack ``rrsets`` into answer messages for ``query``, signed if it was.

    The question goes in the first message only. An RRset too large for one
    message is split into single records; a single record larger than
    ``max_size`` raises TooBig.
    """
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    signer = _Signer(response, query.mac) if response.tsig is not None else None
    renderer = _start(response, max_size, with_question=True)
    empty = True  # nothing in the current message yet

    for rrset in rrsets:
        if _fits(renderer, rrset):
            empty = False
            continue
        if not empty:
            yield _finish(renderer, signer)
            renderer, empty = _start(response, max_size, with_question=False), True
            if _fits(renderer, rrset):
                empty = False
                continue
        # Too big even for a message of its own: one record at a time.
        for rdata in rrset:
            single = dns.rrset.from_rdata(rrset.name, rrset.ttl, rdata)
            if not _fits(renderer, single):
                if empty:
                    raise dns.exception.TooBig(f"a record of {rrset.name} exceeds {max_size} octets")
                yield _finish(renderer, signer)
                renderer = _start(response, max_size, with_question=False)
                if not _fits(renderer, single):
                    raise dns.exception.TooBig(f"a record of {rrset.name} exceeds {max_size} octets")
            empty = False
    yield _finish(renderer, signer)


def _fits(renderer: dns.renderer.Renderer, rrset: dns.rrset.RRset) -> bool:
    """Add ``rrset`` to the answer if it fits (the renderer rolls back if not)."""
    try:
        renderer.add_rrset(dns.renderer.ANSWER, rrset)
    except dns.exception.TooBig:
        return False
    return True


def _start(response: dns.message.Message, max_size: int, with_question: bool) -> dns.renderer.Renderer:
    renderer = dns.renderer.Renderer(response.id, response.flags, max_size)
    if response.tsig is not None:
        room = _TSIG_FIXED + len(response.keyname.to_wire()) + len(response.keyalgorithm.to_wire())
        if room >= max_size - 12:
            raise dns.exception.TooBig(f"no room for a TSIG record in {max_size} octets")
        renderer.reserve(room)
    if with_question:
        for q in response.question:
            renderer.add_question(q.name, q.rdtype, q.rdclass)
    return renderer


def _finish(renderer: dns.renderer.Renderer, signer: _Signer | None) -> bytes:
    renderer.release_reserved()
    renderer.write_header()
    if signer is not None:
        signer.sign(renderer)
    return renderer.get_wire()


def single_message(query: dns.message.Message, rrsets: list[dns.rrset.RRset], max_size: int) -> bytes | None:
    """The answer as one message of at most ``max_size`` octets, or None."""
    messages = render_answer(query, rrsets, max_size)
    first = next(messages)
    if next(messages, None) is not None:
        return None
    return first
