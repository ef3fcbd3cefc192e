"""Dynamic zones: whose records are the truth, the file's or the journal's.

Why a module of its own: a zone with ``update`` rules changes without its
file. Its updates are in its journal (aliasd.replicate.journaldb) from the moment
they are acknowledged, and aliasd writes the records back to the zone file
every ``[server] dynamic-file-sync`` seconds and at a clean stop, as BIND
does. This module decides, at start and at every reload, what such a zone
serves:

- the file is one aliasd adopted or wrote (its SHA-256 is in the journal):
  the journal's updates since then are applied on top of it (at start), or
  the zone keeps its current records (at a reload);
- the file is new to the journal (the operator edited it by hand): the file
  wins, nothing from the journal is applied on top, it is versioned as a
  new serial, and the log says so.

Writing a file: the text is written to a temporary file, its SHA-256 is
recorded in the journal (fsync'd), then it is renamed into place; a crash
between the two leaves a file that the journal still knows.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import dns.name
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
        "; runs are taken at the next reload (SIGHUP), and the updates received",
        "; since aliasd last wrote the file are then dropped.",
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


class DynamicZones:
    """The zones with update rules: their journal and their file."""

    def __init__(self, files: journaldb.JournalStore, zones=()):
        self.files = files
        self.zones: set[dns.name.Name] = set()
        self.paths: dict[dns.name.Name, Path] = {}
        self.file_sha: dict[dns.name.Name, bytes] = {}  # the file on disk, as aliasd last read or wrote it
        self.known: dict[dns.name.Name, set[bytes]] = {}  # files that are aliasd's (journal B/W/S)
        self.written: dict[dns.name.Name, ZoneSource] = {}  # the source last written or read
        self.configure(zones)

    def configure(self, zones) -> None:
        """The configured zones (ZoneSettings); the dynamic ones are kept."""
        self.zones = {z.name for z in zones if z.dynamic}
        self.paths = {z.name: z.file for z in zones if z.dynamic}

    def is_dynamic(self, origin: dns.name.Name) -> bool:
        return origin in self.zones

    # -- at start and reload -----------------------------------------------

    def start_source(self, source: ZoneSource, file_sha: bytes) -> ZoneSource:
        """What a dynamic zone serves at start: its file plus the journal's
        updates when the file is aliasd's, else the file (adopted).

        The journal is read in epochs: a B (file adopted) or S (snapshot)
        frame starts one, and only the latest epoch counts. Its base is the
        latest frame whose records can be had: the S itself, or a B or W
        naming the file now on disk. The updates applied on top are those
        after the base, and those before a W base that are newer than the
        file it names (recorded while the file was being written).
        """
        origin = source.origin
        frames = self.files.read(source.key)
        known: set[bytes] = set()
        epoch = 0  # index of the frame that starts the latest epoch
        base = None  # (index, records, serial or None: every update of the epoch after it)
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
            if known or updates:
                log.warn(
                    "zone {zone}: the file {path} was changed by hand since aliasd last wrote it: "
                    "serving the file; {count} update(s) in the journal are not applied on top of it",
                    zone=origin.to_text(), path=str(source.path), count=updates,
                )
            return self.adopt(source, file_sha)
        at, records, since = base
        records = dict(records)
        updates = 0
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
            updates += 1
        self.known[origin] = known
        self.file_sha[origin] = file_sha
        self.written[origin] = source
        if not updates and records == dict(source.records):
            return source
        if updates:
            log.info("zone {zone}: {count} update(s) from the journal applied on top of {path}",
                     zone=origin.to_text(), count=updates, path=str(source.path))
        return ZoneSource.of(origin, source.path, records)

    def adopt(self, source: ZoneSource, file_sha: bytes) -> ZoneSource:
        """Take ``source`` (a file new to the journal) as the zone's records:
        recorded in the journal (durably) before it is served."""
        origin = source.origin
        self.files.append(source.key, [journaldb.frame(journaldb.BASE, file_sha)])
        self.known[origin] = {file_sha}
        self.file_sha[origin] = file_sha
        self.written[origin] = source
        return source

    def reload_source(self, file_source: ZoneSource, file_sha: bytes, current: ZoneSource | None) -> ZoneSource:
        """What a dynamic zone serves after a reload read ``file_source``."""
        origin = file_source.origin
        if current is not None and file_sha in self.known.get(origin, ()):
            return current  # aliasd's own file: the zone keeps its records
        if current is not None and origin in self.known:
            log.warn(
                "zone {zone}: the file {path} was changed by hand since aliasd last wrote it: "
                "serving the file as a new serial; updates since the last write are dropped",
                zone=origin.to_text(), path=str(file_source.path),
            )
        return self.adopt(file_source, file_sha)

    def snapshot_frames(self, source: ZoneSource) -> list[bytes]:
        """A dynamic zone's records as one journal frame (compaction)."""
        if source.origin not in self.zones:
            return []
        sha = self.file_sha.get(source.origin, b"")
        return [journaldb.frame(journaldb.SNAPSHOT, journaldb.encode_snapshot(
            source.serial, source.records, sha))]

    # -- writing files ------------------------------------------------------

    def write_file(self, source: ZoneSource) -> bytes:
        """Write ``source`` to its zone file (in a thread); returns its SHA-256."""
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
            # The journal learns the file is aliasd's before it is in place
            # (under the journal's lock: a compaction keeps what it knows).
            with self.files.lock:
                written = journaldb.encode_written(sha, source.serial)
                self.files.append(source.key, [journaldb.frame(journaldb.WRITTEN, written)])
                self.known.setdefault(origin, set()).add(sha)
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

    def stale(self, sources) -> list[ZoneSource]:
        """The dynamic zones' sources that changed since their file was written."""
        return [s for o, s in sources.items() if o in self.zones and self.written.get(o) is not s]

    def write_all(self, sources: list[ZoneSource]) -> int:
        """Write each of ``sources`` to its file (errors are logged, the
        zone is written again next time); returns how many were written."""
        count = 0
        for source in sources:
            try:
                self.write_file(source)
            except OSError as e:
                log.error("zone {zone}: cannot write {path}: {error}; its updates are safe in the "
                          "journal, the file is written again later", zone=source.origin.to_text(),
                          path=str(self.paths.get(source.origin, source.path)), error=str(e))
                continue
            self.written[source.origin] = source
            count += 1
        return count


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
