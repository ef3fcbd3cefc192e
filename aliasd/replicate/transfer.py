"""Zone transfer answers: AXFR (RFC 5936) and IXFR (RFC 1995) as messages.

A transfer is a sequence of RRsets (the transfer view of one ZoneVersion,
or the journal's differences) packed into as many DNS messages as needed,
each well below 64 KiB, each with an OPT record when the request had EDNS,
and, when the request was signed, each signed with TSIG in one chain as
RFC 8945 requires for multi-message answers (dnspython's
``Renderer.add_multi_tsig``). Messages are produced lazily, one at a time,
so the TCP protocol can write them as the client reads and other clients
are served in between. An unsigned answer is rendered once per zone
version and reused (``transfer_messages``).
"""

from __future__ import annotations

import struct
import weakref
from typing import Iterable, Iterator

import dns.exception
import dns.flags
import dns.message
import dns.rdatatype
import dns.renderer
import dns.rrset
import dns.serial

from aliasd.base import fastpath
from aliasd.replicate.axfr import axfr_messages
from aliasd.replicate.journal import Journal
from aliasd.zones.zone import ZoneVersion

#: TSIG record size beyond its two names: RR header, fixed fields, a MAC
#: of up to 64 octets (HMAC-SHA512), six octets of other data, and margin.
_TSIG_FIXED = 128
MAX_MESSAGE_SIZE = 65535
#: The EDNS payload size the OPT records advertise (the server passes its
#: ``max-udp-size``).
EDNS_PAYLOAD = 1232
#: The unsigned renderings kept for reuse: zone version -> {(slot, EDNS
#: shape): message templates}. Weak keys: a version's renderings go with
#: the version, and versions stay immutable (aliasd.zones.zone).
_renderings: "weakref.WeakKeyDictionary[ZoneVersion, dict]" = weakref.WeakKeyDictionary()
#: RRsets in one message of an incremental answer. Its differences are
#: small and read from the store as the messages reach them: 64 KiB of
#: them (a catalog's history of one member per difference) took 0.1 s to
#: decode and render in one turn of the reactor; 64 RRsets 5-10 ms on a
#: busy machine; this many, a few ms.
IXFR_RRSETS_PER_MESSAGE = 32


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
    chain = journal.chain(client_serial) if journal is not None else None
    if not chain or chain[-1].new_serial != version.serial:
        return "full", axfr_rrsets(version)
    return "incremental", _incremental(version, journal, chain)


def _incremental(version: ZoneVersion, journal: Journal, chain) -> Iterator[dns.rrset.RRset]:
    """An incremental answer's records, each difference read (from the
    store, for older ones) only when the messages reach it: a secondary
    thousands of versions behind is answered a message at a time, not after
    a stall that decodes its whole history at once."""
    yield version.soa
    for entry in chain:
        diff = journal.difference(entry)
        yield diff.old_soa
        yield from diff.removed
        yield diff.new_soa
        yield from diff.added
    yield version.soa


def _response(query: dns.message.Message, payload: int) -> dns.message.Message:
    """The skeleton every message of the answer shares: the question, the
    flags (AA, RD and CD copied), an OPT record when the query had EDNS
    (our payload size, DO echoed as RFC 3225 3 asks, no padding: the
    messages are kept and reused), the TSIG template when it was signed."""
    response = dns.message.make_response(query, our_payload=payload, pad=0)
    response.flags |= dns.flags.AA | (query.flags & dns.flags.CD)
    if response.opt is not None:
        response.ednsflags |= query.ednsflags & dns.flags.DO
    return response


def render_answer(
    query: dns.message.Message,
    rrsets: Iterable[dns.rrset.RRset],
    max_size: int = MAX_MESSAGE_SIZE,
    payload: int = EDNS_PAYLOAD,
    max_rrsets: int | None = None,
) -> Iterator[bytes]:
    """Pack ``rrsets`` into answer messages for ``query``, signed if it was
    (at most ``max_rrsets`` RRsets in each, when given).

    The question goes in the first message only. When the query had EDNS,
    every message carries an OPT record (as BIND does: RFC 6891 7 puts the
    OPT in each response; RFC 5936 2.2.5 needs it in the first at least),
    before the TSIG, which covers it. An RRset too large for one message is
    split into single records; a single record larger than ``max_size``
    raises TooBig.
    """
    response = _response(query, payload)
    reserved = _trailer_size(response)
    if reserved >= max_size - 12:
        raise dns.exception.TooBig(f"no room for the OPT and TSIG records in {max_size} octets")
    renderer = _start(response, max_size, reserved, with_question=True)
    empty = True  # nothing in the current message yet
    ctx = None  # the TSIG chain (RFC 8945 5.3.1)
    count = 0  # RRsets in the current message

    for rrset in rrsets:
        if max_rrsets is not None:
            if count >= max_rrsets:
                wire, ctx = _finish(renderer, response, ctx)
                yield wire
                renderer, empty, count = _start(response, max_size, reserved, with_question=False), True, 0
            count += 1
        if _fits(renderer, rrset):
            empty = False
            continue
        if not empty:
            wire, ctx = _finish(renderer, response, ctx)
            yield wire
            renderer, empty = _start(response, max_size, reserved, with_question=False), True
            if _fits(renderer, rrset):
                empty = False
                continue
        # Too big even for a message of its own: one record at a time.
        for rdata in rrset:
            single = dns.rrset.from_rdata(rrset.name, rrset.ttl, rdata)
            if not _fits(renderer, single):
                if empty:
                    raise dns.exception.TooBig(f"a record of {rrset.name} exceeds {max_size} octets")
                wire, ctx = _finish(renderer, response, ctx)
                yield wire
                renderer = _start(response, max_size, reserved, with_question=False)
                if not _fits(renderer, single):
                    raise dns.exception.TooBig(f"a record of {rrset.name} exceeds {max_size} octets")
            empty = False
    wire, ctx = _finish(renderer, response, ctx)
    yield wire


def _trailer_size(response: dns.message.Message) -> int:
    """Room kept in each message for its OPT and TSIG records."""
    size = 0
    if response.opt is not None:
        # Owner (root), type, class, TTL, rdlength; then each option.
        size += 11 + sum(4 + len(option.to_wire()) for option in response.options)
    if response.tsig is not None:
        size += _TSIG_FIXED + len(response.keyname.to_wire()) + len(response.keyalgorithm.to_wire())
    return size


def _fits(renderer: dns.renderer.Renderer, rrset: dns.rrset.RRset) -> bool:
    """Add ``rrset`` to the answer if it fits (the renderer rolls back if not)."""
    try:
        renderer.add_rrset(dns.renderer.ANSWER, rrset)
    except dns.exception.TooBig:
        return False
    return True


def _start(
    response: dns.message.Message, max_size: int, reserved: int, with_question: bool
) -> dns.renderer.Renderer:
    renderer = dns.renderer.Renderer(response.id, response.flags, max_size)
    if reserved:
        renderer.reserve(reserved)
    if with_question:
        for q in response.question:
            renderer.add_question(q.name, q.rdtype, q.rdclass)
    return renderer


def _finish(renderer: dns.renderer.Renderer, response: dns.message.Message, ctx):
    """The message's wire form, and the TSIG context for the next message."""
    renderer.release_reserved()
    if response.opt is not None:
        renderer.add_opt(response.opt)  # before the TSIG, which covers it
    renderer.write_header()
    if response.tsig is not None:
        template = response.tsig[0]
        ctx = renderer.add_multi_tsig(
            ctx, response.keyname, response.keyring, template.fudge, template.original_id,
            template.error, template.other, response.request_mac, template.algorithm,
        )
    return renderer.get_wire(), ctx


def single_message(
    query: dns.message.Message,
    rrsets: list[dns.rrset.RRset],
    max_size: int,
    payload: int = EDNS_PAYLOAD,
) -> bytes | None:
    """The answer as one message of at most ``max_size`` octets, or None."""
    messages = render_answer(query, rrsets, max_size, payload)
    first = next(messages)
    if next(messages, None) is not None:
        return None
    return first


def transfer_messages(
    query: dns.message.Message,
    version: ZoneVersion,
    slot,
    rrsets: Iterable[dns.rrset.RRset],
    payload: int = EDNS_PAYLOAD,
) -> Iterator[bytes]:
    """A transfer's messages, rendered once per version and answer, then reused.

    ``slot`` names the answer (``"axfr"``, or an IXFR's kind and serial).
    Signed transfers are rendered for each request (the TSIG chain
    differs). The first complete unsigned rendering of an answer for a
    given EDNS shape (none, or our payload size and the DO bit) is kept
    for the version (``renderings``); later requests get those messages
    with their own ID, RD/CD flags and question case, so a version is
    rendered once however many secondaries ask.
    """
    if query.had_tsig:
        return render_answer(query, rrsets, payload=payload, max_rrsets=_rrsets_per_message(slot))
    key = (slot, None if query.edns < 0 else (payload, bool(query.ednsflags & dns.flags.DO)))
    kept = _renderings.get(version)
    cached = kept.get(key) if kept is not None else None
    if cached is not None:
        query_wire = query.to_wire()
        qend = 12 + len(query.question[0].name.to_wire()) + 4
        return (fastpath.patch(t, query_wire, qend if i == 0 else 12) for i, t in enumerate(cached))
    return _recorded(query, version, key, rrsets, payload)


def _unsigned(query, version: ZoneVersion, slot, rrsets, payload: int) -> Iterator[bytes]:
    """An unsigned answer's messages: the whole view (AXFR, or an IXFR that
    falls back to it) straight from the packed records (aliasd.replicate.axfr), the
    rest rendered by dnspython."""
    if slot == "axfr" or (isinstance(slot, tuple) and slot[:2] == ("ixfr", "full")):
        skeleton = _response(query, payload).to_wire()  # header, question, OPT
        qend = 12 + len(query.question[0].name.to_wire()) + 4
        ident, flags = struct.unpack_from("!HH", skeleton)
        return axfr_messages(version, ident, flags, skeleton[12:qend], skeleton[qend:])
    return render_answer(query, rrsets, payload=payload, max_rrsets=_rrsets_per_message(slot))


def _rrsets_per_message(slot) -> int | None:
    """The bound on RRsets per message for this answer (incremental ones only)."""
    return IXFR_RRSETS_PER_MESSAGE if isinstance(slot, tuple) and slot[1] == "incremental" else None


def _recorded(query, version: ZoneVersion, key, rrsets, payload: int) -> Iterator[bytes]:
    recorded = []
    for wire in _unsigned(query, version, key[0], rrsets, payload):
        recorded.append(fastpath.template(wire))
        yield wire
    kept = _renderings.get(version)
    if kept is None:
        kept = _renderings[version] = {}
    kept.setdefault(key, recorded)  # only a complete answer


def renderings(version: ZoneVersion) -> dict:
    """The renderings kept for ``version``: {(slot, EDNS shape): messages}."""
    return _renderings.get(version, {})
