"""State that must survive restarts: served serials and last good addresses.

Secondaries stop updating if a primary's serial goes backwards (RFC 1982),
so each zone's served serial and a digest of the transfer view it stands for
are written to the state directory (atomically, fsynced) *before* a version
with that serial is served. The last resolved addresses of every ALIAS
target are kept too, so a restart starts from what was served instead of
from the zone file's fallback records, and does not move the serial when
nothing changed.
"""

from __future__ import annotations

import dataclasses
import errno
import grp
import json
import os
import pwd
import struct
import tempfile
from pathlib import Path

import dns.exception
import dns.name
import dns.serial
from twisted.application import service
from twisted.logger import Logger

from aliasd.base import store
from aliasd.base.db import StateDB

log = Logger()


class StateDirError(Exception):
    """The state directory cannot be used; the message says why."""


def next_serial(file_serial: int, previous: int | None, changed: bool) -> int:
    """The serial to serve for a new transfer view.

    The zone file's serial wins when it is newer (RFC 1982); otherwise the
    previous serial moves by one when the view changed and stays otherwise.
    """
    if previous is None:
        return file_serial
    if dns.serial.Serial(file_serial) > dns.serial.Serial(previous):
        return file_serial
    if changed:
        return (previous + 1) % 2**32
    return previous


@dataclasses.dataclass(frozen=True, slots=True)
class ZoneState:
    serial: int
    digest: str


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: str | bytes, mode: int | None = None, sync_directory: bool = True) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it,
    fsync, rename, fsync of the directory (``mode``: the new file's;
    ``sync_directory`` False: the caller syncs it once for many files)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync_directory:
        fsync_directory(path.parent)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


_SERIAL = struct.Struct("!I")


def encode_zone_state(state: ZoneState) -> bytes:
    return _SERIAL.pack(state.serial) + state.digest.encode()


def decode_zone_state(value: bytes) -> ZoneState:
    return ZoneState(_SERIAL.unpack_from(value)[0], value[4:].decode())


class StateStore:
    """The state directory and its transactional store (aliasd.base.db):
    served serials and the last good target addresses.

    Every zone's served serial and view digest are a record of the store's
    ``serials`` database; a batch of thousands of changed zones (a shared
    ALIAS target moved) is one transaction. Records are never deleted, so
    a zone removed and added again, even purged, starts above the serial
    its secondaries hold. ``save_zones`` may run in a thread
    (aliasd.replicate.numbering does so); inside a ``db.write()`` block it
    joins that transaction.
    """

    def __init__(self, directory: Path, max_size: int | None = None):
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as e:
            raise StateDirError(f"state directory {self.directory}: cannot create: {e.strerror}") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise StateDirError(f"state directory {self.directory}: not writable by this user")
        try:
            self.db = StateDB(self.directory, **({} if max_size is None else {"max_size": max_size}))
        except OSError as e:
            raise StateDirError(f"state directory {self.directory}: {e.strerror or e}") from None
        self._zones: dict[bytes, ZoneState] | None = None

    def check_writable(self) -> None:
        """Raise StateDirError unless this process can write here now.

        Run once the process runs as its final user (after twistd's --uid):
        a directory that root created or owns passes the check at start-up
        and would only fail at the first serial change, too late to tell.
        """
        try:
            fd, probe = tempfile.mkstemp(dir=self.directory, prefix=".write-check.")
            os.close(fd)
            os.unlink(probe)
            for path in [self.db.path, *self.db.path.iterdir()]:
                if not os.access(path, os.W_OK):
                    raise PermissionError(errno.EACCES, f"{path} is not writable")
        except OSError as e:
            try:
                st = self.directory.stat()
                owner = f"owned by {_user_name(st.st_uid)}:{_group_name(st.st_gid)}, mode {st.st_mode & 0o7777:04o}"
            except OSError:
                owner = "not found"
            raise StateDirError(
                f"state directory {self.directory} is not writable by user {_user_name(os.geteuid())} "
                f"(uid {os.geteuid()}): {e.strerror}; it is {owner}. Give it to that user "
                f"(chown -R) or set [server] state-dir to a directory it can write"
            ) from None

    def _states(self) -> dict[bytes, ZoneState]:
        """Every zone's last recorded serial and digest by the zone's lookup
        key (read once, then kept): bytes, not a decoded name per zone."""
        if self._zones is None:
            with self.db.reading() as txn:
                self._zones = {bytes(key): decode_zone_state(value)
                               for key, value in txn.cursor(db=self.db.serials)}
        return self._zones

    def load_zones(self) -> dict[dns.name.Name, ZoneState]:
        """Every zone's last recorded serial and digest."""
        return {store.name_of(key): state for key, state in self._states().items()}

    def load_zone(self, name: dns.name.Name, key: bytes | None = None) -> ZoneState | None:
        """The zone's last recorded state; ``key``: its lookup key, when
        known already (a zone file's: not made again for each zone at start)."""
        return self._states().get(key if key is not None else store.key_of(name))

    def save_zones(self, states: dict[dns.name.Name, ZoneState]) -> None:
        """Record these zones' serials durably: one transaction (or a part
        of the one open on this thread).

        Raises OSError when the write fails; nothing is then recorded in
        memory either, so the caller can retry the same batch.
        """
        if not states:
            return
        known = self._states()
        by_key = {store.key_of(name): state for name, state in states.items()}
        with self.db.write() as txn:
            for key, state in by_key.items():
                txn.put(key, encode_zone_state(state), db=self.db.serials)
            self.db.after_commit(lambda: known.update(by_key))

    def save_zone(self, name: dns.name.Name, state: ZoneState) -> None:
        self.save_zones({name: state})

    def load_targets(self) -> list[dict]:
        with self.db.reading() as txn:
            data = txn.get(b"all", db=self.db.targets)
        if data is None:
            return []
        try:
            return list(json.loads(data)["targets"])
        except (ValueError, KeyError, TypeError) as e:
            log.warn("ignoring an unreadable target cache: {error}", error=str(e))
            return []

    def save_targets(self, targets: list[dict]) -> None:
        with self.db.write() as txn:
            txn.put(b"all", json.dumps({"targets": targets}).encode(), db=self.db.targets)


class MemoryStateStore:
    """A StateStore that forgets at exit (unit tests, or no state directory)."""

    def __init__(self):
        self.zones: dict[dns.name.Name, ZoneState] = {}
        self.targets: list[dict] = []

    def load_zones(self):
        return self.zones

    def load_zone(self, name, key=None):
        return self.zones.get(name)

    def save_zones(self, states):
        self.zones.update(states)

    def save_zone(self, name, state):
        self.zones[name] = state

    def load_targets(self):
        return list(self.targets)

    def save_targets(self, targets):
        self.targets = list(targets)


class StateDirCheck(service.Service):
    """Fails start-up when the state directory is not writable.

    twistd starts services after it has dropped privileges, so this checks
    as the user aliasd will run as; the error goes to the starting shell
    (or init script) and twistd exits non-zero.
    """

    def __init__(self, store: StateStore):
        self.store = store

    def startService(self) -> None:
        try:
            self.store.check_writable()
        except StateDirError as e:
            log.critical("aliasd cannot start: {error}", error=str(e))
            raise
        super().startService()
