"""Unit tests: the answer algorithm of an immutable ZoneVersion."""

from __future__ import annotations

import pickle

import dns.name
import dns.rcode
import dns.rdatatype as T
import dns.rrset
import pytest

from aliasd.zones.zone import FlatRRsets, Flattened, ZoneVersion
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


def test_a_loop_owner_answers_nodata_for_addresses_and_is_listed():
    owner = N("example.com")
    version = ZoneVersion.build(SOURCE, {owner: Flattened({T.A: None, T.AAAA: None}, loop=True)})
    for rdtype in (T.A, T.AAAA):
        answer = version.lookup(owner, rdtype)
        assert answer.rcode == dns.rcode.NOERROR and answer.answer == () and answer.authority
    assert version.lookup(owner, T.MX).answer
    assert version.loop_keys == {owner.to_wire(canonicalize=True)}


def test_alias_type_queries_get_nodata_as_on_secondaries(version):
    """Type 65401 is dropped from the transfer view, so a secondary has no
    such record: the primary answers the same (issue 12.6)."""
    for name in ("example.com", "anything.w.example.com"):
        answer = version.lookup(N(name), 65401)
        assert answer.rcode == dns.rcode.NOERROR and answer.answer == () and answer.authority, name
    assert all(r.rdtype != 65401 for r in version.transfer_rrsets())


DNAME_SOURCE = zone_source(
    "example.org",
    """\
    $ORIGIN example.org.
    $TTL 300
    @        SOA ns1 hostmaster 1 3600 600 86400 100
             NS  ns1
    ns1      A   192.0.2.53
    old      DNAME new
    new      A   192.0.2.1
    x.new    A   192.0.2.2
    away     DNAME example.net.
    long     DNAME """ + ".".join(["a" * 63] * 3) + """.
    """,
)


def test_dname_synthesises_a_cname_and_follows_it_in_zone():
    version = ZoneVersion.build(DNAME_SOURCE, {})
    answer = version.lookup(N("x.old.example.org"), T.A)
    assert answer.rcode == dns.rcode.NOERROR
    assert [(r.name, r.rdtype) for r in answer.answer] == [
        (N("old.example.org"), T.DNAME), (N("x.old.example.org"), T.CNAME), (N("x.new.example.org"), T.A)]
    assert answer.answer[1][0].target == N("x.new.example.org") and answer.answer[1].ttl == 300
    assert answer.answer[2][0].address == "192.0.2.2"
    # The DNAME owner itself is not redirected (RFC 6672 2.3).
    at_owner = version.lookup(N("old.example.org"), T.A)
    assert at_owner.answer == () and at_owner.authority
    assert version.lookup(N("old.example.org"), T.DNAME).answer[0][0].target == N("new.example.org")
    # Out of the zone: the chain stops after the synthesised CNAME.
    away = version.lookup(N("www.away.example.org"), T.A)
    assert [r.rdtype for r in away.answer] == [T.DNAME, T.CNAME] and away.answer[1][0].target == N("www.example.net")
    # Too long a result: YXDOMAIN (RFC 6672 2.2).
    assert version.lookup(N(".".join(["b" * 60] * 2) + ".long.example.org"), T.A).rcode == dns.rcode.YXDOMAIN
    assert any(r.rdtype == T.DNAME for r in version.transfer_rrsets())


def test_a_cname_into_another_served_zone_is_followed_there():
    parent = zone_source("example.com", "$ORIGIN example.com.\n@ 300 SOA ns h 1 1 1 1 1\n@ 300 NS ns\n"
                                        "ns 300 A 192.0.2.53\nwww 300 CNAME host.child.example.com.\n"
                                        "gone 300 CNAME nothing.child.example.com.\n")
    child = zone_source("child.example.com", "$ORIGIN child.example.com.\n@ 300 SOA ns h 7 1 1 1 1\n"
                                             "@ 300 NS ns\nhost 300 A 192.0.2.80\n")
    versions = {v.origin: v for v in (ZoneVersion.build(parent, {}), ZoneVersion.build(child, {}))}

    def zone_for(name):
        while len(name) > 1:
            if name in versions:
                return versions[name]
            name = name.parent()
        return None

    outer = versions[N("example.com")]
    answer = outer.lookup(N("www.example.com"), T.A, zone_for)
    assert answer.rcode == dns.rcode.NOERROR and answer.crossed
    assert [r.rdtype for r in answer.answer] == [T.CNAME, T.A] and answer.answer[1][0].address == "192.0.2.80"
    missing = outer.lookup(N("gone.example.com"), T.A, zone_for)
    assert missing.rcode == dns.rcode.NXDOMAIN  # the child's verdict, with the child's SOA
    assert missing.authority[0].name == N("child.example.com") and missing.authority[0][0].serial == 7
    # Without the other zones the chain stops where it leaves this one's data.
    assert outer.lookup(N("www.example.com"), T.A).rcode == dns.rcode.NXDOMAIN


def test_vacant_names_are_carried_between_versions_only_while_they_stay():
    """``vacant`` is kept from the previous version when the changed owners
    serve something (or nothing) as before, and computed again otherwise."""
    source = zone_source("example.com", "$ORIGIN example.com.\n@ 300 SOA ns1 h 1 1 1 1 1\n@ 300 NS ns1\n"
                                        "@ 300 ALIAS target.example.net.\nns1 300 A 192.0.2.53\n"
                                        "gone 300 ALIAS nowhere.example.net.\n")
    gone = N("gone.example.com")
    nothing = Flattened({T.A: None, T.AAAA: None})
    v1 = ZoneVersion.build(source, {gone: nothing})
    assert v1.vacant == {gone.to_wire(canonicalize=True)}
    apex = dns.rrset.from_text_list(N("example.com"), 60, "IN", "A", ["192.0.2.9"])
    v2 = ZoneVersion.build(source, {N("example.com"): Flattened({T.A: apex})}, base=v1.base, previous=v1)
    assert v2._vacant is v1.vacant  # carried
    back = dns.rrset.from_text_list(gone, 60, "IN", "A", ["192.0.2.7"])
    v3 = ZoneVersion.build(source, {gone: Flattened({T.A: back})}, base=v1.base, previous=v2)
    assert v3._vacant is None and v3.vacant == frozenset()


def test_flattened_rrsets_are_made_on_first_use_and_serve_what_eager_ones_did():
    """A flattened owner keeps (type, TTL, shared rdatas): its RRsets are
    made when first asked for, then kept (compared by identity)."""
    owner = dns.name.from_text("example.com")
    eager = dns.rrset.from_text(owner, 60, "IN", "A", "192.0.2.1", "192.0.2.2")
    lazy = FlatRRsets(owner, ((T.A, 60, tuple(eager)), (T.AAAA, 0, None)))
    assert lazy._made is None and list(lazy) == [T.A, T.AAAA] and len(lazy) == 2
    assert lazy.raw(T.A) == (60, tuple(eager)) and lazy.raw(T.AAAA) is None and lazy.has_addresses()
    assert lazy[T.A] == eager and lazy[T.A].ttl == 60 and lazy[T.A] is lazy[T.A] and lazy[T.AAAA] is None
    assert dict(lazy) == {T.A: eager, T.AAAA: None} and T.MX not in lazy
    again = pickle.loads(pickle.dumps(lazy))  # as a worker gets it: without what was made here
    assert again._made is None and again[T.A] == eager
    none = FlatRRsets(owner, ((T.A, 0, None), (T.AAAA, 0, None)))
    assert not none.has_addresses() and dict(none) == {T.A: None, T.AAAA: None}
