"""Unit tests: the AliasResolver's schedule and outcomes, on a task.Clock.

The upstream here is a stand-in whose answers each test fires by hand; the
end-to-end tests use a real upstream server instead.
"""

from __future__ import annotations

import dns.name
import dns.rdatatype as T
import pytest
from twisted.internet import defer
from twisted.logger import LogLevel
from twisted.names import dns as tdns
from twisted.names import error as terror

from aliasd.resolve.resolution import AliasResolver, Status, addresses_from_answer
from tests.helpers import ManualUpstream, a_answer

N = dns.name.from_text
TARGET = N("lb.example.net")


@pytest.fixture
def upstream():
    return ManualUpstream()


@pytest.fixture
def changes():
    return []


@pytest.fixture
def resolver(clock, upstream, changes):
    r = AliasResolver(
        upstream, clock, min_refresh=10, max_refresh=100, serve_stale=50, jitter=0,
        on_change=lambda keys: changes.append(clock.seconds()),
    )
    r.set_targets([(TARGET, T.A)])
    r.startService()
    yield r
    r.stopService()


def test_resolves_at_start_and_signals_one_change(resolver, upstream, clock, changes):
    assert [p[:2] for p in upstream.pending] == [("lb.example.net", T.A)]
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.2", "192.0.2.1"))
    state = resolver.state(TARGET, T.A)
    assert state.status is Status.RESOLVED
    assert state.addresses == ("192.0.2.1", "192.0.2.2")
    assert state.ttl == 60
    assert changes == []  # signalled on the next turn of the reactor
    clock.advance(0)
    assert changes == [0]


def test_refresh_when_ttl_runs_out_clamped_to_min_and_max(resolver, upstream, clock):
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=60))
    clock.advance(59)
    assert upstream.pending == []
    clock.advance(1)
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=2))
    clock.advance(9)
    assert upstream.pending == []  # min-refresh 10 s, not the 2 s TTL
    clock.advance(1)
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=86400))
    clock.advance(100)
    assert len(upstream.pending) == 1  # max-refresh 100 s


def test_same_addresses_in_another_order_is_no_change(resolver, upstream, clock, changes):
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", "192.0.2.2"))
    clock.advance(0)
    clock.advance(60)
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.2", "192.0.2.1"))
    clock.advance(0)
    assert changes == [0]


def test_ttl_alone_is_no_change(resolver, upstream, clock, changes):
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=60))
    clock.advance(0)
    clock.advance(60)
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=17))
    clock.advance(0)
    state = resolver.state(TARGET, T.A)
    assert changes == [0] and state.ttl == 60
    clock.advance(17)
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.9", ttl=17))
    clock.advance(0)
    assert state.ttl == 17 and len(changes) == 2


def test_servfail_serves_stale_with_backoff_then_expires(resolver, upstream, clock, changes, log_events):
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=20))
    clock.advance(20)
    upstream.take().errback(terror.DNSServerError("SERVFAIL"))
    state = resolver.state(TARGET, T.A)
    assert state.status is Status.STALE and state.addresses == ("192.0.2.1",)
    # Retries back off: 10 s, then 20 s, then 40 s (min-refresh doubling).
    clock.advance(9)
    assert upstream.pending == []
    clock.advance(1)
    upstream.take().errback(terror.DNSQueryTimeoutError("t"))
    clock.advance(19)
    assert upstream.pending == []
    clock.advance(1)  # t=50: 50 s after the last success, still within serve-stale
    upstream.take().errback(terror.DNSServerError("SERVFAIL"))
    assert state.status is Status.STALE
    clock.advance(1)  # past serve-stale: the tick expires it, no query needed
    assert upstream.pending == []
    assert state.status is Status.EXPIRED and state.addresses == ()
    assert state.uses_fallback
    messages = [e.get("status") for e in log_events
                if e.get("target") == "lb.example.net." and e["log_level"] is not LogLevel.debug]
    assert messages == ["resolved", "stale", "expired"]  # once per change, not per retry (debug: each)
    clock.advance(39)  # the backed-off retry still comes, and recovery is immediate
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.5", ttl=20))
    assert state.status is Status.RESOLVED and state.failures == 0


def test_jitter_spreads_refreshes_below_the_ttl(clock, upstream):
    import random

    r = AliasResolver(upstream, clock, min_refresh=10, max_refresh=1000, jitter=0.1, rng=random.Random(7))
    r.set_targets([(N(f"t{i}.example.net"), T.A) for i in range(50)])
    r.startService()
    for name, _, d in list(upstream.pending):
        d.callback(a_answer(name, "192.0.2.1", ttl=100))
    upstream.pending.clear()
    due = sorted(s.next_due for s in r.targets.values())
    assert 90 <= due[0] and due[-1] <= 100
    assert len(set(due)) == 50  # not in step
    r.stopService()


def test_nxdomain_and_nodata_mean_no_addresses(resolver, upstream, clock):
    upstream.take().errback(terror.DNSNameError("NXDOMAIN"))
    state = resolver.state(TARGET, T.A)
    assert state.status is Status.NO_ADDRESSES and not state.serves_addresses
    clock.advance(10)
    upstream.take().callback(([], [], []))
    assert state.status is Status.NO_ADDRESSES
    clock.advance(10)
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.9"))
    assert state.status is Status.RESOLVED


def test_failure_before_any_answer_keeps_the_fallback(resolver, upstream, clock, changes):
    upstream.take().errback(terror.DNSQueryRefusedError("REFUSED"))
    state = resolver.state(TARGET, T.A)
    assert state.status is Status.PENDING and state.uses_fallback
    assert state.failure == "REFUSED"
    clock.advance(0)
    assert changes == []


def test_in_flight_queries_are_bounded_and_the_queue_drains_without_waiting(clock, upstream):
    r = AliasResolver(upstream, clock, min_refresh=10, max_in_flight=3)
    r.set_targets([(N(f"t{i}.example.net"), T.A) for i in range(10)])
    r.startService()
    asked = []
    while upstream.pending:
        assert len(upstream.pending) <= 3
        name, _, d = upstream.pending.pop(0)
        asked.append(name)
        d.callback(a_answer(name, "192.0.2.1"))
        clock.advance(0)  # a freed slot is used at once, not at the next tick
    assert sorted(asked) == sorted(f"t{i}.example.net" for i in range(10))
    assert clock.seconds() == 0
    r.stopService()


def test_dropped_target_ignores_its_late_answer(resolver, upstream, clock, changes):
    d = upstream.take()
    resolver.set_targets([])
    d.callback(a_answer("lb.example.net", "192.0.2.1"))
    clock.advance(0)
    assert resolver.state(TARGET, T.A) is None and changes == []


def test_cname_chain_in_answer_gives_final_addresses_and_min_ttl():
    answers = [
        tdns.RRHeader("lb.example.net", tdns.CNAME, ttl=30, payload=tdns.Record_CNAME("edge.cdn.test", 30)),
        tdns.RRHeader("edge.cdn.test", tdns.CNAME, ttl=300, payload=tdns.Record_CNAME("x.cdn.test", 300)),
        tdns.RRHeader("x.cdn.test", tdns.A, ttl=60, payload=tdns.Record_A("192.0.2.7", 60)),
        tdns.RRHeader("unrelated.test", tdns.A, ttl=5, payload=tdns.Record_A("192.0.2.8", 5)),
    ]
    assert addresses_from_answer(TARGET, T.A, answers) == (("192.0.2.7",), 30)


def test_stop_service_stops_the_loop(resolver, upstream, clock):
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=10))
    resolver.stopService()
    clock.advance(1000)
    assert upstream.pending == []


def test_changes_whose_hand_over_fails_are_handed_over_again(clock, log_events):
    """Issue 12.1: the changed targets are kept until the authority takes them."""
    import dns.rdatatype as RT

    from tests.helpers import ManualUpstream, a_answer

    upstream = ManualUpstream()
    delivered, failures = [], [1]

    def on_change(changed):
        if failures:
            failures.pop()
            raise OSError("state directory full")
        delivered.append(set(changed))

    resolver = AliasResolver(upstream, clock, on_change=on_change)
    key = (dns.name.from_text("lb.example.org."), RT.A)
    resolver.set_targets([key])
    resolver.startService()
    try:
        upstream.take(RT.A).callback(a_answer("lb.example.org", "203.0.113.8"))
        clock.advance(0)
        assert delivered == []  # the first hand-over failed ...
        clock.advance(resolver.change_retry)
        assert delivered == [{key}]  # ... and the same change came again
        assert [e for e in log_events if e.get("log_failure") is not None]
    finally:
        resolver.stopService()


# -- TTL: the largest seen for the same addresses, a floor, and damping ------


def test_ttl_follows_the_largest_ttl_seen_for_the_same_addresses(resolver, upstream, clock, changes):
    """A caching upstream counts TTLs down: the first answer may come at the
    end of its countdown (TTL 2), the next with the full TTL. The full TTL
    is served from then on, and the countdown that follows changes nothing."""
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=2))
    clock.advance(0)
    state = resolver.state(TARGET, T.A)
    assert state.ttl == 2 and changes == [0]
    clock.advance(10)  # min-refresh
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=300))
    clock.advance(0)
    assert state.ttl == 300  # was frozen at 2
    assert changes == [0, 10]  # the larger TTL is handed to the authority once
    for ttl in (250, 160, 70, 3):  # the upstream's countdown, refresh after refresh
        clock.advance(100)  # max-refresh
        upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=ttl))
        clock.advance(0)
    assert state.ttl == 300 and changes == [0, 10]  # a countdown signals nothing


def test_a_ttl_creeping_up_is_not_handed_over_at_every_refresh(resolver, upstream, clock, changes):
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=100))
    clock.advance(0)
    state = resolver.state(TARGET, T.A)
    for ttl in (103, 106, 109):  # within 10% of the TTL served: kept, not signalled
        clock.advance(100)
        upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=ttl))
        clock.advance(0)
    assert state.ttl == 100 and state.ttl_seen == 109 and changes == [0]
    clock.advance(100)
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=111))
    clock.advance(0)
    assert state.ttl == 111 and changes == [0, 100 * 4]


def test_new_addresses_take_their_own_ttl(resolver, upstream, clock, changes):
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=300))
    clock.advance(100)
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.2", ttl=20))
    clock.advance(0)
    state = resolver.state(TARGET, T.A)
    assert state.ttl == 20 and state.addresses == ("192.0.2.2",) and len(changes) == 2


def test_recovery_from_stale_keeps_the_largest_ttl(resolver, upstream, clock):
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=40))
    clock.advance(40)
    upstream.take().errback(terror.DNSServerError("SERVFAIL"))
    state = resolver.state(TARGET, T.A)
    assert state.status is Status.STALE and state.ttl == 40
    clock.advance(10)
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=5))
    assert state.status is Status.RESOLVED and state.ttl == 40


def test_min_ttl_is_a_floor_for_the_ttl_served(clock, upstream):
    r = AliasResolver(upstream, clock, min_refresh=10, max_refresh=100, jitter=0, min_ttl=120)
    r.set_targets([(TARGET, T.A)])
    r.startService()
    try:
        upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=5))
        state = r.state(TARGET, T.A)
        assert state.ttl == 120
        assert state.next_due == 10  # refreshes still follow the upstream's TTL
        clock.advance(10)
        upstream.take().callback(a_answer("lb.example.net", "192.0.2.2", ttl=30))
        assert state.ttl == 120
        clock.advance(30)
        upstream.take().callback(a_answer("lb.example.net", "192.0.2.2", ttl=600))
        assert state.ttl == 600
    finally:
        r.stopService()


def test_a_larger_ttl_reaches_the_secondaries_through_serial_damping(clock, upstream):
    """How a TTL-only change reaches the authority: handed over once, and
    published under the zone's serial-rate damping like any change."""
    from aliasd.service.authority import ZoneAuthority
    from tests.helpers import zone_source

    zone = zone_source(
        "example.com",
        """\
        $ORIGIN example.com.
        @ 300 SOA ns1 h 1 3600 600 86400 60
        @ 300 ALIAS lb.example.net.
        """,
    )
    resolver = AliasResolver(upstream, clock, min_refresh=10, max_refresh=100, jitter=0)
    serials = []
    authority = ZoneAuthority(
        resolver, clock=clock, serial_interval=60, serial_burst=1,
        on_new_serial=lambda v: serials.append(clock.seconds()),
    )
    resolver.on_change = authority.rebuild
    authority.set_sources([zone], wait=True)
    resolver.startService()
    apex = N("example.com")

    def answer(ttl):
        for name, rdtype, d in list(upstream.pending):
            upstream.pending.remove((name, rdtype, d))
            d.callback(a_answer(name, "192.0.2.1", ttl=ttl) if rdtype == T.A else ([], [], []))

    def served_ttl():
        return authority.versions[apex].lookup(apex, T.A).answer[0].ttl

    try:
        answer(2)  # the end of a caching upstream's countdown
        clock.advance(0)
        assert served_ttl() == 2
        published = len(serials)
        clock.advance(10)
        answer(250)  # its cache refreshed: the full TTL
        clock.advance(0)
        assert served_ttl() == 2  # held back: the burst of 1 was used
        for ttl in (240, 150, 60):  # the countdown again: nothing more to publish
            clock.advance(100)
            answer(ttl)
            clock.advance(0)
        assert served_ttl() == 250  # published once the bucket refilled
        assert len(serials) == published + 1, serials
    finally:
        resolver.stopService()


# -- replacing the upstream (reload with other upstreams) ----------------------


class ClosableUpstream(ManualUpstream):
    def __init__(self):
        super().__init__()
        self.closed = False

    def close(self):
        self.closed = True


def test_replacing_the_upstream_asks_waiting_targets_again_of_the_new_one(clock, log_events):
    old, new = ClosableUpstream(), ClosableUpstream()
    changes = []
    r = AliasResolver(old, clock, min_refresh=10, max_in_flight=2, on_change=changes.append)
    keys = [(N(f"t{i}.example.net"), T.A) for i in range(3)]
    r.set_targets(keys)
    r.startService()
    try:
        waiting = [d for _, _, d in old.pending]
        assert len(waiting) == 2  # max-in-flight; the third waits its turn
        r.replace_upstream(new)
        assert old.closed
        assert all(d.called for d in waiting)  # cancelled, not left hanging
        assert len(new.pending) == 2  # asked again of the new upstream at once
        for key in keys:
            state = r.state(*key)
            assert state.status is Status.PENDING and state.failures == 0 and state.failure == ""
        assert not [e for e in log_events if e.get("target")]  # no failure logged
        while new.pending:
            name, _, d = new.pending.pop(0)
            d.callback(a_answer(name, "192.0.2.1"))
            clock.advance(0)
        assert all(r.state(*key).status is Status.RESOLVED for key in keys)
        assert r._in_flight == 0
    finally:
        r.stopService()


def test_stopping_cancels_waiting_lookups_without_recording_failures(clock, upstream):
    r = AliasResolver(upstream, clock, min_refresh=10)
    r.set_targets([(TARGET, T.A)])
    r.startService()
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=10))
    clock.advance(10)
    d = upstream.take()
    r.stopService()
    assert d.called
    state = r.state(TARGET, T.A)
    assert state.status is Status.RESOLVED and state.failure == ""


def test_reload_with_other_upstreams_leaves_no_lookup_on_the_old_client(clock):
    """aliasd.service.reload swaps the upstream client: the lookups waiting on the
    old one must not be orphaned (before: they stayed with the closed client,
    which opened a new socket for their retries and never closed it)."""
    import dataclasses
    import types

    from aliasd.base.config import Endpoint, ResolverSettings, Settings
    from aliasd.service.reload import Reloader

    made = []

    def make_upstream(upstreams):
        made.append(ClosableUpstream())
        return made[-1]

    old = ClosableUpstream()
    r = AliasResolver(old, clock, min_refresh=10)
    r.set_targets([(TARGET, T.A)])
    r.startService()
    settings = Settings(resolver=ResolverSettings(upstreams=(Endpoint("192.0.2.53", 53),)))
    options = types.SimpleNamespace(settings=settings, files=object(), catalog=object())
    reloader = Reloader(options, None, None, None, r, make_upstream, reactor=clock)
    try:
        waiting = old.take()
        new_settings = dataclasses.replace(
            settings, resolver=dataclasses.replace(settings.resolver, upstreams=(Endpoint("192.0.2.54", 53),))
        )
        reloader._apply_resolver(new_settings)
        assert old.closed and r.upstream is made[0]
        assert waiting.called  # not left to the closed client
        made[0].take().callback(a_answer("lb.example.net", "192.0.2.7"))
        assert r.state(TARGET, T.A).addresses == ("192.0.2.7",)
    finally:
        r.stopService()


def test_a_reload_that_fails_part_way_says_what_was_applied(clock, log_events):
    """Issue 12.8: a failure after some of the new settings took effect is
    not logged as "nothing changed"."""
    import types

    from aliasd.base.config import Settings
    from aliasd.service.reload import Reloader

    class FailingAuthority:
        sources = {}
        held = frozenset()

        def set_sources(self, sources, prepared=None):
            raise RuntimeError("disk on fire")

        def set_journal_limits(self, *limits):
            pass

    handler = types.SimpleNamespace(access=None, keyring=None, updates=types.SimpleNamespace(rules=None))
    notifier = types.SimpleNamespace(targets=None, keys=None)
    resolver = AliasResolver(ManualUpstream(), clock)
    settings = Settings()
    options = types.SimpleNamespace(settings=settings, files=object(), catalog=types.SimpleNamespace(
        add_to=lambda settings, sources, held: sources))
    reloader = Reloader(options, FailingAuthority(), handler, notifier, resolver, lambda u: None, reactor=clock)
    d = defer.maybeDeferred(reloader._apply, ({}, {}, 0), settings)
    d.addErrback(reloader._crashed)
    assert d.result is False
    failed = [e for e in log_events if "reload failed" in e.get("log_format", "")]
    assert len(failed) == 1 and "part way" in failed[0]["log_format"]
    assert failed[0]["applied"] == "transfer access, TSIG keys, NOTIFY targets, resolver settings, TLS certificate"
    assert failed[0]["missing"] == "zones"
    assert handler.access is not None  # it was applied: the log says so


def test_a_restart_restores_the_last_good_outcome_with_its_ttl(clock, tmp_path):
    """The state saved at a stop is what the next start serves: the last
    success time and the TTL come back as saved (and are saved again)."""
    import time

    from aliasd.base.state import StateStore

    clock.advance(time.time())
    store = StateStore(tmp_path)
    saved = {"name": "t.example.", "type": 1, "status": "resolved", "addresses": ["192.0.2.1"],
             "ttl": 30, "last_success": clock.seconds() - 5}
    store.save_targets([saved])
    upstream = ManualUpstream()
    r = AliasResolver(upstream, clock, state=store)
    r.set_targets([(dns.name.from_text("t.example."), T.A)])
    state = r.state(dns.name.from_text("t.example."), T.A)
    assert (state.addresses, state.ttl, state.ttl_seen, state.last_success) == (("192.0.2.1",), 30, 30, saved["last_success"])
    r.startService()
    clock.advance(1)  # the refresh is asked; the upstream does not answer before the stop
    r.stopService()
    assert StateStore(tmp_path).load_targets() == [saved]


def test_a_target_no_longer_followed_keeps_its_last_good_outcome_within_serve_stale(clock):
    """A zone removed (its state kept) takes its target out of the followed
    set; the target's last good addresses stay known and saved until
    serve-stale has passed, so the zone added again serves the view it was
    served with (same serial, history kept) rather than the fallback."""
    from aliasd.base.state import MemoryStateStore

    store = MemoryStateStore()
    upstream = ManualUpstream()
    r = AliasResolver(upstream, clock, min_refresh=10, max_refresh=100, serve_stale=50, jitter=0, state=store)
    r.set_targets([(TARGET, T.A)])
    r.startService()
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1"))
    r.set_targets([])
    kept = r.state(TARGET, T.A)
    assert (kept.status, kept.addresses) == (Status.RESOLVED, ("192.0.2.1",))
    assert [e["addresses"] for e in r._entries()] == [["192.0.2.1"]]
    r.set_targets([(TARGET, T.A)])  # back: served at once, asked again at once
    assert r.state(TARGET, T.A).addresses == ("192.0.2.1",)
    clock.advance(0)
    assert [p[:2] for p in upstream.pending] == [("lb.example.net", T.A)]
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.2"))
    r.set_targets([])
    clock.advance(51)  # past serve-stale: forgotten, and no longer saved
    assert r.state(TARGET, T.A) is None and r._entries() == []
    r.stopService()
    assert store.load_targets() == []


def test_a_target_added_while_running_is_asked_at_once_not_at_the_next_tick(resolver, upstream, clock):
    """An ALIAS added by an UPDATE or through the HTTP API answers its
    target's addresses within the upstream's latency, not up to a tick later."""
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1"))
    resolver.set_targets([(TARGET, T.A), (N("new.example.net"), T.A)])
    clock.advance(0)
    assert [p[:2] for p in upstream.pending] == [("new.example.net", T.A)]
    resolver.set_targets([(TARGET, T.A), (N("new.example.net"), T.A)])  # nothing new: nothing asked
    clock.advance(0)
    assert len(upstream.pending) == 1


# -- signed zones under [resolver] require-validated ---------------------------


def validated(name, *addresses, ttl=60, ad=True):
    from aliasd.resolve.upstream import Answer
    return Answer(a_answer(name, *addresses, ttl=ttl), ad)


@pytest.fixture
def strict(clock, upstream, changes):
    r = AliasResolver(
        upstream, clock, min_refresh=10, max_refresh=100, serve_stale=50, jitter=0,
        on_change=lambda keys: changes.append(clock.seconds()), require_validated=True,
    )
    r.set_targets([(TARGET, T.A)])
    r.startService()
    yield r
    r.stopService()


def test_signed_zones_view_takes_only_validated_answers_and_serves_them_stale(strict, upstream, clock, changes,
                                                                                log_events):
    upstream.take().callback(validated("lb.example.net", "192.0.2.1", ttl=30))
    state = strict.state(TARGET, T.A)
    assert (state.secure.status, state.secure.addresses) == (Status.RESOLVED, ("192.0.2.1",))
    clock.advance(30)
    upstream.take().callback(validated("lb.example.net", "203.0.113.9", ad=False))  # a spoof, or no validation
    assert (state.status, state.addresses) == (Status.RESOLVED, ("203.0.113.9",))  # unsigned zones take it
    assert (state.secure.status, state.secure.addresses) == (Status.STALE, ("192.0.2.1",))
    assert state.secure.failure == "not validated by the upstream (no AD)"
    lines = [e["log_format"].format(**e) for e in log_events if "for signed zones" in e.get("log_format", "")]
    assert lines[-1] == ("ALIAS target lb.example.net. A for signed zones: stale (not validated by the upstream "
                         "(no AD)) -> 192.0.2.1")
    clock.advance(21)  # past serve-stale since the last validated answer: the zone file's fallback
    assert state.secure.status is Status.EXPIRED and state.secure.uses_fallback
    assert state.status is Status.RESOLVED
    clock.advance(39)
    upstream.take().callback(validated("lb.example.net", "192.0.2.7"))
    assert (state.secure.status, state.secure.addresses) == (Status.RESOLVED, ("192.0.2.7",))
    clock.advance(0)
    # Handed over: the first answer; the unvalidated one (unsigned view: new
    # addresses; signed view: stale); the expiry; the new validated answer.
    assert len(changes) == 4


def test_without_require_validated_there_is_one_view(resolver, upstream):
    upstream.take().callback(validated("lb.example.net", "192.0.2.1", ad=False))
    assert resolver.state(TARGET, T.A).secure is None


def test_a_restart_keeps_the_signed_zones_view(clock, tmp_path):
    import time

    from aliasd.base.state import StateStore

    clock.advance(time.time())
    store = StateStore(tmp_path)
    upstream = ManualUpstream()
    r = AliasResolver(upstream, clock, state=store, require_validated=True)
    r.set_targets([(TARGET, T.A)])
    r.startService()
    upstream.take().callback(validated("lb.example.net", "192.0.2.1"))
    clock.advance(100)
    upstream.take().callback(validated("lb.example.net", "203.0.113.9", ad=False))
    r.stopService()
    again = AliasResolver(ManualUpstream(), clock, state=store, require_validated=True)
    again.set_targets([(TARGET, T.A)])
    state = again.state(TARGET, T.A)
    assert state.addresses == ("203.0.113.9",)
    assert (state.secure.status, state.secure.addresses) == (Status.STALE, ("192.0.2.1",))


def test_turning_require_validated_on_asks_every_target_again_at_once(resolver, upstream, clock):
    upstream.take().callback(a_answer("lb.example.net", "192.0.2.1", ttl=60))
    clock.advance(5)
    assert upstream.pending == []  # not due for 55 s
    resolver.require_validated = True  # (a reload)
    resolver.refresh_all()
    clock.advance(1)
    upstream.take().callback(validated("lb.example.net", "192.0.2.1"))
    assert resolver.state(TARGET, T.A).secure.status is Status.RESOLVED


def test_nxdomain_counts_for_signed_zones_only_when_validated(strict, upstream, clock):
    from twisted.python.failure import Failure

    def nxdomain(ad: bool):
        message = tdns.Message(rCode=tdns.ENAME, authenticData=int(ad))
        upstream.take().errback(Failure(terror.DNSNameError(message)))

    nxdomain(ad=False)
    state = strict.state(TARGET, T.A)
    assert state.status is Status.NO_ADDRESSES and state.secure.status is Status.PENDING  # the fallback
    clock.advance(10)
    nxdomain(ad=True)  # a validated denial
    assert state.secure.status is Status.NO_ADDRESSES
