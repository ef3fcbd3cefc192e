"""Unit tests: packing transfers into messages, and TSIG over all of them."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rdatatype as T
import dns.rrset
import dns.tsig
import pytest

from aliasd.transfer import axfr_rrsets, render_answer, single_message
from aliasd.zone import ZoneVersion
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
