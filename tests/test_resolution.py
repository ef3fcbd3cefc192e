"""Unit tests: the AliasResolver's schedule and outcomes, on a task.Clock.

The upstream here is a stand-in whose answers each test fires by hand; the
end-to-end tests use a real upstream server instead.
"""

from __future__ import annotations

import dns.name
import dns.rdatatype as T
import pytest
from twisted.names import dns as tdns
from twisted.names import error as terror

from aliasd.resolution import AliasResolver, Status, addresses_from_answer
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
    messages = [e.get("status") for e in log_events if e.get("target") == "lb.example.net."]
    assert messages == ["resolved", "stale", "expired"]  # once per change, not per retry
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
    from tests.helpers import ManualUpstream, a_answer
    import dns.rdatatype as RT

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
