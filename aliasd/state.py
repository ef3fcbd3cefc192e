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
import grp
import json
import os
import pwd
import re
import tempfile
from pathlib import Path

import dns.name
import dns.serial
from twisted.application import service
from twisted.logger import Logger

log = Logger()
_SAFE = re.compile(r"[a-z0-9][a-z0-9._-]*")


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


def _atomic_write(path: Path, data: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
    """Files under the state directory; one JSON file per zone, one for targets."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as e:
            raise StateDirError(f"state directory {self.directory}: cannot create: {e.strerror}") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise StateDirError(f"state directory {self.directory}: not writable by this user")

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

    def _zone_path(self, name: dns.name.Name) -> Path:
        text = name.to_text(omit_final_dot=True).lower() or "root"
        if not _SAFE.fullmatch(text):
            text = "zone-" + name.canonicalize().to_wire().hex()
        return self.directory / f"{text}.zone-state.json"

    def load_zone(self, name: dns.name.Name) -> ZoneState | None:
        path = self._zone_path(name)
        try:
            data = json.loads(path.read_text())
            return ZoneState(int(data["serial"]) % 2**32, str(data["digest"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warn("ignoring unreadable zone state {path}: {error}", path=str(path), error=str(e))
            return None

    def save_zone(self, name: dns.name.Name, state: ZoneState) -> None:
        _atomic_write(
            self._zone_path(name),
            json.dumps({"zone": name.to_text(), "serial": state.serial, "digest": state.digest}),
        )

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
        _atomic_write(self._targets_path, json.dumps({"targets": targets}))


class MemoryStateStore:
    """A StateStore that forgets at exit (unit tests, or no state directory)."""

    def __init__(self):
        self.zones: dict[dns.name.Name, ZoneState] = {}
        self.targets: list[dict] = []

    def load_zone(self, name):
        return self.zones.get(name)

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
