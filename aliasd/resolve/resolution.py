"""ALIAS targets to addresses: upstream queries, their outcomes, the schedule.

The AliasResolver keeps one TargetState per distinct (target name, address
type) that lies outside every served zone, however many ALIAS owners share
it. A ``LoopingCall`` ticks once a second and sends an upstream query for
each target whose refresh time has come (its TTL clamped to the configured
minimum and maximum). Outcomes:

- addresses: served, with the largest TTL the upstream gave for them (a
  caching upstream counts TTLs down; see ``AliasResolver._set``), never
  below ``min_ttl``;
- NXDOMAIN or NODATA: the owner has no addresses of that type;
- SERVFAIL, REFUSED, timeout, anything else: the last good addresses stay
  (serve stale) until ``serve_stale`` seconds after the last success, then
  they are dropped and the zone file's fallback records apply again.

Signed zones and ``require_validated`` ([resolver] require-validated):
aliasd signs the addresses it serves, so for signed zones it may accept
only what a validating upstream vouched for (AD set; every query asks for
it). One query serves both kinds of zone: each TargetState then keeps a
second view, ``secure``, fed by the same answers, in which an answer
without AD counts as a failure (serve-stale applies, then the fallback).
Unsigned zones go on using every answer. Two views of one query, rather
than a query per kind of zone, because the upstream's answer is the same
for both: only whether it may be trusted differs.

When what a target serves changes, ``on_change(keys)`` is called once per batch of
changes (not once per target) with the changed targets, and the authority
re-follows only the ALIAS owners that depend on them (its serial-rate
damping then decides when the change is published).
This module does not know about zones; targets inside served zones are
followed by the authority from its own data.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import heapq
import itertools
import random
import socket
from typing import Callable, Iterable

import dns.exception
import dns.name
import dns.rdatatype
from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.names import dns as tdns
from twisted.names import error as terror

from aliasd.base.stats import Statistics

log = Logger()

A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
TargetKey = tuple[dns.name.Name, int]
_MAX_CHAIN = 16


class Status(enum.Enum):
    """Where a target stands; each change of status is logged once."""

    PENDING = "pending"  # never answered yet: the file's fallback applies
    RESOLVED = "resolved"  # addresses from the last answer
    NO_ADDRESSES = "no-addresses"  # NXDOMAIN or NODATA upstream
    STALE = "stale"  # upstream failing; last good addresses still served
    EXPIRED = "expired"  # failing past serve-stale; fallback applies


@dataclasses.dataclass
class TargetState:
    """What is known about one (target, type) and when to ask again."""

    name: dns.name.Name
    rdtype: int
    status: Status = Status.PENDING
    addresses: tuple[str, ...] = ()
    ttl: int = 0  # the TTL served (handed to the authority)
    ttl_seen: int = 0  # the largest upstream TTL seen for these addresses
    last_success: float | None = None
    last_refresh: float | None = None
    next_due: float = 0.0
    in_flight: bool = False
    failure: str = ""
    failures: int = 0  # consecutive failed refreshes (for backoff)
    # The view of signed zones under require-validated: validated answers only.
    secure: TargetState | None = None

    @property
    def serves_addresses(self) -> bool:
        return self.status in (Status.RESOLVED, Status.STALE)

    @property
    def uses_fallback(self) -> bool:
        return self.status in (Status.PENDING, Status.EXPIRED)


class NoAddresses(Exception):
    """The upstream said the target has no addresses of this type."""


def addresses_from_answer(
    target: dns.name.Name, rdtype: int, answers: Iterable[tdns.RRHeader]
) -> tuple[tuple[str, ...], int]:
    """Addresses of ``target`` in an upstream answer, and their TTL.

    CNAME chains in the answer are followed; the TTL is the minimum along
    the chain. Raises NoAddresses when the chain ends without addresses.
    """
    answers = list(answers)
    name = target.to_text().lower().rstrip(".").encode()
    ttl = None
    for _ in range(_MAX_CHAIN):
        found = [
            rr for rr in answers if rr.type == rdtype and rr.name.name.lower() == name
        ]
        if found:
            found_ttl = min(rr.ttl for rr in found)
            ttl = found_ttl if ttl is None else min(ttl, found_ttl)
            return tuple(sorted({_address_text(rr) for rr in found})), ttl
        cnames = [
            rr
            for rr in answers
            if rr.type == tdns.CNAME and rr.name.name.lower() == name
        ]
        if not cnames:
            break
        ttl = cnames[0].ttl if ttl is None else min(ttl, cnames[0].ttl)
        name = cnames[0].payload.name.name.lower()
    raise NoAddresses()


def _kept(state: TargetState | None) -> bool:
    """Is this outcome worth keeping in the target cache across a restart?"""
    return (state is not None and state.last_success is not None
            and state.status in (Status.RESOLVED, Status.STALE, Status.NO_ADDRESSES))


def _entry(state: TargetState) -> dict:
    return {"status": state.status.value, "addresses": list(state.addresses), "ttl": state.ttl,
            "last_success": state.last_success}


def _address_text(rr: tdns.RRHeader) -> str:
    if rr.type == tdns.A:
        return rr.payload.dottedQuad()
    return socket.inet_ntop(socket.AF_INET6, rr.payload.address)


def _negative_ttl(failure, default: float) -> float:
    """The negative-caching TTL of an NXDOMAIN answer (SOA in authority)."""
    message = getattr(failure.value, "message", None)
    ttls = [rr.ttl for rr in getattr(message, "authority", ()) if rr.type == tdns.SOA]
    return min(ttls, default=default)


def describe_failure(failure) -> str:
    """A short reason for a failed upstream query, for logs."""
    reasons = {
        terror.DNSServerError: "SERVFAIL",
        terror.DNSQueryRefusedError: "REFUSED",
        terror.DNSQueryTimeoutError: "timeout",
        terror.DNSFormatError: "FORMERR",
        terror.DNSNotImplementedError: "NOTIMP",
        defer.TimeoutError: "timeout",
    }
    for kind, text in reasons.items():
        if failure.check(kind):
            return text
    return failure.type.__name__


class AliasResolver(service.Service):
    """Keeps the addresses of every upstream ALIAS target fresh.

    ``upstream`` is a Twisted Names resolver (``twisted.names.client``
    pointed at the configured upstreams, or a stand-in in unit tests).
    """

    tick = 1.0
    first_round_grace = 5.0  # seconds new targets may take before publishing anyway
    save_interval = 5.0  # seconds between writes of the target cache

    def __init__(
        self,
        upstream,
        clock: IReactorTime,
        *,
        min_refresh: float = 30,
        max_refresh: float = 3600,
        serve_stale: float = 3600,
        query_timeout: tuple[int, ...] = (1, 2),
        max_in_flight: int = 64,
        min_ttl: float = 0,
        on_change: Callable[[set[TargetKey]], None] = lambda changed: None,
        state=None,
        jitter: float = 0.1,
        max_retry: float = 300,
        rng: random.Random | None = None,
        stats: Statistics | None = None,
        require_validated: bool = False,
    ):
        self.upstream = upstream
        self.clock = clock
        self.min_refresh = min_refresh
        self.max_refresh = max_refresh
        self.serve_stale = serve_stale
        self.query_timeout = query_timeout
        self.max_in_flight = max_in_flight
        self.min_ttl = min_ttl
        self.require_validated = require_validated
        self.on_change = on_change
        self.stats = stats if stats is not None else Statistics()
        self.jitter = jitter
        self.max_retry = max(max_retry, min_refresh)
        self.random = rng or random.Random()
        self.targets: dict[TargetKey, TargetState] = {}
        # (due time, sequence, key): entries whose time no longer matches
        # the target's next_due are stale and skipped when popped.
        self._schedule: list[tuple[float, int, TargetKey]] = []
        self._sequence = itertools.count()
        self._stale: set[TargetKey] = set()
        self._secure_stale: set[TargetKey] = set()  # secure views serving stale addresses
        # Targets asked for the first time and not answered yet; their
        # outcomes are published together (see _set), within a grace period.
        self._unanswered: set[TargetKey] = set()
        self._first_round_deadline = 0.0
        self._save_pending = None
        self.queries_sent = 0
        self.store = state
        self._restored = self._load_saved() if state is not None else {}
        self._in_flight = 0
        self._waiting: collections.deque[TargetState] = collections.deque()
        # Lookups waiting for the upstream, by id(state): (state, Deferred).
        self._lookups: dict[int, tuple[TargetState, defer.Deferred]] = {}
        # ids of states whose lookups are being cancelled; True: ask again.
        self._abandoned: dict[int, bool] = {}
        self._change_pending = None
        self._changed: set[TargetKey] = set()
        self._asking_now = None  # a refresh_due asked for new targets
        self._loop = task.LoopingCall(self.refresh_due)
        self._loop.clock = clock

    # -- service ---------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.tick, now=True)

    def stopService(self):
        super().stopService()
        self._abandon_lookups(requeue=False)
        close = getattr(self.upstream, "close", None)
        if close is not None:
            close()
        if self._loop.running:
            self._loop.stop()
        for call in (self._change_pending, self._save_pending):
            if call is not None and call.active():
                call.cancel()
        self._change_pending = self._save_pending = None
        try:
            self._save()  # the last word at shutdown
        except OSError as e:
            log.error("cannot save ALIAS target cache: {error}", error=str(e))

    def replace_upstream(self, upstream) -> None:
        """Ask ``upstream`` from now on (the upstreams changed on reload).

        Lookups still waiting on the old one are cancelled and asked again
        of the new one at once (not counted as failures, nothing logged),
        then the old one is closed: its sockets with it, and no query of
        the old one is left to time out or be answered later.
        """
        old, self.upstream = self.upstream, upstream
        self._abandon_lookups(requeue=True)
        close = getattr(old, "close", None)
        if close is not None:
            close()
        self._start_waiting()

    def _abandon_lookups(self, requeue: bool) -> None:
        """Cancel every lookup in flight; its target is queued again first
        when ``requeue`` (see _failed), else just no longer in flight."""
        for key, (state, d) in list(self._lookups.items()):
            self._abandoned[key] = requeue
            d.cancel()  # fires _failed with CancelledError, at once
            self._abandoned.pop(key, None)
            entry = self._lookups.pop(key, None)
            if entry is not None:
                # An upstream whose Deferred ignores cancel(): stop waiting for
                # it; a late outcome is dropped (_finished finds no entry).
                self._release(entry[0], requeue)

    # -- targets ---------------------------------------------------------

    def set_targets(self, keys: Iterable[TargetKey]) -> None:
        """Follow exactly these targets; new ones are due at once."""
        wanted = set(keys)
        for key in list(self.targets):
            if key not in wanted:
                state = self.targets.pop(key)
                self._stale.discard(key)
                self._unanswered.discard(key)
                if _kept(state):
                    # Kept (and saved) while within serve-stale, as the last
                    # run's outcomes are: a zone removed with its state kept
                    # comes back with the view it was served with, not the
                    # file's fallback, a new serial and its history lost.
                    self._restored[key] = dataclasses.replace(
                        state, in_flight=False, failures=0, failure="", last_refresh=None, next_due=0.0)
        now = self.clock.seconds()
        added = False
        for key in wanted:
            if key not in self.targets:
                state = self._restored_state(key)
                if state is not None:
                    del self._restored[key]
                    state.next_due = now
                else:
                    state = TargetState(key[0], key[1])
                    self._unanswered.add(key)
                    self._first_round_deadline = now + self.first_round_grace
                self.targets[key] = state
                self._schedule_at(state, now)
                added = True
        if added and self.running and self._asking_now is None:
            # Asked now, not at the next tick: an ALIAS added by an UPDATE
            # or through the API answers its target's addresses at once.
            self._asking_now = self.clock.callLater(0, self._ask_now)

    def _ask_now(self) -> None:
        self._asking_now = None
        self.refresh_due()

    def refresh_all(self) -> None:
        """Ask every target again now (require-validated was turned on)."""
        now = self.clock.seconds()
        for state in self.targets.values():
            if not state.in_flight:
                self._schedule_at(state, now)

    # -- what survives a restart -----------------------------------------

    def _load_saved(self) -> dict[TargetKey, TargetState]:
        """Last good outcomes from the state store, still within serve-stale.

        They are served until the first refresh (due at once) says otherwise,
        so a restart does not fall back to the zone file and bump serials.
        """
        now = self.clock.seconds()
        restored = {}
        for entry in self.store.load_targets():
            try:
                name = dns.name.from_text(entry["name"])
                rdtype = int(entry["type"])
                status = Status(entry["status"])
                last_success = float(entry["last_success"])
                addresses = tuple(str(a) for a in entry["addresses"])
                ttl = int(entry["ttl"])
            except (KeyError, TypeError, ValueError, dns.exception.DNSException):
                continue
            if now - last_success > self.serve_stale:
                continue
            if status not in (Status.RESOLVED, Status.STALE, Status.NO_ADDRESSES):
                continue
            restored[(name, rdtype)] = state = TargetState(
                name, rdtype, status, addresses, ttl=ttl, ttl_seen=ttl, last_success=last_success, next_due=now
            )
            secure = entry.get("secure")
            if self.require_validated and isinstance(secure, dict):
                try:
                    state.secure = TargetState(
                        name, rdtype, Status(secure["status"]), tuple(str(a) for a in secure["addresses"]),
                        ttl=int(secure["ttl"]), last_success=float(secure["last_success"]))
                except (KeyError, TypeError, ValueError):
                    pass
                else:
                    if now - state.secure.last_success > self.serve_stale:
                        state.secure = None
        return restored

    def _save(self) -> None:
        if self.store is None:
            return
        self.store.save_targets(self._entries())

    def take_unsaved(self) -> list[dict] | None:
        """The target cache to write now, when changes wait to be written
        (None otherwise): the authority writes it in the transaction of the
        versions built from those changes, so a restart after a crash starts
        from the addresses it served, with the serial it served them with.
        The caller writes it, or gives it back (``unsaved_again``)."""
        if self.store is None or self._save_pending is None or not self._save_pending.active():
            return None
        self._save_pending.cancel()
        self._save_pending = None
        return self._entries()

    def unsaved_again(self) -> None:
        """The cache taken by ``take_unsaved`` was not written: write it later."""
        self._save_soon()

    def _entries(self) -> list[dict]:
        """The targets followed and those no longer followed whose outcome
        is still within serve-stale (aliasd.resolve: a zone removed and
        added again)."""
        oldest = self.clock.seconds() - self.serve_stale
        for key in [k for k, s in self._restored.items() if s.last_success < oldest]:
            del self._restored[key]
        return (
            [
                {
                    "name": s.name.to_text(),
                    "type": int(s.rdtype),
                    **_entry(s),
                    **({"secure": _entry(s.secure)} if _kept(s.secure) else {}),
                }
                for s in itertools.chain(self.targets.values(), self._restored.values())
                if _kept(s)
            ]
        )

    @property
    def any_stale(self) -> bool:
        """Is any target serving addresses past an upstream failure? (cheap)"""
        return bool(self._stale)

    def state(self, name: dns.name.Name, rdtype: int) -> TargetState | None:
        """What is known of a target (restored from the last run until followed)."""
        key = (name, rdtype)
        return self.targets.get(key) or self._restored_state(key)

    def _restored_state(self, key: TargetKey) -> TargetState | None:
        """A target's outcome from the last run, or from when it was last
        followed, while within serve-stale (older ones are forgotten)."""
        state = self._restored.get(key)
        if state is not None and state.last_success < self.clock.seconds() - self.serve_stale:
            del self._restored[key]
            return None
        return state

    # -- the schedule ----------------------------------------------------

    def _schedule_at(self, state: TargetState, due: float) -> None:
        state.next_due = due
        heapq.heappush(self._schedule, (due, next(self._sequence), (state.name, state.rdtype)))

    def refresh_due(self) -> None:
        """Each tick: queue the targets whose time has come, expire stale ones.

        Only due targets are touched (a heap ordered by refresh time), so a
        tick costs nothing when nothing is due, however many targets exist.
        """
        now = self.clock.seconds()
        while self._schedule and self._schedule[0][0] <= now:
            due, _, key = heapq.heappop(self._schedule)
            state = self.targets.get(key)
            if state is None or state.in_flight or state.next_due != due:
                continue
            self._waiting.append(state)
        for key in list(self._stale):
            state = self.targets.get(key)
            if state is None or state.status is not Status.STALE:
                self._stale.discard(key)
            elif now - state.last_success > self.serve_stale:
                self._stale.discard(key)
                self._set(state, Status.EXPIRED, (), 0, state.failure, failed=True)
        for key in list(self._secure_stale):
            state = self.targets.get(key)
            secure = state.secure if state is not None else None
            if secure is None or secure.status is not Status.STALE:
                self._secure_stale.discard(key)
            elif now - secure.last_success > self.serve_stale:
                self._secure_stale.discard(key)
                self._set_secure(state, Status.EXPIRED, (), 0, secure.failure)
        self._start_waiting()

    def _start_waiting(self) -> None:
        """Start queries for due targets while there is room in flight.

        Called each tick and whenever a query finishes, so a long queue
        drains at the pace the upstream answers, not one batch per tick.
        """
        while self._waiting and self._in_flight < self.max_in_flight:
            state = self._waiting.popleft()
            if state.in_flight or self.targets.get((state.name, state.rdtype)) is not state:
                continue
            self._query(state)

    def _query(self, state: TargetState) -> None:
        state.in_flight = True
        self._in_flight += 1
        self.queries_sent += 1
        name = state.name.to_text(omit_final_dot=True)
        if state.rdtype == A:
            d = self.upstream.lookupAddress(name, timeout=self.query_timeout)
        else:
            d = self.upstream.lookupIPV6Address(name, timeout=self.query_timeout)
        self._lookups[id(state)] = (state, d)  # before the callbacks: d may have fired
        d.addCallbacks(self._answered, self._failed, (state,), None, (state,), None)
        d.addErrback(lambda f: log.failure("handling upstream answer", f))

    def _finished(self, state: TargetState) -> bool:
        """Book-keeping common to every outcome; False if the target was
        dropped, or its lookup abandoned (cancelled: see _failed)."""
        entry = self._lookups.get(id(state))
        if entry is None or entry[0] is not state:
            return False  # abandoned already (_abandon_lookups)
        del self._lookups[id(state)]
        state.in_flight = False
        self._in_flight -= 1
        state.last_refresh = self.clock.seconds()
        if self._waiting:
            self.clock.callLater(0, self._start_waiting)
        return self.targets.get((state.name, state.rdtype)) is state

    def _release(self, state: TargetState, requeue: bool) -> None:
        """An abandoned lookup: no longer in flight; asked again first if
        ``requeue`` and the target is still followed."""
        state.in_flight = False
        self._in_flight -= 1
        if requeue and self.targets.get((state.name, state.rdtype)) is state:
            self._waiting.appendleft(state)

    def _refresh_in(self, ttl: float) -> float:
        """Seconds until the next refresh: the TTL clamped into
        [min-refresh, max-refresh], less up to ``jitter`` of it so targets
        that were resolved together do not stay in step."""
        interval = max(self.min_refresh, min(self.max_refresh, ttl))
        return max(self.min_refresh * (1 - self.jitter), interval * (1 - self.jitter * self.random.random()))

    def _retry_in(self, failures: int) -> float:
        """Backoff after consecutive failures: min-refresh, doubling, capped."""
        return min(self.min_refresh * 2 ** (failures - 1), self.max_retry)

    def _answered(self, result, state: TargetState) -> None:
        if not self._finished(state):
            return
        now = self.clock.seconds()
        answers, authority, _ = result
        try:
            addresses, ttl = addresses_from_answer(state.name, state.rdtype, answers)
        except NoAddresses:
            negative_ttl = min(
                (rr.ttl for rr in authority if rr.type == tdns.SOA),
                default=self.min_refresh,
            )
            state.last_success, state.failures = now, 0
            self._schedule_at(state, now + self._refresh_in(negative_ttl))
            self.stats.inc("aliasd_upstream_answers_total", outcome="NODATA")
            self._set(state, Status.NO_ADDRESSES, (), 0, "NODATA")
            self._validated(state, getattr(result, "authenticated", False))
            return
        state.last_success, state.failures = now, 0
        self._schedule_at(state, now + self._refresh_in(ttl))
        self.stats.inc("aliasd_upstream_answers_total", outcome="addresses")
        self._set(state, Status.RESOLVED, addresses, ttl, "")
        self._validated(state, getattr(result, "authenticated", False))

    def _failed(self, failure, state: TargetState) -> None:
        requeue = self._abandoned.get(id(state))
        if requeue is not None and failure.check(defer.CancelledError):
            # Cancelled by us (upstreams replaced, or stop): no outcome.
            entry = self._lookups.pop(id(state), None)
            if entry is not None and entry[0] is state:
                self._release(state, requeue)
            return
        if not self._finished(state):
            return
        now = self.clock.seconds()
        # Twisted raises DomainError itself for NXDOMAIN; its other DNS
        # errors (SERVFAIL, REFUSED, ...) are subclasses of it.
        if failure.type in (
            terror.DNSNameError,
            terror.DomainError,
            terror.AuthoritativeDomainError,
        ):
            state.last_success, state.failures = now, 0
            negative_ttl = _negative_ttl(failure, self.min_refresh)
            self._schedule_at(state, now + self._refresh_in(negative_ttl))
            self.stats.inc("aliasd_upstream_answers_total", outcome="NXDOMAIN")
            self._set(state, Status.NO_ADDRESSES, (), 0, "NXDOMAIN")
            # (Twisted's client raises the error with the answer as its argument.)
            message = next((a for a in failure.value.args if isinstance(a, tdns.Message)), None)
            self._validated(state, bool(getattr(message, "authenticData", 0)))
            return
        reason = describe_failure(failure)
        self.stats.inc("aliasd_upstream_answers_total", outcome=reason)
        state.failures += 1
        self._schedule_at(state, now + self._retry_in(state.failures))
        if state.status in (Status.RESOLVED, Status.STALE):
            assert state.last_success is not None
            if now - state.last_success <= self.serve_stale:
                self._stale.add((state.name, state.rdtype))
                self._set(state, Status.STALE, state.addresses, state.ttl, reason, failed=True)
            else:
                self._set(state, Status.EXPIRED, (), 0, reason, failed=True)
        else:
            self._set(state, state.status, state.addresses, state.ttl, reason, failed=True)
        self._validated(state, False, reason)

    # -- the secure view (require-validated) ---------------------------------

    def _validated(self, state: TargetState, authenticated: bool, reason: str = "") -> None:
        """Feed an outcome to the secure view: the main view's outcome when
        the upstream validated it, else a failure (serve stale, then expire)."""
        if not self.require_validated:
            state.secure = None
            return
        if state.secure is None:
            state.secure = TargetState(state.name, state.rdtype)
        secure, now = state.secure, self.clock.seconds()
        if not reason and authenticated:
            secure.last_success = now
            self._set_secure(state, state.status, state.addresses, state.ttl, "")
            return
        why = reason or "not validated by the upstream (no AD)"
        if secure.status in (Status.RESOLVED, Status.STALE, Status.NO_ADDRESSES):
            assert secure.last_success is not None
            if now - secure.last_success > self.serve_stale:
                self._set_secure(state, Status.EXPIRED, (), 0, why)
            elif secure.status is Status.NO_ADDRESSES:
                self._set_secure(state, secure.status, (), 0, why)
            else:
                self._secure_stale.add((state.name, state.rdtype))
                self._set_secure(state, Status.STALE, secure.addresses, secure.ttl, why)
        else:
            self._set_secure(state, secure.status, (), 0, why)

    def _set_secure(self, state: TargetState, status: Status, addresses, ttl: int, failure: str) -> None:
        """Record the secure view's outcome; log and hand over what changed."""
        secure = state.secure
        changed = (status, addresses, ttl) != (secure.status, secure.addresses, secure.ttl)
        newly_failing = bool(failure) != bool(secure.failure)
        secure.failure = failure
        if changed or newly_failing:
            log.info(
                "ALIAS target {target} {rdtype} for signed zones: {status}{why} -> {served}",
                target=state.name.to_text(), rdtype=dns.rdatatype.to_text(state.rdtype),
                status=status.value, why=f" ({failure})" if failure else "",
                served=" ".join(addresses) if addresses else "(none)"
                if status not in (Status.PENDING, Status.EXPIRED) else "zone file fallback",
            )
        secure.status, secure.addresses, secure.ttl = status, tuple(addresses), ttl
        if changed:
            self._note_change((state.name, state.rdtype))

    def _set(
        self,
        state: TargetState,
        status: Status,
        addresses: tuple[str, ...],
        ttl: int,
        reason: str,
        failed: bool = False,
    ) -> None:
        """Record an outcome; log and signal only when what is served changes.

        A first failure is logged too (once), even when nothing served changes.

        TTL: a caching upstream counts TTLs down, so the same addresses come
        back with ever smaller TTLs (down to 1 or 0) until its cache
        refreshes. The TTL served is therefore the largest TTL seen for the
        unchanged addresses (a countdown never exceeds the original), at
        least ``min_ttl``, and taken afresh when the addresses change. A
        smaller TTL for the same addresses changes nothing; a larger one is
        handed to the authority only when it is more than ``ttl_step``
        above the one served, so a TTL creeping up does not move the serial
        at every refresh (the authority's serial-rate damping applies too).
        """
        same_addresses = addresses == state.addresses and state.serves_addresses
        changed = status != state.status or addresses != state.addresses
        failure = reason if failed else ""
        newly_failing = bool(failure) != bool(state.failure)
        state.failure = failure
        ttl_raised = False
        if status is Status.RESOLVED and not failed and same_addresses:
            ttl_raised = self._take_larger_ttl(state, ttl)
        elif changed and not same_addresses:
            state.ttl_seen = ttl
            state.ttl = max(ttl, int(self.min_ttl)) if status is Status.RESOLVED else ttl
        if not (changed or newly_failing or ttl_raised):
            log.debug(  # [log] resolution = "debug": every refresh
                "ALIAS target {target} {rdtype}: {status}, unchanged{why}",
                target=state.name.to_text(), rdtype=dns.rdatatype.to_text(state.rdtype),
                status=status.value, why=f" ({reason})" if reason else "",
            )
            return
        if changed or newly_failing:
            log.info(
                "ALIAS target {target} {rdtype}: {status}{why} -> {served}",
                target=state.name.to_text(),
                rdtype=dns.rdatatype.to_text(state.rdtype),
                status=status.value,
                why=f" ({reason})" if reason else "",
                served=" ".join(addresses) if addresses else "(none)"
                if status not in (Status.PENDING, Status.EXPIRED)
                else "zone file fallback",
            )
        else:
            log.info(
                "ALIAS target {target} {rdtype}: TTL now {ttl}",
                target=state.name.to_text(),
                rdtype=dns.rdatatype.to_text(state.rdtype),
                ttl=state.ttl,
            )
        state.status = status
        state.addresses = addresses
        self._unanswered.discard((state.name, state.rdtype))
        if changed or ttl_raised:
            self._note_change((state.name, state.rdtype))
        elif not self._unanswered and self._change_pending is not None and self._change_pending.active():
            self._change_pending.reset(0)

    def _note_change(self, key: TargetKey) -> None:
        """A change to hand over: now, or with the first round's answers."""
        self._changed.add(key)
        if self._change_pending is None:
            if self._unanswered and self.clock.seconds() < self._first_round_deadline:
                # New targets are still being asked for the first time: wait,
                # so their answers make one version (one serial), not dozens.
                delay = self._first_round_deadline - self.clock.seconds()
            else:
                delay = 0
            self._change_pending = self.clock.callLater(delay, self._signal_change)
        elif not self._unanswered and self._change_pending.active():
            self._change_pending.reset(0)

    #: A larger TTL for the same addresses is handed over (and may move the
    #: serial) only when it is more than this fraction above the one served.
    ttl_step = 0.1

    def _take_larger_ttl(self, state: TargetState, ttl: int) -> bool:
        """The same addresses answered again with ``ttl``: keep the largest
        TTL seen; True when the one served is raised (a change to hand over)."""
        state.ttl_seen = max(state.ttl_seen, ttl)
        wanted = max(state.ttl_seen, int(self.min_ttl))
        if wanted > state.ttl * (1 + self.ttl_step):
            state.ttl = wanted
            return True
        return False

    #: Seconds before changes whose hand-over failed are handed over again.
    change_retry = 5.0

    def _signal_change(self) -> None:
        """Hand the changed targets to the authority; keep them if that fails,
        so a change is delivered or retried, never dropped."""
        self._change_pending = None
        changed, self._changed = self._changed, set()
        try:
            self.on_change(changed)
        except Exception:
            log.failure("handing {count} changed ALIAS target(s) over; retrying", count=len(changed))
            self._changed |= changed
            self._change_pending = self.clock.callLater(self.change_retry, self._signal_change)
            return
        self._save_soon()

    def _save_soon(self) -> None:
        """Write the target cache at most every few seconds (it is only a cache)."""
        if self.store is None or (self._save_pending is not None and self._save_pending.active()):
            return
        self._save_pending = self.clock.callLater(self.save_interval, self._save_now)

    def _save_now(self) -> None:
        self._save_pending = None
        try:
            self._save()
        except OSError as e:
            log.error("cannot save ALIAS target cache: {error}", error=str(e))
