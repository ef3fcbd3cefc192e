"""The authority: every served zone, as its current immutable version.

It turns zone files plus the resolver's target states into ZoneVersions:
for each ALIAS it follows the target, through aliasd's own zones when the
target lies in one, exactly as a query for it would be answered (ALIAS
chains, CNAME, DNAME and wildcards included; a loop serves no addresses),
and through the AliasResolver's upstream states otherwise (delegated names
included).

Work is proportional to what changed: the authority remembers which ALIAS
owners depend on which upstream target, so a change of one target re-follows
only its owners; the new version shares the file's packed records and
replaces just those owners' addresses. Each new version gets its serial here (aliasd.state), is
recorded in the state store before it is served, and its difference from the
previous version goes into the zone's journal (IXFR).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import gc
import hashlib
import time
from typing import Callable, Iterable

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from twisted.internet import defer, threads
from twisted.logger import Logger

from aliasd import store
from aliasd.journal import Journal, difference
from aliasd.resolution import AliasResolver, Status, TargetKey
from aliasd.state import MemoryStateStore, ZoneState, next_serial
from aliasd.zone import ADDRESS_TYPES, Flattened, ZoneBase, ZoneVersion
from aliasd.zonefile import ALIAS_RDTYPE, ZoneSource

log = Logger()
_MAX_DEPTH = 16
_HASH_MOD = 2**256


@dataclasses.dataclass(frozen=True)
class _Followed:
    """Where following one ALIAS target for one type ended."""

    kind: str  # "addresses", "none", "fallback", "loop"
    rdatas: tuple[dns.rdata.Rdata, ...] = ()
    ttl: int = 0


_FALLBACK = _Followed("fallback")
_NONE = _Followed("none")


@functools.lru_cache(maxsize=65536)
def _rdatas(rdtype: int, addresses: tuple[str, ...]) -> tuple[dns.rdata.Rdata, ...]:
    """Address texts as rdata, shared by every owner of the same target."""
    return tuple(dns.rdata.from_text(dns.rdataclass.IN, rdtype, a) for a in addresses)


class _NotLoaded:
    """Stands in ``zones_by_wire`` for a zone whose first version is not
    served yet, so that the negative fast path (aliasd.fastpath.missing_name)
    leaves its names to the full path, which answers SERVFAIL, instead of
    taking them for missing names of an enclosing zone."""

    base = ZoneBase(b"", {}, frozenset(), frozenset(), has_wildcards=True)


_NOT_LOADED = _NotLoaded()


class _Zone:
    """Book-keeping for one served zone between versions."""

    def __init__(self, source: ZoneSource):
        self.source = source
        self.base = ZoneBase.of(source)
        self.source_digest = source.digest
        self.flattened: dict[dns.name.Name, Flattened] = {}
        self.served: dict[dns.name.Name, str] = {}
        self.view_hash = 0  # sum of the owners' hashes: updated per owner
        # Changes not yet published as a version (serial-rate damping).
        self.pending: dict[dns.name.Name, Flattened] = {}
        self.tokens: float | None = None  # full burst until first used
        self.refilled_at = 0.0
        self.flush_call = None

    def snapshot(self) -> tuple:
        """What a failed commit restores (see ZoneAuthority._commit_failed)."""
        return dict(self.served), dict(self.flattened), self.view_hash, dict(self.pending)

    def restore(self, saved: tuple) -> None:
        served, flattened, self.view_hash, pending = saved
        self.served, self.flattened, self.pending = served, flattened, pending


@dataclasses.dataclass
class _Built:
    """A zone version built in the current batch, not yet recorded or served."""

    zone: _Zone
    published: ZoneVersion | None  # what the zone serves now
    version: ZoneVersion
    digest: str
    state_changed: bool  # its serial or digest must be recorded first
    why: str
    owners: set  # ALIAS owners rebuilt (the journal compares only these)
    saved: tuple  # the zone's book-keeping before this batch


class ZoneAuthority:
    """Holds the current version of each served zone and rebuilds them.

    ``on_new_serial`` is called with every version whose serial is new (and
    with each zone's first version): that is when secondaries are notified.

    Work is queued and done in batches. A change (of an upstream target, a
    reload) names the zones and ALIAS owners to follow again; they are
    rebuilt in slices of at most ``slice_seconds`` on the reactor, so a
    target shared by ten thousand zones never holds up queries for long.
    The new serials of a whole batch are recorded in the state directory
    with one write, in a thread; only then is the batch served, again in
    slices, and its NOTIFYs queued. A write that fails keeps every change
    of the batch queued and is retried with a growing delay: a change is
    published or retried, never dropped. Without a clock (unit tests,
    ``aliasd-check``) all of this runs at once.

    Serial-rate damping: each zone may publish ``serial_burst`` new versions
    at once, then one per ``serial_interval`` seconds; changes that arrive
    meanwhile are batched into the next version (one serial, one NOTIFY).
    A target that answers a different subset of a pool on every query thus
    moves the serial at most once per interval. Loads and reloads are never
    held back. ``serial_interval = 0`` turns damping off.
    """

    #: Seconds of reactor time one slice of rebuilding or publishing may take.
    slice_seconds = 0.01
    #: Zones built before their serials are recorded and served together.
    max_batch = 5000
    #: Per-zone log lines for batches up to this size; a summary beyond.
    log_each_up_to = 20
    retry_delays = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
    #: A batch of at least this many zones is moved out of the cyclic
    #: collector's sight once served (see _settle_long_lived).
    freeze_from = 1000

    def __init__(
        self,
        resolver: AliasResolver | None = None,
        state=None,
        journal_size: int = 100,
        on_new_serial: Callable[[ZoneVersion], None] = lambda version: None,
        clock=None,
        serial_interval: float = 0.0,
        serial_burst: int = 3,
        run_in_thread=None,
    ):
        self.resolver = resolver
        self.clock = clock
        self.serial_interval = serial_interval if clock is not None else 0.0
        self.serial_burst = max(1, serial_burst)
        self.state = state if state is not None else MemoryStateStore()
        self.journal_size = journal_size
        self.on_new_serial = on_new_serial
        self.run_in_thread = run_in_thread if run_in_thread is not None else _thread_runner(clock)
        self.sources: dict[dns.name.Name, ZoneSource] = {}
        # Mutated in place, on the reactor thread only: a query sees each
        # zone's old version or its new one, never a mix within a zone.
        self.versions: dict[dns.name.Name, ZoneVersion] = {}
        self.zones_by_wire: dict[bytes, ZoneVersion] = {}
        self.soa_suffixes: dict[bytes, frozenset] = {}
        self._soa_suffix_sets: dict[bytes, frozenset] = {}  # shared by zones with equal SOA names
        # Moves whenever the set of zones changes: answers cached for the old
        # set (aliasd.fastpath) are not reused even where versions match.
        self.generation = 0
        self.name_count = 0  # names in every served version (sizes the answer cache)
        self.journals: dict[dns.name.Name, Journal] = {}
        self._zones: dict[dns.name.Name, _Zone] = {}
        self._origin_of: dict[dns.name.Name, dns.name.Name | None] = {}
        self._digests: dict[dns.name.Name, str] = {}
        # Upstream target -> the (zone, owner) pairs that follow it, and back.
        self._dependents: dict[TargetKey, set[tuple[dns.name.Name, dns.name.Name]]] = {}
        self._targets_of: dict[tuple[dns.name.Name, dns.name.Name], set[TargetKey]] = {}
        # Served zone -> the (zone, owner) pairs whose ALIAS follows into it.
        self._users: dict[dns.name.Name, set[tuple[dns.name.Name, dns.name.Name]]] = {}
        self._used_by: dict[tuple[dns.name.Name, dns.name.Name], set[dns.name.Name]] = {}
        # The work queue: zone -> ALIAS owners to follow again (None: all of
        # a new source); ``_forced`` zones are not damped (loads, reloads).
        self._queue: dict[dns.name.Name, set | None] = {}
        self._forced: set[dns.name.Name] = set()
        # (zone, owner) pairs of changed targets, not yet in the queue.
        self._expand: collections.deque = collections.deque()
        self._batch: dict[dns.name.Name, _Built] = {}
        self._work_call = None
        self._committing = False
        self._failures = 0
        self._idle_waiters: list[defer.Deferred] = []
        self.batches = 0  # committed batches (statistics, tests)
        self.longest_slice = 0.0  # seconds: the longest reactor slice so far
        self._new_targets = False  # upstream targets found since the resolver was told
        self._targets_told = 0.0

    # -- which zone ------------------------------------------------------

    def zone_for(self, name: dns.name.Name) -> ZoneVersion | None:
        """The version of the closest enclosing served zone, or None (also
        when that zone is configured but not loaded yet: its parent must
        not answer for it meanwhile)."""
        versions, sources = self.versions, self.sources
        while True:
            version = versions.get(name)
            if version is not None:
                return version
            if name in sources or len(name) <= 1:
                return None
            name = name.parent()

    def is_loading(self, name: dns.name.Name) -> bool:
        """Is ``name`` in a zone that is configured but not served yet?"""
        while True:
            if name in self.sources:
                return name not in self.versions
            if len(name) <= 1:
                return False
            name = name.parent()

    def is_stale(self, origin: dns.name.Name, owner: dns.name.Name) -> bool:
        """Does this ALIAS owner serve addresses kept past an upstream failure?"""
        if self.resolver is None or not self.resolver.any_stale:
            return False
        for key in self._targets_of.get((origin, owner), ()):
            state = self.resolver.state(*key)
            if state is not None and state.status is Status.STALE:
                return True
        return False

    @property
    def busy(self) -> bool:
        """Is work queued, being built or being recorded?"""
        return bool(self._queue or self._expand or self._batch or self._committing)

    @property
    def waiting_for_state(self) -> bool:
        """Are changes held because the state directory refused a write?"""
        return bool(self._failures) and not self._committing

    def when_idle(self) -> defer.Deferred:
        """Fires once everything queued so far is served (or waits for a retry)."""
        if not self.busy:
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle_waiters.append(d)
        return d

    def _fire_idle(self) -> None:
        if self.busy and not self.waiting_for_state:
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for d in waiters:
            d.callback(None)

    # -- loading and rebuilding -----------------------------------------

    @staticmethod
    def prepare(sources: Iterable[ZoneSource]) -> dict:
        """The per-file work of loading (name index, digest), done once.

        Pure computation on the new files: a reload runs it in a thread so
        that queries go on being answered meanwhile.
        """
        return {source.origin: _Zone(source) for source in sources}

    def set_sources(self, sources: Iterable[ZoneSource], prepared: dict | None = None,
                    wait: bool = False) -> None:
        """Serve exactly these zone files (at start, and later on reload).

        Only what differs is touched: zones whose source object is the one
        served already keep their versions; removed zones stop at once;
        new and changed ones are queued with every ALIAS owner that follows
        into them. ``wait`` builds and publishes everything before returning
        (start-up, before the reactor runs).
        """
        sources = {source.origin: source for source in sources}
        prepared = prepared or {}
        removed = [o for o in self._zones if o not in sources]
        fresh = [o for o, s in sources.items() if o not in self._zones or self._zones[o].source is not s]
        added = [o for o in fresh if o not in self._zones]
        if removed or added:
            self.generation += 1
            self._origin_of = {}
        affected: dict[dns.name.Name, set] = {}
        for origin in removed + fresh:
            for owner_origin, owner in self._users.get(origin, ()):
                affected.setdefault(owner_origin, set()).add(owner)
        for origin in added:  # upstream targets that now lie in a served zone
            for key, dependents in self._dependents.items():
                if key[0].is_subdomain(origin):
                    for owner_origin, owner in dependents:
                        affected.setdefault(owner_origin, set()).add(owner)
        for origin in removed:
            zone = self._zones.pop(origin)
            if zone.flush_call is not None and zone.flush_call.active():
                zone.flush_call.cancel()
            for owner in zone.source.aliases:
                self._forget_edges((origin, owner))
            self._queue.pop(origin, None)
            self._batch.pop(origin, None)
            self.journals.pop(origin, None)
            self._digests.pop(origin, None)
            self._unpublish(origin)
        for origin in fresh:
            old = self._zones.get(origin)
            if old is not None:
                if old.flush_call is not None and old.flush_call.active():
                    old.flush_call.cancel()
                for owner in old.source.aliases:
                    self._forget_edges((origin, owner))
            self._zones[origin] = prepared.get(origin) or _Zone(sources[origin])
            self._queue[origin] = None
            self._forced.add(origin)
            self.zones_by_wire.setdefault(self._zones[origin].base.origin_key, _NOT_LOADED)
        self.sources = sources
        for origin, owners in affected.items():
            if origin in self._zones:
                self._enqueue(origin, owners, forced=True)
        if removed and self.resolver is not None:
            self.resolver.set_targets(self._dependents)
        if wait:
            self.run_now()
        else:
            self._kick()

    def rebuild(self, changed: Iterable[TargetKey] | None = None) -> None:
        """Follow again the ALIAS owners of the upstream targets in ``changed``
        (None: every owner of every zone), then publish what changed."""
        if changed is None:
            for origin, zone in self._zones.items():
                self._enqueue(origin, set(zone.source.aliases), forced=True)
        else:
            for key in changed:  # expanded into the queue in slices (_build_some)
                self._expand.extend(self._dependents.get(key, ()))
        self._kick()

    def run_now(self) -> None:
        """Build, record and publish everything queued, before returning
        (a failed state write leaves the work queued for a retry)."""
        failures = self._failures
        while (self._queue or self._expand or self._batch) and self._failures == failures:
            self._build_some(deadline=None)
            self._commit(in_thread=False)

    def _enqueue(self, origin: dns.name.Name, owners, forced: bool) -> None:
        queued = self._queue.get(origin, ())
        if queued is None:
            pass  # the whole zone is queued already
        elif queued == ():
            self._queue[origin] = set(owners)
        else:
            queued.update(owners)
        if forced:
            self._forced.add(origin)

    def _kick(self, delay: float = 0) -> None:
        if self.clock is None:
            self.run_now()
            return
        if self._committing or (self._work_call is not None and self._work_call.active()):
            return
        if self._queue or self._expand or self._batch:
            self._work_call = self.clock.callLater(delay, self._work)

    def _work(self) -> None:
        """One slice of building; commits when the queue is empty or the batch full."""
        self._work_call = None
        started = time.perf_counter()
        self._build_some(deadline=started + self.slice_seconds)
        self._note_slice(started)
        if (self._queue or self._expand) and len(self._batch) < self.max_batch:
            self._kick()
        elif self._batch:
            self._commit(in_thread=True)
        else:
            self._fire_idle()

    def _note_slice(self, started: float) -> None:
        self.longest_slice = max(self.longest_slice, time.perf_counter() - started)

    def _build_some(self, deadline: float | None) -> None:
        expand = self._expand
        while expand:
            for _ in range(min(len(expand), 500)):
                origin, owner = expand.popleft()
                self._enqueue(origin, (owner,), forced=False)
            if deadline is not None and time.perf_counter() >= deadline:
                return
        while self._queue and (deadline is None or time.perf_counter() < deadline):
            if deadline is not None and len(self._batch) >= self.max_batch:
                return
            origin = next(iter(self._queue))
            owners = self._queue.pop(origin)
            forced = origin in self._forced
            self._forced.discard(origin)
            zone = self._zones.get(origin)
            if zone is not None:
                self._build(origin, zone, owners, forced)
        if self.resolver is not None and (not self._queue or self._new_targets):
            # Told as soon as found (at most five times a second), not only
            # when the queue is empty: while thousands of zones load, their
            # shared targets are asked early, and zones built after the
            # answers come get the addresses in their first version.
            now = time.monotonic()
            if not self._queue or now - self._targets_told >= 0.2:
                self.resolver.set_targets(self._dependents)
                self._new_targets = False
                self._targets_told = now

    def _build(self, origin: dns.name.Name, zone: _Zone, owners: set | None, forced: bool) -> None:
        """Follow ``owners`` again (None: all) and add the zone's next version to the batch."""
        entry = self._batch.get(origin)
        saved = entry.saved if entry is not None else zone.snapshot()
        current = entry.version if entry is not None else self.versions.get(origin)
        new_source = current is None or current.source is not zone.source
        if owners is None:
            owners = set(zone.source.aliases)
        zone.pending.update(self._reflatten(zone, owners))
        if not new_source and not zone.pending:
            return
        if current is not None and not new_source and not forced and not self._take_token(zone):
            self._flush_later(zone)
            return
        updates, zone.pending = zone.pending, {}
        if zone.flush_call is not None and zone.flush_call.active():
            zone.flush_call.cancel()
        zone.flush_call = None
        published = entry.published if entry is not None else self.versions.get(origin)
        version, digest, state_changed, why = self._next_version(zone, updates, current)
        if entry is not None:
            why = entry.why if entry.published is None else why
            state_changed = state_changed or entry.state_changed
            owners_done = entry.owners | set(updates)
        else:
            owners_done = set(updates)
        self._batch[origin] = _Built(zone, published, version, digest, state_changed, why, owners_done, saved)

    def _next_version(self, zone: _Zone, updates, current: ZoneVersion | None):
        """Build and number the version after ``current`` (not recorded yet)."""
        source = zone.source
        origin = source.origin
        digest = hashlib.sha256(f"{zone.source_digest}:{zone.view_hash:x}".encode()).hexdigest()
        if current is None:
            previous = self.state.load_zones().get(origin)
        else:
            previous = ZoneState(current.serial, self._batch[origin].digest if origin in self._batch
                                 else self._digests.get(origin, ""))
        changed = previous is None or previous.digest != digest
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

    # -- recording and publishing ------------------------------------------

    def _commit(self, in_thread: bool) -> None:
        """Record the batch's serials (one write), then serve the batch."""
        batch, self._batch = self._batch, {}
        if not batch:
            return
        states = {o: ZoneState(b.version.serial, b.digest) for o, b in batch.items() if b.state_changed}
        if not in_thread:
            try:
                self.state.save_zones(states)
            except OSError as e:
                self._commit_failed(batch, e)
                return
            self._publish(list(batch.values()), deadline=False, reasons=collections.Counter())
            return
        self._committing = True
        d = self.run_in_thread(self.state.save_zones, states)
        d.addCallbacks(
            lambda _: self._publish(list(batch.values()), deadline=True, reasons=collections.Counter()),
            lambda failure: self._commit_failed(batch, failure.value),
        )
        d.addErrback(lambda failure: log.failure("publishing zone versions", failure))

    def _commit_failed(self, batch: dict, error: Exception) -> None:
        """Keep every change of a batch whose serials could not be recorded."""
        self._committing = False
        delay = self.retry_delays[min(self._failures, len(self.retry_delays) - 1)]
        self._failures += 1
        for origin, built in batch.items():
            if self._zones.get(origin) is not built.zone:
                continue  # removed or replaced by a reload meanwhile
            built.zone.restore(built.saved)
            if built.published is None or built.published.source is not built.zone.source:
                self._queue[origin] = None
            else:
                self._enqueue(origin, set(built.owners) | set(built.zone.pending), forced=True)
            self._forced.add(origin)
        log.error(
            "cannot record the serials of {count} zone(s) in the state directory: {error}; "
            "nothing of them is served yet, retrying in {delay:.0f}s",
            count=len(batch), error=str(error), delay=delay,
        )
        if self.clock is not None:
            self._kick(delay)
        self._fire_idle()  # whoever waits learns of the failure from the log, not by hanging

    def _publish(self, entries: list[_Built], deadline: bool, reasons: collections.Counter) -> None:
        """Serve recorded versions (in slices on the reactor), then notify."""
        started = time.perf_counter()
        announced = []
        log_each = len(entries) + sum(reasons.values()) <= self.log_each_up_to
        while entries:
            built = entries.pop()
            origin = built.version.origin
            if self._zones.get(origin) is not built.zone:
                continue  # removed or replaced by a reload while recording
            old = self.versions.get(origin)
            self._digests[origin] = built.digest
            if old is not None and old.serial != built.version.serial:
                same = old.source is built.version.source
                journal = self.journals.get(origin)
                if journal is None:  # made on first use: most zones never change
                    journal = self.journals[origin] = Journal(self.journal_size)
                journal.add(difference(old, built.version, built.owners if same else None))
            self.serve(built.version)
            if old is None or old.serial != built.version.serial:
                announced.append(built.version)
            reasons[built.why.split(" ", 1)[1] if built.why[0].isdigit() else built.why] += 1
            if log_each:
                self._log_version(built)
            if deadline and time.perf_counter() - started > self.slice_seconds and entries:
                break
        if deadline:
            self._note_slice(started)  # (start-up runs before any query)
        for version in announced:
            self.on_new_serial(version)
        if entries:
            self.clock.callLater(0, self._publish, entries, True, reasons)
            return
        if not log_each:
            log.info(
                "{count} zones published ({reasons})",
                count=sum(reasons.values()),
                reasons=", ".join(f"{n} {why}" for why, n in reasons.most_common()),
            )
        self._committing = False
        self._failures = 0
        self.batches += 1
        if sum(reasons.values()) >= self.freeze_from:
            _settle_long_lived()
        if deadline:
            self._kick()
        self._fire_idle()

    def _log_version(self, built: _Built) -> None:
        source = built.zone.source
        log.info(
            "zone {zone} serial {serial} ({why}), {records} records, {aliases} ALIAS",
            zone=source.origin.to_text(),
            serial=built.version.serial,
            why=built.why,
            records=source.record_count(),
            aliases=len(source.aliases),
        )

    def serve(self, version: ZoneVersion) -> None:
        """Serve ``version`` for its zone from now on (already recorded)."""
        origin = version.origin
        old = self.versions.get(origin)
        if old is not None:
            old.superseded = True  # answers cached from it are not reused
        self.versions[origin] = version
        self.name_count += version.name_count - (old.name_count if old is not None else 0)
        wire = version.source.key
        self.zones_by_wire[wire] = version
        names = version.source.soa_wire[1][:-20].lower()  # MNAME and RNAME
        if old is None or old.source.soa_wire[1][:-20].lower() != names:
            suffixes = self._soa_suffix_sets.get(names)
            if suffixes is None:
                split = store.name_end(names)
                suffixes = frozenset(
                    suffix for name in (names[:split], names[split:])
                    for suffix in store.suffixes(name) if suffix != b"\0"
                )
                self._soa_suffix_sets[names] = suffixes
            self.soa_suffixes[wire] = suffixes

    def _unpublish(self, origin: dns.name.Name) -> None:
        old = self.versions.pop(origin, None)
        if old is not None:
            old.superseded = True
            self.name_count -= old.name_count
        wire = store.key_of(origin)
        self.zones_by_wire.pop(wire, None)
        self.soa_suffixes.pop(wire, None)

    # -- serial-rate damping ------------------------------------------------

    def _take_token(self, zone: _Zone) -> bool:
        """May this zone publish a new version now? (token bucket)"""
        if not self.serial_interval:
            return True
        now = self.clock.seconds()
        if zone.tokens is None:
            zone.tokens, zone.refilled_at = float(self.serial_burst), now
        zone.tokens = min(
            float(self.serial_burst), zone.tokens + (now - zone.refilled_at) / self.serial_interval
        )
        zone.refilled_at = now
        if zone.tokens >= 1.0 - 1e-9:  # float dust must not stall a flush
            zone.tokens = max(0.0, zone.tokens - 1.0)
            return True
        return False

    def _flush_later(self, zone: _Zone) -> None:
        if zone.flush_call is not None and zone.flush_call.active():
            return
        delay = max(0.001, (1.0 - zone.tokens) * self.serial_interval)
        zone.flush_call = self.clock.callLater(delay, self._flush, zone.source.origin)
        log.info(
            "zone {zone}: ALIAS changes held back for {delay:.0f}s (serial-interval)",
            zone=zone.source.origin.to_text(),
            delay=delay,
        )

    def _flush(self, origin: dns.name.Name) -> None:
        """Queue the changes held back for ``origin`` as one version."""
        zone = self._zones.get(origin)
        if zone is None:
            return
        zone.flush_call = None
        if zone.pending:
            self._enqueue(origin, set(), forced=False)
            self._kick()

    def _reflatten(self, zone: _Zone, owners: set[dns.name.Name]) -> dict[dns.name.Name, Flattened]:
        """Follow ``owners`` again; return those whose served records changed."""
        updates = {}
        loops = []
        for owner in owners:
            if owner not in zone.source.aliases:
                continue  # gone with a reload
            self._forget_edges((zone.source.origin, owner))
            flattened = self._flatten(zone.source, owner)
            served = _served(zone.source, owner, flattened)
            previous = zone.served.get(owner)
            if previous == served and owner in zone.flattened:
                continue
            if previous is not None:
                zone.view_hash -= _owner_hash(owner, previous)
            zone.view_hash = (zone.view_hash + _owner_hash(owner, served)) % _HASH_MOD
            zone.served[owner] = served
            zone.flattened[owner] = flattened
            updates[owner] = flattened
            if flattened.loop:
                loops.append(owner.to_text())
        if loops:
            log.warn(
                "ALIAS loop in zone {zone}: {owners} serve no addresses",
                zone=zone.source.origin.to_text(),
                owners=", ".join(sorted(loops)),
            )
        return updates

    # -- following ALIAS targets ----------------------------------------

    def _source_for(self, name: dns.name.Name) -> ZoneSource | None:
        """The served zone file that ``name`` falls in (the zone cached
        until the set of zones changes)."""
        try:
            origin = self._origin_of[name]
        except KeyError:
            origin, walk = None, name
            while True:
                if walk in self.sources:
                    origin = walk
                    break
                if len(walk) <= 1:
                    break
                walk = walk.parent()
            self._origin_of[name] = origin
        return self.sources.get(origin) if origin is not None else None

    def _forget_edges(self, dependent: tuple[dns.name.Name, dns.name.Name]) -> None:
        """Drop what one ALIAS owner followed, before it is followed again."""
        for key in self._targets_of.pop(dependent, ()):
            _unlink(self._dependents, key, dependent)
        for origin in self._used_by.pop(dependent, ()):
            _unlink(self._users, origin, dependent)

    def _flatten(self, source: ZoneSource, owner: dns.name.Name) -> Flattened:
        alias = source.aliases[owner]
        rrsets: dict[int, dns.rrset.RRset | None] = {}
        loop = False
        for rdtype in ADDRESS_TYPES:
            followed = self._follow(alias.target, rdtype, {owner}, (source.origin, owner))
            if followed.kind == "loop":
                loop = True
                rrsets[rdtype] = None
            elif followed.kind == "none":
                rrsets[rdtype] = None
            elif followed.kind == "addresses":
                rrsets[rdtype] = dns.rrset.from_rdata_list(
                    owner, min(alias.ttl, followed.ttl), followed.rdatas
                )
        return Flattened(rrsets, loop=loop)

    def _follow(
        self,
        target: dns.name.Name,
        rdtype: int,
        visiting: set[dns.name.Name],
        dependent: tuple[dns.name.Name, dns.name.Name],
    ) -> _Followed:
        """Follow ``target`` to its addresses of type ``rdtype``.

        A target in a zone served here resolves exactly as a query for it
        would be answered (wildcards, CNAME and DNAME included, ALIAS
        followed in turn); one at or below a delegation, or outside every
        served zone, is resolved through the upstreams.
        """
        if target in visiting or len(visiting) > _MAX_DEPTH:
            return _Followed("loop")
        source = self._source_for(target)
        found = ("delegated", None)
        if source is not None:
            found = self._zones[source.origin].base.find(target, source.origin)
        if found[0] == "delegated":
            dependents = self._dependents.get((target, rdtype))
            if dependents is None:
                dependents = self._dependents[(target, rdtype)] = set()
                self._new_targets = True
            dependents.add(dependent)
            self._targets_of.setdefault(dependent, set()).add((target, rdtype))
            state = self.resolver.state(target, rdtype) if self.resolver else None
            if state is None or state.uses_fallback:
                return _FALLBACK
            if state.status == Status.NO_ADDRESSES:
                return _NONE
            return _Followed("addresses", _rdatas(rdtype, state.addresses), state.ttl)
        self._users.setdefault(source.origin, set()).add(dependent)
        self._used_by.setdefault(dependent, set()).add(source.origin)
        kind, found = found
        if kind == "none":
            return _NONE
        if kind == "dname":
            new_target, ttl = found
            return _shorter(self._follow(new_target, rdtype, visiting | {target}, dependent), ttl)
        node = found
        alias = node.get(ALIAS_RDTYPE)
        if alias is not None:
            inner = self._follow(alias[0].target, rdtype, visiting | {target}, dependent)
            if inner.kind == "fallback":
                inner = _static(node, rdtype)
            return _shorter(inner, alias.ttl)
        cname = node.get(dns.rdatatype.CNAME)
        if cname is not None:
            return _shorter(self._follow(cname[0].target, rdtype, visiting | {target}, dependent), cname.ttl)
        return _static(node, rdtype)


def _static(node, rdtype: int) -> _Followed:
    """The addresses written in a zone file at a followed name."""
    rrset = node.get(rdtype)
    if rrset is None:
        return _NONE
    return _Followed("addresses", tuple(rrset), rrset.ttl)


def _shorter(followed: _Followed, ttl: int) -> _Followed:
    """Addresses found through a record of TTL ``ttl`` live no longer than it."""
    if followed.kind == "addresses":
        return _Followed("addresses", followed.rdatas, min(ttl, followed.ttl))
    return followed


def _settle_long_lived() -> None:
    """Keep the cyclic garbage collector from walking the zone versions
    just served, again and again: a full collection over ten thousand
    versions holds the reactor for 0.1-0.3 s. Young garbage is collected
    first (cheap), so what is frozen is what lives; zone data holds no
    reference cycles, and the versions it replaces are freed by reference
    counting, frozen or not."""
    gc.collect(1)
    gc.freeze()


def _unlink(index: dict, key, item) -> None:
    """Remove ``item`` from the set ``index[key]``, and the key once empty."""
    members = index.get(key)
    if members is not None:
        members.discard(item)
        if not members:
            del index[key]


def _thread_runner(clock):
    """How state writes leave the reactor thread: the reactor's thread pool,
    or at once (a test clock, or none)."""
    if clock is not None and hasattr(clock, "getThreadPool"):
        return lambda f, *args: threads.deferToThreadPool(clock, clock.getThreadPool(), f, *args)
    return defer.maybeDeferred


def _served(source: ZoneSource, owner: dns.name.Name, outcome: Flattened) -> str:
    """What an ALIAS owner serves, as text: equal views compare equal.

    A type left to the file's fallback counts as the fallback records, so
    "no addresses yet" and "no addresses" are the same view when the file
    has none; addresses compare as sorted text with their TTL, so a change
    of order is no change. Text, not a tuple: one object per owner that
    the cyclic garbage collector need not walk (its form is part of the
    view digest kept in the state directory: keep it).
    """

    def one(rdtype):
        if rdtype in outcome.rrsets:
            rrset = outcome.rrsets[rdtype]
        else:
            rrset = source.rrsets.get((owner, rdtype))
        if rrset is None:
            return None
        return (rrset.ttl, tuple(sorted(r.to_text() for r in rrset)))

    return repr((outcome.loop, tuple(one(t) for t in ADDRESS_TYPES)))


def _owner_hash(owner: dns.name.Name, served: str) -> int:
    """One owner's share of the zone's view hash (they are summed)."""
    text = f"{owner.to_text().lower()}|{served}".encode()
    return int.from_bytes(hashlib.sha256(text).digest(), "big")
