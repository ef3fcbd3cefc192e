"""Compiled zone files kept in the state store, so a restart skips parsing.

Why: parsing is most of a cold start at ten thousand zones. A zone's
packed records (aliasd.base.store) are plain bytes, so they are kept in the
state store's ``compiled`` database (aliasd.base.db), keyed by the zone as
configured (wire form, letter case kept), with the SHA-256 of its file's
content; a restart reads each file, and when its digest is the one kept
takes the records from here instead of parsing the file again. A file with
``$INCLUDE`` is never taken from here (the included files are not tracked).

Each value is the file's digest, the content digest
(aliasd.zones.zonefile.ZoneSource.digest), the file's stamp when it was
read (size, times, inode, device: aliasd.service.reload.file_stamp; only
once settled, past the file system's timestamp tick) and the packed
records, as length-prefixed octets read with bounds checks, never
unpickled: the
store is written by the service user and read as root at the next start.
The aliasd and dnspython versions that compiled the entries are kept
beside them; entries of other versions are dropped, and those zones
parsed. A file whose stamp is the one kept is taken without being read
(a restart at ten thousand zones read every file only to find its digest
unchanged); any other is read and its digest compared. This is a cache,
never a source of truth: losing it costs one slow start. One exception: a zone whose file is broken serves its entry (the
last file that loaded) until the file is mended (aliasd.service.broken).
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import dns.version
from twisted.logger import Logger

from aliasd import __version__
from aliasd.base.db import StateDB

log = Logger()

_LENGTH = struct.Struct("!I")
_STAMP = struct.Struct("!qqqQQ")  # size, mtime_ns, ctime_ns, inode, device
_HEADER = f"aliasd zone snapshot 4 aliasd {__version__} dnspython {dns.version.version}".encode()
_VERSION_KEY = b"compiled-by"
#: The most octets of records one write transaction of ``save`` holds. LMDB
#: keeps each page a write transaction dirtied (a copy in memory, without
#: MDB_WRITEMAP) on a free list of its own until the environment closes:
#: reused by later transactions, never given back. The first save of a cold
#: start at 10,000 zones, in one transaction, left about 14 MiB there.
SAVE_CHUNK = 1 << 20


class _Damaged(Exception):
    pass


def stamp_of(size: int, mtime_ns: int, ctime_ns: int, inode: int, device: int) -> bytes:
    """A file's stamp as kept in memory and here: one bytes object of 40
    octets (a tuple of five large ints was 240 bytes per zone file)."""
    return _STAMP.pack(size, mtime_ns, ctime_ns, inode, device)


def _encode(digest: bytes, records: dict, content: str, stamp: bytes | None = None) -> bytes:
    if stamp is not None and len(stamp) != _STAMP.size:
        raise ValueError("a stamp is made by stamp_of")
    stamped = b"\x00" if stamp is None else b"\x01" + stamp
    parts = [digest, content.encode(), stamped, _LENGTH.pack(len(records))]
    for owner, packed in records.items():
        parts += [bytes((len(owner),)), owner, _LENGTH.pack(len(packed)), packed]
    return b"".join(parts)


def _decode(body: bytes) -> tuple[bytes, dict, str, bytes | None]:
    """One entry; raises _Damaged when it does not add up."""
    try:
        digest, content = body[:32], body[32:96].decode("ascii")
        i = 97
        stamp = None
        if body[96] == 1:
            stamp = bytes(body[i:i + _STAMP.size])
            i += _STAMP.size
            if i > len(body):
                raise _Damaged
        elif body[96] != 0:
            raise _Damaged
        (count,) = _LENGTH.unpack_from(body, i)
        i += _LENGTH.size
        records = {}
        for _ in range(count):
            end = i + 1 + body[i]
            owner = body[i + 1:end]
            (length,) = _LENGTH.unpack_from(body, end)
            i = end + _LENGTH.size + length
            if i > len(body):
                raise _Damaged
            records[owner] = body[end + _LENGTH.size:i]
    except (IndexError, struct.error, UnicodeDecodeError):
        raise _Damaged from None
    if i != len(body) or len(digest) != 32 or len(content) != 64:
        raise _Damaged
    return digest, records, content, stamp


#: (file digest, records, content digest, file stamp or None) of one zone.
Entry = tuple[bytes, dict, str, tuple | None]


class Snapshot:
    """The compiled zones of the last run, and what this run adds to them."""

    def __init__(self, directory: Path):
        self.db = StateDB(Path(directory))
        self.path = self.db.path
        self.entries: dict[bytes, Entry] = {}  # zone key -> entry
        self._new: dict[bytes, Entry] = {}  # not yet written
        self._gone: set[bytes] = set()  # kept, but no longer served: deleted at the next save
        self._loaded = False
        self._foreign = False  # entries of another version: all dropped at the next save
        self._lock = threading.Lock()  # the start-up save and a reload's may meet

    def load(self) -> None:
        """Read the entries once (another version's: none)."""
        if self._loaded:
            return
        self._loaded = True
        with self.db.reading() as txn:
            version = txn.get(_VERSION_KEY, db=self.db.meta)
            if version is not None and version != _HEADER:
                log.info("zone snapshot of another version ({version}): zone files are parsed",
                         version=version.decode(errors="replace"))
                self._foreign = True
                return
            for key, value in txn.cursor(db=self.db.compiled):
                try:
                    self.entries[key] = _decode(value)
                except _Damaged:
                    log.warn("zone snapshot entry for {zone} damaged: that zone is parsed", zone=repr(key))
                    self._gone.add(key)

    def get(self, key: bytes, digest: bytes) -> Entry | None:
        self.load()
        entry = self.entries.get(key)
        if entry is not None and entry[0] == digest:
            return self._whole(key, entry)
        return None

    def stamped(self, key: bytes, stamp: bytes) -> Entry | None:
        """The zone's entry if its file's stamp is the one kept with it."""
        self.load()
        entry = self.entries.get(key)
        if entry is not None and entry[3] is not None and entry[3] == stamp:
            return self._whole(key, entry)
        return None

    def restamp(self, key: bytes, stamp: bytes | None) -> None:
        """The zone's file, read again, has the kept digest and ``stamp``
        now (settled; None: not yet): kept for the next start."""
        entry = self.entries.get(key)
        if stamp is None or entry is None or entry[3] == stamp:
            return
        whole = self._whole(key, entry)  # (its records, to be written again with the new stamp)
        if whole is None:
            return
        with self._lock:
            if self.entries.get(key) is entry:
                self.entries[key] = self._new[key] = (*whole[:3], stamp)

    def latest(self, key: bytes) -> Entry | None:
        """The zone's entry whatever its file says now: the last file that
        loaded, served while the file on disk is broken."""
        self.load()
        entry = self.entries.get(key)
        return self._whole(key, entry) if entry is not None else None

    def _whole(self, key: bytes, entry: Entry) -> Entry | None:
        """``entry`` with its records, read again from the store if they
        were let go of once written (see ``save``)."""
        if entry[1] is not None:
            return entry
        with self.db.reading() as txn:
            value = txn.get(key, db=self.db.compiled)
        try:
            whole = _decode(value) if value is not None else None
        except _Damaged:
            whole = None
        return whole if whole is not None and whole[0] == entry[0] else None

    def put(self, key: bytes, digest: bytes, records: dict, content: str, stamp: bytes | None = None) -> None:
        """Remember a freshly parsed zone (written by the next ``save``)."""
        entry = (digest, records, content, stamp)
        with self._lock:
            self.entries[key] = entry
            self._new[key] = entry
            self._gone.discard(key)

    def keep_only(self, keys) -> None:
        """Forget zones no longer served (deleted at the next save)."""
        keys = set(keys)
        with self._lock:
            for key in [k for k in self.entries if k not in keys]:
                del self.entries[key]
                self._new.pop(key, None)
                self._gone.add(key)

    def pending(self) -> bool:
        return bool(self._new or self._gone or self._foreign)

    def save(self) -> None:
        """Write what is new and delete what went, in transactions of at
        most SAVE_CHUNK octets of records (meant for a thread; each entry
        stands on its own, so a crash between them loses only the cache of
        the zones not yet written). Raises OSError."""
        with self._lock:
            new, self._new = self._new, {}
            gone, self._gone = self._gone, set()
            foreign, entries = self._foreign, dict(self.entries)
        try:
            if foreign:
                new = entries
            todo = [(key, entry) for key, entry in new.items() if entry[1] is not None]  # (None: written before)
            first = True
            while first or todo:
                with self.db.write() as txn:
                    if first:
                        if foreign:
                            StateDB.delete_under(txn, self.db.compiled, b"")
                        txn.put(_VERSION_KEY, _HEADER, db=self.db.meta)
                        for key in gone:
                            txn.delete(key, db=self.db.compiled)
                        first = False
                    size = 0
                    while todo and size < SAVE_CHUNK:
                        key, entry = todo.pop()
                        value = _encode(*entry)
                        txn.put(key, value, db=self.db.compiled)
                        size += len(value)
            self.db.after_commit(lambda: self._written(new))
            self._foreign = False
        except BaseException:
            with self._lock:
                new.update(self._new)
                self._new = new  # written next time
                self._gone |= gone
            raise

    def _written(self, new: dict) -> None:
        """Once committed, a freshly parsed zone's records (a copy, apart
        from the served ones, which updates change in place) are read back
        from the store if ever needed (``_whole``), not kept twice."""
        with self._lock:
            for key, entry in new.items():
                if self.entries.get(key) is entry:
                    self.entries[key] = (entry[0], None, entry[2], entry[3])
