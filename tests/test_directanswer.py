"""Unit tests: first answers written from packed records (aliasd.answer.directanswer).

The full path (dnspython) is the reference: every question is asked of a
handler that may answer directly and of one that may not, and the two
answers must carry the same header, records, TTLs and signatures.
"""

from __future__ import annotations

import gc
import itertools
import random
import weakref

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from aliasd.answer import directanswer
from aliasd.answer.answers import QueryHandler
from aliasd.base import fastpath, store
from aliasd.base.config import DnssecSettings
from aliasd.dnssec.keys import KeyStore
from aliasd.dnssec.signer import Signer
from aliasd.service.authority import ZoneAuthority
from aliasd.zones.zone import Flattened, ZoneVersion
from tests.helpers import zone_source
from tests.test_fastpath import with_id

T = dns.rdatatype
N = dns.name.from_text
ORIGIN = N("Example.com.")
NOW = 1_000_000_000
TEXT = """
$ORIGIN Example.com.
$TTL 300
@ SOA ns1 hostmaster 10 3600 600 86400 60
@ NS ns1
@ ALIAS lb.example.net.
@ MX 10 Mail.Example.com.
ns1 A 192.0.2.1
Mail 120 A 192.0.2.2
www A 192.0.2.10
www A 192.0.2.11
www AAAA 2001:db8::10
txt TXT "one" "two"
deep.a.b TXT "x"
none ALIAS gone.example.net.
cname CNAME www
srv._tcp SRV 0 0 443 WWW.example.com.
"""
# A wildcard CNAME, and a chain that passes through it.
WILD = TEXT + "*.wild TXT \"w\"\n*.wc CNAME www\nvia CNAME x.wc\n"
CUT = TEXT + "sub NS ns.sub\nns.sub A 192.0.2.40\n"
DNAME = TEXT + "dn DNAME example.net.\n"
QUESTIONS = [
    ("example.com.", "A"), ("example.com.", "AAAA"), ("example.com.", "MX"), ("example.com.", "NS"),
    ("example.com.", "TXT"), ("www.example.com.", "A"), ("www.example.com.", "AAAA"),
    ("www.example.com.", "TXT"), ("mail.example.com.", "A"), ("txt.example.com.", "TXT"),
    ("none.example.com.", "A"), ("none.example.com.", "AAAA"), ("deep.a.b.example.com.", "TXT"),
    ("a.b.example.com.", "A"), ("b.example.com.", "TXT"), ("nx.example.com.", "A"),
    ("x.nx.example.com.", "AAAA"), ("x.www.example.com.", "A"), ("z.deep.a.b.example.com.", "A"),
    ("zz.a.b.example.com.", "TXT"), ("cname.example.com.", "A"), ("cname.example.com.", "CNAME"),
    ("srv._tcp.example.com.", "SRV"), ("_tcp.example.com.", "SRV"), ("x.wild.example.com.", "TXT"),
    ("wild.example.com.", "A"), ("sub.example.com.", "A"), ("x.sub.example.com.", "A"),
    ("example.com.", "SOA"), ("example.com.", "DNSKEY"), ("ns1.example.com.", "A"),
    ("dn.example.com.", "DNAME"), ("x.dn.example.com.", "A"), ("dn.example.com.", "A"),
    ("example.com.", "CDS"), ("example.com.", "NSEC3PARAM"), ("www.example.com.", "NSEC"),
    ("example.com.", "RRSIG"), ("x.wc.example.com.", "A"), ("x.wc.example.com.", "TXT"),
    ("x.wc.example.com.", "CNAME"), ("via.example.com.", "AAAA"),
]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    # Published and active since 1970: they sign at the fixed moments these tests sign at.
    return KeyStore(tmp_path_factory.mktemp("keys")).ensure(ORIGIN, now=0)


def handlers(text: str, denial: str | None, keys) -> tuple[QueryHandler, QueryHandler, ZoneVersion]:
    """(a handler that answers directly when it can, one that never does, the version)."""
    source = zone_source("example.com.", text)
    apex = dns.rrset.from_text_list(ORIGIN, 60, "IN", "A", ["198.51.100.7", "198.51.100.8"])
    version = ZoneVersion.build(source, {
        source.origin: Flattened({T.A: apex, T.AAAA: None}),
        N("none.example.com."): Flattened({T.A: None, T.AAAA: None}),
    }, serial=77)
    if denial is not None:
        version = version.with_signatures(Signer(ORIGIN, keys, DnssecSettings(denial=denial)).sign(version, now=NOW))
    made = []
    for _ in range(2):
        authority = ZoneAuthority()
        authority.registry.configure({source.origin: source}, True)
        authority.registry.serve(version)
        made.append(QueryHandler(authority, max_udp_size=1232))
    made[1]._direct = lambda *args: None
    return made[0], made[1], version


def shuffled_case(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def summary(message: dns.message.Message) -> tuple:
    def section(rrsets):
        return [(r.name, r.rdtype, r.covers, r.ttl, sorted(rd.to_digestable() for rd in r)) for r in rrsets]

    return (message.id, message.flags, message.rcode(), message.edns, message.ednsflags, message.payload,
            message.question, section(message.answer), section(message.authority), section(message.additional))


@pytest.mark.parametrize("text", [TEXT, WILD, CUT, DNAME], ids=["plain", "wildcard", "delegation", "dname"])
@pytest.mark.parametrize("denial", [None, "nsec", "nsec3"])
def test_direct_answers_equal_the_full_paths(keys, text, denial):
    direct, full, version = handlers(text, denial, keys)
    rng = random.Random(6891)
    written = 0
    for (name, qtype), (edns, do), udp in itertools.product(
        QUESTIONS, [(False, False), (True, False), (True, True)], [True, False]
    ):
        query = dns.message.make_query(shuffled_case(name, rng), qtype, use_edns=0 if edns else False,
                                       want_dnssec=do, payload=1232)
        query.flags |= dns.flags.CD if rng.random() < 0.5 else 0
        wire = query.to_wire()
        key, qend = fastpath.cache_key(wire, udp, 1232)
        name_key = key[:qend - 16]
        limit = (key[-3] << 8) | key[-2]
        own = directanswer.answer(version, name_key, T.from_text(qtype), wire, qend, limit, edns, do, 1232)
        first = direct.handle_udp(wire, "127.0.0.1") if udp else direct.handle(wire, "127.0.0.1", over_udp=False)
        reference = dns.message.from_wire(full.handle(wire, "127.0.0.1", over_udp=udp))
        assert summary(dns.message.from_wire(first)) == summary(reference), (name, qtype, edns, do, udp)
        for query_id in (1, 2) if udp else ():  # kept by wire: the first answer's octets, the new ID
            again = query_id.to_bytes(2, "big") + wire[2:]
            assert direct.handle_udp(again, "127.0.0.1") == again[:2] + first[2:], (name, qtype, edns, do)
        if own is not None:
            written += 1
            assert dns.message.from_wire(own[0]).rcode() == own[1] == reference.rcode()
    # Which shapes are written directly, and which never are:
    # Names at or below a delegation take the full path; the rest of the zone does not.
    assert written > 100
    written_directly = [("www.example.com.", "A"), ("none.example.com.", "A"), ("a.b.example.com.", "A"),
              ("x.nx.example.com.", "A"), ("example.com.", "A"), ("example.com.", "SOA")]
    for name, qtype in written_directly + ([("example.com.", "DNSKEY")] if denial else []):
        wire = dns.message.make_query(name, qtype, want_dnssec=True).to_wire()
        key, qend = fastpath.cache_key(wire, True, 1232)
        own = directanswer.answer(version, key[:qend - 16], T.from_text(qtype), wire, qend, 1232, True, True, 1232)
        assert own is not None, name
    below_cut = [("sub.example.com.", "A"), ("x.sub.example.com.", "A"), ("ns.sub.example.com.", "A"),
                 ("sub.example.com.", "DS")] if text is CUT else []
    below_cut += [("dn.example.com.", "DNAME"), ("x.dn.example.com.", "A")] if text is DNAME else []
    below_cut += [("x.wc.example.com.", "A"), ("via.example.com.", "AAAA")] if text is WILD else []
    for name, qtype in [("cname.example.com.", "A"), ("example.com.", "RRSIG")] + below_cut:
        wire = dns.message.make_query(name, qtype, want_dnssec=True).to_wire()
        key, qend = fastpath.cache_key(wire, True, 1232)
        assert directanswer.answer(version, key[:qend - 16], T.from_text(qtype), wire, qend, 1232, True, True,
                                   1232) is None, name


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_direct_signed_answers_validate(keys, denial):
    """The RRSIGs written directly validate against the zone's DNSKEY, so
    the owner compression and TTLs are right, not only equal to the full path's."""
    direct, _, version = handlers(TEXT, denial, keys)
    dnskey = {ORIGIN: dns.rrset.from_rdata_list(ORIGIN, 300, [k.dnskey for k in keys])}
    checked = 0
    for name, qtype in [("www.example.com.", "A"), ("example.com.", "A"), ("nx.example.com.", "A"),
                        ("txt.example.com.", "A"), ("a.b.example.com.", "TXT")]:
        query = dns.message.make_query(name, qtype, want_dnssec=True)
        response = dns.message.from_wire(direct.handle(query.to_wire(), "127.0.0.1", over_udp=True))
        for section in (response.answer, response.authority):
            for rrset in section:
                if rrset.rdtype == T.RRSIG:
                    covered = next(r for r in section if r.name == rrset.name and r.rdtype == rrset.covers)
                    dns.dnssec.validate(covered, rrset, dnskey, now=NOW)
                    checked += 1
    assert checked >= 9


def test_an_answer_too_big_for_the_limit_takes_the_full_path(keys):
    text = TEXT + "big TXT " + " ".join(f'"{"y" * 200}"' for _ in range(4)) + "\n"
    direct, full, version = handlers(text, "nsec3", keys)
    query = dns.message.make_query("big.example.com.", "TXT", use_edns=False)
    wire = query.to_wire()
    key, qend = fastpath.cache_key(wire, True, 1232)
    assert directanswer.answer(version, key[:qend - 16], T.TXT, wire, qend, 512, False, False, 1232) is None
    answer = dns.message.from_wire(direct.handle(wire, "127.0.0.1", over_udp=True))
    assert answer.flags & dns.flags.TC


def test_direct_answers_are_counted_and_kept_like_the_full_paths(keys):
    direct, full, version = handlers(TEXT, "nsec3", keys)
    for handler in (direct, full):
        for name in ("example.com.", "www.example.com.", "nx1.example.com.", "nx2.example.com."):
            handler.handle(dns.message.make_query(name, "A", want_dnssec=True).to_wire(), "127.0.0.1", over_udp=True)
    assert direct.stats.counters == full.stats.counters
    assert len(direct._cache) == len(full._cache) == 4
    assert direct.stats.value("aliasd_alias_answers_total") == 1
    assert store.key_of(ORIGIN) in direct.authority.registry.zones_by_wire


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_signed_answers_with_do_are_kept_by_their_query_octets(keys, denial):
    """Asked again with DO (its OPT in the octets kept by), a signed answer
    comes from the kept octets: an address with its RRSIG, NODATA and
    NXDOMAIN with their proofs, each the first answer byte for byte (and
    the full path's, record for record: see the oracle test above);
    the same question without DO is not answered from them."""
    direct, full, version = handlers(TEXT, denial, keys)
    proof = T.NSEC3 if denial == "nsec3" else T.NSEC
    for name, rdtype, rcode, kinds in (("www.example.com.", "A", dns.rcode.NOERROR, {T.A, T.RRSIG}),
                                       ("www.example.com.", "TXT", dns.rcode.NOERROR, {T.SOA, T.RRSIG, proof}),
                                       ("nx1.example.com.", "A", dns.rcode.NXDOMAIN, {T.SOA, T.RRSIG, proof})):
        wire = dns.message.make_query(name, rdtype, want_dnssec=True, payload=1232).to_wire()
        assert direct.exact_answer(wire) is None
        first = direct.handle_udp(wire, "127.0.0.1")
        again = with_id(wire, 0x4242)
        kept = direct.exact_answer(again)
        assert kept is not None and kept == with_id(first, 0x4242)
        answer = dns.message.from_wire(kept)
        assert summary(answer) == summary(dns.message.from_wire(full.handle(again, "127.0.0.1", over_udp=True)))
        assert answer.rcode() == rcode and answer.ednsflags & dns.flags.DO
        assert {r.rdtype for r in answer.answer + answer.authority} == kinds, (name, rdtype)
        plain = dns.message.make_query(name, rdtype, want_dnssec=False, payload=1232).to_wire()
        assert direct.exact_answer(plain) is None


def test_servfail_of_a_zone_still_loading_equals_the_full_paths():
    """While a zone's first version is not served (start-up at thousands
    of zones, a held zone), its SERVFAIL is written from the query's octets;
    header, question, OPT and counters as the full path's, and the zone's
    answers once it is served."""
    from twisted.internet import task

    source = zone_source("example.com.", TEXT)
    made = []
    for _ in range(2):
        authority = ZoneAuthority(clock=task.Clock())
        authority.set_sources([source])  # queued, not built: the zone is loading
        authority.registry.hold([N("held.example.")])
        made.append(QueryHandler(authority, max_udp_size=1232))
    direct, full = made
    full._direct = lambda *args: None

    def parsed(wire):
        raise AssertionError("a plain query at a loading zone took the full path")

    direct._parse = parsed
    rng = random.Random(2181)
    asked = 0
    for name, qtype in QUESTIONS + [("x.held.example.", "A"), ("held.example.", "SOA")]:
        for (edns, do), udp in itertools.product([(False, False), (True, False), (True, True)], [True, False]):
            query = dns.message.make_query(shuffled_case(name, rng), qtype, use_edns=0 if edns else False,
                                           want_dnssec=do, payload=4096)
            query.flags |= dns.flags.CD if rng.random() < 0.5 else 0
            query.flags &= ~dns.flags.RD if rng.random() < 0.5 else ~0
            wire = query.to_wire()
            reference = full.handle(wire, "127.0.0.1", over_udp=udp)
            if fastpath.cache_key(wire, udp, 1232) is not None:
                assert directanswer.loading(T.from_text(qtype), wire, len(wire) - (11 if edns else 0),
                                            edns, do, 1232) == reference, (name, qtype, edns, do, udp)
            first = direct.handle_udp(wire, "127.0.0.1") if udp else direct.handle(wire, "127.0.0.1", over_udp=False)
            assert first == reference, (name, qtype, edns, do, udp)
            assert dns.message.from_wire(first).rcode() == dns.rcode.SERVFAIL
            asked += 1
    assert asked == 6 * (len(QUESTIONS) + 2)
    assert direct.stats.counters == full.stats.counters
    assert not direct._cache and not direct._exact  # never kept: the zone answers once served
    direct.authority.clock.advance(0)
    direct.authority.clock.advance(0)
    answer = dns.message.from_wire(direct.handle_udp(dns.message.make_query("www.example.com.", "A").to_wire(),
                                                     "127.0.0.1"))
    assert answer.rcode() == dns.rcode.NOERROR and answer.answer
def test_servfail_of_a_zone_not_loaded_yet_equals_the_full_paths(keys):
    """A zone configured but not served yet (loading at start; or held,
    its file broken) answers SERVFAIL, written directly as the full path
    writes it, counted alike and kept by neither; a served zone beside it
    and a name outside every zone are unchanged."""
    loading = zone_source("loading.test.", "$ORIGIN loading.test.\n@ 300 SOA ns h 1 1 1 1 1\n@ 300 NS ns\n")
    served, _, version = handlers(TEXT, None, keys)
    made = []
    for _ in range(2):
        authority = ZoneAuthority()
        registry = authority.registry
        registry.configure({ORIGIN: version.source, loading.origin: loading}, True)
        registry.expect(loading.key)
        registry.hold([N("held.test.")])
        registry.serve(version)
        made.append(QueryHandler(authority, max_udp_size=1232))
    made[1]._direct = lambda *args: None
    direct, full = made
    rng = random.Random(20)
    count = 0
    for (name, qtype), (edns, do), udp in itertools.product(
        [("loading.test.", "SOA"), ("www.Loading.test.", "A"), ("x.y.loading.test.", "RRSIG"),
         ("held.test.", "AAAA"), ("a.held.test.", "TXT"), ("www.example.com.", "A"), ("nowhere.test.", "A")],
        [(False, False), (True, False), (True, True)], [True, False],
    ):
        query = dns.message.make_query(name, qtype, use_edns=0 if edns else False, want_dnssec=do, payload=1400)
        query.flags |= dns.flags.CD if rng.random() < 0.5 else 0
        query.flags &= ~dns.flags.RD if rng.random() < 0.5 else ~0
        wire = query.to_wire()
        kept = len(direct._cache), len(direct._exact)
        first = direct.handle_udp(wire, "127.0.0.1") if udp else direct.handle(wire, "127.0.0.1", over_udp=False)
        reference = full.handle(wire, "127.0.0.1", over_udp=udp)
        assert first == reference, (name, qtype, edns, do, udp)
        if name.lower().endswith(("loading.test.", "held.test.")):
            assert dns.message.from_wire(first).rcode() == dns.rcode.SERVFAIL
            assert (len(direct._cache), len(direct._exact)) == kept
            count += 1
    assert count == 5 * 3 * 2
    assert direct.stats.counters == full.stats.counters

    def parsed(wire):
        raise AssertionError("took the full path")

    direct._parse = parsed  # written without dnspython:
    wire = dns.message.make_query("x.loading.test.", "A", use_edns=0).to_wire()
    assert direct.handle(wire, "127.0.0.1", over_udp=True) == full.handle(wire, "127.0.0.1", over_udp=True)
def signed_version(text: str, serial: int, keys) -> ZoneVersion:
    source = zone_source("example.com.", text)
    version = ZoneVersion.build(source, {}, serial=serial)
    return version.with_signatures(Signer(ORIGIN, keys, DnssecSettings(denial="nsec3")).sign(version, now=NOW))


def test_kept_denial_records_are_the_served_versions(keys):
    """A new version's negative answers carry its own SOA and NSEC3 records,
    not those kept from the version before (the SOA's serial, the apex
    NSEC3's type bitmap, their signatures): the same missing name asked of
    each version, and another missing name, equal the full path's answers."""
    first, changed = signed_version(TEXT, 77, keys), signed_version(TEXT + '@ TXT "new"\n', 78, keys)
    direct, full, _ = handlers(TEXT, "nsec3", keys)
    answers = []
    for version in (first, changed):
        for handler in (direct, full):
            handler.authority.registry.serve(version)
        for name in ("nx1.example.com.", f"nx{version.serial}.example.com."):
            wire = dns.message.make_query(name, "A", want_dnssec=True, payload=1232).to_wire()
            answer = dns.message.from_wire(direct.handle_udp(wire, "127.0.0.1"))
            assert summary(answer) == summary(dns.message.from_wire(full.handle(wire, "127.0.0.1", over_udp=True)))
            answers.append(answer)
    for answer, serial in zip(answers, (77, 77, 78, 78)):
        assert answer.rcode() == dns.rcode.NXDOMAIN
        assert answer.find_rrset(answer.authority, ORIGIN, dns.rdataclass.IN, T.SOA)[0].serial == serial
        apex_nsec3 = [r for r in answer.authority if r.rdtype == T.NSEC3 and T.SOA in list(bitmap_types(r[0]))]
        assert apex_nsec3 and (T.TXT in list(bitmap_types(apex_nsec3[0][0]))) == (serial == 78)
    assert directanswer.signed_parts(changed) is not directanswer.signed_parts(first)


def bitmap_types(rdata):
    for window, bitmap in rdata.windows:
        for i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    yield window * 256 + i * 8 + bit


def test_kept_denial_records_are_bounded_and_go_with_their_version(keys, monkeypatch):
    """A flood of made-up names keeps at most DENIALS_KEPT denial records
    per version, the apex's among them (asked by every one), and what a
    version keeps is dropped with it (it holds no reference to the version)."""
    monkeypatch.setattr(directanswer, "DENIALS_KEPT", 4)
    version = signed_version(TEXT, 77, keys)
    for i in range(40):
        wire = dns.message.make_query(f"flood{i}.example.com.", "A", want_dnssec=True, payload=1232).to_wire()
        key, qend = fastpath.cache_key(wire, True, 1232)
        own = directanswer.answer(version, key[:qend - 16], T.A, wire, qend, 1232, True, True, 1232)
        assert own is not None and own[1] == dns.rcode.NXDOMAIN
    kept = directanswer.signed_parts(version)._denials
    assert 0 < len(kept) <= 4
    apex = version.signed.matching_owner(store.key_of(ORIGIN))
    assert apex in kept.young or apex in kept.old
    gone = weakref.ref(version)
    del version, kept
    gc.collect()
    assert gone() is None
