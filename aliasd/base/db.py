"""The state directory's one transactional store: an LMDB environment.

Why: what must survive a restart (served serials, the IXFR history and the
updates of dynamic zones, last good target addresses) used to live in
several hand-made file formats, each with its own framing and fsync order,
and the seams between them could lose or resurrect data. Here every change
is one LMDB write transaction: it commits whole and durably, or not at all,
and the next start sees exactly what was committed. Knot keeps its journal,
timers and keys the same way, BIND its added zones, PowerDNS a backend.

The environment is the directory ``aliasd.lmdb`` under the state directory,
with named sub-databases:

- ``serials``: zone key (lower-case wire name) -> the last served serial
  (4 octets) and the digest of the view served with it. Never deleted, not
  even when a zone is purged, so a zone added again starts above what its
  secondaries hold;
- ``journal``: zone key + sequence number (8 octets) -> a journal record
  (aliasd.replicate.journaldb);
- ``targets``: ``all`` -> the last good addresses of every ALIAS target;
- ``compiled``: zone key -> its zone file compiled, a cache keyed by the
  file's digest (aliasd.zones.snapshot);
- ``meta``: the format version and what was imported from older releases.

Writers are the reactor's thread pool and, rarely, the reactor itself;
LMDB lets one write transaction run at a time and never blocks readers.
``write()`` on a thread that already has one open joins it, so a batch of
changes from several modules commits as one (group commit).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from pathlib import Path
from typing import Callable, Iterator

import lmdb

#: The environment's directory under the state directory.
NAME = "aliasd.lmdb"
#: Default upper bound of the environment (the map size; a file grows to
#: what it holds, not to this).
DEFAULT_MAX_SIZE = 4 * 1024**3
FORMAT = b"1"


class StoreError(OSError):
    """A write to the store failed (a full disk, the size limit reached):
    nothing of its transaction was written. An OSError, so that the callers'
    retry paths for failed writes take it as they took file errors."""


def _os_error(e: lmdb.Error, doing: str) -> StoreError:
    text = str(e)
    if isinstance(e, lmdb.MapFullError):
        return StoreError(errno.ENOSPC, f"{doing}: the state store reached its size limit ({text})")
    code = errno.ENOSPC if "No space" in text else errno.EDQUOT if "quota" in text.lower() else errno.EIO
    return StoreError(code, f"{doing}: {text}")


class StateDB:
    """The LMDB environment and its sub-databases.

    One per state directory and process: LMDB must not open an environment
    twice in a process, so constructing it again for the same directory
    (tests, tools) returns the one already open.
    """

    _open: dict[str, StateDB] = {}
    _open_lock = threading.Lock()

    def __new__(cls, directory: Path, max_size: int = DEFAULT_MAX_SIZE):
        key = os.path.realpath(Path(directory) / NAME)
        with cls._open_lock:
            db = cls._open.get(key)
            if db is None:
                db = cls._open[key] = super().__new__(cls)
                try:
                    db._start(Path(directory), max_size)
                except BaseException:
                    del cls._open[key]
                    raise
        return db

    def _start(self, directory: Path, max_size: int) -> None:
        self.path = directory / NAME
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o750)
            self.path.mkdir(exist_ok=True, mode=0o750)
            self.env = lmdb.open(
                str(self.path), map_size=max_size, max_dbs=8, subdir=True, mode=0o640,
                readahead=False, max_readers=256,
            )
            self.serials = self.env.open_db(b"serials")
            self.journal = self.env.open_db(b"journal")
            self.targets = self.env.open_db(b"targets")
            self.meta = self.env.open_db(b"meta")
            self.compiled = self.env.open_db(b"compiled")
            # Reader slots of processes that died (kill -9) would keep old
            # pages from being reused: clear them, as Knot does at start.
            self.env.reader_check()
        except lmdb.Error as e:
            raise _os_error(e, f"cannot open the state store {self.path}") from None
        except OSError as e:
            raise StoreError(e.errno, f"cannot open the state store {self.path}: {e.strerror}") from None
        self._local = threading.local()
        self.commit_failures = 0  # write transactions that failed (statistics)
        self._failures_lock = threading.Lock()
        with self.write() as txn:
            found = txn.get(b"format", db=self.meta)
            if found is None:
                txn.put(b"format", FORMAT, db=self.meta)
            elif found != FORMAT:
                raise StoreError(errno.EINVAL, f"state store {self.path}: format {found!r}, "
                                 f"this aliasd reads format {FORMAT!r}")
        self._give_to_directory_owner()

    def _give_to_directory_owner(self) -> None:
        """Started as root (twistd drops privileges later): the store's
        files take the state directory's owner, who runs aliasd."""
        if os.geteuid() != 0:
            return
        st = self.path.parent.stat()
        if st.st_uid == 0:
            return
        for path in [self.path, *self.path.iterdir()]:
            os.chown(path, st.st_uid, st.st_gid)

    # -- transactions ---------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[lmdb.Transaction]:
        """A write transaction that commits (durably) when the block ends,
        or is aborted with the exception that ended it. On a thread that
        already has one open, the block joins it; ``after_commit`` callbacks
        run once the outermost block has committed. Raises StoreError."""
        txn = getattr(self._local, "txn", None)
        if txn is not None:
            yield txn
            return
        try:
            txn = self.env.begin(write=True)
        except lmdb.Error as e:
            raise self._failed(e, "state store") from None
        self._local.txn, self._local.after = txn, []
        try:
            try:
                yield txn
            except lmdb.Error as e:
                txn.abort()
                raise self._failed(e, "state store write") from None
            except BaseException:
                txn.abort()
                raise
            try:
                txn.commit()
            except lmdb.Error as e:
                raise self._failed(e, "state store commit") from None
            after = self._local.after
        finally:
            self._local.txn = self._local.after = None
        for callback in after:
            callback()

    def _failed(self, error: lmdb.Error, doing: str) -> StoreError:
        """Count a write that failed (from any thread) and name it."""
        with self._failures_lock:
            self.commit_failures += 1
        return _os_error(error, doing)

    def usage(self) -> tuple[int, int]:
        """(octets used, the size limit): the pages up to the highest in use
        (free pages below it are reused first) and the map size."""
        info = self.env.info()
        return (info["last_pgno"] + 1) * self.env.stat()["psize"], info["map_size"]

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the write transaction open on this thread
        has committed (at once when none is open): memory mirrors of what
        was written change only with what is durable."""
        after = getattr(self._local, "after", None)
        if after is None:
            callback()
        else:
            after.append(callback)

    @contextlib.contextmanager
    def reading(self) -> Iterator[lmdb.Transaction]:
        """A consistent view: this thread's open write transaction (which
        sees its own writes), or a read transaction."""
        txn = getattr(self._local, "txn", None)
        if txn is not None:
            yield txn
            return
        with self.env.begin(write=False) as txn:
            yield txn

    # -- helpers for prefix ranges -----------------------------------------------

    @staticmethod
    def items_under(txn: lmdb.Transaction, db, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The (key, value) pairs whose key starts with ``prefix``, in order."""
        cursor = txn.cursor(db=db)
        if not cursor.set_range(prefix):
            return
        for key, value in cursor:
            if not key.startswith(prefix):
                return
            yield key, value

    @staticmethod
    def delete_under(txn: lmdb.Transaction, db, prefix: bytes) -> int:
        """Delete every key that starts with ``prefix``; returns how many."""
        cursor = txn.cursor(db=db)
        count = 0
        if cursor.set_range(prefix):
            while cursor.key().startswith(prefix):
                if not cursor.delete():
                    break
                count += 1
        return count

    def close(self) -> None:
        with self._open_lock:
            self._open.pop(os.path.realpath(self.path), None)
        self.env.close()
