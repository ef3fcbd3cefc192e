"""Unit tests: AXFR written from packed records (aliasd.replicate.axfr) against
dnspython's rendering of the same transfer view (aliasd.replicate.transfer)."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rdatatype as T
import dns.rrset

from aliasd.replicate.axfr import axfr_messages
from aliasd.replicate.transfer import axfr_rrsets, render_answer
from aliasd.zones.zone import Flattened, ZoneVersion
from tests.helpers import zone_source

SOURCE = zone_source(
    "Example.com",
    """\
    $ORIGIN Example.com.
    $TTL 300
    @        SOA ns1 hostmaster 9 3600 600 86400 100
             NS  ns1
             NS  ns2.other.test.
             MX  10 mail
             ALIAS target.example.net.
             A   192.0.2.1
    ns1      A   192.0.2.53
    mail     A   192.0.2.25
    www      CNAME @
    *.w      TXT "wild"
    sub      NS  ns.sub
    ns.sub   A   192.0.2.77
    """ + "".join(f"h{i} 60 TXT \"{'x' * 100}\"\n    " for i in range(60)),
)


def same(a, b):
    """The same records, letter case aside: owners compressed against the
    question take its case in either rendering."""
    return sorted(repr(r).lower() for r in a) == sorted(repr(r).lower() for r in b)


def records(messages):
    found = []
    for wire in messages:
        message = dns.message.from_wire(wire, one_rr_per_rrset=True)
        for rrset in message.answer:
            for rdata in rrset:
                found.append((rrset.name, rrset.rdtype, rrset.ttl, rdata))
    return found


def test_the_records_are_those_dnspython_renders_soa_first_and_last():
    apex = dns.rrset.from_text("example.com.", 30, "IN", "A", "203.0.113.7", "203.0.113.8")
    version = ZoneVersion.build(SOURCE, {SOURCE.origin: Flattened({T.A: apex, T.AAAA: None})}, serial=42)
    query = dns.message.make_query("example.COM", "AXFR")
    expected = records(render_answer(query, axfr_rrsets(version)))
    got = records(axfr_messages(version, 0x1234, dns.flags.QR | dns.flags.AA, query.to_wire()[12:]))
    assert same(got, expected) and len(got) == len(expected)
    assert got[0][1] == T.SOA and got[-1][1] == T.SOA and got[0][3].serial == 42
    assert (SOURCE.origin, T.A, 30) in [(n, t, ttl) for n, t, ttl, _ in got]
    assert not any(t == 65401 for _, t, _, _ in got)
    assert [str(r.address) for n, t, _, r in got if t == T.A and n == SOURCE.origin] == ["203.0.113.7", "203.0.113.8"]


def test_small_messages_split_with_the_question_in_the_first_only():
    version = ZoneVersion.build(SOURCE, {}, serial=7)
    query = dns.message.make_query("example.com", "AXFR", use_edns=0)
    opt = b"\x00" + bytes.fromhex("0029" "04d0" "00000000" "0000")  # OPT: payload 1232
    messages = list(axfr_messages(version, 7, dns.flags.QR | dns.flags.AA, query.to_wire()[12:-11], opt, 512))
    assert len(messages) > 3 and all(len(m) <= 512 for m in messages)
    parsed = [dns.message.from_wire(m) for m in messages]
    assert len(parsed[0].question) == 1 and all(not p.question for p in parsed[1:])
    assert all(p.id == 7 and p.flags & dns.flags.AA and p.edns == 0 and p.payload == 1232 for p in parsed)
    expected = records(render_answer(dns.message.make_query("example.com", "AXFR"), axfr_rrsets(version)))
    assert same(records(messages), expected)
