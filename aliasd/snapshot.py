"""Compiled zone files kept in the state directory, so a restart skips parsing.

Why: parsing is most of a cold start at ten thousand zones. A zone's
packed records (aliasd.store) are plain bytes, so they are kept here keyed
by the zone and the SHA-256 of its file's content; a restart reads each
file, and when its digest is known takes the records from here instead of
parsing the file again. A file with ``$INCLUDE`` is never taken from here
(the included files are not tracked).

The file ``zones.snapshot`` is a header line, then frames: a 4-octet length
and a ``marshal`` dump of (zone key, file digest, records, content digest).
New frames are appended (a reload that parsed one file appends one frame);
a later frame for a zone replaces an earlier one, and the file is rewritten
when most of it is outdated. A frame cut short by a crash, a damaged file
or one written by another Python version is ignored: the files are parsed.
This is a cache, never a source of truth: losing it costs one slow start.
"""

from __future__ import annotations

import marshal
import os
import struct
import sys
import threading
from pathlib import Path

from twisted.logger import Logger

log = Logger()

_LENGTH = struct.Struct("!I")
_HEADER = f"aliasd zone snapshot 1 python {sys.version_info[0]}.{sys.version_info[1]}\n".encode()

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
        self._writing = threading.Lock()  # the start-up save and a reload's may meet

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
            return
        if not data.startswith(_HEADER):
            log.info("zone snapshot {path} is from another version: zone files are parsed", path=str(self.path))
            return
        i, size = len(_HEADER), len(data)
        while i + _LENGTH.size <= size:
            (length,) = _LENGTH.unpack_from(data, i)
            i += _LENGTH.size
            if i + length > size:
                break  # cut short by a crash
            try:
                key, digest, records, content = marshal.loads(data[i:i + length])
            except (ValueError, EOFError, TypeError):
                log.warn("zone snapshot {path}: a damaged entry is ignored", path=str(self.path))
                break
            i += length
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
        self.entries[key] = entry
        self._new[key] = entry

    def keep_only(self, keys) -> None:
        """Forget zones no longer served (dropped at the next rewrite)."""
        keys = set(keys)
        for key in [k for k in self.entries if k not in keys]:
            del self.entries[key]

    def pending(self) -> bool:
        return bool(self._new)

    def save(self) -> None:
        """Append what is new, or rewrite the file when mostly outdated.

        Meant for a thread: it writes and fsyncs. Raises OSError."""
        with self._writing:
            self._save()

    def _save(self) -> None:
        new, self._new = self._new, {}
        if not new and self._frames <= 2 * len(self.entries) + self.slack:
            return
        try:
            if self._frames + len(new) > 2 * len(self.entries) + self.slack or not self.path.exists():
                self._rewrite()
            else:
                self._append(new)
        except BaseException:
            new.update(self._new)
            self._new = new  # written next time
            raise

    @staticmethod
    def _frames_of(entries: dict[bytes, Entry]) -> bytes:
        out = bytearray()
        for key, (digest, records, content) in entries.items():
            frame = marshal.dumps((key, digest, records, content))
            out += _LENGTH.pack(len(frame))
            out += frame
        return bytes(out)

    def _append(self, new: dict[bytes, Entry]) -> None:
        data = self._frames_of(new)
        with self.path.open("ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self._frames += len(new)

    def _rewrite(self) -> None:
        entries = dict(self.entries)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(_HEADER)
            f.write(self._frames_of(entries))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._frames = len(entries)
