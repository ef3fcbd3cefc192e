"""Response rate limiting: accounts, slip answers, recovery, table bounds.

Every test drives a ResponseRateLimiter with a fake clock (the ``clock``
fixture, a twisted.internet.task.Clock) and answers rendered by dnspython,
and counts exactly what goes out: sent unchanged, slipped or dropped.
"""

from __future__ import annotations

import ipaddress
import random
import struct

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from twisted.logger import formatEvent

from aliasd.base.config import RateLimitSettings
from aliasd.base.stats import Statistics
from aliasd.listen import ratelimit
from aliasd.listen.ratelimit import ResponseRateLimiter, slip_answer

SOA = "ns1.example.com. hostmaster.example.com. 1 3600 600 86400 60"


def limiter(clock, stats=None, **settings) -> ResponseRateLimiter:
    settings.setdefault("responses_per_second", 5)
    return ResponseRateLimiter(RateLimitSettings(**settings), clock=clock.seconds, stats=stats)


def response(name, rdtype="A", rcode=dns.rcode.NOERROR, answer=(), authority=(), qid=4242, edns=False):
    """Wire bytes of an answer to ``name``/``rdtype``.

    ``answer`` and ``authority`` hold (owner, type, rdata text) triples.
    """
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns else None)
    query.id = qid
    message = dns.message.make_response(query)
    message.set_rcode(rcode)
    for section, records in ((message.answer, answer), (message.authority, authority)):
        for owner, rtype, text in records:
            section.append(dns.rrset.from_text(owner, 300, "IN", rtype, text))
    return message.to_wire()


def positive(name="www.example.com.", rdtype="A", **kw):
    text = "192.0.2.1" if rdtype == "A" else "2001:db8::1"
    return response(name, rdtype, answer=[(name, rdtype, text)], **kw)


def nxdomain(name, zone="example.com.", **kw):
    return response(name, rcode=dns.rcode.NXDOMAIN, authority=[(zone, "SOA", SOA)], **kw)


def nodata(name, zone="example.com.", rdtype="AAAA"):
    return response(name, rdtype, authority=[(zone, "SOA", SOA)])


def error(name="www.example.com.", rcode=dns.rcode.REFUSED):
    return response(name, rcode=rcode)


def outcomes(rrl, client, wire, count=1) -> list[str]:
    """What happened to ``count`` copies of ``wire`` sent to ``client`` now."""
    result = []
    for _ in range(count):
        out = rrl.check(client, wire)
        result.append("sent" if out == wire else "dropped" if out is None else "slipped")
    return result


def sent(rrl, client, wires) -> int:
    """How many of ``wires`` went out unchanged."""
    return sum(rrl.check(client, wire) == wire for wire in wires)


# -- the token balance ------------------------------------------------------


def test_under_the_rate_nothing_is_limited(clock):
    rrl = limiter(clock)
    wire = positive()
    for _ in range(50):  # 5 per second, evenly spaced, for 10 seconds
        assert outcomes(rrl, "192.0.2.1", wire) == ["sent"]
        clock.advance(0.2)
    clock.advance(1)
    for _ in range(10):  # a full second's burst, once a second
        assert outcomes(rrl, "192.0.2.1", wire, 5) == ["sent"] * 5
        clock.advance(1)
    assert rrl.limited_total == 0


def test_a_burst_gets_exactly_the_rate_and_slip_two_alternates(clock):
    rrl = limiter(clock, slip=2)
    assert outcomes(rrl, "192.0.2.1", positive(), 12) == ["sent"] * 5 + ["dropped", "slipped"] * 3 + ["dropped"]
    assert (rrl.dropped, rrl.slipped) == (4, 3)


def test_a_long_silence_earns_one_second_of_burst_only(clock):
    rrl = limiter(clock, slip=2)
    wire = positive()
    assert outcomes(rrl, "192.0.2.1", wire, 6) == ["sent"] * 5 + ["dropped"]
    clock.advance(60)
    assert outcomes(rrl, "192.0.2.1", wire, 8) == ["sent"] * 5 + ["dropped", "slipped", "dropped"]


@pytest.mark.parametrize(
    "slip, expected",
    [
        (0, ["dropped"] * 6),
        (1, ["slipped"] * 6),
        (3, ["dropped", "dropped", "slipped"] * 2),
    ],
)
def test_slip_setting(clock, slip, expected):
    rrl = limiter(clock, slip=slip)
    assert outcomes(rrl, "192.0.2.1", positive(), 11) == ["sent"] * 5 + expected


def test_slip_answer_is_the_header_with_tc_and_the_question(clock):
    rrl = limiter(clock, slip=1)
    wire = positive("WwW.ExAmPle.com.", "AAAA", qid=31337, edns=True)
    outcomes(rrl, "192.0.2.1", wire, 5)
    slipped = rrl.check("192.0.2.1", wire)
    original = dns.message.from_wire(wire)
    message = dns.message.from_wire(slipped)
    assert message.id == 31337
    assert message.flags & dns.flags.TC
    assert message.flags == original.flags | dns.flags.TC
    assert message.rcode() == dns.rcode.NOERROR
    assert [(q.name.labels, q.rdtype) for q in message.question] == [(original.question[0].name.labels, dns.rdatatype.AAAA)]
    assert message.answer == [] and message.authority == [] and message.additional == []
    assert message.edns < 0
    assert slipped[12:-4] == b"\x03WwW\x07ExAmPle\x03com\x00"  # letter case kept


def test_slip_answer_without_a_readable_question_is_a_bare_header():
    formerr = struct.pack("!HHHHHH", 7, 0x8001, 0, 0, 0, 0)
    assert slip_answer(formerr) == struct.pack("!HHHHHH", 7, 0x8201, 0, 0, 0, 0)
    bad_name = struct.pack("!HHHHHH", 8, 0x8005, 1, 0, 0, 0) + b"\x05abc"
    assert slip_answer(bad_name) == struct.pack("!HHHHHH", 8, 0x8205, 0, 0, 0, 0)


def test_an_account_recovers_after_a_short_burst(clock):
    rrl = limiter(clock, slip=0)
    wire = positive()
    assert outcomes(rrl, "192.0.2.1", wire, 6) == ["sent"] * 5 + ["dropped"]
    clock.advance(0.1)  # half a token: the balance is still negative
    assert outcomes(rrl, "192.0.2.1", wire) == ["dropped"]
    clock.advance(1)
    assert outcomes(rrl, "192.0.2.1", wire, 4) == ["sent"] * 3 + ["dropped"]


def _flooded(clock, seconds=30.0):
    """A limiter whose account for 192.0.2.1 a long flood has put in full debt."""
    rrl = limiter(clock, responses_per_second=5, window=15, slip=0)
    wire = positive()
    for _ in range(int(seconds * 100)):  # 100 per second
        rrl.check("192.0.2.1", wire)
        clock.advance(0.01)
    return rrl, wire


def test_a_flood_stays_limited_and_one_second_of_silence_is_not_enough(clock):
    rrl, wire = _flooded(clock)
    assert rrl.dropped == 3000 - 5  # only the first second's burst went out
    clock.advance(1)
    assert outcomes(rrl, "192.0.2.1", wire) == ["dropped"]


def test_after_a_flood_less_than_window_seconds_is_not_enough(clock):
    rrl, wire = _flooded(clock)
    clock.advance(14.9)
    assert outcomes(rrl, "192.0.2.1", wire) == ["dropped"]


def test_after_a_flood_window_seconds_are_enough(clock):
    rrl, wire = _flooded(clock)
    clock.advance(15)
    assert outcomes(rrl, "192.0.2.1", wire) == ["sent"]
    clock.advance(1)
    assert outcomes(rrl, "192.0.2.1", wire, 6) == ["sent"] * 5 + ["dropped"]


def test_debt_is_bounded_by_the_window(clock):
    rrl, _ = _flooded(clock, seconds=60)
    (account,) = rrl.accounts.values()
    assert account.balance == pytest.approx(1 - 5 * 15)


# -- client networks ----------------------------------------------------------


def test_clients_in_one_ipv4_slash_24_share_an_account(clock):
    rrl = limiter(clock)
    wire = positive()
    assert sent(rrl, "192.0.2.1", [wire] * 3) == 3
    assert sent(rrl, "192.0.2.200", [wire] * 3) == 2
    assert sent(rrl, "192.0.3.1", [wire] * 10) == 5
    assert sent(rrl, "::ffff:192.0.2.9", [wire]) == 0  # IPv4-mapped: the same network


def test_clients_in_one_ipv6_slash_56_share_an_account(clock):
    rrl = limiter(clock)
    wire = positive()
    assert sent(rrl, "2001:db8:0:100::1", [wire] * 3) == 3
    assert sent(rrl, "2001:db8:0:1ff:ffff::2", [wire] * 3) == 2
    assert sent(rrl, "2001:db8:0:200::1", [wire] * 10) == 5
    assert sent(rrl, "2001:db8:0:100::5%eth0", [wire]) == 0  # scope dropped


def test_prefix_lengths_are_configurable(clock):
    rrl = limiter(clock, ipv4_prefix_length=32, ipv6_prefix_length=64)
    wire = positive()
    assert sent(rrl, "192.0.2.1", [wire] * 10) == 5
    assert sent(rrl, "192.0.2.2", [wire] * 10) == 5
    assert sent(rrl, "2001:db8:0:100::1", [wire] * 10) == 5
    assert sent(rrl, "2001:db8:0:101::1", [wire] * 10) == 5
    assert sent(rrl, "2001:db8:0:100:ffff::1", [wire] * 10) == 0
    wide = limiter(clock, ipv4_prefix_length=16, ipv6_prefix_length=0)
    assert sent(wide, "192.0.2.1", [wire] * 3) == 3
    assert sent(wide, "192.0.77.1", [wire] * 3) == 2
    assert sent(wide, "2001:db8::1", [wire] * 3) == 3
    assert sent(wide, "fe80::1", [wire] * 3) == 2


def test_exempt_networks_are_never_limited(clock):
    exempt = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32"))
    rrl = limiter(clock, exempt=exempt)
    wire = positive()
    assert sent(rrl, "192.0.2.1", [wire] * 100) == 100
    assert sent(rrl, "2001:db8:1::1", [wire] * 100) == 100
    assert sent(rrl, "::ffff:192.0.2.1", [wire] * 100) == 100
    assert rrl.accounts == {}
    assert sent(rrl, "198.51.100.1", [wire] * 100) == 5


def test_unparseable_clients_are_not_limited(clock):
    rrl = limiter(clock)
    wire = positive()
    for client in ("not-an-address", "", "192.0.2", "/tmp/socket"):
        assert sent(rrl, client, [wire] * 20) == 20
    assert rrl.accounts == {}


def test_the_client_cache_is_bounded(clock, monkeypatch):
    monkeypatch.setattr(ratelimit, "_MAX_CLIENTS", 100)
    rrl = limiter(clock, responses_per_second=1000)
    wire = positive()
    for i in range(1000):
        rrl.check(f"10.0.{i // 250}.{i % 250}", wire)
        assert len(rrl._networks) <= 100
    assert len(rrl.accounts) == 4  # 10.0/24 ... 10.3/24


# -- answer classes -----------------------------------------------------------


def test_nxdomain_for_many_names_in_one_zone_shares_an_account(clock):
    rrl = limiter(clock, slip=0)
    names = [f"r{random.getrandbits(40):x}.example.com." for _ in range(50)]
    assert sent(rrl, "192.0.2.1", [nxdomain(n) for n in names]) == 5
    assert list(rrl.accounts) == [(b"\xc0\x00\x02\x00", ratelimit.NXDOMAIN, b"\x07example\x03com\x00")]
    assert sent(rrl, "192.0.2.1", [nxdomain("x.Example.NET.", "example.net.")] * 10) == 5
    assert sent(rrl, "192.0.2.1", [nxdomain("A.b.EXAMPLE.com.")]) == 0  # letter case ignored


def test_nxdomain_zone_read_when_not_a_suffix_of_the_question(clock):
    """A CNAME into another zone: the SOA owner points into the answer."""
    rrl = limiter(clock)
    wires = [
        response(
            f"n{i}.a.example.", rcode=dns.rcode.NXDOMAIN,
            answer=[(f"n{i}.a.example.", "CNAME", f"m{i}.b.example.")],
            authority=[("b.example.", "SOA", SOA)],
        )
        for i in range(20)
    ]
    assert sent(rrl, "192.0.2.1", wires) == 5
    assert [key[1:] for key in rrl.accounts] == [(ratelimit.NXDOMAIN, b"\x01b\x07example\x00")]


def test_nxdomain_without_authority_is_counted_by_name(clock):
    rrl = limiter(clock)
    wires = [response(f"n{i}.example.com.", rcode=dns.rcode.NXDOMAIN) for i in range(20)]
    assert sent(rrl, "192.0.2.1", wires) == 20
    assert len(rrl.accounts) == 20


def test_nodata_shares_an_account_per_zone_at_the_responses_rate(clock):
    rrl = limiter(clock, nxdomains_per_second=1)
    wires = [nodata(f"host{i}.example.com.") for i in range(20)]
    assert sent(rrl, "192.0.2.1", wires) == 5
    assert [key[1:] for key in rrl.accounts] == [(ratelimit.NODATA, b"\x07example\x03com\x00")]


def test_referrals_share_an_account_per_delegation(clock):
    rrl = limiter(clock)
    wires = [
        response(f"h{i}.sub.example.com.", authority=[("sub.example.com.", "NS", "ns.sub.example.com.")])
        for i in range(20)
    ]
    assert sent(rrl, "192.0.2.1", wires) == 5
    assert [key[1:] for key in rrl.accounts] == [(ratelimit.REFERRAL, b"\x03sub\x07example\x03com\x00")]


def test_positive_answers_have_an_account_per_name_and_type(clock):
    rrl = limiter(clock)
    for i in range(20):
        assert sent(rrl, "192.0.2.1", [positive(f"h{i}.example.com.")] * 5) == 5
    assert sent(rrl, "192.0.2.1", [positive("h0.example.com.", "AAAA")] * 5) == 5
    assert sent(rrl, "192.0.2.1", [positive("H0.EXAMPLE.com.")]) == 0  # 0x20 case: same account
    assert len(rrl.accounts) == 21


def test_errors_share_one_account_per_network(clock):
    rrl = limiter(clock, slip=0)
    formerr = struct.pack("!HHHHHH", 1, 0x8001, 0, 0, 0, 0)
    wires = [
        error("a.example.com."), error("b.example.org.", dns.rcode.SERVFAIL), formerr,
        error("c.example.", dns.rcode.NOTIMP), error("d.example.", dns.rcode.NOTAUTH), error("e.example."),
    ]
    assert sent(rrl, "192.0.2.1", wires) == 5
    assert list(rrl.accounts) == [(b"\xc0\x00\x02\x00", ratelimit.ERROR, b"")]
    assert sent(rrl, "192.0.3.1", wires) == 5


def test_class_rates_can_be_set_apart(clock):
    rrl = limiter(clock, responses_per_second=5, nxdomains_per_second=2, errors_per_second=3)
    assert sent(rrl, "192.0.2.1", [nxdomain(f"n{i}.example.com.") for i in range(10)]) == 2
    assert sent(rrl, "192.0.2.1", [error(f"n{i}.example.com.") for i in range(10)]) == 3
    assert sent(rrl, "192.0.2.1", [nodata(f"n{i}.example.com.") for i in range(10)]) == 5
    assert sent(rrl, "192.0.2.1", [positive()] * 10) == 5


def test_a_class_rate_of_zero_is_never_limited(clock):
    rrl = limiter(clock, nxdomains_per_second=0)
    assert sent(rrl, "192.0.2.1", [nxdomain(f"n{i}.example.com.") for i in range(100)]) == 100
    assert sent(rrl, "192.0.2.1", [positive()] * 10) == 5


def test_disabled_limits_nothing(clock):
    rrl = limiter(clock, responses_per_second=0)
    assert sent(rrl, "192.0.2.1", [positive()] * 100 + [error()] * 100) == 200
    assert rrl.accounts == {}


def test_errors_slip_with_their_question(clock):
    rrl = limiter(clock, slip=1)
    wire = error("Refused.Example.")
    outcomes(rrl, "192.0.2.1", wire, 5)
    message = dns.message.from_wire(rrl.check("192.0.2.1", wire))
    assert message.flags & dns.flags.TC and message.rcode() == dns.rcode.REFUSED
    assert message.question[0].name == dns.name.from_text("refused.example.")


# -- the table bound ----------------------------------------------------------


def test_the_table_stays_bounded_and_a_flood_stays_limited(clock):
    rrl = limiter(clock, max_table_size=10, slip=0)
    wire = positive()
    flood = 0
    for i in range(1000):
        rrl.check(f"10.{i // 256}.{i % 256}.1", wire)
        flood += rrl.check("192.0.2.1", wire) == wire
        assert len(rrl.accounts) <= 10
    assert flood == 5
    assert any(key[0] == b"\xc0\x00\x02\x00" for key in rrl.accounts)


def test_idle_accounts_go_first(clock):
    rrl = limiter(clock, max_table_size=10)
    wire = positive()
    for i in range(10):
        rrl.check(f"10.0.{i}.1", wire)
    clock.advance(10)
    for i in range(5):
        rrl.check(f"10.1.{i}.1", wire)
    clock.advance(6)  # the first ten are now idle for more than the window
    rrl.check("10.2.0.1", wire)
    assert sorted(key[0][:3] for key in rrl.accounts) == [
        b"\x0a\x01\x00", b"\x0a\x01\x01", b"\x0a\x01\x02", b"\x0a\x01\x03", b"\x0a\x01\x04", b"\x0a\x02\x00"
    ]


def test_a_full_table_of_live_accounts_keeps_the_newest_half(clock):
    rrl = limiter(clock, max_table_size=10)
    wire = positive()
    for i in range(10):
        rrl.check(f"10.0.{i}.1", wire)
        clock.advance(0.1)
    rrl.check("10.0.99.1", wire)
    assert sorted(key[0][2] for key in rrl.accounts) == [5, 6, 7, 8, 9, 99]


@pytest.mark.parametrize("size", [1, 2, 3])
def test_tiny_tables(clock, size):
    rrl = limiter(clock, max_table_size=size)
    for i in range(50):
        rrl.check(f"10.0.{i}.1", positive())
        assert len(rrl.accounts) <= size


# -- hostile or odd input -------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x00",
        b"\x00" * 11,
        struct.pack("!HHHHHH", 1, 0x8400, 0, 1, 0, 0),  # NOERROR, no question
        struct.pack("!HHHHHH", 1, 0x8400, 1, 1, 0, 0) + b"\x03www",  # truncated name
        struct.pack("!HHHHHH", 1, 0x8400, 1, 1, 0, 0) + b"\x03www\x00\x00",  # no type and class
        struct.pack("!HHHHHH", 1, 0x8403, 1, 0, 1, 0) + b"\xc0\x0c\x00\x01\x00\x01",  # pointer in question
        struct.pack("!HHHHHH", 1, 0x8403, 1, 0, 1, 0) + b"\x40abc\x00\x00\x01\x00\x01",  # bad label type
    ],
)
def test_unclassifiable_responses_pass_through(clock, wire):
    rrl = limiter(clock, responses_per_second=1, slip=1)
    for _ in range(20):
        assert rrl.check("192.0.2.1", wire) is wire


def test_broken_authority_sections_fall_back_to_the_question_name(clock):
    rrl = limiter(clock, responses_per_second=1)
    question = b"\x01x\x07example\x00\x00\x01\x00\x01"
    header = struct.pack("!HHHHHH", 1, 0x8403, 1, 0, 1, 0)
    loop = header + question + b"\xc0\x1b"  # the owner points at itself
    outside = header + question + b"\xc0\xff\x00\x06"  # points past the end
    truncated = header + question + b"\x07exam"
    for wire in (loop, outside, truncated):
        assert outcomes(rrl, "192.0.2.1", wire, 3) == ["sent", "dropped", "slipped"]
        rrl.accounts.clear()
    assert len(loop) == 0x1B + 2


def test_random_bytes_never_raise(clock):
    rrl = limiter(clock, responses_per_second=3)
    rng = random.Random(7)
    header = struct.pack("!HHHHHH", 1, 0x8403, 1, 2, 3, 1)
    for i in range(5000):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        wire = header[: rng.randrange(0, 13)] + body if i % 2 else header + body
        out = rrl.check(f"10.0.{i % 7}.1", wire)
        assert out is None or isinstance(out, bytes)
        if out is not None and out != wire:
            assert out[2] & 0x02 and out[:2] == wire[:2]  # a slip answer


# -- statistics and the log -----------------------------------------------------


def test_statistics_count_drops_and_slips(clock):
    stats = Statistics()
    rrl = limiter(clock, stats=stats, slip=2)
    outcomes(rrl, "192.0.2.1", positive(), 12)
    assert stats.value("aliasd_rrl_dropped_total") == 4
    assert stats.value("aliasd_rrl_slipped_total") == 3


def test_limiting_is_logged_once_per_account(clock, log_events):
    rrl = limiter(clock, slip=0)
    outcomes(rrl, "192.0.2.1", positive(), 50)
    outcomes(rrl, "192.0.2.99", positive(), 50)  # the same account
    outcomes(rrl, "192.0.2.1", nxdomain("random.example.com."), 50)
    outcomes(rrl, "2001:db8::1", error(), 50)
    messages = [formatEvent(e) for e in log_events if e.get("log_namespace") == "aliasd.listen.ratelimit"]
    assert messages == [
        "rate limiting responses to 192.0.2.0/24 for answers www.example.com./A",
        "rate limiting responses to 192.0.2.0/24 for NXDOMAIN in example.com.",
        "rate limiting responses to 2001:db8::/56 for error answers",
    ]
    clock.advance(15)  # recovered, then limited again: one more line
    outcomes(rrl, "192.0.2.1", positive(), 50)
    assert len([e for e in log_events if e.get("log_namespace") == "aliasd.listen.ratelimit"]) == 4
