"""Each zone's journal in the state store: durable updates and IXFR history.

Why a module of its own: this is the journal's record format, and nothing
else. A zone's journal is the run of records of the store's ``journal``
database (aliasd.base.db) whose keys are the zone's key followed by a
sequence number; each record is its kind (1 octet) and its payload. Kinds:

- ``D`` a difference between two served versions (what IXFR sends), with
  the new version's view digest, so that after a restart the history is
  used only if it ends at exactly the version served;
- ``U`` a dynamic update: each owner node it touched, packed as after it
  (aliasd.base.store), and the source's serial; committed before the
  update is answered;
- ``S`` a snapshot of a dynamic zone's records (its truth from then on:
  the updates after it are applied on top), with the SHA-256 of the file
  on disk;
- ``F`` "this zone file holds these records": a file aliasd wrote (committed
  before the file is renamed into place, so that a crash between the two
  is still recognised) or took; the latest is the base of a hand edit
  (aliasd.update.dynamic);
- ``B`` and ``W``: what earlier releases wrote instead of ``S`` and ``F``
  ("the source is this file", "aliasd wrote this file"), read at the first
  start after an upgrade.

Records are appended in the authority's commit thread, inside the batch's
transaction (aliasd.service.authority), so a batch's journal records and
serials commit together. A zone's journal is compacted (rewritten in one
transaction) when it has grown to several times its size after the last
rewrite: it then holds the snapshot of a dynamic zone and the last
differences kept for IXFR. A lock keeps a file sync (aliasd.update.dynamic)
from interleaving with a compaction.

``read_frames`` reads the per-zone journal files of earlier releases
(``length | kind | CRC-32 | payload`` frames), which the first start after
an upgrade imports (aliasd.service.upgrade).
"""

from __future__ import annotations

import struct
import threading
import zlib
from typing import Iterable

from aliasd.base.db import StateDB
from aliasd.replicate.journal import Difference, Journal

_FRAME = struct.Struct("!IBI")
_U32 = struct.Struct("!I")
_SEQ = struct.Struct("!Q")

#: One journal record: (kind, payload).
Frame = tuple[bytes, bytes]

DIFFERENCE, UPDATE, BASE, WRITTEN, SNAPSHOT, FILE = b"D", b"U", b"B", b"W", b"S", b"F"


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


def key_of_safe_name(text: str) -> bytes:
    """The zone key that ``_safe_name`` made ``text`` of (legacy file names)."""
    if text == "root":
        return b"\0"
    out = []
    for label in text.split("."):
        raw = bytearray()
        i = 0
        while i < len(label):
            if label[i] == "%":
                raw.append(int(label[i + 1:i + 3], 16))
                i += 3
            else:
                raw += label[i].encode()
                i += 1
        out.append(bytes((len(raw),)) + bytes(raw))
    return b"".join(out) + b"\0"


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


def encode_difference(diff: Difference, digest: str) -> bytes:
    return digest.encode().ljust(64, b" ")[:64] + _blobs(
        [diff.old_soa_packed, diff.new_soa_packed]
    ) + _blobs(diff.removed_packed) + _blobs(diff.added_packed)


def decode_difference(payload: bytes) -> tuple[Difference, str]:
    digest = payload[:64].decode().strip()
    soas, i = _read_blobs(payload, 64)
    removed, i = _read_blobs(payload, i)
    added, i = _read_blobs(payload, i)
    return Difference(soas[0], soas[1], tuple(removed), tuple(added)), digest


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


def decode_written(payload: bytes) -> tuple[bytes, int]:
    return payload[:32], _U32.unpack_from(payload, 32)[0]


def encode_file(sha: bytes, serial: int, records) -> bytes:
    """An F record: a zone file's SHA-256 and the records it holds (the
    serial of its SOA), as aliasd wrote or took it."""
    return sha.ljust(32, b"\0") + encode_nodes(serial, dict(records))


def decode_file(payload: bytes) -> tuple[bytes, int, dict[bytes, bytes]]:
    serial, nodes = decode_nodes(payload[32:])
    return payload[:32], serial, {k: v for k, v in nodes.items() if v}


def encode_snapshot(serial: int, records, file_sha: bytes) -> bytes:
    return file_sha.ljust(32, b"\0") + encode_nodes(serial, dict(records))


def decode_snapshot(payload: bytes) -> tuple[bytes, int, dict[bytes, bytes]]:
    serial, nodes = decode_nodes(payload[32:])
    return payload[:32], serial, {k: v for k, v in nodes.items() if v}


# -- records ---------------------------------------------------------------

def frame(kind: bytes, payload: bytes) -> Frame:
    """A journal record of ``kind``."""
    return kind, payload


def file_frame(kind: bytes, payload: bytes) -> bytes:
    """A record as a frame of the journal files of earlier releases."""
    return _FRAME.pack(len(payload), kind[0], zlib.crc32(kind + payload)) + payload


def read_frames(data: bytes) -> tuple[list[Frame], int]:
    """The whole frames of a journal file of an earlier release, and the
    offset where they end (a torn or damaged frame ends the file)."""
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


class JournalStore:
    """The journals of every zone, in the state store.

    Differences (``D``) are deleted one by one as the zone's history
    bounds push them out (aliasd.replicate.journal); the other records (a
    dynamic zone's updates and what its file is) are compacted into one
    snapshot when they have grown to several times its size.
    """

    #: Compact a journal's other records once they are this many times their size after the last compaction.
    compact_ratio = 4
    compact_min = 64 * 1024

    def __init__(self, db: StateDB):
        self.db = db
        self.lock = threading.RLock()
        self._next: dict[bytes, int] = {}  # zone key -> the next sequence number
        self._sizes: dict[bytes, int] = {}  # zone key -> octets of its records other than differences
        self._compacted: dict[bytes, int] = {}  # zone key -> those octets after the last compaction

    def exists(self, key: bytes) -> bool:
        with self.db.reading() as txn:
            return next(StateDB.items_under(txn, self.db.journal, key), None) is not None

    def read(self, key: bytes) -> list[Frame]:
        """Every record of the zone's journal, oldest first."""
        return [(kind, payload) for _, kind, payload in self.read_records(key)]

    def read_records(self, key: bytes) -> list[tuple[bytes, bytes, bytes]]:
        """Every record of the zone's journal as (record key, kind, payload), oldest first."""
        with self.db.reading() as txn:
            return [(k, v[:1], v[1:]) for k, v in StateDB.items_under(txn, self.db.journal, key)]

    def get(self, record_key: bytes) -> bytes:
        """One record's payload (raises KeyError when it is gone)."""
        with self.db.reading() as txn:
            value = txn.get(record_key, db=self.db.journal)
        if value is None:
            raise KeyError(record_key)
        return value[1:]

    def keys(self) -> set[bytes]:
        """The keys of the zones that have a journal."""
        found = set()
        with self.db.reading() as txn:
            cursor = txn.cursor(db=self.db.journal)
            if cursor.first():
                while True:
                    zone = cursor.key()[:-_SEQ.size]
                    found.add(zone)
                    if not cursor.set_range(zone + b"\xff" * _SEQ.size):
                        break
        return found

    def append(self, key: bytes, frames: list[Frame]) -> list[bytes]:
        """Append ``frames`` to the zone's journal, in the transaction open
        on this thread, or in one of their own committed (durably) before
        this returns; returns their record keys. Raises OSError; a failed
        append writes nothing."""
        if not frames:
            return []
        with self.lock, self.db.write() as txn:
            seq = self._next_sequence(txn, key)
            size = self._size(txn, key)
            keys = []
            for kind, payload in frames:
                record = key + _SEQ.pack(seq)
                txn.put(record, kind + payload, db=self.db.journal)
                keys.append(record)
                seq += 1
                if kind != DIFFERENCE:
                    size += 1 + len(payload)
            self._mark(txn, key, any(kind != DIFFERENCE for kind, _ in frames) or None)
            # Sequence numbers only grow: an aborted transaction leaves a gap.
            self._next[key] = seq

            def done(size=size):
                self._sizes[key] = size
                self._compacted.setdefault(key, size)
            self.db.after_commit(done)
        return keys

    def delete_records(self, record_keys: Iterable[bytes]) -> None:
        """Delete these records (differences pushed out of a history)."""
        with self.db.write() as txn:
            for record in record_keys:
                txn.delete(record, db=self.db.journal)

    def _next_sequence(self, txn, key: bytes) -> int:
        seq = self._next.get(key)
        if seq is None:
            cursor = txn.cursor(db=self.db.journal)
            found = cursor.set_range(key + b"\xff" * _SEQ.size)
            found = cursor.prev() if found else cursor.last()
            last = cursor.key() if found else b""
            seq = _SEQ.unpack(last[len(key):])[0] + 1 if last.startswith(key) and len(last) == len(key) + _SEQ.size else 0
        return seq

    def _size(self, txn, key: bytes) -> int:
        size = self._sizes.get(key)
        if size is None:
            size = sum(len(value) for _, value in StateDB.items_under(txn, self.db.journal, key)
                       if value[:1] != DIFFERENCE)
            self._compacted.setdefault(key, size)
        return size

    def wants_compaction(self, key: bytes) -> bool:
        size = self._sizes.get(key, 0)
        return size > max(self.compact_min, self.compact_ratio * self._compacted.get(key, 0))

    def compact(self, key: bytes, frames: list[Frame]) -> None:
        """Replace the zone's records other than differences by ``frames``
        (a dynamic zone's snapshot), in one transaction."""
        with self.lock, self.db.write() as txn:
            seq = self._next_sequence(txn, key)
            cursor = txn.cursor(db=self.db.journal)
            if cursor.set_range(key):
                while cursor.key().startswith(key):
                    moved = cursor.delete() if cursor.value()[:1] != DIFFERENCE else cursor.next()
                    if not moved:
                        break
            size = 0
            for kind, payload in frames:
                txn.put(key + _SEQ.pack(seq), kind + payload, db=self.db.journal)
                seq += 1
                size += 1 + len(payload)
            self._mark(txn, key, bool(frames))
            self._next[key] = seq

            def done():
                self._sizes[key] = self._compacted[key] = size
            self.db.after_commit(done)

    def rewrite(self, key: bytes, frames: list[Frame]) -> None:
        """Replace the zone's whole journal by ``frames``, in one transaction."""
        with self.lock, self.db.write() as txn:
            StateDB.delete_under(txn, self.db.journal, key)
            self._mark(txn, key, False)
            self._sizes.pop(key, None)
            self.append(key, frames)

    _DYNAMIC = b"dynamic:"

    def _mark(self, txn, key: bytes, dynamic: bool | None) -> None:
        """Keep the note that the zone's journal holds records other than
        differences (a dynamic zone's truth), in the transaction that
        writes them, so a start finds such zones without reading every
        journal (None: leave the note as it is)."""
        if dynamic:
            txn.put(self._DYNAMIC + key, b"1", db=self.db.meta)
        elif dynamic is not None:
            txn.delete(self._DYNAMIC + key, db=self.db.meta)

    def dynamic_keys(self) -> set[bytes]:
        """The zones whose journals hold a dynamic zone's records."""
        with self.db.reading() as txn:
            return {k[len(self._DYNAMIC):] for k, _ in StateDB.items_under(txn, self.db.meta, self._DYNAMIC)}

    def remove(self, key: bytes) -> None:
        with self.lock, self.db.write() as txn:
            StateDB.delete_under(txn, self.db.journal, key)
            self._mark(txn, key, False)

            def done():
                self._sizes.pop(key, None)
                self._compacted.pop(key, None)
            self.db.after_commit(done)


def difference_serials(payload: bytes) -> tuple[str, int, int]:
    """A difference record's view digest and old and new serials, without
    decoding its records."""
    soas, _ = _read_blobs(payload, 64)
    return (payload[:64].decode().strip(), int.from_bytes(soas[0][-20:-16], "big"),
            int.from_bytes(soas[1][-20:-16], "big"))


def history(records: Iterable[tuple[bytes, bytes, bytes]], serial: int, digest: str,
            journal: Journal) -> tuple[Journal | None, list[bytes]]:
    """The IXFR history in a zone's journal ``records`` (record key, kind,
    payload) put into the empty ``journal``, if it ends at exactly the
    version served (``serial`` with view ``digest``); else None. Also the
    record keys no history holds (never served, or pushed out by its
    bounds), for the store to delete."""
    entries = []  # (record key, old serial, new serial, size)
    served = None
    for record, kind, payload in records:
        if kind != DIFFERENCE:
            continue
        diff_digest, old, new = difference_serials(payload)
        entries.append((record, old, new, 1 + len(payload)))
        if (new, diff_digest) == (serial, digest):
            served = len(entries)
    if served is None:
        return None, [e[0] for e in entries]
    # Differences written after the served one were never served (a crash
    # between the journal and the serial record of an earlier release).
    unused = [e[0] for e in entries[served:]]
    # The history is the chain that ends at the served difference, walked
    # back from it: each link is the latest difference recorded before it
    # that leads to its old serial. Differences off the chain were recorded
    # but never served: their version was replaced before it was served (an
    # update or a reload came while it was being recorded), and the next
    # version starts from the same served serial again. Read in order, such
    # a difference broke the chain and cost the whole history before it.
    chain = []
    for entry in reversed(entries[:served]):
        if not chain or entry[2] == chain[-1][1]:
            chain.append(entry)
        else:
            unused.append(entry[0])
    for record, old, new, size in reversed(chain):
        unused += journal.add_recorded(old, new, size, record)
    unused += journal.trim()
    return (journal if len(journal) else None), unused
