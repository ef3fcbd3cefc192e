"""Reload on SIGHUP: re-read the configuration and every zone file, no gap.

Everything is read and checked first, in a thread; then what changed is
handed to the authority, which builds and serves new versions in slices
between queries, so every query is answered, from the old data or the new.
Only files that changed are parsed again (ZoneFiles: size, times, inode
and device, then a digest of the content), and only their zones get new
versions; when the configuration leaves the zones' settings as they were,
only the zones whose file changed are looked at (Reloader._apply_changed). SIGHUPs
that arrive during a reload make one more reload after it, never two at
once, so the last file contents always win. A configuration that
cannot be read changes nothing. A zone file that cannot be read is logged
with file, line and reason, and that zone keeps serving its previous
version (a zone with nothing to serve answers SERVFAIL until its file is
mended: aliasd.service.broken). Added zones start serving, removed zones
stop, changed zones get a new version whose serial follows the usual
rules, and their secondaries are notified. The summary line names the
zones added, removed and failed.

Settings that need new sockets (listen addresses, port, state directory,
statistics and TLS listeners) are only reported: they take effect at the
next start. A TLS certificate and key are read again, so a renewed
certificate is served to new connections (the key file must then be
readable by the user aliasd runs as).
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import multiprocessing
import operator
import os
import signal
import time
from pathlib import Path

import dns.name
from twisted.application import service
from twisted.internet import defer, threads
from twisted.logger import Logger

from aliasd.base.access import TransferAccess, keyring_from
from aliasd.base.config import (
    DEFAULT_JOURNAL_MAX_USAGE,
    INSECURE,
    RACY_NS,
    ConfigError,
    Settings,
    ZoneSettings,
)
from aliasd.dnssec.keys import KeyFileError, KeyStore
from aliasd.dnssec.signer import Signer
from aliasd.service import logsetup
from aliasd.service.authority import ZoneAuthority
from aliasd.service.broken import BrokenZones
from aliasd.service.keyroll import configure_rollovers
from aliasd.zones.catalog import catalog_source, member_owner, with_members_changed
from aliasd.zones.snapshot import Snapshot, stamp_of
from aliasd.zones.zonefile import (
    ZoneFileError,
    ZoneSource,
    load_zone_file,
    parse_zone,
    signed_zone_conflicts,
)

log = Logger()


def load_zone(zone: ZoneSettings) -> ZoneSource:
    """Load one configured zone; the error names the file and line."""
    return load_zone_file(zone.name, zone.file, include_anywhere=zone.include_anywhere, signed=zone.dnssec)


def _parse(todo: "_Todo") -> ZoneSource | ZoneFileError:
    """Parse one file's content."""
    zone = todo.zone
    try:
        return parse_zone(zone.name, zone.file, todo.data, include_anywhere=zone.include_anywhere,
                          signed=zone.dnssec)
    except ZoneFileError as e:
        return e


#: The files a start-up's parsing processes parse, by index: they inherit
#: the list when forked, so no file's content, name or path is pickled to them.
_forked_todo: list = []


def _parse_packed(i: int) -> tuple | ZoneFileError:
    """Parse file ``i`` of ``_forked_todo`` (in a parsing process): its packed
    records, content digest and record count, or its error. Plain bytes,
    str and int travel back: a ZoneSource pickled with its name, path and
    ALIAS rules, unpickled and rebuilt on the zone's own objects cost the
    main process three times as much as the parse saved (0.9 s of CPU at
    ten thousand zones)."""
    result = _parse(_forked_todo[i])
    if isinstance(result, ZoneFileError):
        return result
    return result.records, result.digest, result.record_count()


def with_runtime_zones(settings: Settings, runtime) -> Settings:
    """``settings`` with the zones created at runtime (aliasd.update.runtime)
    among its zones, each with [zone-defaults] and no file; a configured
    zone (or the catalog) of the same name wins. What the served zones'
    settings are read from: transfers, NOTIFY, update rules, signing."""
    if runtime is None or not runtime.zones:
        return settings
    made = runtime.settings(settings.zone_defaults)
    # The configured names are few beside thousands of runtime ones: look
    # those up, not every runtime name (a Name's hash is slow).
    clash = {name for name in configured_zones(settings) if name in made}
    extra = tuple(z for name, z in made.items() if name not in clash) if clash else tuple(made.values())
    return dataclasses.replace(settings, zones=settings.zones + extra)


def configured_zones(settings: Settings) -> dict:
    """Zone name -> its ZoneSettings, the catalog included (kept per settings object)."""
    found = _configured.get(id(settings))
    if found is None or found[0] is not settings:
        found = (settings, {z.name: z for z in settings.transferable_zones})
        _configured.clear()
        _configured[id(settings)] = found
    return found[1]


_configured: dict = {}


def make_signers(settings: Settings, only=None) -> dict:
    """A Signer for each zone with ``dnssec = true`` (or for those in
    ``only``), with its keys (made in the state directory on first use;
    raises KeyFileError)."""
    zones = [z for z in settings.signed_zones if only is None or z.name in only]
    if not zones:
        return {}
    store = KeyStore(settings.server.state_dir / "keys")
    policies = {z.name: settings.policy_of(z) for z in zones}
    groups: dict[tuple[str, bool], list] = {}
    keys = {}
    now = time.time()
    for zone in zones:
        policy = policies[zone.name]
        if policy.name == INSECURE:  # no keys made; none published any more: unsigned
            found = store.load(zone.name)
            if any(k.published(now) for k in found):
                keys[zone.name] = found
        else:
            groups.setdefault((policy.algorithm, policy.split), []).append(zone.name)
    for (algorithm, split), names in groups.items():
        keys.update(store.ensure_many(names, algorithm, split))
    return {z.name: Signer(z.name, keys[z.name], policies[z.name].signing) for z in zones if z.name in keys}


def _policies_by_zone(settings: Settings) -> dict:
    return {z.name: settings.policy_of(z) for z in settings.signed_zones}


def make_signers_for(settings: Settings) -> set:
    """The zones that get a signer: signed ones, less those gone insecure
    to the end (no key published any more)."""
    store = None
    now = time.time()
    out = set()
    for zone in settings.signed_zones:
        if zone.dnssec_policy == INSECURE:
            store = store or KeyStore(settings.server.state_dir / "keys")
            if not any(k.published(now) for k in store.load(zone.name)):
                continue
        out.add(zone.name)
    return out


def apply_journal_limits(authority: ZoneAuthority, settings: Settings) -> None:
    """The IXFR histories' bounds from the configuration (start and reload)."""
    authority.set_journal_limits(
        settings.server.journal_size, DEFAULT_JOURNAL_MAX_USAGE,
        {z.name: z.journal_max_usage for z in settings.zones}, settings.server.journal_db_max_size,
    )


def file_stamp(st: os.stat_result) -> bytes:
    """What tells a file's content unchanged without reading it: size,
    modification and change times, inode and device (a file replaced by a
    rename with its old time, ``cp -p`` or ``rsync -t``, has another inode
    and ctime), packed (aliasd.zones.snapshot.stamp_of)."""
    return stamp_of(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


@dataclasses.dataclass(slots=True)
class _Read:  # (one per zone file: slots)
    path: Path
    where: str  # the path as a string, stat-ed at every reload
    stamp: bytes | None  # file_stamp when read; None: read the content again next time
    digest: bytes
    includes: bool  # $INCLUDE: other files may have changed, always parse
    source: ZoneSource
    signed: bool  # checked as a signed zone's file (aliasd.zonefile.signer_conflicts)


@dataclasses.dataclass
class _Todo:
    zone: ZoneSettings
    stamp: bytes | None
    digest: bytes
    includes: bool
    data: bytes


def _settled(st: os.stat_result, read_at: int) -> bytes | None:
    """The file's stamp, or None while a write in the same tick could
    still go unseen (RACY_NS)."""
    if max(st.st_mtime_ns, st.st_ctime_ns) >= read_at - RACY_NS:
        return None
    return file_stamp(st)


class ZoneFiles:
    """Zone files as last read, so that unchanged files are not parsed again.

    A file whose stamp (size, times, inode: ``file_stamp``) is unchanged is
    taken as it was, unless it had been modified just before that read
    (RACY_NS: then its content is read and compared again); otherwise its
    content digest decides, first against the last read, then against the
    compiled snapshot of the last run (aliasd.zones.snapshot). A file with
    ``$INCLUDE`` is always parsed (the included files are not tracked). The
    files left to parse are parsed in ``workers`` processes when there are
    many (at start only: a running server has threads, and forking it is
    not safe). One caller at a time: start-up, then the reload thread
    (reloads never overlap).
    """

    #: Fewer files than this are parsed in this process.
    parallel_from = 200

    def __init__(self, snapshot: Snapshot | None = None):
        self._read: dict[dns.name.Name, _Read] = {}
        self.snapshot = snapshot
        self.parsed = 0  # files parsed by the last read_all
        self.from_snapshot = 0  # files taken from the snapshot by the last read_all
        self.workers = 1  # processes that parsed them
        self._names = ()  # the zones of the last read_all (their names)
        self._zones = ()  # (their settings)
        self._aligned: list[_Read | None] = []  # what _read holds for each of them

    def read_all(self, zones, workers: int = 1) -> tuple[dict, list[ZoneSource]]:
        """Every zone's source or the ZoneFileError that stops it, and the
        sources parsed anew; forgets the files of zones no longer configured."""
        before = {name: read.source for name, read in self._read.items()}
        self.parsed = self.from_snapshot = 0
        results = self._read_these(zones, workers)
        names = tuple(zone.name for zone in zones)
        if names != self._names:  # (10 ms at ten thousand zones: not when they are the same)
            for name in set(self._read) - set(results):
                del self._read[name]
            if self.snapshot is not None:  # a broken file's zone keeps its last good entry
                self.snapshot.keep_only(zone.name.to_wire() for zone in zones)
        self._names = names
        self._zones = tuple(zones)
        self._aligned = [self._read.get(name) for name in names]
        ordered = {zone.name: over_max_records(zone, results[zone.name]) for zone in zones}
        fresh = [
            r for name, r in ordered.items()
            if not isinstance(r, ZoneFileError) and before.get(name) is not r
        ]
        return ordered, fresh

    def same_zones(self, zones) -> bool:
        """Are ``zones`` the very ZoneSettings of the last read_all?"""
        return len(zones) == len(self._zones) and all(map(operator.is_, zones, self._zones))

    def read_changed(self, zones) -> tuple[list, list[ZoneSource]] | None:
        """For a reload whose zones are the very ZoneSettings of the last
        read (``same_zones``; else None): (zone, its source or the error
        that stops it) for each zone whose file's stamp is not the one last
        read, and the sources among them parsed anew. The others are as
        they were.

        Why: one pass of stat calls over ten thousand files, with no lookup
        by name (dnspython's name hash collides for names alike), instead of
        read_all's passes; a reload of one changed file costs what it holds.
        """
        if not self.same_zones(zones):
            return None
        self.parsed = self.from_snapshot = 0
        stat, aligned, look = os.stat, self._aligned, []
        for i, read in enumerate(aligned):
            if read is not None and read.stamp is not None and not read.includes:
                try:
                    if file_stamp(stat(read.where)) == read.stamp:
                        continue
                except OSError:
                    pass  # (read again: the error names the file)
            look.append((i, read.source if read is not None else None))
        results = self._read_these([zones[i] for i, _ in look], 1)
        changed, fresh = [], []
        for i, previous in look:
            zone = zones[i]
            aligned[i] = self._read.get(zone.name)
            result = over_max_records(zone, results[zone.name])
            changed.append((zone, result))
            if not isinstance(result, ZoneFileError) and result is not previous:
                fresh.append(result)
        return changed, fresh

    def _read_these(self, zones, workers: int) -> dict:
        """Each zone's source or error: known, from the snapshot, or parsed."""
        results: dict = {}
        todo: list[_Todo] = []
        for zone in zones:
            try:
                found = self._known(zone)
            except ZoneFileError as e:
                found = e
            if isinstance(found, _Todo):
                todo.append(found)
            else:
                results[zone.name] = found
        self._parse(todo, results, workers)
        return results

    def _known(self, zone: ZoneSettings) -> ZoneSource | _Todo:
        """The zone's source if its file is known, else what to parse."""
        path = zone.file
        known = self._read.get(zone.name)
        if known is not None and (known.path != path or known.source.origin.labels != zone.name.labels
                                  or known.signed != zone.dnssec):
            # Another file, the zone name's letter case changed (it shows in
            # answers), or signing turned on or off (other records allowed).
            known = None
        try:
            st = os.stat(path)
            if known is not None and known.stamp is not None and not known.includes \
                    and known.stamp == file_stamp(st):
                return known.source
            if known is None and self.snapshot is not None:  # (at start: the file as the last run read it?)
                entry = self.snapshot.stamped(zone.name.to_wire(), file_stamp(st))
                source = _from_entry(zone, entry) if entry is not None else None
                if source is not None:
                    self.from_snapshot += 1
                    return self._remember(_Todo(zone, entry[3], entry[0], False, b""), source)
            read_at = time.time_ns()
            data = path.read_bytes()
        except OSError:
            return load_zone(zone)  # raises, naming the file and the reason
        stamp = _settled(st, read_at)
        digest = hashlib.sha256(data).digest()
        includes = b"$include" in data.lower()
        if known is not None and not includes and known.digest == digest:
            known.stamp = stamp
            if self.snapshot is not None:
                self.snapshot.restamp(zone.name.to_wire(), stamp)
            return known.source
        todo = _Todo(zone, stamp, digest, includes, data)
        if self.snapshot is not None and not includes:
            key = zone.name.to_wire()
            entry = self.snapshot.get(key, digest)
            source = _from_entry(zone, entry) if entry is not None else None
            if source is not None:  # (else parsed: that names the file's line)
                self.from_snapshot += 1
                self.snapshot.restamp(key, stamp)
                return self._remember(todo, source)
        return todo

    def _remember(self, todo: _Todo, source: ZoneSource) -> ZoneSource:
        self._read[todo.zone.name] = _Read(
            todo.zone.file, str(todo.zone.file), todo.stamp, todo.digest, todo.includes, source, todo.zone.dnssec
        )
        return source

    def _parse(self, todo: list[_Todo], results: dict, workers: int) -> None:
        self.workers = workers if workers > 1 and len(todo) >= self.parallel_from else 1
        if self.workers > 1:
            parsed = map(_adopted, todo, _parse_forked(todo, self.workers))
        else:
            parsed = map(_parse, todo)
        for t, result in zip(todo, parsed):
            results[t.zone.name] = result
            if isinstance(result, ZoneFileError):
                continue
            self.parsed += 1
            self._remember(t, result)
            if self.snapshot is not None and not t.includes:
                self.snapshot.put(t.zone.name.to_wire(), t.digest, dict(result.records), result.digest, t.stamp)

    def read_one(self, zone: ZoneSettings) -> ZoneSource | ZoneFileError:
        """One zone's source, its file parsed only if it changed
        (``aliasd-ctl reload ZONE``); the other zones' files are untouched."""
        try:
            found = self._known(zone)
        except ZoneFileError as e:
            return e
        if not isinstance(found, _Todo):
            return over_max_records(zone, found)
        results: dict = {}
        self._parse([found], results, 1)
        return over_max_records(zone, results[zone.name])

    def last_good(self, zone: ZoneSettings) -> ZoneSource | None:
        """The zone's records as its file last loaded (the snapshot), for a
        zone whose file is broken now; None when there are none (or they
        cannot be served as the zone is configured now)."""
        if self.snapshot is None:
            return None
        entry = self.snapshot.latest(zone.name.to_wire())
        source = _from_entry(zone, entry) if entry is not None else None
        return source if isinstance(over_max_records(zone, source), ZoneSource) else None

    def digest_of(self, name: dns.name.Name) -> bytes | None:
        """The SHA-256 of the zone's file as last read."""
        read = self._read.get(name)
        return read.digest if read is not None else None

    def summary(self) -> str:
        """How the last read_all got its zones, for the log."""
        how = f"{self.parsed} parsed"
        if self.workers > 1:
            how += f" in {self.workers} processes"
        return f"{how}, {self.from_snapshot} from the snapshot"


def over_max_records(zone: ZoneSettings, result):
    """``result`` (a source or the error that stops it), or a ZoneFileError
    when the source holds more records than the zone's max-records."""
    if isinstance(result, ZoneSource) and zone.max_records and result.record_count() > zone.max_records:
        return ZoneFileError(f"{zone.file}: {result.record_count()} records, more than the zone's "
                             f"max-records ({zone.max_records})")
    return result


def _parse_forked(todo: list[_Todo], workers: int) -> list:
    """Each file's ``_parse`` (here: a share of the files) or ``_parse_packed``
    (the others, in ``workers - 1`` forked processes), in the order of ``todo``.

    This process parses a share itself while the others run instead of
    waiting for them: its results need no pickling, and one process fewer
    is forked."""
    global _forked_todo
    _forked_todo = todo
    # A smaller share here: this process also read and hashed every file,
    # and unpickles and adopts the others' results (10,000 zones, two
    # CPUs: 1.0 s of CPU here against 0.65 s forked with half of them each).
    own = len(todo) * 4 // (5 * workers)
    others = workers - 1
    try:
        # gc.freeze in each: its collections never walk (and copy the pages
        # of) the objects inherited from this process.
        with multiprocessing.get_context("fork").Pool(others, initializer=gc.freeze) as pool:
            rest = pool.map_async(_parse_packed, range(own, len(todo)),
                                  chunksize=max(1, min(256, (len(todo) - own) // (4 * others))))
            mine = [_parse(t) for t in todo[:own]]
            for result in mine:
                if isinstance(result, ZoneSource):
                    result.digest  # now, as the forked processes do, not later in the reactor's slices
            return mine + rest.get()
    finally:
        _forked_todo = []


def _adopted(todo: _Todo, parsed) -> ZoneSource | ZoneFileError:
    """The source of what a parsing process sent back, on the zone's own
    name and path objects (no copy of either per zone; ALIAS targets
    shared: zonefile._target), knowing the digest and count it computed;
    a source or error parsed in this process as it is."""
    if not isinstance(parsed, tuple):
        return parsed
    records, digest, count = parsed
    return ZoneSource.of(todo.zone.name, todo.zone.file, records).knowing(digest, count)


def _from_entry(zone: ZoneSettings, entry) -> ZoneSource | None:
    """The source of a snapshot entry, or None when it cannot be served as
    ``zone`` is configured (a signed zone's records read while unsigned)."""
    try:
        source = ZoneSource.of(zone.name, zone.file, entry[1])
        source.serial  # the apex SOA is there and readable
    except Exception as e:  # checked by a hash, so only a bug gets here
        log.warn("zone snapshot entry for {zone} unusable ({error})", zone=zone.name.to_text(), error=repr(e))
        return None
    if zone.dnssec and signed_zone_conflicts(source):
        return None
    return source.knowing(entry[2])  # the cached content digest


@dataclasses.dataclass
class _Outcome:
    """What a reload makes of the zones' files (Reloader._take)."""

    sources: list = dataclasses.field(default_factory=list)  # to serve
    failed: list = dataclasses.field(default_factory=list)  # file broken
    held: list = dataclasses.field(default_factory=list)  # broken, nothing to serve: SERVFAIL
    mended: list = dataclasses.field(default_factory=list)  # broken before, loaded now
    frames: dict = dataclasses.field(default_factory=dict)  # a dynamic zone's journal records
    continued: set = dataclasses.field(default_factory=set)  # dynamic zones built on their newest source


class CatalogMaker:
    """Adds the catalog zone (aliasd.zones.catalog) to the served sources.

    The catalog source is rebuilt only when its name or members changed, so
    an unchanged catalog keeps its version, serial and IXFR history.
    """

    def __init__(self):
        self._key = None
        self._source: ZoneSource | None = None
        # Zone -> its catalog generation (aliasd.update.runtime: zones
        # created again at runtime get a new member label); one zone's.
        self.generations = dict
        self.generation_of = lambda member: 0

    #: At most this many members added or removed are changed in place; more: the catalog is built again.
    in_place_up_to = 16

    def add_to(self, settings, sources: list[ZoneSource], held=()) -> list[ZoneSource]:
        """``sources`` and the catalog; ``held`` (zones with a broken file
        and nothing to serve) are members too: leaving the catalog would
        make the secondaries delete them."""
        if settings.catalog is None:
            return sources
        name = settings.catalog.name
        generations = self.generations()
        members = {s.origin: generations.get(s.origin, 0) for s in sources if s.origin != name}
        members.update((origin, generations.get(origin, 0)) for origin in held)
        old = self._key
        self._key = (name, members)
        if old is not None and old[0] == name and old[1] != members:
            added = {m: g for m, g in members.items() if old[1].get(m) != g}
            removed = {m: g for m, g in old[1].items() if members.get(m) != g}
            if len(added) + len(removed) <= self.in_place_up_to:
                changed = with_members_changed(self._source, added, removed)
                if changed is not None:
                    self._source = changed
                    return sources + [self._source]
        if old is None or old != self._key:
            self._source = catalog_source(name, sorted(members), generations=generations)
        return sources + [self._source]

    def members_changed(self, settings, changes: dict) -> tuple[ZoneSource, list] | None:
        """The catalog once the zones in ``changes`` joined (True) or left
        (False), without a pass over the other members (zones created or
        deleted at runtime): (its source, the owners whose records changed).
        None when add_to must build it: no catalog built yet, its name
        changed, too many changes, or a case variant of a member."""
        catalog = settings.catalog
        if catalog is None or self._key is None or self._key[0] != catalog.name:
            return None
        name, members = self._key
        changed = dict(members)
        for member, present in changes.items():
            if member == name:
                continue
            if present:
                changed[member] = self.generation_of(member)
            else:
                changed.pop(member, None)
        added = {m: changed[m] for m in changes if m in changed and members.get(m) != changed[m]}
        removed = {m: members[m] for m in changes if m in members and changed.get(m) != members[m]}
        if not added and not removed:
            return self._source, []
        if len(added) + len(removed) > self.in_place_up_to:
            return None
        source = with_members_changed(self._source, added, removed)
        if source is None:
            return None
        self._key, self._source = (name, changed), source
        return source, [member_owner(name, m, g) for m, g in (*removed.items(), *added.items())]


class Reloader:
    """Applies a fresh configuration to the running objects."""

    def __init__(self, options, authority, handler, notifier, resolver, make_upstream, stats=None, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.options = options
        self.stats = stats
        self.authority = authority
        self.handler = handler
        self.notifier = notifier
        self.resolver = resolver
        self.make_upstream = make_upstream
        self.settings = options.settings
        self.files = getattr(options, "files", None) or ZoneFiles()
        self.catalog = getattr(options, "catalog", None) or CatalogMaker()
        self.broken = getattr(options, "broken", None) or BrokenZones()
        self.runtime = getattr(options, "runtime", None)  # zones created at runtime (aliasd.update.runtime)
        # Zone -> its last load error ("file:line: reason"), until it loads
        # again (filled at start too); the control tool reads it.
        self.errors: dict[dns.name.Name, str] = self.broken.errors
        self._running: defer.Deferred | None = None
        self._again = False
        self._applied: list[str] = []  # steps of _apply done so far
        self._reconfigured = False  # a reload changed the configuration: after_reload is due
        self.summary = ""  # the last reload's summary line (aliasd-ctl reload prints it)
        self.rollovers = None  # the key-rollover engine (aliasd.service.keyroll), told of each configuration
        self.api = None  # the HTTP API's resource (aliasd.service.api), if [api] is on
        # Called after each reload has finished (aliasd.service.workers replaces its workers).
        self.after_reload = None

    def reload(self) -> defer.Deferred:
        """Reload; fires with True when everything was read without error
        and the new versions are served.

        Files are parsed (and indexed) in a thread, so queries go on being
        answered; the authority then builds the new versions in slices. A
        reload asked for while one runs happens once, after it.
        """
        if self._running is not None:
            if not self._again:
                log.info("reload: one is in progress; another will follow it")
            self._again = True
            return self._running
        self._running = d = self._reload_once()
        d.addBoth(self._finished)
        return d

    def _finished(self, result):
        self._running = None
        if self._again:
            self._again = False
            self.reload()
        elif self._reconfigured and self.after_reload is not None:
            # (A reload of zone files alone changes only what the workers
            # are streamed: they stay.)
            self._reconfigured = False
            self.after_reload()
        return result

    def _reload_once(self) -> defer.Deferred:
        """Read the configuration (listing the zone directory: ten thousand
        files take a second) and the changed zone files in a thread."""
        log.info("reload: reading the configuration and zone files")
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._read)
        d.addCallback(self._read_done)
        d.addErrback(self._crashed)
        d.addCallback(self._save_snapshot)
        return d

    def _save_snapshot(self, result):
        """What the reload parsed, written to the zone snapshot in a thread
        once the new data is served (then ``result``): the snapshot is a
        cache for the next start, its new entries kept in memory meanwhile,
        and its commit (5-20 ms) had delayed serving. The next reload waits
        for it (one reader of the files at a time)."""
        return save_snapshot_in_thread(self.reactor, self.files).addCallback(lambda _: result)

    def _read(self):
        """(settings, what _read_zones found, new signers, whether the
        configuration changed), or the ConfigError (in a thread: reading
        keys, or making them, costs milliseconds a zone)."""
        try:
            settings = self.options.load_settings()
        except ConfigError as e:
            return e, None, None, False
        loaded = _read_zones(settings, self.files, self._zones_as_before(settings))
        signers = self._new_signers(with_runtime_zones(settings, self.runtime))
        return settings, loaded, signers, settings != self.settings

    def _zones_as_before(self, settings: Settings) -> bool:
        """Does ``settings`` configure the very zones served now (the same
        ZoneSettings objects: aliasd.base.config keeps them while the
        configuration and the zone directory's files are the same), with the
        same catalog, TSIG keys, runtime zones' defaults and journal
        bounds? Then only the zones whose file changed need a look
        (``_apply_changed``). Read in the reload's thread: ``self.settings``
        changes only when a reload is applied, never during one."""
        before = self.settings
        zones = settings.zones
        return (
            len(zones) == len(before.zones) and all(map(operator.is_, zones, before.zones))
            and settings.catalog == before.catalog and settings.keys == before.keys
            and settings.zone_defaults == before.zone_defaults
            and settings.server.journal_size == before.server.journal_size
            and settings.server.journal_db_max_size == before.server.journal_db_max_size
        )

    def _read_done(self, read):
        settings, loaded, signers, reconfigured = read
        if isinstance(settings, ConfigError):
            log.error("reload failed, nothing changed: {error}", error=str(settings))
            self.summary = f"reload failed, nothing changed: {settings}"
            self._count("failed")
            return False
        self._reconfigured = self._reconfigured or reconfigured
        *loaded, complete = loaded
        if not complete:
            return self._apply_changed(loaded, settings, signers)
        return self._apply(loaded, settings, signers)

    def _new_signers(self, settings):
        """Signers (with their keys, made if missing) for the zones that
        need a new one: those that turned dnssec on, or all signed zones
        when [dnssec] changed; or the KeyFileError/OSError (in a thread)."""

        current = set(self.authority.signers)  # (replaced whole by set_signers, never changed in place)
        wanted, same = self._signing_wanted(settings)
        try:
            return make_signers(settings, only=wanted - current if same else wanted)
        except (KeyFileError, OSError) as e:
            return e

    def _apply(self, loaded, settings, signers=None) -> defer.Deferred:
        """Hand what was read to the authority (reactor thread)."""
        results, prepared, parsed = loaded
        out = _Outcome()
        dynamic = getattr(self.options, "dynamic", None)
        self._configured_over_runtime(settings, dynamic)
        if dynamic is not None:
            served = with_runtime_zones(settings, self.runtime)
            leaving = self._leave_dynamic(dynamic, served)
            dynamic.configure(served.zones)
        for zone in settings.zones:
            if dynamic is not None and zone.name in leaving:
                out.sources.append(leaving[zone.name])  # its records, now in its file
            else:
                self._take(zone, results[zone.name], dynamic, out)
        sources, failed, held = out.sources, out.failed, out.held
        frames, continued = out.frames, out.continued
        self.broken.keep_only(z.name for z in settings.zones)
        self._warn_restart_needed(settings)
        served = with_runtime_zones(settings, self.runtime)
        configured = {z.name for z in settings.zones}
        sources += [self.authority.sources[z.name] for z in served.zones
                    if z.file is None and z.name in self.authority.sources and z.name not in configured]
        sources = self.catalog.add_to(settings, sources, held)
        old = set(self.authority.sources) | self.authority.held
        new = {s.origin for s in sources} | set(held)
        applied = self._applied = []  # what _crashed reports if a step fails
        self._apply_zone_settings(served, applied)
        self._apply_server_wide(settings, applied)
        self.authority.set_sources(sources, prepared, frames=frames, continued=continued, held=held)
        self._apply_signing(served, signers, failed, applied)
        self.settings = settings
        return self._when_served(len(new), new - old, old - new, parsed, out)

    def _apply_changed(self, loaded, settings, signers=None) -> defer.Deferred:
        """_apply for a configuration whose zones are those served
        (``_zones_as_before``): ``loaded`` holds only the zones whose file
        changed (ZoneFiles.read_changed), and only they are looked at; the
        settings that are not per zone are applied as _apply does. No pass
        over the zones on the reactor: a reload of one changed file among
        ten thousand costs that file."""
        results, prepared, parsed = loaded
        out = _Outcome()
        dynamic = getattr(self.options, "dynamic", None)
        for zone, result in results:
            self._take(zone, result, dynamic, out)
        self._warn_restart_needed(settings)
        applied = self._applied = []
        self._apply_server_wide(settings, applied)
        served = self.authority.sources
        changed = [source for source in out.sources if served.get(source.origin) is not source]
        if changed:  # (files read again with the same content, as a dynamic zone's own: nothing to do)
            self.authority.add_sources(changed, prepared, frames=out.frames, continued=out.continued)
        self._apply_signing(with_runtime_zones(settings, self.runtime), signers, out.failed, applied)
        self.settings = settings
        return self._when_served(len(self.authority.sources) + len(self.authority.held), (), (), parsed, out)

    def _take(self, zone: ZoneSettings, result, dynamic, out: _Outcome) -> None:
        """What ``zone`` serves now that its file gave ``result`` (its source
        or the ZoneFileError), into ``out``."""
        if not isinstance(result, ZoneFileError):
            if self.broken.loaded(zone.name):
                out.mended.append(zone.name)
            if dynamic is not None and zone.dynamic:
                # The zone's truth stays; a hand edit of its file is
                # merged into it (aliasd.update.dynamic).
                current = self.authority.sources.get(zone.name)
                result, out.frames[zone.name] = dynamic.reload_source(
                    result, self.files.digest_of(zone.name), current)
                if current is not None and result is not current:
                    out.continued.add(zone.name)
            out.sources.append(result)
            return
        out.failed.append(zone.name)
        source = self.broken.failed(zone, result, self.files, dynamic,
                                    current=self.authority.sources.get(zone.name), at="reload")
        if source is None:
            out.held.append(zone.name)
        else:
            out.sources.append(source)

    def _apply_server_wide(self, settings: Settings, applied: list) -> None:
        """The settings that are not per zone: resolver, logging, TLS
        certificate, API keys."""
        self._apply_resolver(settings)
        applied.append("resolver settings")
        self._apply_logging(settings)
        tls_context = getattr(self.options, "tls_context", None)
        if tls_context is not None and settings.tls.enabled and tls_context.reload(settings.tls, str(settings.path)):
            log.info("reload: TLS certificate {path} loaded", path=str(settings.tls.certificate))
        applied.append("TLS certificate")
        if self.api is not None and settings.api.enabled:  # keys and default SOA; the listeners stay
            self.api.reconfigure(settings.api, settings.catalog.name.to_text() if settings.catalog else "")
            applied.append("API keys")

    def _apply_signing(self, served: Settings, signers, failed: list, applied: list) -> None:
        """Signers and key rollovers of the served zones, the last step."""
        self._apply_signers(served, signers, set(failed))
        if self.rollovers is not None:
            configure_rollovers(self.rollovers, served, self.authority.signers)
        applied.append("zones")
        self._applied = []

    def _when_served(self, zones: int, added, removed, parsed: int, out: _Outcome) -> defer.Deferred:
        """Fires with True once the new versions are served, by every
        worker too (False if a file failed), after logging the summary line."""
        failed, mended = out.failed, out.mended

        def done(_):
            if self.authority.waiting_for_state:
                log.error("reload: the new versions wait for the state directory (see above); "
                          "they are served once their serials are recorded")
            self.summary = (
                f"reload done: {zones} zones ({len(added)} added{_named(added)}, "
                f"{len(removed)} removed{_named(removed)}, {parsed} file(s) read again"
                + (f", {len(mended)} mended{_named(mended)}" if mended else "")
                + f"), {len(failed)} error(s){_named(failed)}"
            )
            log.info("{summary}", summary=self.summary)
            self._count("ok" if not failed else "partial")
            return not failed

        # Served means served by every worker process too (the new versions
        # reach them as a stream: aliasd.service.workers).
        return self.authority.when_idle().addCallback(lambda _: self.authority.synced()).addCallback(done)

    def _configured_over_runtime(self, settings, dynamic) -> None:
        """Zones created at runtime that the configuration names now are the
        configuration's: the records created at runtime are dropped (a short
        write on the reactor, for this rare case), and the configured zone
        starts from its file."""
        if self.runtime is None or dynamic is None:
            return
        for name in sorted(set(self.runtime.zones) & set(configured_zones(settings))):
            log.error("reload: zone {zone} was created at runtime and is configured now: the configured "
                      "zone is served from its file; the records created at runtime are dropped",
                      zone=name.to_text())
            self.runtime.forget(name)
            dynamic.purge(name)
            self.authority.set_sources([s for o, s in self.authority.sources.items() if o != name],
                                       held=self.authority.held)

    def _apply_zone_settings(self, settings, applied: list) -> None:
        """The served zones' transfer, update and NOTIFY settings (``applied``
        names the steps done, for _crashed)."""
        self.handler.access = TransferAccess(settings.transferable_zones)
        applied.append("transfer access")
        keyring = keyring_from(settings.keys)
        self.handler.keyring = keyring
        self.handler.updates.rules = {z.name: z.update for z in settings.zones if z.update}
        self.handler.updates.max_records = {z.name: z.max_records for z in settings.zones if z.max_records}
        apply_journal_limits(self.authority, settings)
        applied.append("TSIG keys")
        self.notifier.targets = {z.name: z.notify for z in settings.transferable_zones}
        self.notifier.keys = {
            z.name: keyring[dns.name.from_text(z.transfer_key)]
            for z in settings.transferable_zones
            if z.transfer_key
        }
        applied.append("NOTIFY targets")

    def _zone_settings_changed(self, origin: dns.name.Name, zone: ZoneSettings | None) -> None:
        """One zone's transfer, update and NOTIFY settings (None: the zone is
        gone), as _apply_zone_settings has them for every zone; a zone
        created or deleted at runtime, one at a time among thousands: the
        others' are copied, not made again."""
        handler, notifier = self.handler, self.notifier
        rules, max_records = dict(handler.updates.rules), dict(handler.updates.max_records)
        targets, keys = dict(notifier.targets), dict(notifier.keys)
        for table in (rules, max_records, targets, keys):
            table.pop(origin, None)
        if zone is not None:
            if zone.update:
                rules[origin] = zone.update
            if zone.max_records:
                max_records[origin] = zone.max_records
            targets[origin] = zone.notify
            if zone.transfer_key:
                keys[origin] = handler.keyring[dns.name.from_text(zone.transfer_key)]
        handler.access = handler.access.changed(origin, zone)
        handler.updates.rules, handler.updates.max_records = rules, max_records
        notifier.targets, notifier.keys = targets, keys
        self.authority.journals.set_limit_for(origin, zone.journal_max_usage if zone is not None else None)

    def serve_runtime(self, origin: dns.name.Name, source: ZoneSource | None, frames: list) -> None:
        """A zone created, changed or deleted at runtime (``source`` None:
        deleted; aliasd.service.zonemanager): served or not from now on,
        in the catalog or not, with [zone-defaults]' settings; ``frames``
        are written with its next version."""
        self.serve_runtime_many({origin: (source, frames)})

    def serve_runtime_many(self, changes: dict, prepared: dict | None = None) -> None:
        """serve_runtime for several zones (origin -> (source, frames)),
        ``prepared`` by ZoneAuthority.prepare (in a thread) for some: each
        zone costs what it holds, and the catalog changes by their members
        alone (its IXFR difference is theirs); no pass over the served
        zones, unless the catalog must be built whole."""
        settings = self.settings
        made = self.runtime.settings(settings.zone_defaults)
        dynamic = getattr(self.options, "dynamic", None)
        added, removed, all_frames = [], [], {}
        for origin, (source, frames) in changes.items():
            zone = made.get(origin) if source is not None else None
            if dynamic is not None:
                dynamic.runtime_zone(origin, zone is not None)
            self._zone_settings_changed(origin, zone)
            if source is None:
                removed.append(origin)
            else:
                added.append(source)
            if frames:
                all_frames[origin] = frames
        catalog = settings.catalog.name if settings.catalog is not None else None
        members = None
        if catalog is None or catalog in self.authority.sources:
            members = self.catalog.members_changed(settings, {o: s is not None for o, (s, _) in changes.items()})
        if catalog is not None and members is None:  # the catalog built whole: one pass over the zones
            by_origin = dict(self.authority.sources)  # (a copy keeps the names' hashes)
            by_origin.pop(catalog, None)
            for origin in removed:
                by_origin.pop(origin, None)
            by_origin.update((source.origin, source) for source in added)
            sources = self.catalog.add_to(settings, list(by_origin.values()), self.authority.held)
            self.authority.set_sources(sources, prepared, frames=all_frames or None, held=self.authority.held)
            return
        if removed:
            self.authority.remove_sources(removed)
        if added:
            self.authority.add_sources(added, prepared, frames=all_frames)
        if members is not None and members[1]:
            # Served as an update of the catalog is: its difference compares
            # the changed members' owners only. (Its wait fails only when the
            # catalog is replaced or removed meanwhile, by a reload that
            # serves the catalog it built.)
            self.authority.update_source(members[0], [], members[1], why="members changed").addErrback(lambda _: None)

    def reload_zone(self, name: dns.name.Name) -> defer.Deferred:
        """Read one zone's file again (``aliasd-ctl reload ZONE``, ``thaw``);
        fires with (ok, summary line). Never at the same time as a reload:
        it waits for the one running, and one asked for meanwhile follows."""
        zone = next((z for z in self.settings.zones if z.name == name), None)
        if zone is None:
            return defer.fail(KeyError(f"zone {name.to_text()} is not configured"))
        if self._running is not None:
            return self._after_running(self.reload_zone, name)
        self._running = d = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), self.files.read_one, zone)
        d.addCallback(self._zone_read, zone)
        d.addBoth(self._finished)
        return d

    def reload_fresh(self) -> defer.Deferred:
        """A reload that reads the files after this call (``aliasd-ctl
        reload``): one running now may have read them before; fires with
        its result."""
        if self._running is None:
            return self.reload()
        return self._after_running(self.reload_fresh)

    def _after_running(self, f, *args) -> defer.Deferred:
        """``f(*args)`` once the reload running now is done; its result."""
        after = defer.Deferred()

        def then(result):
            f(*args).chainDeferred(after)
            return result
        self._running.addBoth(then)
        return after

    def _zone_read(self, result, zone: ZoneSettings) -> defer.Deferred | tuple[bool, str]:
        name = zone.name.to_text()
        current = self.authority.sources.get(zone.name)
        dynamic = getattr(self.options, "dynamic", None)
        if isinstance(result, ZoneFileError):
            held = zone.name in self.authority.held
            source = self.broken.failed(zone, result, self.files, dynamic, current=current, at="reload")
            if held and source is not None:  # SERVFAIL until now: the store's last good data instead
                self._set_one(zone.name, source, {}, set())
            keeps = ("keeps serving its previous data" if current is not None
                     else "serves its last good data from the store" if source is not None
                     else "answers SERVFAIL until its file is mended")
            return False, f"zone {name}: {result}; the zone {keeps}"
        mended = self.broken.loaded(zone.name)
        frames, continued = {}, set()
        if dynamic is not None and dynamic.is_dynamic(zone.name):
            result, frames[zone.name] = dynamic.reload_source(result, self.files.digest_of(zone.name), current)
            if current is not None and result is not current:
                continued.add(zone.name)
        if result is current:
            return True, f"zone {name}: file unchanged, serial {self.authority.versions[zone.name].serial}"
        self._set_one(zone.name, result, frames, continued)
        log.info("reload of zone {zone}: its file was read again{mended}", zone=name,
                 mended=" (mended)" if mended else "")

        def done(_):
            version = self.authority.versions.get(zone.name)
            serial = version.serial if version is not None else "none (not served yet)"
            return True, f"zone {name}: file read again, serial {serial}"
        return self.authority.when_idle().addCallback(done)

    def _set_one(self, origin: dns.name.Name, source: ZoneSource, frames: dict, continued: set) -> None:
        """Serve ``source`` for one zone, the others as they are (no pass over them)."""
        self.authority.add_sources([source], frames=frames, continued=continued)

    def _leave_dynamic(self, dynamic, settings) -> dict:
        """Zones whose ``update`` rules are gone: their records are written
        to their files first, and served as they are (zone -> source)."""
        still = {z.name for z in settings.zones if z.dynamic or z.file is None}
        files = {z.name: z.file for z in settings.zones}
        leaving = {}
        for origin in sorted(dynamic.zones - still):
            source = self.authority.sources.get(origin)
            if source is None or origin not in files:
                continue  # removed as well: its state is kept
            try:
                dynamic.leave(source, files[origin])
            except OSError as e:
                log.error("reload: zone {zone} has no update rules any more, but its records cannot be "
                          "written to {path}: {error}; they are served as they are, and the journal "
                          "keeps them: put the rules back (or fix the file's directory) and reload",
                          zone=origin.to_text(), path=str(files[origin]), error=str(e))
                leaving[origin] = source
                continue
            log.info("reload: zone {zone} has no update rules any more: its records (acknowledged "
                     "updates included) are written to {path}, and served from it",
                     zone=origin.to_text(), path=str(files[origin]))
            leaving[origin] = source
        return leaving

    _STEPS = ("transfer access", "TSIG keys", "NOTIFY targets", "resolver settings", "TLS certificate", "zones")

    def _crashed(self, failure) -> bool:
        applied, self._applied = self._applied, []
        if not applied:
            log.failure("reload failed, nothing changed", failure)
        else:
            # Some of the new configuration is in use: say which, never
            # "nothing changed" (issue 12.8).
            log.failure(
                "reload failed part way: applied {applied}; not applied {missing}; the server goes "
                "on with that mix until a reload succeeds",
                failure,
                applied=", ".join(applied),
                missing=", ".join(step for step in self._STEPS if step not in applied),
            )
        self._count("failed")
        return False

    def _count(self, result: str) -> None:
        if self.stats is not None:
            self.stats.inc("aliasd_reloads_total", result=result)

    def _signing_wanted(self, settings) -> tuple[set, bool]:
        """(the zones ``settings`` signs, whether [dnssec] is as before)."""
        wanted = set(make_signers_for(settings))
        before = getattr(self, "settings", None)
        same = before is not None and settings.dnssec == before.dnssec and \
            _policies_by_zone(settings) == _policies_by_zone(before)
        return wanted, same

    def _apply_signers(self, settings, fresh, held=frozenset()) -> None:
        """Zones that turned dnssec on get their signer (``fresh``, made
        with their keys by ``_new_signers``); those that turned it off are
        served unsigned; a change of [dnssec] settings signs every signed
        zone again. A zone in ``held`` (its file could not be read) is not
        signed anew: its previous data was checked as an unsigned zone's,
        and may hold DNSSEC records of its own (aliasd.zonefile.signer_conflicts)."""
        current = self.authority.signers
        wanted, same = self._signing_wanted(settings)
        wanted -= held - set(current)
        if same and wanted == set(current):
            return
        if isinstance(fresh, Exception):
            log.error("reload: DNSSEC keys: {error}; signing is left as it was", error=str(fresh))
            return
        keep = {o: s for o, s in current.items() if o in wanted and same}
        fresh = {o: s for o, s in (fresh or {}).items() if o in wanted and o not in keep}
        missing = wanted - set(keep) - set(fresh)
        if missing:  # (signers changed between reading and now)
            log.error("reload: no DNSSEC keys read for {zones}; signing is left as it was",
                      zones=", ".join(sorted(z.to_text() for z in missing)))
            return
        self.authority.set_signers({**keep, **fresh})
        log.info("reload: {signed} zone(s) signed ({new} newly)", signed=len(keep) + len(fresh), new=len(fresh))

    def _apply_resolver(self, settings) -> None:
        r, new = self.resolver, settings.resolver
        r.min_refresh, r.max_refresh, r.serve_stale = new.min_refresh, new.max_refresh, new.serve_stale
        r.query_timeout = (new.timeout, new.timeout * 2)
        r.max_in_flight = new.max_in_flight
        r.min_ttl = new.min_ttl
        if new.require_validated != r.require_validated:
            r.require_validated = new.require_validated
            if new.require_validated:  # every target asked again now, to fill the signed zones' view
                r.refresh_all()
            else:  # signed zones take every answer again
                self.authority.rebuild()
            log.info("reload: [resolver] require-validated now {value}", value=new.require_validated)
        if new.upstreams != self.settings.resolver.upstreams:
            # Lookups waiting on the old upstreams are asked again of the new
            # ones; the old client is closed, its sockets with it.
            r.replace_upstream(self.make_upstream(new.upstreams))
            log.info("reload: upstream resolvers now {upstreams}",
                     upstreams=", ".join(str(u) for u in new.upstreams) or "(none)")

    def _apply_logging(self, settings) -> None:
        """[log] levels and [server] version take effect at once."""
        levels = getattr(self.options, "log_levels", None)
        if levels is not None:
            logsetup.levels(settings.log, levels)
        status = getattr(self.handler, "status", None)  # the CH TXT answers (none in some tests)
        if status is not None:
            status.version = settings.server.version

    def _warn_restart_needed(self, settings) -> None:
        before, after = self.settings, settings
        for what, old, new in (
            ("[server] listen", before.server.listen, after.server.listen),
            ("[server] port", before.server.port, after.server.port),
            ("[server] state-dir", before.server.state_dir, after.server.state_dir),
            ("[statistics]", before.statistics, after.statistics),
            ("[rate-limit]", before.rate_limit, after.rate_limit),
            ("[tls] listen or port", (before.tls.enabled, before.tls.listen, before.tls.port),
             (after.tls.enabled, after.tls.listen, after.tls.port)),
            ("[api] listen or TLS files", (before.api.listen, before.api.tls_certificate, before.api.tls_key),
             (after.api.listen, after.api.tls_certificate, after.api.tls_key)),
        ):
            if old != new:
                log.warn("reload: {what} changed; it takes effect at the next restart", what=what)


#: The reload summary names at most this many zones in each list.
NAMED_IN_SUMMARY = 10


def _named(origins) -> str:
    """`` [a., b.]`` for the summary line, at most NAMED_IN_SUMMARY names,
    then ``and N more``; empty for none."""
    names = sorted(o.to_text() for o in origins)
    if not names:
        return ""
    text = ", ".join(names[:NAMED_IN_SUMMARY])
    if len(names) > NAMED_IN_SUMMARY:
        text += f" and {len(names) - NAMED_IN_SUMMARY} more"
    return f" [{text}]"


def _read_zones(settings, files: ZoneFiles, changed_only: bool = False):
    """Parse and index the zone files that changed (runs in a thread; the
    snapshot is written after serving: Reloader._save_snapshot):
    (results, prepared, files parsed, complete). ``changed_only`` (the
    zones are those read last time): results holds (zone, result) for the
    zones whose file changed alone, and complete is False, unless the
    files were not read for these very zones (then every zone's result by
    name, as ZoneFiles.read_all gives them)."""
    found = files.read_changed(settings.zones) if changed_only else None
    results, fresh = files.read_all(settings.zones) if found is None else found
    return results, ZoneAuthority.prepare(fresh), files.parsed, found is None


def save_snapshot_in_thread(reactor, files: ZoneFiles) -> defer.Deferred:
    """``save_snapshot`` in the reactor's thread pool; fires (with None)
    once it is done, written or not (a failure is logged)."""
    saved = threads.deferToThreadPool(reactor, reactor.getThreadPool(), save_snapshot, files)
    saved.addErrback(lambda failure: log.failure("zone snapshot not written", failure))
    return saved


def save_snapshot(files: ZoneFiles) -> None:
    """Write what was parsed to the snapshot (in a thread); a failure is
    only logged: the snapshot is a cache, the next start parses instead."""
    if files.snapshot is None or not files.snapshot.pending():
        return
    try:
        files.snapshot.save()
    except OSError as e:
        log.warn("zone snapshot {path} not written: {error}", path=str(files.snapshot.path), error=e.strerror)


class ReloadService(service.Service):
    """Turns SIGHUP into a reload, run in the reactor thread."""

    def __init__(self, reloader: Reloader, reactor):
        self.reloader = reloader
        self.reactor = reactor
        self._previous = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.reactor.callFromThread(self.reloader.reload)

    def stopService(self):
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None
