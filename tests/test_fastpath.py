"""The fast path answers byte for byte what the full path answers.

Every query below is answered twice by handlers over the same authority:
once by the full path (a fresh handler: empty cache) and once from the cache
(a warm handler asked the same question earlier with another ID, letter
case and flags). The two must be identical.
"""

from __future__ import annotations

import itertools
import random
import struct

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype as T
import dns.rrset
import pytest

from aliasd.answer.answers import QueryHandler
from aliasd.base import fastpath
from aliasd.replicate.transfer import renderings
from aliasd.service.authority import ZoneAuthority
from aliasd.zones.zone import Flattened, ZoneVersion
from tests.helpers import zone_source

SOURCE = zone_source(
    "example.com",
    "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\n@ MX 10 mail\n"
    "@ ALIAS lb.example.net.\n@ A 192.0.2.1\nns1 A 192.0.2.53\nmail A 192.0.2.25\nwww CNAME @\n"
    "*.wild A 192.0.2.99\nsub NS ns.sub\nns.sub A 192.0.2.77\n"
    + "".join(f"h{i} A 10.0.0.{i}\n" for i in range(20))
    + "big TXT " + " ".join(f'"{"x" * 200}"' for _ in range(8)) + "\n",
)
NAMES = ["example.com", "www.example.com", "ns1.example.com", "h7.example.com", "nope.example.com",
         "a.b.wild.example.com", "x.sub.example.com", "big.example.com", "mail.example.com"]
TYPES = ["A", "AAAA", "MX", "TXT", "NS", "SOA", "CNAME"]


@pytest.fixture
def authority():
    a = ZoneAuthority()
    a.set_sources([SOURCE])
    return a


def variants(name: str, rdtype: str):
    """The same question as different clients ask it."""
    rng = random.Random(f"{name}{rdtype}")
    for use_edns, payload, rd, cd, over_udp in itertools.product(
        (False, 0), (512, 1232, 4096), (True, False), (False, True), (True, False)
    ):
        if use_edns is False and payload != 512:
            continue
        mixed = "".join(c.upper() if rng.random() < 0.5 else c for c in name)  # 0x20
        q = dns.message.make_query(mixed, rdtype, use_edns=use_edns, payload=payload)
        q.id = rng.randrange(65536)
        q.flags = (q.flags & ~dns.flags.RD) | (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
        yield q.to_wire(), over_udp


def test_cached_answers_are_byte_identical_to_full_answers(authority):
    warm = QueryHandler(authority)
    hits = 0
    for name, rdtype in itertools.product(NAMES, TYPES):
        for wire, over_udp in variants(name, rdtype):
            slow = QueryHandler(authority).handle(wire, "127.0.0.1", over_udp)
            before = len(warm._cache)
            fast = warm.handle(wire, "127.0.0.1", over_udp)
            assert fast == slow, (name, rdtype, over_udp)
            hits += len(warm._cache) == before
            # Ask again with another ID: certainly from the cache now.
            again = bytes([wire[0] ^ 0xFF, wire[1]]) + wire[2:]
            assert warm.handle(again, "127.0.0.1", over_udp) == QueryHandler(authority).handle(again, "127.0.0.1", over_udp)
    assert hits > 100  # the cache was used, not just filled


def test_a_new_version_is_never_answered_from_old_bytes(authority):
    handler = QueryHandler(authority)
    q = dns.message.make_query("example.com", "A").to_wire()
    first = dns.message.from_wire(handler.handle(q, "127.0.0.1", True))
    assert first.answer[0][0].address == "192.0.2.1"
    owner = dns.name.from_text("example.com")
    flat = Flattened({T.A: dns.rrset.from_text(owner, 30, "IN", "A", "203.0.113.9")})
    old = authority.versions[owner]
    authority.serve(ZoneVersion.build(SOURCE, {owner: flat}, serial=2, previous=old))
    second = dns.message.from_wire(handler.handle(q, "127.0.0.1", True))
    assert second.answer[0][0].address == "203.0.113.9"


def test_reload_that_adds_a_child_zone_invalidates_cached_answers(authority):
    handler = QueryHandler(authority)
    q = dns.message.make_query("host.child.example.com", "A").to_wire()
    assert dns.message.from_wire(handler.handle(q, "127.0.0.1", True)).rcode() == 3  # NXDOMAIN
    child = zone_source("child.example.com", "$ORIGIN child.example.com.\n@ 300 SOA ns1 h 1 2 3 4 5\nhost 300 A 192.0.2.5\n")
    authority.set_sources([SOURCE, child])
    assert dns.message.from_wire(handler.handle(q, "127.0.0.1", True)).answer[0][0].address == "192.0.2.5"


@pytest.mark.parametrize(
    "wire",
    [
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # pointer
        b"\x12\x34\x81\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01",  # a response
        b"\x12\x34\x29\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01",  # UPDATE
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x03",  # class CH
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\xfc\x00\x01",  # AXFR
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x01\x00\x01\x00\x00\x29\x04\xd0\x00\x01\x00\x00\x00\x00",  # EDNS 1
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01junk",  # trailing
    ],
)
def test_unusual_queries_take_the_full_path(wire):
    assert fastpath.cache_key(wire, True, 1232) is None


def test_axfr_rendered_once_per_version_and_reused_with_each_query_id(authority):
    import ipaddress

    from aliasd.base.access import TransferAccess
    from aliasd.base.config import ZoneSettings

    access = TransferAccess((ZoneSettings(dns.name.from_text("example.com"), None,
                                          allow_transfer=(ipaddress.ip_network("127.0.0.0/8"),)),))
    handler = QueryHandler(authority, access=access)

    def transfer(qname):
        q = dns.message.make_query(qname, "AXFR")
        q.flags |= dns.flags.CD
        return q, list(handler.handle(q.to_wire(), "127.0.0.1", False))

    _, first = transfer("example.com")
    assert ("axfr", None) in renderings(authority.versions[dns.name.from_text("example.com")])  # no EDNS
    q, second = transfer("ExAmPlE.cOm")  # served from the kept rendering
    fresh = list(QueryHandler(authority, access=access).handle(q.to_wire(), "127.0.0.1", False))
    assert second == fresh  # byte for byte what a fresh rendering gives
    assert second != first and [w[2:] for w in second[1:]] == [w[2:] for w in first[1:]]
    assert dns.message.from_wire(second[0]).id == q.id


PLAIN = zone_source(
    "example.org",
    "$ORIGIN example.org.\n$TTL 300\n@ SOA ns1.example.net. hostmaster.example.org. 1 3600 600 86400 60\n"
    "@ NS ns1.example.net.\nwww A 192.0.2.1\nmail A 192.0.2.2\n",
)


def test_missing_names_share_one_answer_per_shape_byte_for_byte():
    authority = ZoneAuthority()
    authority.set_sources([PLAIN])
    warm = QueryHandler(authority)
    rng = random.Random(5)
    names = [f"{''.join(rng.choice('abcdefgh') for _ in range(rng.randint(1, 6)))}.example.org" for _ in range(300)]
    names += ["a.hostmaster.example.org", "hostmaster.example.org", "x.www.example.org", "www.example.org",
              "EXAMPLE.ORG", "deep.er.name.example.org", "b.hostmaster.example.org"]
    asked = 0
    for name in names:
        for wire, over_udp in itertools.islice(variants(name, "A"), 0, None, 5):
            assert warm.handle(wire, "127.0.0.1", over_udp) == QueryHandler(authority).handle(wire, "127.0.0.1", over_udp), name
            asked += 1
    # Over a thousand questions about ~300 missing names: the cache holds
    # one answer per name length and size shape, not one per name.
    assert asked > 1000 and len(warm._cache) < 100


def test_missing_name_refuses_zones_with_wildcards_or_delegations(authority):
    wire = dns.name.from_text("nope.example.com").canonicalize().to_wire()
    assert fastpath.missing_name(wire, authority.zones_by_wire, authority.soa_suffixes) is None


def test_ixfr_rendered_once_per_version_and_serial():
    import ipaddress

    from aliasd.base.access import TransferAccess
    from aliasd.base.config import ZoneSettings
    from aliasd.replicate.journal import Journal, difference

    authority = ZoneAuthority()
    authority.set_sources([SOURCE])
    origin = dns.name.from_text("example.com")
    old = authority.versions[origin]
    flat = Flattened({T.A: dns.rrset.from_text(origin, 30, "IN", "A", "203.0.113.9")})
    new = ZoneVersion.build(SOURCE, {origin: flat}, serial=2, previous=old)
    authority.journals.setdefault(origin, Journal(10)).add(difference(old, new, {origin: flat}))
    authority.serve(new)
    access = TransferAccess((ZoneSettings(origin, None, allow_transfer=(ipaddress.ip_network("127.0.0.0/8"),)),))

    def ixfr(handler, serial, qid):
        q = dns.message.make_query("example.com", "IXFR", id=qid)
        q.authority.append(dns.rrset.from_text(origin, 0, "IN", "SOA", f"ns1.example.com. h. {serial} 1 1 1 1"))
        return list(handler.handle(q.to_wire(), "127.0.0.1", False))

    warm = QueryHandler(authority, access=access)
    for serial in (1, 2**32 - 5):  # incremental; full (older, not in the journal)
        first = ixfr(warm, serial, 1)
        again = ixfr(warm, serial, 2)
        assert again == ixfr(QueryHandler(authority, access=access), serial, 2)
        assert again != first
    assert {(("ixfr", "incremental", 1), None), (("ixfr", "full", None), None)} <= set(renderings(new))


def test_answer_cache_is_bounded_and_keeps_what_is_used():
    cache = fastpath.AnswerCache(max_entries=10)
    cache.put(b"hot", "hot answer")
    for i in range(1000):  # a flood of one-off answers
        cache.put(b"cold%d" % i, "cold")
        assert len(cache) <= 10
        assert cache.get(b"hot") == "hot answer"  # used all along: survives
    assert cache.get(b"cold0") is None  # long unused: dropped
    assert cache.get(b"cold999") == "cold"


def test_flood_of_distinct_cacheable_queries_keeps_the_cache_bounded(authority):
    """Every query type at one name: each NODATA answer would be kept."""
    handler = QueryHandler(authority, answer_cache_size=500)
    kept = 0
    for qtype in range(1, 3000):
        if qtype in (41, 249, 250, 251, 252, 255):
            continue
        before = len(handler._cache)
        handler.handle(dns.message.make_query("ns1.example.com", qtype).to_wire(), "127.0.0.1", True)
        kept += len(handler._cache) > before
        assert len(handler._cache) <= 500
    assert kept > 200  # they were cacheable: the bound did the work
    query = dns.message.make_query("ns1.example.com", "A")
    answer = dns.message.from_wire(handler.handle(query.to_wire(), "127.0.0.1", True))
    assert answer.answer[0][0].address == "192.0.2.53"


def test_default_bound_follows_the_zones(authority):
    """Twice the zone's names, at least MAX_ENTRIES; recomputed when the
    zones change, so a large zone's working set is kept."""
    handler = QueryHandler(authority)
    handler.handle(dns.message.make_query("ns1.example.com", "A").to_wire(), "127.0.0.1", True)
    assert handler._cache.max_entries == fastpath.MAX_ENTRIES  # a small zone
    big = zone_source(
        "example.com",
        "$ORIGIN example.com.\n@ 300 SOA ns1 h 2 3600 600 86400 60\n@ 300 NS ns1\n"
        + "".join(f"h{i} 300 A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n" for i in range(60000)),
    )
    authority.set_sources([big])
    handler.handle(dns.message.make_query("h1.example.com", "A").to_wire(), "127.0.0.1", True)
    assert handler._cache.max_entries == 2 * authority.versions[dns.name.from_text("example.com")].name_count
    assert handler._cache.max_entries > 120000


def opt_query(options: bytes, name: str = "ns1.example.com", flags: int = 0, payload: int = 1232,
              owner: bytes = b"\0", ident: int = 0x1234) -> bytes:
    """A query for ``name`` A with one OPT record whose rdata is ``options``,
    written by hand so that it can be malformed."""
    question = dns.name.from_text(name).to_wire() + b"\0\x01\0\x01"
    opt = owner + struct.pack("!HHBBHH", 41, payload, 0, 0, flags, len(options)) + options
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 1) + question + opt


def option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def test_do_bit_is_echoed_from_the_cache_and_never_crosses_to_other_queries(authority):
    """RFC 3225 3: the answer's DO is the query's, also when it comes from
    the cache: a DO=0 query must not get the bytes of a DO=1 answer."""
    handler = QueryHandler(authority)

    def ask(want_dnssec):
        q = dns.message.make_query("ns1.example.com", "A", use_edns=0, payload=1232, want_dnssec=want_dnssec)
        r = dns.message.from_wire(handler.handle(q.to_wire(), "127.0.0.1", True))
        assert r.id == q.id and r.edns == 0 and r.answer[0][0].address == "192.0.2.53"
        return bool(r.ednsflags & dns.flags.DO)

    for order in ((True, True, False, False, True), (False, True, False)):
        handler._cache.clear()
        assert [ask(do) for do in order] == list(order)
    # Also for missing names, which share one kept answer per name length
    # and shape: gone0 to gone5 all have the same length.
    plain = ZoneAuthority()
    plain.set_sources([PLAIN])
    warm = QueryHandler(plain)
    for i, do in enumerate((True, False, True, True, False, False)):
        q = dns.message.make_query(f"gone{i}.example.org", "A", use_edns=0, want_dnssec=do)
        r = dns.message.from_wire(warm.handle(q.to_wire(), "127.0.0.1", True))
        assert r.rcode() == dns.rcode.NXDOMAIN and bool(r.ednsflags & dns.flags.DO) == do, i


def test_do_bit_is_part_of_the_cache_key():
    plain = dns.message.make_query("example.com", "A", use_edns=0).to_wire()
    do = dns.message.make_query("example.com", "A", use_edns=0, want_dnssec=True).to_wire()
    assert fastpath.cache_key(plain, True, 1232)[0] != fastpath.cache_key(do, True, 1232)[0]
    # Other bits of the OPT's flags (Z, RFC 6891 6.1.4: ignored) do not count.
    z = opt_query(b"", "example.com", flags=0x0001)
    assert fastpath.cache_key(z, True, 1232)[0] == fastpath.cache_key(opt_query(b"", "example.com"), True, 1232)[0]


MALFORMED_OPTIONS = [
    option(10, b"\x01" * 8)[:-1],  # the option runs past the end of the rdata
    option(12, b"") + b"\x00\x0c\x00",  # a truncated option header (3 octets)
    b"\x00",  # one octet of rdata
    option(10, b"\x01" * 8) + b"\x00\x0a\x00\x08\x01",  # second option runs past the end
    option(10, b"\x01" * 7),  # COOKIE: the client cookie is 8 octets (RFC 7873 4)
    option(10, b"\x01" * 12),  # COOKIE: a server cookie of 4 octets
    option(10, b"\x01" * 41),  # COOKIE: a server cookie of 33 octets
    option(8, b"\x00\x03\x18\x00\xc0\x00\x02"),  # ECS of address family 3 (RFC 7871 6)
    option(8, b"\x00\x01\x21\x00" + b"\xc0\x00\x02\x01\x00"),  # ECS: source prefix 33 for IPv4
    option(15, b"\x00"),  # EDE: a one-octet INFO-CODE (RFC 8914 2)
]


@pytest.mark.parametrize("options", MALFORMED_OPTIONS)
def test_malformed_edns_options_get_formerr_even_after_a_good_query_was_cached(authority, options):
    """RFC 6891 7: a malformed OPT is a FORMERR, whatever the cache holds
    for the same name, type and size."""
    handler = QueryHandler(authority)
    good = opt_query(option(10, b"\x01" * 8))
    first = dns.message.from_wire(handler.handle(good, "127.0.0.1", True))
    assert first.rcode() == dns.rcode.NOERROR and first.answer
    assert fastpath.cache_key(good, True, 1232) is not None  # the good one is cacheable
    bad = opt_query(options, ident=0x4321)
    for _ in range(2):
        response = handler.handle(bad, "127.0.0.1", True)
        ident, flags = struct.unpack_from("!HH", response)
        assert ident == 0x4321 and flags & dns.flags.QR and flags & 0xF == dns.rcode.FORMERR
    assert fastpath.cache_key(bad, True, 1232) is None


@pytest.mark.parametrize(
    "wire",
    [
        opt_query(b"", owner=b"\x03com\x00"),  # an OPT owned by a name other than the root
        opt_query(b"", owner=b"\xc0\x0c"),  # owner as a compression pointer
        # Two OPT records (RFC 6891 6.1.1: FORMERR).
        opt_query(b"")[:10] + b"\x00\x02" + opt_query(b"")[12:] + opt_query(b"")[-11:],
    ],
)
def test_opt_with_another_owner_or_a_second_opt_takes_the_full_path(authority, wire):
    assert fastpath.cache_key(wire, True, 1232) is None
    handler = QueryHandler(authority)
    handler.handle(opt_query(b""), "127.0.0.1", True)  # cached: a plain OPT for the same question
    for _ in range(2):
        assert struct.unpack_from("!H", handler.handle(wire, "127.0.0.1", True), 2)[0] & 0xF == dns.rcode.FORMERR


def test_well_formed_options_keep_the_fast_path_and_their_answer():
    """What clients send most (a client COOKIE, padding, NSID, unknown
    options) stays cacheable, and the cached answer is the full path's."""
    authority = ZoneAuthority()
    authority.set_sources([SOURCE])
    warm = QueryHandler(authority)
    for options in (
        option(10, b"\x01" * 8), option(10, b"\x02" * 24), option(10, b"\x03" * 40), option(12, b"\0" * 30),
        option(3, b""), option(65001, b"local"), option(10, b"\x01" * 8) + option(12, b"") + option(3, b""),
    ):
        wire = opt_query(options)
        assert fastpath.cache_key(wire, True, 1232) is not None, options
        for _ in range(2):
            assert warm.handle(wire, "127.0.0.1", True) == QueryHandler(authority).handle(wire, "127.0.0.1", True)


def test_fast_path_accepts_no_opt_rdata_that_dnspython_rejects():
    """Random option lists, valid and not: whenever the fast path takes
    one, the full path's parser takes it too."""
    rng = random.Random(3225)
    codes = [0, 3, 5, 8, 9, 10, 11, 12, 15, 18, 22, 23, 24, 25, 65001, 65535]
    taken = 0
    for _ in range(4000):
        rdata = b""
        for _ in range(rng.randint(0, 3)):
            code = rng.choice(codes) if rng.random() < 0.9 else rng.randrange(65536)
            data = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 2, 4, 7, 8, 16, 20, 40, 41))))
            length = len(data) if rng.random() < 0.8 else rng.randrange(0, 50)
            rdata += struct.pack("!HH", code, length) + data
        if rng.random() < 0.1:
            rdata = rdata[: rng.randrange(len(rdata) + 1)]
        wire = opt_query(rdata)
        if fastpath.cache_key(wire, True, 1232) is not None:
            taken += 1
            dns.message.from_wire(wire)  # raises if the full path would answer FORMERR
    assert taken > 300


# -- UDP answers by the query's octets after its ID (QueryHandler.handle_udp) --


def with_id(wire: bytes, query_id: int) -> bytes:
    return query_id.to_bytes(2, "big") + wire[2:]


def test_udp_answers_kept_by_wire_are_byte_identical_to_full_answers(authority):
    warm = QueryHandler(authority)
    exact = 0
    for name, rdtype in itertools.product(NAMES, TYPES):
        for wire, over_udp in variants(name, rdtype):
            if not over_udp:
                continue
            for n in range(3):  # the full path, the fast path, then the kept octets
                again = with_id(wire, (wire[0] << 8 | wire[1]) ^ (n * 0x1111))
                exact += warm.exact_answer(again) is not None
                assert warm.handle_udp(again, "127.0.0.1") == QueryHandler(authority).handle(again, "127.0.0.1", True), (name, rdtype, n)
    assert exact > 300  # most third askings came from the kept octets


def test_udp_answers_kept_by_wire_stop_at_a_new_version_and_count_as_the_full_path(authority):
    handler = QueryHandler(authority)
    q = dns.message.make_query("example.com", "A").to_wire()  # an ALIAS owner
    for i in range(3):
        handler.handle_udp(with_id(q, i), "127.0.0.1")
    assert handler.exact_answer(q) is not None
    counts = handler.stats.counters
    assert counts[handler.stats.key("aliasd_queries_total", qtype="A", rcode="NOERROR", transport="udp")] == 4
    assert counts[handler.stats.key("aliasd_alias_answers_total")] == 4
    flat = Flattened({T.A: dns.rrset.from_text(OWNER_COM, 30, "IN", "A", "203.0.113.9")})
    old = authority.versions[OWNER_COM]
    authority.serve(ZoneVersion.build(SOURCE, {OWNER_COM: flat}, serial=2, previous=old))
    assert handler.exact_answer(q) is None
    assert dns.message.from_wire(handler.handle_udp(q, "127.0.0.1")).answer[0][0].address == "203.0.113.9"


def test_udp_answers_kept_by_wire_stop_when_a_reload_adds_a_child_zone(authority):
    handler = QueryHandler(authority)
    q = dns.message.make_query("host.child.example.com", "A").to_wire()
    for i in range(3):
        assert dns.message.from_wire(handler.handle_udp(with_id(q, i), "127.0.0.1")).rcode() == 3  # NXDOMAIN
    child = zone_source("child.example.com", "$ORIGIN child.example.com.\n@ 300 SOA ns1 h 1 2 3 4 5\nhost 300 A 192.0.2.5\n")
    authority.set_sources([SOURCE, child])
    assert dns.message.from_wire(handler.handle_udp(q, "127.0.0.1")).answer[0][0].address == "192.0.2.5"


def test_udp_answers_kept_by_wire_are_bounded_as_the_answer_cache(authority):
    handler = QueryHandler(authority, answer_cache_size=8)
    for i in range(20):
        q = dns.message.make_query(f"h{i}.example.com", "A")
        for query_id in (1, 2):
            q.id = query_id
            handler.handle_udp(q.to_wire(), "127.0.0.1")
    assert 0 < len(handler._exact) <= 8


OWNER_COM = dns.name.from_text("example.com")
