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
replaces just those owners' addresses. Each new version gets its serial
(aliasd.base.state), is recorded in the state store before it is served, and its
difference from the previous version goes into the zone's journal (IXFR).

Why this module: it is the coordinator. Each concern is a unit of its own,
and ZoneAuthority drives them from one work queue, in slices and batches:

- aliasd.zones.registry: the served versions and the fast-path indexes (what
  queries read), and the closest-enclosing-zone search;
- aliasd.resolve.dependencies: following ALIAS targets, and the graph of which
  owner followed which target or zone;
- aliasd.resolve.damping: the serial-rate token bucket of each zone;
- aliasd.replicate.numbering: serials, their record in the state store (with retries),
  and the journals.
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import itertools
import time
import types
from typing import Callable, Iterable, Mapping

import dns.name
from twisted.internet import defer
from twisted.logger import Logger

from aliasd.base import store
from aliasd.base.state import ZoneState
from aliasd.dnssec.signer import KeyEvents
from aliasd.replicate import journaldb
from aliasd.replicate.journal import difference
from aliasd.replicate.numbering import Journals, Numbering
from aliasd.resolve.damping import SerialDamper
from aliasd.resolve.dependencies import AliasGraph
from aliasd.resolve.resolution import AliasResolver, Status, TargetKey
from aliasd.zones.registry import ZoneRegistry
from aliasd.zones.zone import Flattened, ZoneBase, ZoneVersion
from aliasd.zones.zonefile import ZoneSource

log = Logger()

#: No owner touched since the served version: one empty set shared by every zone.
_NO_OWNERS: frozenset = frozenset()
#: No changes waiting to be published: one empty mapping shared by every zone.
_NO_CHANGES: Mapping = types.MappingProxyType({})


class _Zone:
    """Book-keeping for one served zone between versions (slots: one per
    zone, ten thousand of them)."""

    __slots__ = ("source", "seq", "frames", "touched", "signing_state", "base", "source_digest",
                 "flattened", "served", "view_hash", "pending", "reason")

    _numbers = itertools.count(1)

    def __init__(self, source: ZoneSource, base: ZoneBase | None = None):
        self.source = source
        # Increases with every new source of any zone: an UPDATE is
        # answered once a version of its source, or of a later one, is served.
        self.seq = next(self._numbers)
        # Journal frames that must be on disk before this source is served
        # (dynamic updates, adopted files): written with the next commit.
        self.frames: list[bytes] = []
        # Owners changed by updates since the served version (None: a new
        # file, compare everything): what the next difference compares.
        self.touched: set | None = None
        # What the zone's signatures depend on besides its records (keys,
        # denial, epoch; empty when unsigned): part of the view's digest.
        self.signing_state = ""
        self.base = base if base is not None else ZoneBase.of(source)
        self.source_digest = source.digest
        self.flattened: dict[dns.name.Name, Flattened] = {}
        self.served: dict[dns.name.Name, str] = {}
        self.view_hash = 0  # sum of the owners' hashes: updated per owner
        # Changes not yet published as a version (serial-rate damping):
        # the one shared empty mapping while there are none (``add_pending``).
        self.pending: Mapping[dns.name.Name, Flattened] = _NO_CHANGES
        # Why its source changed, for the log (None: a dynamic update, which logs its own line).
        self.reason: str | None = None

    def snapshot(self) -> tuple:
        """What a failed commit restores (see ZoneAuthority._commit_failed)."""
        return dict(self.served), dict(self.flattened), self.view_hash, dict(self.pending)

    def add_pending(self, changes: Mapping[dns.name.Name, Flattened]) -> None:
        """Owners re-flattened, to publish with the next version."""
        if self.pending is _NO_CHANGES:
            if changes:
                self.pending = dict(changes)
        else:
            self.pending.update(changes)

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
    frames: list  # journal frames to write durably before serving it
    touched: set | None  # owners changed by updates (None: the whole view may differ)
    signed_at: float | None = None  # the moment its signing state is of: signed as of then
    difference: object = None  # from the served version (aliasd.replicate.journal), for IXFR
    difference_frame: tuple | None = None  # the same, as a journal record
    difference_key: bytes | None = None  # that record's key in the state store, once written
    history: object = None  # the IXFR history on disk, for a zone's first version


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
    #: Per-zone log lines for batches up to this size; beyond, one line
    #: naming this many zones with their serials and counting the rest.
    log_each_up_to = 10
    #: Once this many zone versions have been served since the last time,
    #: they are moved out of the cyclic collector's sight (see
    #: _settle_long_lived), counted across batches (signed zones come in
    #: batches of a few hundred) ...
    freeze_from = 1000
    #: ... or versions holding this many owners (a big signed zone's first
    #: versions: a full collection over them took 0.4 s).
    freeze_owners_from = 50000
    #: A signed zone with at least this many owners is built, signed and
    #: recorded in a batch of its own, after the others: signing it takes
    #: seconds, and no other zone should wait for that.
    heavy_from = 20000
    #: A batch ends once its signed zones hold this many owners to sign
    #: (about a second of signing).
    signing_batch_owners = 5000
    #: ALIAS owners of one zone followed again in one slice of work.
    reflatten_slice = 100

    def __init__(
        self,
        resolver: AliasResolver | None = None,
        state=None,
        journal_size: int | None = None,
        on_new_serial: Callable[[ZoneVersion], None] = lambda version: None,
        clock=None,
        serial_interval: float = 0.0,
        serial_burst: int = 3,
        run_in_thread=None,
        journal_files: journaldb.JournalStore | None = None,
        snapshot_frames: Callable[[ZoneSource], list[bytes]] = lambda source: [],
        signers: dict | None = None,
    ):
        self.resolver = resolver
        # Where differences (IXFR across restarts) and updates are kept;
        # None: in memory only (unit tests, aliasd-check).
        self.journal_files = journal_files
        # A dynamic zone's source as frames, for a compacted journal (aliasd.update.dynamic).
        self.snapshot_frames = snapshot_frames
        # Zone -> its aliasd.dnssec.signer.Signer, for the zones that are signed.
        self.signers: dict[dns.name.Name, object] = signers if signers is not None else {}
        # Zone -> [(source seq, Deferred)]: updates waiting to be served.
        self._waiters: dict[dns.name.Name, list] = {}
        # Zone -> its newest source, whose records only the update path has
        # seen (records_private); forgotten once anything else may read them.
        self._private: dict[dns.name.Name, ZoneSource] = {}
        self.clock = clock
        self.on_new_serial = on_new_serial
        # Fires once every process answering queries serves what the
        # registry holds now (aliasd.service.workers); what announces a
        # version (NOTIFY, an update's answer) waits for it.
        self.synced: Callable[[], defer.Deferred] = lambda: defer.succeed(None)
        self.registry = ZoneRegistry()
        # The registry's own dicts (it never replaces them): what queries read.
        self.versions: dict[dns.name.Name, ZoneVersion] = self.registry.versions
        self.zones_by_wire: dict[bytes, ZoneVersion] = self.registry.zones_by_wire
        self.soa_suffixes: dict[bytes, frozenset] = self.registry.soa_suffixes
        self.journals = Journals(journal_size, load=self._load_difference)
        # Record keys of differences pushed out of the histories: deleted
        # from the store with the next batch's transaction.
        self._unused_records: list[bytes] = []
        # Zone -> record keys of differences recorded for versions that were
        # never served (replaced by an update or a reload while they were
        # being recorded): deleted once the zone serves a later version,
        # whose serial then stands in the store instead of theirs.
        self._orphans: dict[dns.name.Name, list[bytes]] = {}
        # Zone -> the source seq of its version being recorded now (updates up to it are in the store soon).
        self._recording: dict[dns.name.Name, int] = {}
        self.numbering = Numbering(state, clock, run_in_thread)
        self._zones: dict[dns.name.Name, _Zone] = {}
        self.graph = AliasGraph(resolver, self._zones, self.registry.origin_of, lambda origin: origin in self.signers)
        self.damping = SerialDamper(clock, serial_interval, serial_burst, self._flush)
        # Signed zones are signed again when their keys' timing says (none without a clock).
        self.key_events = KeyEvents(clock, self.resign) if clock is not None else None
        if self.key_events is not None:
            self.key_events.track(self.signers)
        # The work queue: zone -> ALIAS owners to follow again (None: all of
        # a new source); ``_forced`` zones are not damped (loads, reloads).
        # Ordered by a linked list: the oldest is taken from the front, and
        # a plain dict finds its first key past every slot popped before it
        # (quadratic: 40 ms of slices at 10,000 zones, 125 ms at 20,000).
        self._queue: collections.OrderedDict[dns.name.Name, set | None] = collections.OrderedDict()
        self._forced: set[dns.name.Name] = set()
        # (zone, owner) pairs of changed targets, not yet in the queue.
        self._expand: collections.deque = collections.deque()
        self._batch: dict[dns.name.Name, _Built] = {}
        self._work_call = None
        # Versions served and synced, to be told to on_new_serial in order (_announce).
        self._announcing: collections.deque = collections.deque()
        self._announce_call = None
        self._committing = False
        self._commit_now = False  # a heavy signed zone ends the batch (heavy_from)
        self._signing_owners = 0  # owners of signed zones to sign in this batch
        # Zones (and their owners) published since the collector last froze them.
        self._unfrozen_zones = 0
        self._published_owners = 0

        self._idle_waiters: list[defer.Deferred] = []
        self.batches = 0  # committed batches (statistics, tests)
        self.longest_slice = 0.0  # seconds: the longest reactor slice so far

    # -- the units' settings and state, under their old names ---------------

    @property
    def sources(self) -> dict[dns.name.Name, ZoneSource]:
        """The newest source of each zone. Whoever reads them may keep them
        (a file written in a thread, a reload, the API), so from now on no
        update changes their records in place (``records_private``); the
        update path reads ``registry.sources`` instead."""
        self._private.clear()
        return self.registry.sources

    def records_private(self, origin: dns.name.Name, source: ZoneSource) -> bool:
        """May the next update change ``source.records`` in place? Only for
        the newest source of a zone made by an update (its own copy of the
        records) that nothing else has read since: not built into a version,
        not handed out through ``sources``."""
        return self._private.get(origin) is source

    @property
    def held(self) -> frozenset[dns.name.Name]:
        """Configured zones with nothing to serve: SERVFAIL (aliasd.zones.registry.hold)."""
        return self.registry.held

    @property
    def generation(self) -> int:
        return self.registry.generation

    @property
    def name_count(self) -> int:
        return self.registry.name_count

    @property
    def state(self):
        return self.numbering.state

    @property
    def run_in_thread(self):
        return self.numbering.run_in_thread

    @property
    def retry_delays(self) -> tuple:
        return self.numbering.retry_delays

    @retry_delays.setter
    def retry_delays(self, delays: tuple) -> None:
        self.numbering.retry_delays = delays

    @property
    def serial_interval(self) -> float:
        return self.damping.interval

    @serial_interval.setter
    def serial_interval(self, interval: float) -> None:
        self.damping.interval = interval if self.clock is not None else 0.0

    @property
    def serial_burst(self) -> int:
        return self.damping.burst

    @serial_burst.setter
    def serial_burst(self, burst: int) -> None:
        self.damping.burst = max(1, burst)

    def set_journal_limits(self, depth: int | None, max_usage: int, max_usage_for: dict,
                           total_max: int | None) -> None:
        """The IXFR histories' bounds (at start and at every reload)."""
        self._unused_records += self.journals.set_limits(depth, max_usage, max_usage_for, total_max)

    def _load_difference(self, record_key: bytes):
        """A difference recorded in the state store (an IXFR from an older serial)."""
        return journaldb.decode_difference(self.journal_files.get(record_key))[0]

    # -- which zone ------------------------------------------------------

    def zone_for(self, name: dns.name.Name) -> ZoneVersion | None:
        """The version of the closest enclosing served zone, or None (also
        when that zone is configured but not loaded yet: its parent must
        not answer for it meanwhile)."""
        return self.registry.zone_for(name)

    def is_loading(self, name: dns.name.Name) -> bool:
        """Is ``name`` in a zone that is configured but not served yet?"""
        return self.registry.is_loading(name)

    def is_stale(self, origin: dns.name.Name, owner: dns.name.Name) -> bool:
        """Does this ALIAS owner serve addresses kept past an upstream failure?"""
        if self.resolver is None or not self.resolver.any_stale:
            return False
        for key in self.graph.targets_of.get((origin, owner), ()):
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
        return bool(self.numbering.failures) and not self._committing

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
                    wait: bool = False, frames: dict | None = None, continued=(), held=()) -> None:
        """Serve exactly these zone files (at start, and later on reload).

        Only what differs is touched: zones whose source object is the one
        served already keep their versions; removed zones stop at once;
        new and changed ones are queued with every ALIAS owner that follows
        into them. ``frames``: journal records to write with a zone's new
        version (a dynamic zone's snapshot). A zone in ``continued`` gets a
        source built on its newest one (a hand edit merged into a dynamic
        zone): its updates not yet recorded are recorded first and answered
        once the new version is served. ``wait`` builds and publishes
        everything before returning (start-up, before the reactor runs).
        ``held``: configured zones with nothing to serve (a broken file, no
        last good data), answered SERVFAIL (aliasd.zones.registry.hold).
        """
        sources = {source.origin: source for source in sources}
        zones = self._zones
        removed = [o for o in zones if o not in sources]
        fresh = [o for o, s in sources.items() if o not in zones or zones[o].source is not s]
        self._change(sources, removed, fresh, prepared or {}, frames or {}, continued, held, wait)

    def add_sources(self, sources: Iterable[ZoneSource], prepared: dict | None = None,
                    frames: dict | None = None, continued=()) -> None:
        """Serve these zones (new ones, or new sources of served ones) beside
        the others, as set_sources would with them added: a zone created at
        runtime, or one file reloaded, costs what it holds, not a pass over
        every served zone. They are no longer held (their file mended)."""
        sources = list(sources)
        zones = self._zones
        configured = dict(self.registry.sources)  # (a copy keeps the names' hashes; replaced whole)
        for source in sources:
            configured[source.origin] = source
        fresh = [s.origin for s in sources if s.origin not in zones or zones[s.origin].source is not s]
        held = self.registry.held
        held = held - {s.origin for s in sources} if held else held
        self._change(configured, [], fresh, prepared or {}, frames or {}, continued, held, False)

    def remove_sources(self, origins: Iterable[dns.name.Name]) -> None:
        """Stop serving these zones, the others as they are (as set_sources
        without them, for what they cost: zones deleted at runtime)."""
        configured = dict(self.registry.sources)
        removed = [o for o in origins if o in self._zones]
        for origin in removed:
            configured.pop(origin, None)
        self._change(configured, removed, [], {}, {}, (), self.registry.held, False)

    def _change(self, sources: dict, removed: list, fresh: list, prepared: dict, frames: dict, continued,
                held, wait: bool) -> None:
        """Serve ``sources`` (origin -> source), of which ``removed`` are gone
        and ``fresh`` new or changed: the work of set_sources once it knows
        what differs."""
        self._private.clear()  # a reload or the API may hand these sources on
        zones, registry, graph = self._zones, self.registry, self.graph
        added = [o for o in fresh if o not in zones]
        affected = graph.affected_by(removed + fresh, added)
        for origin in removed:
            zone = zones.pop(origin)
            self.damping.forget(origin)
            graph.forget_zone(origin, zone.source)
            self._queue.pop(origin, None)
            self._batch.pop(origin, None)
            self.journals.pop(origin, None)
            self._orphans.pop(origin, None)  # (off the chain: deleted when it is loaded again)
            self.numbering.digests.pop(origin, None)
            registry.unpublish(origin)
            # Updates being recorded now are kept with the zone's state and
            # answered once recorded (_publish); those not yet handed to the
            # store never will be.
            self._fail_waiters(origin, "the zone is no longer served", after=self._recording.get(origin))
            log.info("zone {zone} is no longer served; its state (serial, journal, updates) is kept "
                     "and comes back with it if it is added again", zone=origin.to_text())
        for origin in fresh:
            old = zones.get(origin)
            if old is not None:
                self.damping.forget(origin)
                graph.forget_zone(origin, old.source)
            ready = prepared.get(origin)
            zone = zones[origin] = ready if ready is not None and ready.source is sources[origin] else _Zone(sources[origin])
            if old is not None and origin in continued:
                zone.frames = old.frames + zone.frames  # its updates first, then what builds on them
                old.frames = []
            elif old is not None:
                self._fail_waiters(origin, "the zone's file was reloaded")
            zone.frames += frames.get(origin, [])
            self._queue[origin] = None
            self._forced.add(origin)
            registry.expect(zone.base.origin_key)
        for origin in [o for o in self._queue if self.is_heavy(o)]:
            self._queue[origin] = self._queue.pop(origin)  # signed last, alone
        registry.configure(sources, zone_set_changed=bool(removed or added))
        registry.hold(held)
        for origin, owners in affected.items():
            if origin in zones:
                self._enqueue(origin, owners, forced=True)
        if removed:
            graph.update_resolver()
        if wait:
            self.run_now()
        else:
            self._kick()

    def update_source(self, source: ZoneSource, frames: list[bytes], names, why: str | None = None,
                      previous: dict | None = None, private: bool = False) -> defer.Deferred:
        """Serve ``source``, changed by a dynamic update, as the zone's next version.

        ``frames`` (the update's journal record) are written durably with
        the version's serial, before it is served; ``names`` are the owners
        it touched. The Deferred fires once that version (or a later one)
        is served: only then may the update be acknowledged. Updates are
        never damped. A failed write is retried, as for every version.
        ``why``: the reason the version is logged with (none: the update
        logs its own line).

        ``previous``: the touched owners' nodes before the update, needed
        when the records were changed in place. ``private``: ``source.records``
        is the update's own copy, which the next update may change in place
        until anything else reads it (records_private).
        """
        origin = source.origin
        old = self._zones[origin]
        self.damping.forget(origin)
        self.graph.forget_zone(origin, old.source)
        keys = previous.keys() if previous is not None else {store.key_of(n) for n in names}
        zone = self._zones[origin] = _Zone(source, old.base.updated(source.records, keys, previous))
        zone.reason = why
        if private:
            self._private[origin] = source
        else:
            self._private.pop(origin, None)
        zone.frames = old.frames + list(frames)
        old.frames = []
        served = self.versions.get(origin)
        if old.touched is None and (served is None or served.source is not old.source):
            zone.touched = None  # a file not served yet: the next difference compares everything
        else:
            zone.touched = (old.touched or set()) | keys
        self.registry.set_source(source, old.source, keys)
        self._queue[origin] = None
        self._forced.add(origin)
        for other, owners in self.graph.affected_by([origin], []).items():
            if other in self._zones and other != origin:
                self._enqueue(other, owners, forced=True)
        d = defer.Deferred()
        self._waiters.setdefault(origin, []).append((zone.seq, d))
        self._kick()
        return d

    def wait_served(self, origin: dns.name.Name) -> defer.Deferred:
        """Fires once the zone's newest source (or a later one) is served,
        recorded first (a zone created at runtime: aliasd.service.zonemanager);
        fails as an update's wait does when the zone is removed meanwhile."""
        zone = self._zones.get(origin)
        if zone is None:
            return defer.fail(RuntimeError("the zone is not served"))
        version = self.versions.get(origin)
        if version is not None and version.source is zone.source:
            return self.synced()
        d = defer.Deferred()
        self._waiters.setdefault(origin, []).append((zone.seq, d))
        return d

    def set_signers(self, signers: dict) -> None:
        """Sign these zones from now on (a reload); zones that gain or lose
        their signer, or get another one, get a new version."""
        old, self.signers = self.signers, signers
        for origin in set(old) | set(signers):
            if old.get(origin) is not signers.get(origin) and origin in self._zones:
                # Its ALIAS owners followed again: signed or not decides
                # which answers they may take ([resolver] require-validated).
                owners = set(self._zones[origin].source.aliases) if (origin in old) != (origin in signers) else set()
                self._enqueue(origin, owners, forced=True)
        if self.key_events is not None:
            self.key_events.track(signers)
        self._kick()

    def resign(self, origin: dns.name.Name) -> None:
        """Queue a signed zone to be signed again now (its keys' timing
        changed what it publishes or who signs it: KeyEvents); it gets a
        new version if its signing state moved."""
        if origin in self.signers and origin in self._zones:
            self._enqueue(origin, set(), forced=True)
            self._kick()

    def _now(self) -> float:
        """The moment zones are signed as of: the clock's, so a test clock drives key timing too."""
        return self.clock.seconds() if self.clock is not None else time.time()

    def refresh_signatures(self) -> int:
        """Queue the signed zones whose signatures are due for refreshing
        (their signature epoch moved on: aliasd.dnssec.signer.window); returns how many."""
        due = 0
        now = self._now()
        for origin, signer in self.signers.items():
            version = self.versions.get(origin)
            if (version is not None and version.signed is not None
                    and version.signed.state != signer.state(now, len(version.source.records))):
                self._enqueue(origin, set(), forced=True)
                due += 1
        if due:
            self._kick()
        return due

    def _fire_waiters(self, origin: dns.name.Name, seq: int) -> None:
        waiting = self._waiters.get(origin)
        if not waiting:
            return
        ready = [d for s, d in waiting if s <= seq]
        if ready:
            self._waiters[origin] = [(s, d) for s, d in waiting if s > seq]
            self._after_synced(lambda: [d.callback(None) for d in ready])

    def _after_synced(self, announce: Callable[[], object]) -> None:
        """Call ``announce`` once every query process serves what is served
        now: at once with one process."""
        self.synced().addCallback(lambda _: announce()).addErrback(
            lambda f: log.failure("announcing a served version", f))

    def _announce(self, versions: list[ZoneVersion]) -> None:
        """Tell ``on_new_serial`` of ``versions`` after those before them, a
        slice at a time: queuing NOTIFYs and noting serials costs about as
        much as serving, so a publishing slice's worth announced at once
        tripled the slice (30 ms at ten thousand zones)."""
        self._announcing.extend(versions)
        if self._announce_call is None:
            self._announce_some()

    def _announce_some(self) -> None:
        self._announce_call = None
        queue = self._announcing
        started = time.perf_counter()
        while queue:
            version = queue.popleft()
            try:
                self.on_new_serial(version)
            except Exception:
                log.failure("announcing zone {zone} serial {serial}", zone=version.origin.to_text(),
                            serial=version.serial)
            if queue and self.clock is not None and time.perf_counter() - started > self.slice_seconds:
                self._announce_call = self.clock.callLater(0, self._announce_some)
                return

    def _fail_waiters(self, origin: dns.name.Name, why: str, after: int | None = None) -> None:
        """Fail the updates waiting on the zone (only those after source
        ``after``: the ones up to it are being recorded, and answered then)."""
        waiting = self._waiters.pop(origin, ())
        kept = [(s, d) for s, d in waiting if after is not None and s <= after]
        if kept:
            self._waiters[origin] = kept
        for s, d in waiting:
            if after is None or s > after:
                d.errback(RuntimeError(why))

    def rebuild(self, changed: Iterable[TargetKey] | None = None) -> None:
        """Follow again the ALIAS owners of the upstream targets in ``changed``
        (None: every owner of every zone), then publish what changed."""
        if changed is None:
            for origin, zone in self._zones.items():
                self._enqueue(origin, set(zone.source.aliases), forced=True)
        else:
            dependents = self.graph.dependents
            for key in changed:  # expanded into the queue in slices (_build_some)
                self._expand.extend(dependents.get(key, ()))
        self._kick()

    def run_now(self) -> None:
        """Build, record and publish everything queued, before returning
        (a failed state write leaves the work queued for a retry)."""
        failures = self.numbering.failures
        while (self._queue or self._expand or self._batch) and self.numbering.failures == failures:
            self._build_some(deadline=None)
            self._commit(in_thread=False)

    # -- the work queue ----------------------------------------------------

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
        if (self._queue or self._expand) and len(self._batch) < self.max_batch and not self._commit_now:
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
            heavy = self.is_heavy(origin)
            if heavy and self._batch and origin not in self._batch:
                self._commit_now = True  # the batch so far is served first
                break
            owners = self._queue.pop(origin)
            zone = self._zones.get(origin)
            if zone is not None and deadline is not None:
                todo = set(zone.source.aliases) if owners is None else owners
                if len(todo) > self.reflatten_slice:
                    # Thousands of ALIAS owners in one zone are followed a
                    # slice at a time (10,000 took 1.5 s at once); the zone's
                    # version is built when the last slice is done.
                    chunk = set(itertools.islice(todo, self.reflatten_slice))
                    zone.add_pending(self.graph.reflatten(zone, chunk))
                    self._queue[origin] = todo - chunk
                    continue
            forced = origin in self._forced
            self._forced.discard(origin)
            if zone is not None:
                self._build(origin, zone, owners, forced)
            if heavy and origin in self._batch:
                self._commit_now = True  # signed in a batch of its own
            if self._commit_now:
                break
        # (Also when a heavy zone ends the batch: its targets must be asked.)
        self.graph.tell_resolver(queue_empty=not self._queue)

    def is_heavy(self, origin: dns.name.Name) -> bool:
        """Is this a signed zone big enough to be built in a batch of its own?"""
        if origin not in self.signers:
            return False
        zone = self._zones.get(origin)
        return zone is not None and len(zone.source.records) >= self.heavy_from

    def _build(self, origin: dns.name.Name, zone: _Zone, owners: set | None, forced: bool) -> None:
        """Follow ``owners`` again (None: all) and add the zone's next version to the batch."""
        self._private.pop(origin, None)  # the version shares the records from now on
        entry = self._batch.get(origin)
        saved = entry.saved if entry is not None else zone.snapshot()
        current = entry.version if entry is not None else self.versions.get(origin)
        new_source = current is None or current.source is not zone.source
        if owners is None:
            owners = set(zone.source.aliases)
        zone.add_pending(self.graph.reflatten(zone, owners))
        signer = self.signers.get(origin)
        signed_at = self._now()
        zone.signing_state = signer.state(signed_at, len(zone.source.records)) if signer is not None else ""
        # New keys or a new signature epoch: the zone is signed again; no
        # signer any more (a reload turned dnssec off): it is served unsigned.
        if signer is not None:
            resign = current is None or current.signed is None or current.signed.state != zone.signing_state
        else:
            resign = current is not None and current.signed is not None
        if not new_source and not zone.pending and not resign:
            return
        if current is not None and not new_source and not forced and not self.damping.take(origin):
            self.damping.hold(origin)
            return
        updates, zone.pending = zone.pending, _NO_CHANGES
        self.damping.published(origin)
        published = entry.published if entry is not None else self.versions.get(origin)
        version, digest, state_changed, why = self.numbering.next_version(
            zone, updates, current, entry.digest if entry is not None else None
        )
        frames, zone.frames = zone.frames, []
        if new_source:
            why = (zone.reason or "updated") if zone.touched is not None else why
        if entry is not None:
            why = entry.why if entry.published is None else why
            state_changed = state_changed or entry.state_changed
            owners_done = entry.owners | set(updates)
            frames = entry.frames + frames
        else:
            owners_done = set(updates)
        built = self._batch[origin] = _Built(
            zone, published, version, digest, state_changed, why, owners_done, saved, frames, zone.touched,
            signed_at,
        )
        if signer is not None:
            # Owners to sign: the whole zone when it is signed afresh. A batch
            # holding enough ends, so zones are served signed a batch at a
            # time instead of all at the end (start-up of a thousand zones).
            self._signing_owners += len(zone.source.records) if resign or new_source else len(updates) + 1
            if self._signing_owners >= self.signing_batch_owners:
                self._commit_now = True
        if origin not in self.signers:  # (a signed zone's, once signed: in _record)
            self._note_difference(built)

    def _flush(self, origin: dns.name.Name) -> None:
        """Queue the changes held back for ``origin`` as one version (the
        damper says when)."""
        zone = self._zones.get(origin)
        if zone is not None and zone.pending:
            self._enqueue(origin, set(), forced=False)
            self._kick()

    # -- recording and publishing ------------------------------------------

    def _commit(self, in_thread: bool) -> None:
        """Record the batch's serials (one write), then serve the batch."""
        batch, self._batch = self._batch, {}
        self._commit_now = False
        self._signing_owners = 0
        if not batch:
            return
        states = {o: ZoneState(b.version.serial, b.digest) for o, b in batch.items() if b.state_changed}
        entries = list(batch.values())
        self._recording = {o: b.zone.seq for o, b in batch.items()}
        targets = self.resolver.take_unsaved() if self.resolver is not None else None
        if not in_thread:
            try:
                self._record(entries, states, targets)
            except OSError as e:
                self._commit_failed(batch, e, targets)
                return
            self._publish(list(batch.values()), deadline=False, reasons=_PublishLog())
            return
        self._committing = True
        d = self.numbering.run_in_thread(self._record, entries, states, targets)
        d.addCallbacks(
            lambda _: self._publish(list(batch.values()), deadline=True, reasons=_PublishLog()),
            lambda failure: self._commit_failed(batch, failure.value, targets),
        )
        d.addErrback(lambda failure: log.failure("publishing zone versions", failure))

    def _record(self, entries: list[_Built], states: dict, targets: list | None = None) -> None:
        """Write a batch to the state store (in a thread; raises OSError):
        the journal records of every zone (updates, differences) and the
        serials, in one transaction that commits durably or not at all
        (group commit). The journal's lock is taken first: whoever writes
        the store takes it before a transaction, never inside one.

        Signed zones are signed here, off the reactor, and their differences
        computed. A zone's first version takes the history its journal file
        holds, when it ends at that version. Nothing else CPU-bound runs
        here: a thread computing in Python holds up the reactor's system
        calls, and this one runs beside queries.
        """
        files = self.journal_files
        if files is None:
            self._record_batch(entries, states, None)
            if targets is not None:
                self.numbering.state.save_targets(targets)
            return
        unused, self._unused_records = self._unused_records, []
        try:
            with files.lock, files.db.write():
                files.delete_records(unused)
                self._record_batch(entries, states, files)
                if targets is not None:  # the addresses these versions serve, with their serials
                    self.numbering.state.save_targets(targets)
        except BaseException:
            self._unused_records[:0] = unused
            raise

    def _record_batch(self, entries: list[_Built], states: dict, files) -> None:
        for built in entries:
            version, published = built.version, built.published
            signer = self.signers.get(version.origin)
            if signer is not None:  # only what changed since the served version is signed again
                version = built.version = version.with_signatures(signer.sign(version, published, built.signed_at))
                self._note_difference(built)
            if files is None:
                continue
            key = version.source.key
            if published is None and files.exists(key):
                history, unused = journaldb.history(
                    files.read_records(key), version.serial, built.digest,
                    self.journals.new_journal(version.origin),
                )
                built.history = history
                files.delete_records(unused)
            frames = list(built.frames) + ([built.difference_frame] if built.difference_frame else [])
            if frames:
                keys = files.append(key, frames)
                if built.difference_frame:
                    built.difference_key = keys[-1]
            if files.wants_compaction(key):
                self._compact(version)
        self.numbering.save(states)

    def _note_difference(self, built: _Built) -> None:
        """The difference from the served version (None: no new serial),
        and its journal frame when journals are on disk."""
        version, published = built.version, built.published
        built.difference = built.difference_frame = None
        if published is None or published.serial == version.serial:
            return
        names = keys = None
        if published.source is version.source:
            names = built.owners
        elif built.touched is not None:  # (by key: an update's touched owners are keys)
            keys = set(built.touched)
            for aliases in (published.source.aliases, version.source.aliases):
                keys.update(store.key_of(name) for name in aliases)
        built.difference = difference(published, version, names, keys)
        if self.journal_files is not None:
            built.difference_frame = journaldb.frame(
                journaldb.DIFFERENCE, journaldb.encode_difference(built.difference, built.digest))

    def _compact(self, version: ZoneVersion) -> None:
        """Compact a zone's journal (in the commit thread): a dynamic zone's
        updates become one snapshot of its source; its differences stay."""
        with self.journal_files.lock:  # a dynamic zone's file write waits (aliasd.update.dynamic)
            self.journal_files.compact(version.source.key, list(self.snapshot_frames(version.source)))

    def _commit_failed(self, batch: dict, error: Exception, targets: list | None = None) -> None:
        """Keep every change of a batch whose serials could not be recorded."""
        self._committing = False
        if targets is not None:
            self.resolver.unsaved_again()
        self._recording = {}
        delay = self.numbering.failed()
        for origin, built in batch.items():
            current = self._zones.get(origin)
            if current is not None and built.frames:
                current.frames[:0] = built.frames  # written again with the next attempt
            if current is None:  # removed meanwhile: its updates were never recorded
                self._fail_waiters(origin, "the zone is no longer served")
                continue
            if current is not built.zone:
                continue  # replaced by a reload meanwhile
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

    def _publish(self, entries: list[_Built], deadline: bool, reasons: _PublishLog) -> None:
        """Serve recorded versions (in slices on the reactor), then notify."""
        started = time.perf_counter()
        announced = []
        log_each = len(entries) + reasons.count <= self.log_each_up_to
        digests, journals, registry = self.numbering.digests, self.journals, self.registry
        while entries:
            built = entries.pop()
            origin = built.version.origin
            if self._zones.get(origin) is not built.zone:
                if origin not in self._zones:  # removed: what was recorded stays with its state
                    self._fire_waiters(origin, built.zone.seq)
                elif built.difference_key is not None:
                    self._orphans.setdefault(origin, []).append(built.difference_key)
                continue  # (replaced by an update or a reload: its waiters wait for the new version)
            old = self.versions.get(origin)
            digests[origin] = built.digest
            if built.difference is not None:
                self._unused_records += journals.add(
                    origin, built.difference,
                    1 + len(built.difference_frame[1]) if built.difference_frame else None,
                    built.difference_key)
            elif built.history is not None:
                journals[origin] = built.history
            orphans = self._orphans.pop(origin, ())
            if built.published is not None:
                self._unused_records += orphans
            # (else a first version: its history was read from the store,
            # which judged every difference recorded there, these included;
            # one of them may be the link it ends at: a version recorded
            # while its zone was removed and added again.)
            registry.serve(built.version)
            self._published_owners += len(built.version.source.records)
            self._unfrozen_zones += 1
            built.zone.touched = _NO_OWNERS  # the next difference starts from this version
            self._fire_waiters(origin, built.zone.seq)
            if old is None or old.serial != built.version.serial:
                announced.append(built.version)
            if log_each:
                if built.why != "updated":  # an update logs its own line
                    self._log_version(built)
            else:
                reasons.add(built, self.log_each_up_to)
            if deadline and time.perf_counter() - started > self.slice_seconds and entries:
                break
        if deadline:
            self._note_slice(started)  # (start-up runs before any query)
        if announced:
            self._after_synced(lambda: self._announce(announced))
        if entries:
            self.clock.callLater(0, self._publish, entries, True, reasons)
            return
        if not log_each:
            log.info("{count} zones published: {zones}", count=reasons.count, zones=reasons.text())
        self._committing = False
        self._recording = {}
        self._unused_records += journals.trim_total()
        self.numbering.recorded()
        self.batches += 1

        if self._unfrozen_zones >= self.freeze_from or self._published_owners >= self.freeze_owners_from:
            _settle_long_lived()
            self._unfrozen_zones = self._published_owners = 0
        if deadline:
            self._kick()
        self._fire_idle()

    def _log_version(self, built: _Built) -> None:
        source = built.zone.source
        history = ""
        if built.published is None and built.why.startswith("restart") and self.journal_files is not None:
            # Where IXFR can start from: a history begins again where the
            # view served changed while the zone was not served (a restart
            # or a zone added again), even when that version was recorded
            # by a process that stopped before it said so.
            oldest = built.history.oldest_serial if built.history is not None else None
            history = f", IXFR history from serial {oldest}" if oldest is not None else ", no IXFR history"
        log.info(
            "zone {zone} serial {serial} ({why}), {records} records, {aliases} ALIAS{history}",
            zone=source.origin.to_text(),
            serial=built.version.serial,
            why=built.why,
            records=source.record_count(),
            aliases=len(source.aliases),
            history=history,
        )

    def serve(self, version: ZoneVersion) -> None:
        """Serve ``version`` for its zone from now on (already recorded)."""
        self.registry.serve(version)


class _PublishLog:
    """What one line says of a big batch: the first zones with serial and
    reason, then how many more for each reason."""

    def __init__(self):
        self.count = 0
        self.named: list[str] = []
        self.rest: collections.Counter = collections.Counter()

    def add(self, built: _Built, names: int) -> None:
        self.count += 1
        if len(self.named) < names:
            self.named.append(f"zone {built.version.origin} serial {built.version.serial} ({built.why})")
        else:  # "3 targets changed" counts as "targets changed"
            self.rest[built.why.split(" ", 1)[1] if built.why[0].isdigit() else built.why] += 1

    def text(self) -> str:
        more = sum(self.rest.values())
        if not more:
            return ", ".join(self.named)
        reasons = ", ".join(f"{n} {why}" for why, n in self.rest.most_common())
        return ", ".join(self.named) + f" and {more} more ({reasons})"


def _settle_long_lived() -> None:
    """Keep the cyclic garbage collector from walking the zone versions
    just served, again and again: a full collection over ten thousand
    versions holds the reactor for 0.1-0.3 s. Young garbage is collected
    first (cheap), so what is frozen is what lives; zone data holds no
    reference cycles, and the versions it replaces are freed by reference
    counting, frozen or not."""
    gc.collect(1)
    gc.freeze()
