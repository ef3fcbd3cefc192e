"""Unit tests: packing transfers into messages, and TSIG over all of them."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.name
import dns.rdatatype as T
import dns.rrset
import dns.tsig
import dns.wire
import pytest

from aliasd.replicate.transfer import (
    axfr_rrsets,
    render_answer,
    renderings,
    single_message,
    transfer_messages,
)
from aliasd.zones.zone import ZoneVersion
from tests.helpers import zone_source

KEY = dns.tsig.Key("xfr.", b"0123456789abcdef0123456789abcdef", "hmac-sha256")
BIG = zone_source(
    "example.com",
    "$ORIGIN example.com.\n@ 300 SOA ns1 h 1 3600 600 86400 60\n"
    + "".join(f"h{i} 300 A 10.0.{i >> 8 & 255}.{i & 255}\n" for i in range(6000))
    + "".join(f"many 300 TXT \"{i:05d}{'z' * 200}\"\n" for i in range(400)),
)


def parse_all(wires, query, keyring=False):
    messages, ctx = [], None
    for wire in wires:
        m = dns.message.from_wire(
            wire, keyring=keyring, request_mac=query.mac if keyring else b"", xfr=True,
            origin=None, tsig_ctx=ctx, multi=bool(keyring),
        )
        ctx = m.tsig_ctx
        messages.append(m)
    return messages


def test_axfr_spans_several_messages_each_under_64k_with_soa_first_and_last():
    version = ZoneVersion.build(BIG, {})
    query = dns.message.make_query("example.com", "AXFR")
    wires = list(render_answer(query, axfr_rrsets(version)))
    assert len(wires) >= 3 and all(len(w) <= 65535 for w in wires)
    messages = parse_all(wires, query)
    rrs = [(rrset.name, rrset.rdtype, rd) for m in messages for rrset in m.answer for rd in rrset]
    assert rrs[0][1] == T.SOA and rrs[-1][1] == T.SOA
    assert len(rrs) == 6000 + 400 + 2
    assert len(messages[0].question) == 1 and all(not m.question for m in messages[1:])
    # The 400-record TXT set (~80 KB) had to be split across messages.
    txt_messages = [m for m in messages if any(r.rdtype == T.TXT for r in m.answer)]
    assert len(txt_messages) >= 2


def test_every_message_is_signed_in_one_tsig_chain():
    version = ZoneVersion.build(BIG, {})
    query = dns.message.make_query("example.com", "AXFR")
    query.use_tsig({KEY.name: KEY}, KEY.name)
    query = dns.message.from_wire(query.to_wire(), keyring={KEY.name: KEY})
    wires = list(render_answer(query, axfr_rrsets(version)))
    messages = parse_all(wires, query, keyring={KEY.name: KEY})  # raises if any is bad
    assert all(m.had_tsig for m in messages)
    # Reordering breaks the chain.
    with pytest.raises(dns.tsig.BadSignature):
        parse_all([wires[0], wires[2]], query, keyring={KEY.name: KEY})


def test_single_message_refuses_when_the_answer_does_not_fit():
    version = ZoneVersion.build(BIG, {})
    query = dns.message.make_query("example.com", "IXFR")
    assert single_message(query, list(axfr_rrsets(version)), 1232) is None
    assert single_message(query, [version.soa], 512) is not None


SMALL = zone_source(
    "example.com",
    "$ORIGIN example.com.\n@ 300 SOA ns1 h 1 3600 600 86400 60\n@ 300 NS ns1\n"
    + "".join(f"h{i} 300 A 10.0.0.{i}\n" for i in range(200)),
)


def additional_records(wire: bytes) -> list[tuple[int, int]]:
    """(type, offset) of each record of the additional section, in wire order."""
    qd, an, ns, ar = struct.unpack_from("!HHHH", wire, 4)
    parser = dns.wire.Parser(wire, 12)
    for _ in range(qd):
        parser.get_name(decompress=True)
        parser.get_struct("!HH")
    found = []
    for _ in range(an + ns + ar):
        start = parser.current
        parser.get_name(decompress=True)
        rdtype, _, _, rdlen = parser.get_struct("!HHIH")
        parser.seek(parser.current + rdlen)
        found.append((rdtype, start))
    assert parser.current == len(wire)
    return found[an + ns :]


@pytest.mark.parametrize("want_dnssec", [False, True])
def test_edns_query_gets_an_opt_in_every_message_and_its_do_bit(want_dnssec):
    """RFC 6891 7 (an OPT in each response to an EDNS query; what BIND
    does for AXFR) and RFC 3225 3 (DO copied from the query)."""
    version = ZoneVersion.build(BIG, {})
    query = dns.message.make_query("example.com", "AXFR", use_edns=0, payload=4096, want_dnssec=want_dnssec)
    wires = list(render_answer(query, axfr_rrsets(version), payload=1232))
    assert len(wires) >= 3
    for m in parse_all(wires, query):
        assert m.edns == 0 and m.payload == 1232 and not m.options
        assert bool(m.ednsflags & dns.flags.DO) == want_dnssec
    # Without EDNS in the query, none in the answer.
    plain = dns.message.make_query("example.com", "AXFR")
    assert all(m.opt is None for m in parse_all(render_answer(plain, axfr_rrsets(version)), plain))


def test_opt_fits_within_the_message_size_limit():
    version = ZoneVersion.build(SMALL, {})
    query = dns.message.make_query("example.com", "AXFR", use_edns=0)
    for size in (512, 700, 1232):
        wires = list(render_answer(query, axfr_rrsets(version), max_size=size))
        assert len(wires) > 1 and all(len(w) <= size for w in wires)
        assert max(len(w) for w in wires) > size - 40  # filled, not padded out
        assert all(dns.message.from_wire(w, xfr=True).opt is not None for w in wires)
    single = single_message(query, [version.soa], 512)
    assert dns.message.from_wire(single).opt is not None


def test_signed_edns_transfer_has_the_opt_before_the_tsig_which_covers_it():
    """RFC 8945 5.3: the TSIG is the last record and signs everything
    before it, the OPT included; the chain holds over every message."""
    version = ZoneVersion.build(BIG, {})
    query = dns.message.make_query("example.com", "AXFR", use_edns=0, want_dnssec=True)
    query.use_tsig({KEY.name: KEY}, KEY.name)
    query = dns.message.from_wire(query.to_wire(), keyring={KEY.name: KEY})
    wires = list(render_answer(query, axfr_rrsets(version)))
    assert len(wires) >= 3
    messages = parse_all(wires, query, keyring={KEY.name: KEY})  # raises if any signature is bad
    assert all(m.had_tsig and m.opt is not None and m.ednsflags & dns.flags.DO for m in messages)
    for wire in wires:
        assert [t for t, _ in additional_records(wire)] == [T.OPT, T.TSIG]
    # Changing the OPT (its payload size) breaks that message's signature.
    (_, at), _ = additional_records(wires[1])
    assert wires[1][at : at + 3] == b"\x00\x00\x29"  # root owner, type OPT
    changed = wires[1][: at + 3] + b"\xff\xff" + wires[1][at + 5 :]
    with pytest.raises(dns.tsig.BadSignature):
        parse_all([wires[0], changed], query, keyring={KEY.name: KEY})


def test_kept_rendering_is_per_edns_shape_and_equal_to_a_fresh_one():
    """A kept AXFR rendering is reused only for queries of the same EDNS
    shape: an EDNS query after a plain one still gets its OPT (and DO), a
    plain one after it none."""
    version = ZoneVersion.build(SMALL, {})

    def axfr(qid, **kwargs):
        q = dns.message.make_query("ExAmple.COM", "AXFR", id=qid, **kwargs)
        q.flags |= dns.flags.CD
        return list(transfer_messages(q, version, "axfr", axfr_rrsets(version), payload=1232))

    shapes = [{}, {"use_edns": 0}, {"use_edns": 0, "want_dnssec": True}, {"use_edns": 0, "payload": 4096}]
    fresh = {i: axfr(7, **shape) for i, shape in enumerate(shapes)}  # each rendered anew
    assert len(renderings(version)) == 3  # the payload the client offers does not matter over TCP
    for round in range(2):
        for i, shape in enumerate(shapes):
            qid = 100 + 10 * round + i
            wires = axfr(qid, **shape)
            assert [w[2:] for w in wires] == [w[2:] for w in fresh[i]]  # all but the ID
            messages = [dns.message.from_wire(w, xfr=True) for w in wires]
            assert all(m.id == qid and m.flags & dns.flags.CD for m in messages)
            assert messages[0].question[0].name.to_text() == "ExAmple.COM."
            for m in messages:
                assert (m.opt is not None) == ("use_edns" in shape)
                assert bool(m.ednsflags & dns.flags.DO) == bool(shape.get("want_dnssec"))
