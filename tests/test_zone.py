"""Unit tests: the answer algorithm of an immutable ZoneVersion."""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdatatype as T
import dns.rrset
import pytest

from aliasd.zone import Flattened, ZoneVersion
from tests.helpers import zone_source

N = dns.name.from_text
SOURCE = zone_source(
    "example.com",
    """\
    $ORIGIN example.com.
    $TTL 300
    @       SOA ns1 hostmaster 9 3600 600 86400 100
            NS  ns1
            MX  10 mail
            ALIAS target.example.net.
            A   192.0.2.1
    ns1     A   192.0.2.53
    mail    A   192.0.2.25
    www     CNAME @
    loop1   CNAME loop2
    loop2   CNAME loop1
    ext     CNAME www.example.org.
    a.b.c   TXT "deep"
    *.w     A   192.0.2.99
    *.w     TXT "wild"
    x.w     AAAA 2001:db8::1
    sub     NS  ns.sub
    sub     DS  1 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE5C1E0A1A4D6C7E0F7B5E1C46
    ns.sub  A   192.0.2.77
    """,
)


@pytest.fixture
def version():
    return ZoneVersion.build(SOURCE, {})


def types(rrsets):
    return [r.rdtype for r in rrsets]


def test_positive_answer_is_authoritative(version):
    answer = version.lookup(N("mail.example.com"), T.A)
    assert answer.rcode == dns.rcode.NOERROR and answer.authoritative
    assert answer.answer[0][0].address == "192.0.2.25"
    assert answer.authority == ()


def test_nxdomain_has_soa_with_rfc2308_ttl(version):
    answer = version.lookup(N("nope.example.com"), T.A)
    assert answer.rcode == dns.rcode.NXDOMAIN and answer.authoritative
    assert types(answer.authority) == [T.SOA]
    assert answer.authority[0].ttl == 100  # min(SOA TTL 300, MINIMUM 100)


def test_nodata_and_empty_non_terminal(version):
    for name in ("mail.example.com", "b.c.example.com", "c.example.com"):
        answer = version.lookup(N(name), T.MX if name.startswith("mail") else T.A)
        assert answer.rcode == dns.rcode.NOERROR, name
        assert answer.answer == () and types(answer.authority) == [T.SOA]
    assert version.lookup(N("a.b.c.example.com"), T.TXT).answer


def test_cname_followed_in_zone_and_stops_outside_and_on_loops(version):
    answer = version.lookup(N("www.example.com"), T.MX)
    assert types(answer.answer) == [T.CNAME, T.MX]
    assert types(version.lookup(N("www.example.com"), T.CNAME).answer) == [T.CNAME]
    ext = version.lookup(N("ext.example.com"), T.A)
    assert types(ext.answer) == [T.CNAME] and ext.rcode == dns.rcode.NOERROR
    loop = version.lookup(N("loop1.example.com"), T.A)
    assert types(loop.answer) == [T.CNAME, T.CNAME]


def test_delegation_referral_with_glue_and_no_aa(version):
    for name in ("sub.example.com", "deep.host.sub.example.com"):
        answer = version.lookup(N(name), T.A)
        assert not answer.authoritative and answer.answer == ()
        assert types(answer.authority) == [T.NS]
        assert answer.additional[0][0].address == "192.0.2.77"
    # DS at the cut belongs to the parent side.
    ds = version.lookup(N("sub.example.com"), T.DS)
    assert ds.authoritative and types(ds.answer) == [T.DS]


def test_wildcards_synthesise_only_for_missing_names(version):
    answer = version.lookup(N("any.w.example.com"), T.A)
    assert answer.answer[0].name == N("any.w.example.com")
    assert answer.answer[0][0].address == "192.0.2.99"
    deeper = version.lookup(N("a.b.w.example.com"), T.TXT)
    assert deeper.answer and deeper.answer[0].name == N("a.b.w.example.com")
    nodata = version.lookup(N("any.w.example.com"), T.MX)
    assert nodata.rcode == dns.rcode.NOERROR and not nodata.answer
    # x.w exists: no wildcard for it, even for types it lacks (RFC 4592 2.2).
    exists = version.lookup(N("x.w.example.com"), T.A)
    assert exists.answer == () and exists.rcode == dns.rcode.NOERROR


def test_any_returns_records_but_never_the_alias(version):
    answer = version.lookup(N("example.com"), T.ANY)
    assert set(types(answer.answer)) == {T.SOA, T.NS, T.MX, T.A}


def test_flattened_addresses_replace_the_fallback(version):
    owner = N("example.com")
    flat = dns.rrset.from_text(owner, 30, "IN", "A", "203.0.113.5")
    new = ZoneVersion.build(SOURCE, {owner: Flattened({T.A: flat, T.AAAA: None})})
    assert new.lookup(owner, T.A).answer[0][0].address == "203.0.113.5"
    assert new.lookup(owner, T.AAAA).answer == ()
    # The old version is untouched (immutable snapshots).
    assert version.lookup(owner, T.A).answer[0][0].address == "192.0.2.1"
    empty = ZoneVersion.build(SOURCE, {owner: Flattened({T.A: None})})
    assert empty.lookup(owner, T.A).answer == ()
    assert empty.lookup(owner, T.MX).answer  # other types untouched


def test_servfail_owner_answers_servfail_only_for_addresses():
    owner = N("example.com")
    version = ZoneVersion.build(SOURCE, {owner: Flattened({T.A: None, T.AAAA: None}, servfail=True)})
    assert version.lookup(owner, T.A).rcode == dns.rcode.SERVFAIL
    assert version.lookup(owner, T.MX).rcode == dns.rcode.NOERROR
