"""Per-zone journal files in the state directory: durable updates and IXFR history.

Why a module of its own: this is the on-disk format, and nothing else. One
file per zone, ``journal/<zone>.jnl``, of frames appended in order; each
frame is ``length (4) | kind (1) | CRC-32 (4) | payload``, so a frame cut
short by a crash, or damaged, ends the file there (the reader stops and the
next writer truncates it away). Kinds:

- ``D`` a difference between two served versions (what IXFR sends), with
  the new version's view digest, so that after a restart the history is
  used only if it ends at exactly the version served;
- ``U`` a dynamic update: each owner node it touched, packed as after it
  (aliasd.base.store), and the source's serial; written and fsync'd before the
  update is answered;
- ``B`` "the source is this zone file": the file's SHA-256, when aliasd
  adopts a file (first load of a dynamic zone, or a file edited by hand);
- ``W`` "aliasd wrote this file": its SHA-256 and the serial of the
  records written, fsync'd before the file is renamed into place, so that
  a crash between the two is still recognised; updates recorded while the
  file was written have newer serials and are applied on top of it;
- ``S`` a snapshot of a dynamic zone's source records (compaction), with
  the SHA-256 of the file on disk.

A file grows by appends and is compacted (rewritten atomically) when it
has grown to several times its size after the last rewrite: it then holds
the snapshot of a dynamic zone and the last differences kept for IXFR.
Appends run in the authority's commit thread; a lock keeps a file sync
(aliasd.update.dynamic) from interleaving with them.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from aliasd.base import store
from aliasd.base.state import atomic_write, fsync_directory
from aliasd.replicate.journal import Difference, Journal

_FRAME = struct.Struct("!IBI")
_U32 = struct.Struct("!I")

DIFFERENCE, UPDATE, BASE, WRITTEN, SNAPSHOT = b"D", b"U", b"B", b"W", b"S"


def _safe_name(key: bytes) -> str:
    """A file name for a zone: its lower-case text, other octets escaped."""
    labels = []
    i = 0
    while key[i]:
        label = key[i + 1:i + 1 + key[i]]
        labels.append("".join(
            chr(c) if (48 <= c <= 57 or 97 <= c <= 122 or c in b"-_") else f"%{c:02x}" for c in label
        ))
        i += key[i] + 1
    return ".".join(labels) or "root"


# -- payloads -------------------------------------------------------------

def _blobs(parts: Iterable[bytes]) -> bytes:
    parts = list(parts)
    return _U32.pack(len(parts)) + b"".join(_U32.pack(len(p)) + p for p in parts)


def _read_blobs(data: bytes, i: int) -> tuple[list[bytes], int]:
    (count,) = _U32.unpack_from(data, i)
    i += 4
    out = []
    for _ in range(count):
        (length,) = _U32.unpack_from(data, i)
        i += 4
        out.append(data[i:i + length])
        i += length
    return out, i


def _pack_rrset(rrset) -> bytes:
    return store.pack(rrset.name.to_wire(), [(rrset.rdtype, rrset.ttl, [rd.to_wire() for rd in rrset])])


def _unpack_rrset(packed: bytes):
    node = store.PackedNode(packed)
    return node[next(iter(node))]


def encode_difference(diff: Difference, digest: str) -> bytes:
    return digest.encode().ljust(64, b" ")[:64] + _blobs(
        [diff.old_soa_packed, diff.new_soa_packed]
    ) + _blobs(_pack_rrset(r) for r in diff.removed) + _blobs(_pack_rrset(r) for r in diff.added)


def decode_difference(payload: bytes) -> tuple[Difference, str]:
    digest = payload[:64].decode().strip()
    soas, i = _read_blobs(payload, 64)
    removed, i = _read_blobs(payload, i)
    added, i = _read_blobs(payload, i)
    return Difference(
        soas[0], soas[1], tuple(_unpack_rrset(p) for p in removed), tuple(_unpack_rrset(p) for p in added)
    ), digest


def encode_nodes(serial: int, nodes: dict[bytes, bytes | None]) -> bytes:
    """An update (or a snapshot): each key and its packed node (empty: deleted)."""
    parts = []
    for key, packed in nodes.items():
        parts.append(key)
        parts.append(packed or b"")
    return _U32.pack(serial) + _blobs(parts)


def decode_nodes(payload: bytes) -> tuple[int, dict[bytes, bytes | None]]:
    (serial,) = _U32.unpack_from(payload)
    parts, _ = _read_blobs(payload, 4)
    return serial, {parts[i]: (parts[i + 1] or None) for i in range(0, len(parts), 2)}


def encode_written(sha: bytes, serial: int) -> bytes:
    """A W frame: the file's SHA-256 and the serial of the source written."""
    return sha + _U32.pack(serial)


def decode_written(payload: bytes) -> tuple[bytes, int]:
    return payload[:32], _U32.unpack_from(payload, 32)[0]


def encode_snapshot(serial: int, records, file_sha: bytes) -> bytes:
    return file_sha.ljust(32, b"\0") + encode_nodes(serial, dict(records))


def decode_snapshot(payload: bytes) -> tuple[bytes, int, dict[bytes, bytes]]:
    serial, nodes = decode_nodes(payload[32:])
    return payload[:32], serial, {k: v for k, v in nodes.items() if v}


# -- frames ---------------------------------------------------------------

def frame(kind: bytes, payload: bytes) -> bytes:
    return _FRAME.pack(len(payload), kind[0], zlib.crc32(kind + payload)) + payload


def read_frames(data: bytes) -> tuple[list[tuple[bytes, bytes]], int]:
    """The whole frames of ``data`` and the offset where they end."""
    frames = []
    i = 0
    while i + _FRAME.size <= len(data):
        length, kind, crc = _FRAME.unpack_from(data, i)
        end = i + _FRAME.size + length
        if end > len(data):
            break
        payload = data[i + _FRAME.size:end]
        if zlib.crc32(bytes((kind,)) + payload) != crc:
            break
        frames.append((bytes((kind,)), payload))
        i = end
    return frames, i


class JournalFiles:
    """The journal files of every zone, under ``directory``."""

    #: Rewrite a file once it is this many times its size after the last rewrite.
    compact_ratio = 4
    compact_min = 64 * 1024

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.lock = threading.RLock()
        self._sizes: dict[bytes, int] = {}  # zone key -> size now (files appended to in this run)
        self._compacted: dict[bytes, int] = {}  # zone key -> size after the last rewrite

    def path(self, key: bytes) -> Path:
        return self.directory / (_safe_name(key) + ".jnl")

    def exists(self, key: bytes) -> bool:
        return key in self._sizes or self.path(key).exists()

    def read(self, key: bytes) -> list[tuple[bytes, bytes]]:
        """Every whole frame of the zone's journal (none when there is no file)."""
        try:
            data = self.path(key).read_bytes()
        except FileNotFoundError:
            return []
        return read_frames(data)[0]

    def append(self, key: bytes, frames: list[bytes], sync: bool) -> None:
        """Append ``frames``; with ``sync``, durably (fsync) before returning.

        Raises OSError; a failed append leaves the file as it was."""
        with self.lock:
            path = self.path(key)
            size = self._sizes.get(key)
            if size is None:
                self.directory.mkdir(mode=0o750, exist_ok=True)
                size = self._whole_size(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o640)
            try:
                data = b"".join(frames)
                os.ftruncate(fd, size)  # a torn frame of a crash goes
                os.lseek(fd, size, os.SEEK_SET)
                try:
                    written = os.write(fd, data)
                    if written != len(data):
                        raise OSError(28, f"short write ({written} of {len(data)} octets)")
                    if sync:
                        os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)
                    raise
            finally:
                os.close(fd)
            if size == 0 and sync:
                fsync_directory(self.directory)
            self._sizes[key] = size + len(data)
            self._compacted.setdefault(key, size)

    def _whole_size(self, path: Path) -> int:
        """The length of the file's whole frames (0: no file)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0
        return read_frames(data)[1]

    def wants_compaction(self, key: bytes) -> bool:
        size = self._sizes.get(key, 0)
        return size > max(self.compact_min, self.compact_ratio * self._compacted.get(key, 0))

    def rewrite(self, key: bytes, frames: list[bytes]) -> None:
        """Replace the zone's journal by ``frames``, atomically and durably."""
        with self.lock:
            self.directory.mkdir(mode=0o750, exist_ok=True)
            path = self.path(key)
            data = b"".join(frames)
            atomic_write(path, data, 0o640)
            self._sizes[key] = self._compacted[key] = len(data)

    def remove(self, key: bytes) -> None:
        with self.lock:
            self.path(key).unlink(missing_ok=True)
            self._sizes.pop(key, None)
            self._compacted.pop(key, None)


def history(frames: Iterable[tuple[bytes, bytes]], size: int, serial: int, digest: str) -> Journal | None:
    """The IXFR history in ``frames`` if it ends at exactly the version
    served (``serial`` with view ``digest``), else None."""
    journal = Journal(size)
    kept = None
    for kind, payload in frames:
        if kind == DIFFERENCE:
            diff, diff_digest = decode_difference(payload)
            journal.add(diff)
            if (diff.new_serial, diff_digest) == (serial, digest):
                kept = journal.differences()
    if not kept:
        return None
    # Differences written after the served one were never served (a crash
    # between the journal and the serial record): they are left out.
    journal = Journal(size)
    for diff in kept:
        journal.add(diff)
    return journal


def difference_frames(journal: Journal, digest: str) -> list[bytes]:
    """A journal's differences as frames (compaction); the digest goes with the last."""
    diffs = journal.differences()
    return [frame(DIFFERENCE, encode_difference(d, digest if i == len(diffs) - 1 else ""))
            for i, d in enumerate(diffs)]


def iter_kind(frames, kind: bytes) -> Iterator[bytes]:
    return (payload for k, payload in frames if k == kind)

