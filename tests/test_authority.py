"""Unit tests: following ALIAS targets across served zones, and versions."""

from __future__ import annotations

import re
import time

import dns.name
import dns.rcode
import dns.rdatatype as T
import pytest
from twisted.logger import formatEvent

from aliasd.resolve.resolution import AliasResolver
from aliasd.service import authority as authority_module
from aliasd.service.authority import ZoneAuthority
from tests.helpers import ManualUpstream, a_answer, reactor_turn, zone_source

N = dns.name.from_text

EXAMPLE = zone_source(
    "example.com",
    """\
    $ORIGIN example.com.
    @      300 SOA ns1 h 1 3600 600 86400 60
    @      300 ALIAS lb.cdn.example.net.
    @      300 A 192.0.2.1
    chain  300 ALIAS @
    viacn  300 ALIAS shop.cdn.example.net.
    ext    120 ALIAS lb.example.org.
    ext    120 A 192.0.2.50
    ext2   300 ALIAS lb.example.org.
    loop1  300 ALIAS loop2
    loop2  300 ALIAS loop1.example.com.
    self   300 ALIAS self
    toloop 300 ALIAS loop1
    nohost 300 ALIAS missing.cdn.example.net.
    """,
)
CDN = zone_source(
    "cdn.example.net",
    """\
    $ORIGIN cdn.example.net.
    @    60 SOA ns1 h 1 3600 600 86400 60
    lb   20 A 198.51.100.10
    lb   20 A 198.51.100.11
    lb   40 AAAA 2001:db8::10
    shop 10 CNAME lb
    """,
)


@pytest.fixture
def upstream():
    return ManualUpstream()


@pytest.fixture
def authority(clock, upstream):
    resolver = AliasResolver(upstream, clock, min_refresh=10)
    authority = ZoneAuthority(resolver)
    resolver.on_change = authority.rebuild
    authority.set_sources([EXAMPLE, CDN])
    resolver.startService()
    yield authority
    resolver.stopService()


def addresses(authority, name, rdtype=T.A):
    answer = authority.zone_for(N(name)).lookup(N(name), rdtype)
    return answer, {r.to_text() for rrset in answer.answer for r in rrset}


def test_in_zone_target_resolves_from_own_data_with_min_ttl(authority):
    answer, found = addresses(authority, "example.com")
    assert found == {"198.51.100.10", "198.51.100.11"}
    assert answer.answer[0].ttl == 20
    assert addresses(authority, "example.com", T.AAAA)[1] == {"2001:db8::10"}


def test_alias_chains_and_in_zone_cnames_are_followed(authority):
    assert addresses(authority, "chain.example.com")[1] == {"198.51.100.10", "198.51.100.11"}
    answer, found = addresses(authority, "viacn.example.com")
    assert found == {"198.51.100.10", "198.51.100.11"}
    assert answer.answer[0].ttl == 10  # min(300, CNAME 10, A 20)


def test_an_alias_owner_without_addresses_does_not_exist_as_on_secondaries(authority):
    """An ALIAS owner with nothing else has no record in the transfer view:
    a secondary answers NXDOMAIN there, and so does the primary; the name
    is back as soon as it has addresses (test_zone, test_signer)."""
    answer, found = addresses(authority, "nohost.example.com")
    assert found == set() and answer.rcode == dns.rcode.NXDOMAIN and answer.authority
    version = authority.versions[N("example.com")]
    assert N("nohost.example.com") not in {r.name for r in version.transfer_rrsets()}


def test_loops_serve_no_addresses_as_on_secondaries_and_are_logged(clock, upstream, log_events):
    """One rule on both paths (issue 12.6): an ALIAS loop serves no
    addresses, which is what a secondary serves from the transfer view:
    these owners have nothing else, so there they do not exist (NXDOMAIN)."""
    events = log_events
    authority = ZoneAuthority(AliasResolver(upstream, clock))
    authority.set_sources([EXAMPLE, CDN])
    version = authority.versions[N("example.com")]
    transferred = {(r.name, r.rdtype) for r in version.transfer_rrsets()}
    for name in ("loop1.example.com", "loop2.example.com", "self.example.com", "toloop.example.com"):
        answer, found = addresses(authority, name)
        assert answer.rcode == dns.rcode.NXDOMAIN and found == set() and answer.authority, name
        assert not any(owner == N(name) for owner, _ in transferred)
    assert addresses(authority, "example.com")[0].rcode == dns.rcode.NOERROR
    loops = [e for e in events if e.get("log_format", "").startswith("ALIAS loop")]
    assert loops and "loop1.example.com." in loops[0]["owners"]


def test_external_targets_deduplicated_and_fallback_until_resolved(authority, upstream, clock):
    # ext and ext2 share lb.example.org: one lookup per type.
    assert sorted((n, t) for n, t, _ in upstream.pending) == [
        ("lb.example.org", T.A),
        ("lb.example.org", T.AAAA),
    ]
    assert addresses(authority, "ext.example.com")[1] == {"192.0.2.50"}  # fallback
    assert addresses(authority, "ext2.example.com")[1] == set()
    before = authority.versions[N("example.com")]
    cdn = authority.versions[N("cdn.example.net")]
    upstream.take(T.A).callback(a_answer("lb.example.org", "203.0.113.8", ttl=3600))
    clock.advance(0)
    # The first answers are published together, when every new target has
    # answered once (or after a grace period): AAAA is still out.
    assert authority.versions[N("example.com")] is before
    upstream.take(T.AAAA).callback(([], [], []))
    clock.advance(0)
    after = authority.versions[N("example.com")]
    assert after is not before
    answer, found = addresses(authority, "ext.example.com")
    assert found == {"203.0.113.8"} and answer.answer[0].ttl == 120
    # The zone that did not change keeps its version object.
    assert authority.versions[N("cdn.example.net")] is cdn


def test_first_answers_are_published_after_a_grace_period_at_most(authority, upstream, clock):
    before = authority.versions[N("example.com")]
    upstream.take(T.A).callback(a_answer("lb.example.org", "203.0.113.8"))
    clock.advance(4.9)
    assert authority.versions[N("example.com")] is before  # AAAA still unanswered
    clock.advance(0.2)
    assert addresses(authority, "ext.example.com")[1] == {"203.0.113.8"}


def test_unchanged_outcome_keeps_the_version_object(authority, upstream, clock):
    upstream.take(T.A).callback(a_answer("lb.example.org", "203.0.113.8"))
    upstream.take(T.AAAA).callback(([], [], []))
    clock.advance(0)
    version = authority.versions[N("example.com")]
    cdn = authority.versions[N("cdn.example.net")]
    authority.rebuild()
    assert authority.versions[N("example.com")] is version
    assert authority.versions[N("cdn.example.net")] is cdn


def test_zone_for_picks_the_closest_enclosing_zone(authority):
    assert authority.zone_for(N("a.b.cdn.example.net")).origin == N("cdn.example.net")
    assert authority.zone_for(N("example.net")) is None
    assert authority.zone_for(N("x.example.com")).origin == N("example.com")
    assert authority.zone_for(dns.name.root) is None


def test_serial_damping_batches_a_rotating_pool(clock, upstream):
    resolver = AliasResolver(upstream, clock, min_refresh=10, jitter=0)
    serials = []
    authority = ZoneAuthority(
        resolver, clock=clock, serial_interval=60, serial_burst=2,
        on_new_serial=lambda v: serials.append((clock.seconds(), v.serial)),
    )
    resolver.on_change = authority.rebuild
    authority.set_sources([EXAMPLE, CDN], wait=True)
    resolver.startService()
    start = authority.versions[N("example.com")].serial
    for step in range(12):  # every 10 s the target answers another address
        for name, rdtype, d in list(upstream.pending):
            upstream.pending.remove((name, rdtype, d))
            d.callback(a_answer(name, f"203.0.113.{step}", ttl=10) if rdtype == T.A else ([], [], []))
        clock.advance(10)
    resolver.stopService()
    published = [(t, s) for t, s in serials if s != start and t > 0]
    # 12 changes in 120 s: the burst of 2 (at 10 s and 20 s), then one at
    # 70 s, when the bucket has refilled; not one per change.
    assert [t for t, _ in published] == [10, 20, 70], serials
    # Nothing is lost: the last version serves the last answer (held back
    # changes come out with the next publication).
    clock.advance(60)
    assert addresses(authority, "ext2.example.com")[1] == {"203.0.113.11"}
    # The journal takes a secondary at the first serial to the served one
    # in an unbroken chain (IXFR).
    chain = authority.journals[N("example.com")].since(start)
    assert chain, "the journal lost the first serial"
    assert chain[0].old_serial == start
    assert chain[-1].new_serial == authority.versions[N("example.com")].serial
    assert all(a.new_serial == b.old_serial for a, b in zip(chain, chain[1:]))


def test_a_failed_state_write_keeps_the_change_and_retries(clock, upstream):
    """Issue 12.1: nothing is served before its serial is recorded, and a
    change whose write failed is published once the state directory recovers."""
    from aliasd.base.state import MemoryStateStore

    class Failing(MemoryStateStore):
        fail = False

        def save_zones(self, states):
            if self.fail:
                raise OSError(28, "No space left on device")
            super().save_zones(states)

    store = Failing()
    resolver = AliasResolver(upstream, clock, min_refresh=10)
    authority = ZoneAuthority(resolver, state=store, clock=clock)
    resolver.on_change = authority.rebuild
    authority.set_sources([EXAMPLE, CDN], wait=True)
    resolver.startService()
    try:
        before = authority.versions[N("example.com")]
        store.fail = True
        upstream.take(T.A).callback(a_answer("lb.example.org", "203.0.113.8"))
        upstream.take(T.AAAA).callback(([], [], []))
        clock.advance(0)
        clock.advance(0)
        assert authority.versions[N("example.com")] is before  # not served unrecorded
        assert authority.waiting_for_state
        store.fail = False
        clock.advance(authority.retry_delays[0])
        clock.advance(0)
        clock.advance(0)
        after = authority.versions[N("example.com")]
        assert after.serial == before.serial + 1
        assert store.zones[N("example.com")].serial == after.serial
        assert addresses(authority, "ext.example.com")[1] == {"203.0.113.8"}
    finally:
        resolver.stopService()


FOLLOW = zone_source(
    "follow.test",
    """\
    $ORIGIN follow.test.
    @      300 SOA ns1 h 1 3600 600 86400 60
    @      300 NS ns1
    ns1    300 A 192.0.2.53
    *.w    300 A 192.0.2.99
    www    300 ALIAS foo.w.follow.test.
    deleg  300 ALIAS host.sub.follow.test.
    sub    300 NS ns.sub.follow.test.
    ns.sub 300 A 192.0.2.77
    dn     300 ALIAS x.old.follow.test.
    old    300 DNAME new.follow.test.
    x.new  60 A 192.0.2.5
    *.loop 300 ALIAS a.loop.follow.test.
    """,
)


def test_an_in_zone_target_resolves_exactly_as_a_query_for_it(clock):
    """Issue 12.3: wildcards, DNAME and delegations apply to ALIAS targets
    as they do to queries; a delegated target is asked upstream."""
    upstream = ManualUpstream()
    resolver = AliasResolver(upstream, clock)
    authority = ZoneAuthority(resolver)
    resolver.on_change = authority.rebuild
    authority.set_sources([FOLLOW])
    resolver.startService()
    query, found = addresses(authority, "foo.w.follow.test")
    assert found == {"192.0.2.99"}
    assert addresses(authority, "www.follow.test")[1] == found
    dname, found = addresses(authority, "dn.follow.test")
    assert found == {"192.0.2.5"} and dname.answer[0].ttl == 60
    assert ("host.sub.follow.test", T.A) in [(n, t) for n, t, _ in upstream.pending]
    assert addresses(authority, "deleg.follow.test")[1] == set()  # until the upstream answers
    upstream.take(T.A).callback(a_answer("host.sub.follow.test", "203.0.113.40"))
    upstream.take(T.AAAA).callback(([], [], []))
    clock.advance(0)
    assert addresses(authority, "deleg.follow.test")[1] == {"203.0.113.40"}
    # A wildcard ALIAS whose target falls under itself is a loop: it
    # serves nothing, so (as on a secondary, which has no such wildcard)
    # the names it would synthesise do not exist.
    version = authority.versions[N("follow.test")]
    assert N("*.loop.follow.test").to_wire(canonicalize=True) in version.loop_keys
    looped, found = addresses(authority, "b.loop.follow.test")
    assert looped.rcode == dns.rcode.NXDOMAIN and found == set()
    resolver.stopService()


def test_a_zone_of_many_alias_owners_is_followed_a_slice_at_a_time(clock, upstream):
    """Following 10,000 owners of one zone at once held the reactor for
    1.5 s: they are followed ``reflatten_slice`` at a time, over several
    turns of the reactor, and the zone's next version has them all."""
    text = "$ORIGIN many.test.\n@ 300 SOA ns1 h 1 1 1 1 1\n@ 300 NS ns1\nns1 300 A 192.0.2.1\n"
    text += "".join(f"o{i} 300 ALIAS ns1\n" for i in range(350))
    source = zone_source("many.test", text)
    authority = ZoneAuthority(AliasResolver(upstream, clock), clock=clock)
    sizes = []
    follow = authority.graph.reflatten
    authority.graph.reflatten = lambda zone, owners: (sizes.append(len(owners)), follow(zone, owners))[1]
    authority.set_sources([source])
    for _ in range(20):
        clock.advance(0)
    version = authority.versions[N("many.test")]
    assert all(size <= authority.reflatten_slice for size in sizes) and sum(sizes) >= 350, sizes
    assert len(sizes) >= 4
    answer = version.lookup(N("o349.many.test"), T.A)
    assert {r.to_text() for rrset in answer.answer for r in rrset} == {"192.0.2.1"}


def _published_lines(events) -> list[str]:
    return [formatEvent(e) for e in events
            if e.get("log_namespace") == "aliasd.service.authority" and "serial" in formatEvent(e)]


def test_each_version_is_logged_with_serial_and_reason_when_few(clock, upstream, log_events):
    authority = ZoneAuthority(AliasResolver(upstream, clock))
    sources = [zone_source(f"z{i}.test.", "@ 60 SOA ns h 7 1 1 1 1\n@ 60 NS ns\nns 60 A 192.0.2.1\n")
               for i in range(ZoneAuthority.log_each_up_to)]
    authority.set_sources(sources)
    lines = _published_lines(log_events)
    assert len(lines) == len(sources), lines
    assert "zone z0.test. serial 7 (first load), 3 records, 0 ALIAS" in lines


def test_many_versions_are_summarised_naming_the_first_with_serials(clock, upstream, log_events):
    authority = ZoneAuthority(AliasResolver(upstream, clock))
    sources = [zone_source(f"z{i:02d}.test.", f"@ 60 SOA ns h {100 + i} 1 1 1 1\n@ 60 NS ns\n")
               for i in range(22)]
    authority.set_sources(sources)
    [line] = _published_lines(log_events)
    assert line.startswith("22 zones published: zone "), line
    named = re.findall(r"zone (z\d\d\.test\.) serial (\d+) \(first load\)", line)
    assert len(named) == 10, line
    assert all(int(serial) == 100 + int(zone[1:3]) for zone, serial in named), line
    assert line.endswith(" and 12 more (12 first load)"), line


def test_in_zone_targets_are_counted_and_shown_beside_upstream_ones(authority, clock):
    """Targets served here are no upstream state, yet they are targets:
    the gauge and CH TXT targets.aliasd. show them (issue 21)."""
    from aliasd.answer.status import StatusReporter

    local = {(str(name), T.to_text(rdtype)) for name, rdtype in authority.graph.local}
    # The ALIAS's own targets in served zones (loops included, but not an
    # owner that names itself), per address type; not lb.example.org.
    # (upstream), and not what a chain led to.
    names = {"lb.cdn.example.net.", "example.com.", "shop.cdn.example.net.", "loop2.example.com.",
             "loop1.example.com.", "missing.cdn.example.net."}
    assert local == {(name, t) for name in names for t in ("A", "AAAA")}
    assert authority.graph.local[(N("lb.cdn.example.net."), T.A)] == {(N("example.com."), N("example.com."))}
    lines = StatusReporter(authority, authority.graph.resolver, clock)._targets()
    assert "lb.cdn.example.net. A in-zone zone cdn.example.net. for 1 ALIAS owner(s)" in lines
    assert any(line.startswith("lb.example.org. A pending") for line in lines)
    # A reload without the owner forgets its target.
    authority.set_sources([zone_source("example.com", "@ 300 SOA ns1 h 2 1 1 1 1\n@ 300 A 192.0.2.1\n"), CDN])
    assert authority.graph.local == {}


class _CountedPasses(dict):
    """The authority's zones, counting each pass over all of them."""

    passes = 0

    def _pass(self, method):
        type(self).passes += 1
        return method()

    def __iter__(self):
        return self._pass(super().__iter__)

    def keys(self):
        return self._pass(super().keys)

    def values(self):
        return self._pass(super().values)

    def items(self):
        return self._pass(super().items)


def test_one_zone_added_or_removed_among_many_costs_that_zone_not_a_pass(authority):
    """add_sources and remove_sources (a zone created or deleted at runtime,
    one file reloaded) touch that zone only: no pass over the served zones,
    the others keep their versions, and what is served is what set_sources
    makes of the same set."""
    many = [zone_source(f"z{i}.example", f"$ORIGIN z{i}.example.\n@ 300 SOA ns1 h 1 2 3 4 5\n@ 300 NS ns1\n")
            for i in range(200)]
    authority.set_sources([EXAMPLE, CDN, *many])
    zones = authority._zones = authority.graph._zones = _CountedPasses(authority._zones)
    before = dict(authority.versions)
    new = zone_source("new.example", "$ORIGIN new.example.\n@ 300 SOA ns1 h 1 2 3 4 5\n@ 300 NS ns1\nwww 300 A 192.0.2.9\n")
    authority.add_sources([new])
    assert zones.passes == 0
    assert authority.zone_for(N("www.new.example")).lookup(N("www.new.example"), T.A).answer
    assert all(authority.versions[o] is v for o, v in before.items())
    assert set(authority.sources) == set(before) | {N("new.example")}
    authority.remove_sources([N("z7.example"), N("new.example")])
    assert zones.passes == 0
    assert set(authority.versions) == set(authority.sources) == set(before) - {N("z7.example")}
    assert authority.zone_for(N("www.new.example")) is None
    # The same set through set_sources: the counter sees its pass, and the
    # outcome is the same.
    authority.set_sources(list(authority.sources.values()))
    assert zones.passes > 0
    assert all(authority.versions[o] is before[o] for o in authority.versions)


def test_a_zone_added_over_a_target_follows_it_there(authority, upstream, clock):
    """add_sources, as set_sources: an ALIAS whose upstream target now lies
    in a served zone follows it there."""
    authority.add_sources([zone_source("example.org", "$ORIGIN example.org.\n@ 300 SOA ns1 h 1 2 3 4 5\n"
                                                      "lb 300 A 203.0.113.7\n")])
    assert addresses(authority, "ext2.example.com")[1] == {"203.0.113.7"}


def test_the_resolver_is_told_the_targets_only_when_they_change(authority, monkeypatch):
    """Adding or removing a zone without ALIAS leaves the resolver's targets
    as they are (handing it every target, hashed, at each zone created
    cost milliseconds at ten thousand targets); one with a new target tells
    it, and removing that zone drops the target."""
    told = []
    real = authority.resolver.set_targets
    monkeypatch.setattr(authority.resolver, "set_targets", lambda keys: (told.append(set(keys)), real(keys)))
    plain = zone_source("plain.example", "$ORIGIN plain.example.\n@ 300 SOA ns1 h 1 2 3 4 5\n@ 300 NS ns1\n")
    authority.add_sources([plain])
    authority.remove_sources([N("plain.example")])
    assert told == []
    aliased = zone_source("aliased.example", "$ORIGIN aliased.example.\n@ 300 SOA ns1 h 1 2 3 4 5\n"
                                             "@ 300 ALIAS new.target.example.\n")
    authority.add_sources([aliased])
    assert len(told) == 1 and (N("new.target.example"), T.A) in told[0]
    assert (N("new.target.example"), T.A) in authority.resolver.targets
    authority.remove_sources([N("aliased.example")])
    assert len(told) == 2 and (N("new.target.example"), T.A) not in told[1]
    assert (N("new.target.example"), T.A) not in authority.resolver.targets


def test_zones_added_over_upstream_targets_find_them_as_a_look_at_every_target_would(authority):
    """affected_by finds the targets under a new zone comparing label
    tuples, as comparing each target Name with the zone did; the targets'
    labels follow targets dropped."""
    graph = authority.graph

    def scanned(origin):
        found = {}
        for key, dependents in graph.dependents.items():
            if key[0].is_subdomain(origin):
                for owner_origin, owner in dependents:
                    found.setdefault(owner_origin, set()).add(owner)
        return found

    origins = [N(o) for o in ("example.org", "EXAMPLE.ORG", "lb.example.org", "org", "b.lb.example.org",
                              "cdn.example.net", "other.test", "example.com")]
    assert any(scanned(o) for o in origins)
    for origin in origins:
        assert graph.affected_by([], [origin]) == scanned(origin), origin
    authority.remove_sources([N("example.com")])
    assert graph.dependents == {} and graph._by_name == {}
    assert graph.affected_by([], [N("example.org")]) == {}


def test_new_serials_are_announced_in_order_a_slice_at_a_time(clock, monkeypatch):
    """Announcing (NOTIFY queued, serials noted) costs about as much as
    serving: a publishing slice's worth announced at once tripled the slice.
    Each announcement here costs 4 ms of a fake clock, serving nothing."""
    now = [0.0]

    class FakeTime:
        time = staticmethod(time.time)

        @staticmethod
        def perf_counter():
            return now[0]

    announced, per_turn = [], []

    def on_new_serial(version):
        now[0] += 0.004
        announced.append(version.origin)

    monkeypatch.setattr(authority_module, "time", FakeTime)
    authority = ZoneAuthority(clock=clock, on_new_serial=on_new_serial)
    served, serve = [], authority.registry.serve
    monkeypatch.setattr(authority.registry, "serve", lambda version: (served.append(version.origin), serve(version)))
    zones = [zone_source(f"z{i}.test", f"$ORIGIN z{i}.test.\n@ 300 SOA ns1 h 1 3600 600 86400 60\n@ 300 NS ns1\n")
             for i in range(7)]
    authority.set_sources(zones)
    for _ in range(30):
        before = len(announced)
        reactor_turn(clock)
        per_turn.append(len(announced) - before)
    assert sorted(announced) == sorted(z.origin for z in zones) and len(set(announced)) == 7
    assert max(per_turn) == 3  # 12 ms > slice_seconds (10 ms): the rest in the next turn
    assert announced == served  # in the order served
