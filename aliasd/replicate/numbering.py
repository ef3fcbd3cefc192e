"""Numbering zone versions: serials, their record, their history.

Why a unit of its own: a secondary must never see a serial go backwards or
a changed view under an old serial, across restarts too. So each new
version gets its serial from the last one recorded for its zone
(aliasd.base.state.next_serial, on the digest of what the zone serves), the
serials of a batch are written to the state store before any of them is
served, and a write that fails is retried with a growing delay (the batch
is kept meanwhile). What changed from the previous serial goes into the
zone's journal, for IXFR.

The state store is written on a thread of its own (``run_in_thread``:
aliasd.base.committhread), or at once without a reactor (unit tests,
``aliasd-check``).
"""

from __future__ import annotations

import hashlib
import heapq

import dns.name
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorCore, IReactorThreads

from aliasd.base.committhread import CommitThread
from aliasd.base.state import MemoryStateStore, ZoneState, next_serial
from aliasd.replicate.journal import DEFAULT_MAX_USAGE, Journal
from aliasd.zones.zone import ZoneVersion


class Numbering:
    """Gives versions their serials and records them in the state store."""

    #: Seconds to wait before writing again after the 1st, 2nd, ... failure.
    retry_delays = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

    def __init__(self, state=None, clock=None, run_in_thread=None):
        self.state = state if state is not None else MemoryStateStore()
        self.run_in_thread = run_in_thread if run_in_thread is not None else _thread_runner(clock)
        # The view digest each served version was recorded with.
        self.digests: dict[dns.name.Name, str] = {}
        self.failures = 0  # writes failed in a row

    def next_version(self, zone, updates, current: ZoneVersion | None, current_digest: str | None):
        """Build and number the version after ``current`` (not recorded yet).

        ``zone`` is the authority's book-keeping of the zone (its file, the
        shared base, the followed outcomes and their view hash), ``updates``
        the ALIAS owners whose outcome changed, ``current_digest`` the
        digest of ``current`` when it is not served yet (None: the one it
        was served with). Returns (version, digest, whether the state store
        must record it, why it was made).
        """
        source = zone.source
        origin = source.origin
        view = f"{zone.source_digest}:{zone.view_hash:x}"
        if zone.signing_state:  # a signed zone: new keys or signatures are a new view
            view += ":" + zone.signing_state
        digest = hashlib.sha256(view.encode()).hexdigest()
        if current is None:
            previous = self.state.load_zone(origin, source.key)
        else:
            previous = ZoneState(current.serial, current_digest if current_digest is not None
                                 else self.digests.get(origin, ""))
        changed = previous is None or previous.digest != digest
        if not changed:  # the recorded text, kept once (not a copy per zone beside it)
            digest = previous.digest
        serial = next_serial(source.serial, previous.serial if previous else None, changed)
        state_changed = previous is None or serial != previous.serial or changed
        if current is not None and current.source is source:
            version = ZoneVersion.build(source, updates, zone.base, serial=serial, previous=current)
            why = f"{len(updates)} ALIAS owner(s) changed"
        else:
            version = ZoneVersion.build(source, zone.flattened, zone.base, serial=serial)
            if current is not None:
                why = "reloaded"
            elif previous is None:
                why = "first load"
            else:
                why = "restart, view unchanged" if not changed else "restart, view changed"
        return version, digest, state_changed, why

    def save(self, states: dict[dns.name.Name, ZoneState]) -> None:
        """Record ``states`` now, on this thread (raises OSError)."""
        self.state.save_zones(states)

    def save_in_thread(self, states: dict[dns.name.Name, ZoneState]) -> defer.Deferred:
        """Record ``states`` off the reactor thread."""
        return self.run_in_thread(self.state.save_zones, states)

    def failed(self) -> float:
        """A write failed: the seconds to wait before the next attempt."""
        delay = self.retry_delays[min(self.failures, len(self.retry_delays) - 1)]
        self.failures += 1
        return delay

    def recorded(self) -> None:
        """A batch was recorded and served: the state store works again."""
        self.failures = 0


class Journals(dict):
    """Zone origin -> its Journal of differences, for IXFR.

    A journal is made on a zone's first change: most zones never change.
    Each zone's history is bounded by its ``journal-max-usage``
    (``max_usage_for``, else ``max_usage``) and ``depth``; all of them
    together by ``total_max`` octets, past which the zones using the most
    lose their oldest differences first (``trim_total``), so one churning
    zone cannot empty another's history. Methods that drop recorded
    differences return their record keys, for the store to delete. Their
    total is kept as they change (``usage``), not summed over thousands of
    journals at every batch.
    """

    def __init__(self, depth: int | None = None, max_usage: int = DEFAULT_MAX_USAGE,
                 total_max: int | None = None, load=None):
        super().__init__()
        self.depth = depth
        self.max_usage = max_usage
        self.max_usage_for: dict[dns.name.Name, int] = {}
        self.total_max = total_max
        self.load = load  # record key -> Difference (the state store's), or None
        self._usage = 0  # the octets of every journal here

    def __setitem__(self, origin, journal: Journal) -> None:
        old = self.get(origin)
        self._usage += journal.usage - (old.usage if old is not None else 0)
        super().__setitem__(origin, journal)

    def setdefault(self, origin, journal: Journal) -> Journal:
        if origin not in self:
            self[origin] = journal
        return self[origin]

    def pop(self, origin, *default):
        journal = super().pop(origin, *default)
        if isinstance(journal, Journal):
            self._usage -= journal.usage
        return journal

    def new_journal(self, origin: dns.name.Name) -> Journal:
        """An empty journal with the zone's bounds (not kept here)."""
        return Journal(self.max_usage_for.get(origin, self.max_usage), self.depth, self.load)

    def journal(self, origin: dns.name.Name) -> Journal:
        """The zone's journal, made (empty) on first use."""
        journal = self.get(origin)
        if journal is None:
            journal = self[origin] = self.new_journal(origin)
        return journal

    def add(self, origin: dns.name.Name, diff, size: int | None = None, key: bytes | None = None) -> list[bytes]:
        """Keep ``diff``, the difference to the zone's newly served version."""
        journal = self.journal(origin)
        before = journal.usage
        dropped = journal.add(diff, size, key)
        self._usage += journal.usage - before
        return dropped

    def set_limits(self, depth: int | None, max_usage: int, max_usage_for: dict, total_max: int | None) -> list[bytes]:
        """New bounds (a reload): applied to every journal at once."""
        self.depth, self.max_usage, self.max_usage_for, self.total_max = depth, max_usage, max_usage_for, total_max
        dropped = []
        for origin, journal in self.items():
            journal.depth, journal.max_usage = depth, max_usage_for.get(origin, max_usage)
            dropped += journal.trim()
        self._usage = sum(j.usage for j in self.values())
        return dropped + self.trim_total()

    def set_limit_for(self, origin: dns.name.Name, max_usage: int | None) -> None:
        """One zone's bound (a zone created or deleted at runtime; None: the
        default); the other journals are left as they are."""
        limits = dict(self.max_usage_for)
        limits.pop(origin, None)
        if max_usage is not None:
            limits[origin] = max_usage
        self.max_usage_for = limits
        journal = self.get(origin)
        if journal is not None:
            journal.max_usage = limits.get(origin, self.max_usage)

    @property
    def usage(self) -> int:
        return self._usage

    def trim_total(self) -> list[bytes]:
        """Within ``total_max``: the biggest histories lose their oldest first."""
        if self.total_max is None:
            return []
        total = self.usage
        if total <= self.total_max:
            return []
        dropped = []
        heap = [(-j.usage, n, j) for n, j in enumerate(self.values()) if len(j) > 1]
        heapq.heapify(heap)
        while total > self.total_max and heap:
            _, n, journal = heapq.heappop(heap)  # the history using the most now
            before = journal.usage
            key = journal.drop_oldest()
            total -= before - journal.usage
            if key is not None:
                dropped.append(key)
            if len(journal) > 1:
                heapq.heappush(heap, (-journal.usage, n, journal))
        self._usage = total
        return dropped


def _thread_runner(clock):
    """How state writes leave the reactor thread: a thread of their own
    (aliasd.base.committhread) on a reactor, a test clock's thread pool, or
    at once (a test clock without one, or none)."""
    if IReactorCore.providedBy(clock) and IReactorThreads.providedBy(clock):
        return CommitThread(clock)
    if clock is not None and hasattr(clock, "getThreadPool"):
        return lambda f, *args: threads.deferToThreadPool(clock, clock.getThreadPool(), f, *args)
    return defer.maybeDeferred
