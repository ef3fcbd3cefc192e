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
import tempfile
from pathlib import Path

import dns.exception
import dns.name
import dns.serial
from twisted.application import service
from twisted.logger import Logger

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


@dataclasses.dataclass(frozen=True)
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


def _zone_line(name: dns.name.Name, state: ZoneState) -> str:
    return json.dumps({"zone": name.to_text(), "serial": state.serial, "digest": state.digest}) + "\n"


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


class StateStore:
    """Files under the state directory: the zone serial log and the target cache.

    Every zone's served serial and view digest live in one append-only log,
    ``zones.log``, one JSON line per change: a batch of thousands of
    changed zones (a shared ALIAS target moved) costs one append and one
    fsync, not one file each. The last line for a zone wins; a line cut
    short by a crash was never acknowledged (nothing was served with it)
    and is ignored. The log is compacted (rewritten atomically) when it has
    grown to several times the number of zones. Per-zone files of earlier
    versions (``*.zone-state.json``) are still read, so an upgrade keeps
    every serial.

    ``save_zones`` may run in a thread (aliasd.replicate.numbering does so); the
    authority never runs two at once.
    """

    ZONES_LOG = "zones.log"
    #: Compact when the log holds more than this many lines per zone (plus slack).
    compact_ratio = 4
    compact_slack = 1024

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as e:
            raise StateDirError(f"state directory {self.directory}: cannot create: {e.strerror}") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise StateDirError(f"state directory {self.directory}: not writable by this user")
        self._zones: dict[dns.name.Name, ZoneState] | None = None
        self._log_lines = 0

    def check_writable(self) -> None:
        """Raise StateDirError unless this process can write here now.

        Run once the process runs as its final user (after twistd's --uid):
        a directory that root created or owns passes the check at start-up
        and would only fail at the first serial change, too late to tell.
        """
        try:
            fd, probe = tempfile.mkstemp(dir=self.directory, prefix=".write-check.")
        except OSError as e:
            try:
                st = self.directory.stat()
                owner = f"owned by {_user_name(st.st_uid)}:{_group_name(st.st_gid)}, mode {st.st_mode & 0o7777:04o}"
            except OSError:
                owner = "not found"
            raise StateDirError(
                f"state directory {self.directory} is not writable by user {_user_name(os.geteuid())} "
                f"(uid {os.geteuid()}): {e.strerror}; it is {owner}. Give it to that user "
                f"(chown) or set [server] state-dir to a directory it can write"
            ) from None
        os.close(fd)
        os.unlink(probe)

    @property
    def _log_path(self) -> Path:
        return self.directory / self.ZONES_LOG

    def _read_legacy(self, path: Path) -> tuple[dns.name.Name, ZoneState] | None:
        try:
            data = json.loads(path.read_text())
            return dns.name.from_text(data["zone"]), ZoneState(int(data["serial"]) % 2**32, str(data["digest"]))
        except (OSError, ValueError, KeyError, TypeError, dns.exception.DNSException) as e:
            log.warn("ignoring unreadable zone state {path}: {error}", path=str(path), error=str(e))
            return None

    def load_zones(self) -> dict[dns.name.Name, ZoneState]:
        """Every zone's last recorded serial and digest (read once, then kept)."""
        if self._zones is not None:
            return self._zones
        zones: dict[dns.name.Name, ZoneState] = {}
        for path in sorted(self.directory.glob("*.zone-state.json")):
            entry = self._read_legacy(path)
            if entry is not None:
                zones[entry[0]] = entry[1]
        lines = 0
        try:
            with self._log_path.open("rb") as f:
                for number, raw in enumerate(f, 1):
                    lines += 1
                    try:
                        if not raw.endswith(b"\n"):
                            raise ValueError("cut short")
                        data = json.loads(raw)
                        zones[_zone_name(data["zone"])] = ZoneState(
                            int(data["serial"]) % 2**32, str(data["digest"])
                        )
                    except (ValueError, KeyError, TypeError, dns.exception.DNSException) as e:
                        log.warn("{path}:{line}: ignoring a damaged entry ({error})",
                                 path=str(self._log_path), line=number, error=str(e))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StateDirError(f"state directory {self.directory}: cannot read {self.ZONES_LOG}: {e.strerror}") from None
        self._zones, self._log_lines = zones, lines
        return zones

    def load_zone(self, name: dns.name.Name) -> ZoneState | None:
        return self.load_zones().get(name)

    def save_zones(self, states: dict[dns.name.Name, ZoneState]) -> None:
        """Record these zones' serials durably (one append, one fsync).

        Raises OSError when the write fails; nothing is then recorded in
        memory either, so the caller can retry the same batch.
        """
        if not states:
            return
        known = dict(self.load_zones())
        known.update(states)
        fd = None
        if self._log_lines + len(states) <= self.compact_ratio * len(known) + self.compact_slack:
            new = not self._log_path.exists()
            try:
                fd = os.open(self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            except PermissionError:
                # Written by root before twistd dropped privileges: a rewrite
                # (rename in our own directory) makes it ours.
                fd = None
        if fd is None:
            atomic_write(self._log_path, "".join(_zone_line(n, s) for n, s in known.items()))
            self._log_lines = len(known)
            for legacy in self.directory.glob("*.zone-state.json"):
                legacy.unlink(missing_ok=True)
        else:
            try:
                size = os.fstat(fd).st_size
                data = "".join(_zone_line(n, s) for n, s in states.items()).encode()
                try:
                    written = os.write(fd, data)
                    if written != len(data):
                        raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} octets)")
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)  # leave no partial batch behind
                    raise
            finally:
                os.close(fd)
            if new:
                fsync_directory(self.directory)
            self._log_lines += len(states)
        self._zones = known

    def save_zone(self, name: dns.name.Name, state: ZoneState) -> None:
        self.save_zones({name: state})

    @property
    def _targets_path(self) -> Path:
        return self.directory / "targets.json"

    def load_targets(self) -> list[dict]:
        try:
            data = json.loads(self._targets_path.read_text())
            return list(data["targets"])
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warn("ignoring unreadable target cache: {error}", error=str(e))
            return []

    def save_targets(self, targets: list[dict]) -> None:
        atomic_write(self._targets_path, json.dumps({"targets": targets}))


def _zone_name(text: str) -> dns.name.Name:
    """A zone name as ``Name.to_text`` wrote it; without escapes, split
    directly (ten thousand ``from_text`` calls take half a second)."""
    if "\\" in text or not text.endswith(".") or text == ".":
        return dns.name.from_text(text)
    return dns.name.Name([label.encode() for label in text.split(".")])


class MemoryStateStore:
    """A StateStore that forgets at exit (unit tests, or no state directory)."""

    def __init__(self):
        self.zones: dict[dns.name.Name, ZoneState] = {}
        self.targets: list[dict] = []

    def load_zones(self):
        return self.zones

    def load_zone(self, name):
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
