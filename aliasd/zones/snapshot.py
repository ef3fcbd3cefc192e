"""Compiled zone files kept in the state directory, so a restart skips parsing.

Why: parsing is most of a cold start at ten thousand zones. A zone's
packed records (aliasd.base.store) are plain bytes, so they are kept here keyed
by the zone and the SHA-256 of its file's content; a restart reads each
file, and when its digest is known takes the records from here instead of
parsing the file again. A file with ``$INCLUDE`` is never taken from here
(the included files are not tracked).

The file ``zones.snapshot`` is a header line (naming the aliasd and
dnspython versions that compiled it), then frames: a 4-octet length, the
first 16 octets of the SHA-256 of the body, and the body: the zone name
as configured (wire form, letter case kept), the file's digest, the
content digest (aliasd.zones.zonefile.ZoneSource.digest) and the packed records.
Bodies are plain length-prefixed octets read with bounds checks, never
unpickled: the file is written by the service user and read as root at
the next start. New frames are appended (a reload that parsed one file
appends one frame); a later frame for a zone replaces an earlier one, and
the file is rewritten when most of it is outdated, or damaged. A frame cut
short by a crash, a damaged frame, or a file of another version is
ignored from there on: those files are parsed. This is a cache, never a
source of truth: losing it costs one slow start.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from pathlib import Path

import dns.version
from twisted.logger import Logger

from aliasd import __version__

log = Logger()

_LENGTH = struct.Struct("!I")
_CHECK = 16  # octets of SHA-256 per frame
_HEADER = f"aliasd zone snapshot 2 aliasd {__version__} dnspython {dns.version.version}\n".encode()


class _Damaged(Exception):
    pass


def _encode(key: bytes, digest: bytes, records: dict, content: str) -> bytes:
    parts = [bytes((len(key),)), key, digest, content.encode(), _LENGTH.pack(len(records))]
    for owner, packed in records.items():
        parts += [bytes((len(owner),)), owner, _LENGTH.pack(len(packed)), packed]
    body = b"".join(parts)
    return _LENGTH.pack(len(body)) + hashlib.sha256(body).digest()[:_CHECK] + body


def _decode(body: bytes) -> tuple[bytes, bytes, dict, str]:
    """One frame's body; raises _Damaged when it does not add up."""
    try:
        i = 1 + body[0]
        key = body[1:i]
        digest, content = body[i:i + 32], body[i + 32:i + 96].decode("ascii")
        i += 96
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
    return key, digest, records, content

#: (file digest, records, content digest) of one zone.
Entry = tuple[bytes, dict, str]


class Snapshot:
    """The compiled zones of the last run, and what this run adds to them."""

    FILE = "zones.snapshot"
    #: Outdated frames tolerated beyond one per zone before a rewrite.
    slack = 1024

    def __init__(self, directory: Path):
        self.path = Path(directory) / self.FILE
        self.entries: dict[bytes, Entry] = {}  # zone key -> entry
        self._frames = 0  # frames in the file, outdated ones included
        self._new: dict[bytes, Entry] = {}  # not yet written
        self._loaded = False
        self._damaged = False  # rewrite at the next save instead of appending
        self._lock = threading.Lock()  # the start-up save and a reload's may meet

    def load(self) -> None:
        """Read the file once (a missing or unusable file: an empty snapshot)."""
        if self._loaded:
            return
        self._loaded = True
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as e:
            log.warn("zone snapshot {path} not read: {error}", path=str(self.path), error=e.strerror)
            self._damaged = True
            return
        if not data.startswith(_HEADER):
            log.info("zone snapshot {path} is from another version: zone files are parsed", path=str(self.path))
            self._damaged = True
            return
        i, size = len(_HEADER), len(data)
        while i < size:
            try:
                if i + _LENGTH.size + _CHECK > size:
                    raise _Damaged
                (length,) = _LENGTH.unpack_from(data, i)
                start = i + _LENGTH.size + _CHECK
                body = data[start:start + length]
                if len(body) != length or hashlib.sha256(body).digest()[:_CHECK] != data[i + _LENGTH.size:start]:
                    raise _Damaged
                key, digest, records, content = _decode(body)
            except _Damaged:
                log.warn("zone snapshot {path}: damaged from octet {at} on; those zones are parsed",
                         path=str(self.path), at=i)
                self._damaged = True
                return
            i = start + length
            self.entries[key] = (digest, records, content)
            self._frames += 1

    def get(self, key: bytes, digest: bytes) -> Entry | None:
        self.load()
        entry = self.entries.get(key)
        if entry is not None and entry[0] == digest:
            return entry
        return None

    def put(self, key: bytes, digest: bytes, records: dict, content: str) -> None:
        """Remember a freshly parsed zone (written by the next ``save``)."""
        entry = (digest, records, content)
        with self._lock:
            self.entries[key] = entry
            self._new[key] = entry

    def keep_only(self, keys) -> None:
        """Forget zones no longer served (dropped at the next rewrite)."""
        keys = set(keys)
        with self._lock:
            for key in [k for k in self.entries if k not in keys]:
                del self.entries[key]

    def pending(self) -> bool:
        return bool(self._new)

    def save(self) -> None:
        """Append what is new, or rewrite the file when mostly outdated or
        damaged, or when appending fails (a file root wrote before the
        privilege drop is replaced by one of our own).

        Meant for a thread: it writes and fsyncs. Raises OSError."""
        with self._lock:
            new, self._new = self._new, {}
            entries = dict(self.entries)
        try:
            if (self._damaged or not self.path.exists()
                    or self._frames + len(new) > 2 * len(entries) + self.slack):
                self._rewrite(entries)
            elif new:
                try:
                    self._append(new)
                except OSError:
                    self._rewrite(entries)
        except BaseException:
            with self._lock:
                new.update(self._new)
                self._new = new  # written next time
            raise

    def _append(self, new: dict[bytes, Entry]) -> None:
        data = b"".join(_encode(key, *entry) for key, entry in new.items())
        with self.path.open("ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self._frames += len(new)

    def _rewrite(self, entries: dict[bytes, Entry]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)  # it holds every zone's data
        with os.fdopen(fd, "wb") as f:
            f.write(_HEADER)
            f.write(b"".join(_encode(key, *entry) for key, entry in entries.items()))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._frames = len(entries)
        self._damaged = False
