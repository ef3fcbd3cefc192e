"""Dynamic zones: their truth is the state store's, their file a copy.

Why a module of its own: a zone with ``update`` rules changes without its
file. Its records are kept in its journal (aliasd.replicate.journaldb): a
snapshot (``S``) of the whole zone, then each acknowledged update (``U``);
that is the zone's truth, whatever is on disk. aliasd writes the records
back to the zone file every ``[server] dynamic-file-sync`` seconds and at
a clean stop, as BIND does, and records each file it writes or takes
(``F``: its SHA-256 and its records) before the file is in place.

One rule decides what such a zone serves, at start, at every reload, and
when it is added again after a removal:

- the file on disk is one aliasd wrote or took (its SHA-256 is known): the
  zone serves its truth; the file changes nothing;
- the file was edited by hand: the edit is the difference between the
  file aliasd last wrote or took (the latest ``F``) and the file now, and
  it is applied on top of the truth, RRset by RRset, as Knot's
  ``zonefile-load: difference`` does. Where the edit and an update changed
  the same RRset, the edit wins and the update's records lost are named in
  the log; every other update stays. The result is recorded as a new
  snapshot, with the edited file as the next base.

A reload builds the merged zone on the zone's newest source, updates in
flight included; its snapshot is written in the same batch as the next
version, after those updates' records, so they are applied and answered
NOERROR, and nothing refused ever comes back. A zone whose ``update``
rules are removed has its records written to its file first, and serves
them as a plain zone. A zone removed from the configuration keeps its
journal, so it comes back whole when it is added again.

An operator who edits such a file safely freezes the zone first
(``aliasd-ctl freeze``): its file is written, and UPDATE is refused until
``aliasd-ctl thaw`` reads the file again. The frozen zones are noted in the
store's ``meta`` sub-database, so a freeze outlives a reload and a restart.
The records a merged hand edit dropped are kept (``dropped``) until the
zone changes again, for ``aliasd-ctl zone-status``.

Journals of earlier releases start with a ``B`` ("aliasd took this file")
instead of a snapshot; they are read once the old way and then converted.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import dns.name
import dns.rdatatype
import dns.serial
from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger

from aliasd.base import store
from aliasd.base.state import fsync_directory
from aliasd.replicate import journaldb
from aliasd.zones.zonefile import ZoneSource, type_text

log = Logger()


def master_file_text(source: ZoneSource) -> str:
    """The source's records (ALIAS included) as a master file aliasd reads back."""
    origin = source.origin
    lines = [
        f"; zone {origin.to_text()}: written by aliasd {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC.",
        "; A dynamic zone: aliasd writes this file. Edits made here while aliasd",
        "; runs are merged at the next reload (SIGHUP): updates received since",
        "; aliasd wrote the file stay, except in the RRsets the edit changed.",
        f"$ORIGIN {origin.to_text()}",
    ]
    apex = source.key
    keys = [apex] + sorted(k for k in source.records if k != apex)
    for key in keys:
        packed = source.records[key]
        owner = store.name_of(store.owner_of(packed))
        node = store.PackedNode(packed, owner)
        shown = owner.relativize(origin).to_text() if owner != origin else "@"
        order = sorted(node, key=lambda t: (t != 6, t))  # the SOA first
        for rdtype in order:
            rrset = node[rdtype]
            for rd in rrset:
                text = rd.to_text(origin=origin, relativize=True)
                lines.append(f"{shown}\t{rrset.ttl}\tIN\t{type_text(rdtype)}\t{text}")
    return "\n".join(lines) + "\n"


def _rrsets(packed: bytes | None) -> dict[int, tuple[int, frozenset[bytes]]]:
    """type -> (TTL, rdata wires) of a packed node (none: {})."""
    if packed is None:
        return {}
    return {rdtype: (ttl, frozenset(store.rdata_wires(packed, start, end)))
            for rdtype, ttl, _, start, end in store.directory(packed)}


def merge_edit(base: dict, edited: dict, current: dict) -> tuple[dict, int, list[tuple[str, int, str, str]]]:
    """``current`` with the edit from ``base`` to ``edited`` applied, RRset
    by RRset (all three: owner key -> packed node). Returns the merged
    records, how many RRsets the edit changed, and the records that updates
    had made and the edit replaced, as (owner, TTL, type, data)."""
    merged = dict(current)
    changed = 0
    lost: list[tuple[str, int, str, str]] = []
    for key in dict.fromkeys([*base, *edited]):
        before, after = base.get(key), edited.get(key)
        if before == after:
            continue
        b, e = _rrsets(before), _rrsets(after)
        now = merged.get(key)
        c = _rrsets(now)
        touched = False
        for rdtype in dict.fromkeys([*b, *e]):
            if b.get(rdtype) == e.get(rdtype):
                continue
            changed += 1
            touched = True
            if c.get(rdtype) != b.get(rdtype) and c.get(rdtype) is not None and rdtype != dns.rdatatype.SOA:
                # (the SOA's serial moves on whatever the file says: not a loss)
                # An update changed this RRset too: the edit wins.
                node = store.PackedNode(now, store.name_of(store.owner_of(now)))
                kept = e.get(rdtype, (0, frozenset()))[1]
                for rd in node[rdtype]:
                    if rd.to_wire() not in kept:
                        lost.append((node[rdtype].name.to_text(), node[rdtype].ttl, type_text(rdtype), rd.to_text()))
            if rdtype in e:
                c[rdtype] = e[rdtype]
            else:
                c.pop(rdtype, None)
        if not touched:
            continue
        owner = store.owner_of(after if after is not None else before)
        if c:
            order = sorted(c, key=lambda rdtype: (rdtype != 6, rdtype))  # the SOA first
            merged[key] = store.pack(owner, [(t, c[t][0], sorted(c[t][1])) for t in order])
        else:
            merged.pop(key, None)
    return merged, changed, lost


def _replay(frames: list, epoch: int) -> tuple[dict, set, tuple | None, int]:
    """A journal from its snapshot at ``epoch`` on: (the records with
    every update applied, the SHA-256 of files aliasd wrote or took, the
    last file's base or None, how many updates)."""
    sha, _, records = journaldb.decode_snapshot(frames[epoch][1])
    known = {sha}
    base = None
    updates = 0
    records = dict(records)
    for kind, payload in frames[epoch + 1:]:
        if kind == journaldb.UPDATE:
            for key, packed in journaldb.decode_nodes(payload)[1].items():
                if packed is None:
                    records.pop(key, None)
                else:
                    records[key] = packed
            updates += 1
        elif kind == journaldb.FILE:
            base = journaldb.decode_file(payload)
            known.add(base[0])
        elif kind == journaldb.WRITTEN:  # an earlier release wrote the file
            known.add(journaldb.decode_written(payload)[0])
    return records, known, base, updates


def _snapshot_base(snapshot_frame, records: dict) -> tuple:
    """The base of a hand edit when the journal records no file: the
    snapshot's file, with ``records`` (its records, updates applied)."""
    sha, serial, _ = journaldb.decode_snapshot(snapshot_frame[1])
    return sha, serial, dict(records)


class DynamicZones:
    """The zones with update rules: their truth, their file, its base."""

    def __init__(self, files: journaldb.JournalStore, zones=()):
        self.files = files
        self.zones: set[dns.name.Name] = set()
        self.paths: dict[dns.name.Name, Path] = {}
        self.file_sha: dict[dns.name.Name, bytes] = {}  # the file on disk, as aliasd last read or wrote it
        self.known: dict[dns.name.Name, set[bytes]] = {}  # files that are aliasd's (F and S records)
        # The file aliasd last wrote or took: (SHA-256, serial, records), the base of a hand edit.
        self.base: dict[dns.name.Name, tuple[bytes, int, dict]] = {}
        self.written: dict[dns.name.Name, ZoneSource] = {}  # the source last written or read
        # Zone -> (the source a merged hand edit made, the records it dropped): shown until the zone changes.
        self.dropped: dict[dns.name.Name, tuple[ZoneSource, list[tuple[str, int, str, str]]]] = {}
        self.frozen: set[dns.name.Name] = self._load_frozen()
        self.configure(zones)

    # -- freeze and thaw (aliasd-ctl) --------------------------------------------

    _FROZEN = b"frozen:"

    def _load_frozen(self) -> set[dns.name.Name]:
        db = self.files.db
        with db.reading() as txn:
            return {store.name_of(k[len(self._FROZEN):]) for k, _ in db.items_under(txn, db.meta, self._FROZEN)}

    def set_frozen(self, origin: dns.name.Name, frozen: bool) -> None:
        """Note in the store that the zone is frozen (refuses UPDATE), or not
        any more; raises OSError."""
        db = self.files.db
        key = self._FROZEN + store.key_of(origin)
        with db.write() as txn:
            if frozen:
                txn.put(key, b"1", db=db.meta)
            else:
                txn.delete(key, db=db.meta)
        if frozen:
            self.frozen.add(origin)
        else:
            self.frozen.discard(origin)

    def dropped_by_edit(self, origin: dns.name.Name, current: ZoneSource | None) -> list[tuple[str, int, str, str]]:
        """The records the last merged hand edit dropped, while ``current``
        (the zone's newest source) is still what that merge made."""
        found = self.dropped.get(origin)
        if found is None or found[0] is not current:
            return []
        return found[1]

    def purge(self, origin: dns.name.Name) -> None:
        """Forget what is kept of a zone no longer configured (its journal
        and the notes about it; never its served serial); raises OSError."""
        self.files.remove(store.key_of(origin))
        if origin in self.frozen:
            self.set_frozen(origin, False)
        for table in (self.known, self.base, self.file_sha, self.written, self.dropped):
            table.pop(origin, None)

    def configure(self, zones) -> None:
        """The served zones (ZoneSettings); the dynamic ones are kept: those
        with update rules, and those without a file (created at runtime:
        their truth is the store alone, aliasd.update.runtime)."""
        self.zones = {z.name for z in zones if z.dynamic or z.file is None}
        self.paths = {z.name: z.file for z in zones if z.dynamic and z.file is not None}

    def runtime_zone(self, origin: dns.name.Name, served: bool) -> None:
        """A zone created (or deleted) at runtime is dynamic (or gone): the
        set is replaced, not changed in place, and not made again."""
        self.zones = self.zones | {origin} if served else self.zones - {origin}

    def is_dynamic(self, origin: dns.name.Name) -> bool:
        return origin in self.zones

    # -- the truth, at start and when a zone is added ---------------------------

    def start_source(self, source: ZoneSource, file_sha: bytes) -> ZoneSource:
        """What a dynamic zone serves when it starts being served (at start,
        or added by a reload): its truth, with a hand edit of its file
        merged in; what that decided is recorded in its journal at once."""
        truth, frames = self._start(source, file_sha)
        if frames:
            self.files.append(source.key, frames)
        return truth

    def _start(self, source: ZoneSource, file_sha: bytes) -> tuple[ZoneSource, list]:
        origin = source.origin
        frames = self.files.read(source.key)
        epoch = max((i for i, (kind, _) in enumerate(frames) if kind in (journaldb.SNAPSHOT, journaldb.BASE)),
                    default=None)
        if epoch is None:
            return self._take(source, file_sha, source, "first load")
        if frames[epoch][0] == journaldb.BASE:
            return self._start_legacy(source, file_sha, frames, epoch)
        records, known, base, updates = _replay(frames, epoch)
        truth = source if records == dict(source.records) else ZoneSource.of(origin, source.path, records)
        if updates:
            log.info("zone {zone}: {count} update(s) from the journal applied on top of its snapshot",
                     zone=origin.to_text(), count=updates)
        if file_sha in known:
            self.known[origin] = known
            self.file_sha[origin] = file_sha
            self.base[origin] = base if base is not None and base[0] == file_sha else (
                file_sha, source.serial, dict(source.records))
            self.written[origin] = source  # the file: stale() writes the truth when they differ
            return truth, []
        if base is None:  # no file recorded: the snapshot's file, if it is the one on disk, is the base
            base = _snapshot_base(frames[epoch], records)
        return self._merge(source, file_sha, truth, base)

    def stored_source(self, origin: dns.name.Name, path: Path) -> ZoneSource | None:
        """A dynamic zone's truth from the store alone, for a zone whose
        file is broken at start: served until the file is mended, which is
        then merged into it as a hand edit (its base is the file aliasd last
        wrote or took). None without a snapshot in the journal."""
        key = store.key_of(origin)
        frames = self.files.read(key)
        epoch = max((i for i, (kind, _) in enumerate(frames) if kind == journaldb.SNAPSHOT), default=None)
        if epoch is None or any(kind == journaldb.BASE for kind, _ in frames[epoch:]):
            return None  # none, or an earlier release's journal: read with its file (_start_legacy)
        records, known, base, _ = _replay(frames, epoch)
        truth = ZoneSource.of(origin, path, records)
        self.known[origin] = known  # the broken file is not among them: never written over
        self.base[origin] = base if base is not None else _snapshot_base(frames[epoch], records)
        self.written[origin] = truth
        return truth

    def _start_legacy(self, source, file_sha, frames, epoch) -> tuple[ZoneSource, list]:
        """A journal of an earlier release (B, W, U and S frames): read as
        it was, then converted to a snapshot and the file's record."""
        known: set[bytes] = set()
        base = None
        for index, (kind, payload) in enumerate(frames):
            if kind == journaldb.BASE:
                known, epoch = {payload[:32]}, index
                base = (index, source.records, None) if payload[:32] == file_sha else None
            elif kind == journaldb.SNAPSHOT:
                sha, serial, snapshot = journaldb.decode_snapshot(payload)
                known, epoch = {sha}, index
                base = (index, snapshot, serial)
            elif kind == journaldb.WRITTEN:
                sha, serial = journaldb.decode_written(payload)
                known.add(sha)
                if sha == file_sha:
                    base = (index, source.records, serial)
        if base is None or file_sha not in known:
            updates = sum(1 for kind, _ in frames[epoch:] if kind == journaldb.UPDATE)
            log.warn(
                "zone {zone}: the file {path} was changed by hand, and the journal of the earlier "
                "release does not hold the file it wrote: serving the file; {count} update(s) in "
                "the journal are not applied on top of it",
                zone=source.origin.to_text(), path=str(source.path), count=updates,
            )
            return self._take(source, file_sha, source, "taken")
        at, records, since = base
        records = dict(records)
        for index in range(epoch, len(frames)):
            kind, payload = frames[index]
            if kind != journaldb.UPDATE:
                continue
            serial, nodes = journaldb.decode_nodes(payload)
            if index < at and (since is None or not dns.serial.Serial(serial) > dns.serial.Serial(since)):
                continue  # in the file already
            for key, packed in nodes.items():
                if packed is None:
                    records.pop(key, None)
                else:
                    records[key] = packed
        truth = source if records == dict(source.records) else ZoneSource.of(source.origin, source.path, records)
        return self._take(source, file_sha, truth, "converted")

    def _take(self, file_source: ZoneSource, file_sha: bytes, truth: ZoneSource, why: str) -> tuple[ZoneSource, list]:
        """Record ``truth`` as the zone's snapshot and ``file_source`` as
        its file's base; the frames that say so."""
        origin = truth.origin
        self.known[origin] = {file_sha}
        self.file_sha[origin] = file_sha
        self.base[origin] = (file_sha, file_source.serial, dict(file_source.records))
        self.written[origin] = file_source
        return truth, [
            journaldb.frame(journaldb.SNAPSHOT, journaldb.encode_snapshot(truth.serial, truth.records, file_sha)),
            journaldb.frame(journaldb.FILE, journaldb.encode_file(file_sha, file_source.serial, file_source.records)),
        ]

    def _merge(self, file_source: ZoneSource, file_sha: bytes, current: ZoneSource, base) -> tuple[ZoneSource, list]:
        """``current`` with the hand edit from ``base`` to the file merged in."""
        origin = current.origin
        merged, changed, lost = merge_edit(base[2], dict(file_source.records), dict(current.records))
        log.warn(
            "zone {zone}: the file {path} was edited by hand since aliasd last wrote it: its "
            "{changed} changed RRset(s) are applied on top of the zone's records; {lost} record(s) "
            "of updates lost where the edit changed the same RRset{which}",
            zone=origin.to_text(), path=str(file_source.path), changed=changed, lost=len(lost),
            which=(": " + "; ".join(" ".join(map(str, record)) for record in lost)) if lost else "",
        )
        truth = ZoneSource.of(origin, current.path, merged) if merged != dict(current.records) else current
        if lost:
            self.dropped[origin] = (truth, lost)
        else:
            self.dropped.pop(origin, None)
        return self._take(file_source, file_sha, truth, "merged")

    # -- reload -------------------------------------------------------------------

    def reload_source(self, file_source: ZoneSource, file_sha: bytes,
                      current: ZoneSource | None) -> tuple[ZoneSource, list]:
        """What a dynamic zone serves after a reload read ``file_source``
        (``current``: its newest source, None if it was not served), and
        the journal records to write with that version."""
        origin = file_source.origin
        if current is None:
            return self._start(file_source, file_sha)
        if file_sha in self.known.get(origin, ()):
            return current, []  # aliasd's own file: the zone keeps its records
        base = self.base.get(origin)
        if base is None:  # it was not dynamic: its served records were the file's
            base = (self.file_sha.get(origin, b""), current.serial, dict(current.records))
        return self._merge(file_source, file_sha, current, base)

    def snapshot_frames(self, source: ZoneSource) -> list:
        """A dynamic zone's records and its file's base as journal records (compaction)."""
        origin = source.origin
        if origin not in self.zones:
            return []
        frames = [journaldb.frame(journaldb.SNAPSHOT, journaldb.encode_snapshot(
            source.serial, source.records, self.file_sha.get(origin, b"")))]
        base = self.base.get(origin)
        if base is not None:
            frames.append(journaldb.frame(journaldb.FILE, journaldb.encode_file(*base)))
        return frames

    # -- writing files ------------------------------------------------------

    def write_file(self, source: ZoneSource, keep_edit: bool = False) -> bytes | None:
        """Write ``source`` to its zone file (in a thread); returns its SHA-256.

        ``keep_edit`` (the file sync): not over a file edited by hand that
        no reload has taken yet (None then). Written over, the edit would be
        lost; and a reload that read the edited file just before would
        merge it against this file as its base, undoing every update the
        edited file lacks."""
        origin = source.origin
        path = self.paths.get(origin, source.path)
        data = master_file_text(source).encode()
        sha = hashlib.sha256(data).digest()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                st = os.stat(path)
                os.chmod(tmp, st.st_mode & 0o7777)
                os.chown(tmp, st.st_uid, st.st_gid)
            except OSError:
                pass
            # The store learns the file and its records before it is in
            # place (under the journal's lock: a compaction keeps what it knows).
            with self.files.lock:
                if keep_edit and self._edited_by_hand(origin, path):
                    os.unlink(tmp)
                    return None
                self.files.append(source.key, [journaldb.frame(
                    journaldb.FILE, journaldb.encode_file(sha, source.serial, source.records))])
                self.known.setdefault(origin, set()).add(sha)
                self.base[origin] = (sha, source.serial, dict(source.records))
                os.replace(tmp, path)
                self.file_sha[origin] = sha
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        fsync_directory(path.parent)
        return sha

    def _edited_by_hand(self, origin: dns.name.Name, path: Path) -> bool:
        """Is the file on disk one aliasd neither wrote nor took?"""
        known = self.known.get(origin)
        try:
            return known is not None and hashlib.sha256(path.read_bytes()).digest() not in known
        except FileNotFoundError:
            return False

    def stale(self, sources) -> list[ZoneSource]:
        """The dynamic zones' sources that changed since their file was
        written (zones without a file have nothing to write)."""
        return [s for o, s in sources.items() if o in self.paths and self.written.get(o) is not s]

    def write_all(self, sources: list[ZoneSource]) -> int:
        """Write each of ``sources`` to its file (errors are logged, the
        zone is written again next time); returns how many were written."""
        count = 0
        for source in sources:
            try:
                written = self.write_file(source, keep_edit=True)
            except OSError as e:
                log.error("zone {zone}: cannot write {path}: {error}; its updates are safe in the "
                          "state store, the file is written again later", zone=source.origin.to_text(),
                          path=str(self.paths.get(source.origin, source.path)), error=str(e))
                continue
            if written is None:
                log.warn("zone {zone}: {path} was edited by hand and not reloaded yet: not written over; "
                         "the edit is merged at the next reload (SIGHUP) or start, and the file written "
                         "after that", zone=source.origin.to_text(),
                         path=str(self.paths.get(source.origin, source.path)))
                continue
            self.written[source.origin] = source
            count += 1
        return count

    def start_static(self, source: ZoneSource, file_sha: bytes) -> ZoneSource:
        """A zone without ``update`` rules whose journal holds the records of
        a dynamic zone (the rules were removed while aliasd was stopped):
        those records, acknowledged updates included, are written to its
        file first, and served."""
        truth = self.start_source(source, file_sha)
        self.leave(truth, source.path)
        if truth is not source:
            log.info("zone {zone} has no update rules any more: its records (acknowledged updates "
                     "included) are written to {path}, and served from it",
                     zone=source.origin.to_text(), path=str(source.path))
        return truth

    def leave(self, source: ZoneSource, path: Path) -> None:
        """The zone's ``update`` rules are gone: its records go to its file
        (raises OSError), which it serves from now on as a plain zone."""
        origin = source.origin
        self.paths.setdefault(origin, path)
        if self.written.get(origin) is not source:
            self.write_file(source)
            self.written[origin] = source
        self.files.compact(source.key, [])  # a plain zone now: its file is its truth
        for table in (self.known, self.base, self.file_sha, self.written):
            table.pop(origin, None)


class FileSyncService(service.Service):
    """Writes changed dynamic zones back to their files every ``interval``
    seconds (in a thread) and once more at a clean stop."""

    def __init__(self, dynamic: DynamicZones, authority, reactor, interval: float):
        self.dynamic = dynamic
        self.authority = authority
        self.reactor = reactor
        self.interval = interval
        self._loop = None
        self._running: defer.Deferred | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = task.LoopingCall(self.sync)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=False)

    def sync(self) -> defer.Deferred | None:
        if self._running is not None:
            return None
        stale = self.dynamic.stale(self.authority.sources)
        if not stale:
            return None
        d = self._running = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), self.dynamic.write_all, stale
        )

        def done(count):
            self._running = None
            if count:
                log.info("{count} dynamic zone file(s) written", count=count)

        def failed(failure):
            self._running = None
            log.failure("writing dynamic zone files", failure)

        d.addCallbacks(done, failed)
        return d

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        pending = self._running or defer.succeed(None)

        def last(_):
            # The reactor is stopping: write what is left, here and now.
            self.dynamic.write_all(self.dynamic.stale(self.authority.sources))

        return pending.addBoth(last)
