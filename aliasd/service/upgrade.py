"""The first start after an upgrade: state files of earlier releases are
imported into the state store (aliasd.base.db), so no serial goes back and
no acknowledged update or IXFR history is lost.

Why a module of its own: these formats are read once per state directory
and never written again. Earlier releases kept, in the state directory:

- ``zones.log``: one JSON line per served serial (the last line of a zone
  wins; a line cut short by a crash was never served and is skipped), and
  before it one ``*.zone-state.json`` per zone;
- ``journal/<zone>.jnl``: each zone's journal as CRC-checked frames
  (aliasd.replicate.journaldb.read_frames; a torn frame ends the file);
- ``targets.json``: the last good addresses of every ALIAS target.

Everything is imported in one transaction, marked done in the store's
``meta`` database, and the old files are then moved to ``imported/`` (kept
for a downgrade or a look, never read again).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dns.exception
import dns.name
from twisted.logger import Logger

from aliasd.base import store
from aliasd.base.state import StateStore, ZoneState, encode_zone_state
from aliasd.replicate.journaldb import JournalStore, key_of_safe_name, read_frames

log = Logger()

_MARK = b"imported-files"


def _legacy_files(directory: Path) -> list[Path]:
    found = [p for p in (directory / "zones.log", directory / "targets.json", directory / "journal") if p.exists()]
    return found + sorted(directory.glob("*.zone-state.json"))


def _zone_states(directory: Path) -> dict[bytes, ZoneState]:
    """zone key -> its last recorded serial, from zones.log and older files."""
    states: dict[bytes, ZoneState] = {}

    def take(data) -> None:
        name = dns.name.from_text(data["zone"])
        states[store.key_of(name)] = ZoneState(int(data["serial"]) % 2**32, str(data["digest"]))

    for path in sorted(directory.glob("*.zone-state.json")):
        try:
            take(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError, dns.exception.DNSException) as e:
            log.warn("upgrade: ignoring unreadable zone state {path}: {error}", path=str(path), error=str(e))
    try:
        with (directory / "zones.log").open("rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    if not raw.endswith(b"\n"):
                        raise ValueError("cut short")
                    take(json.loads(raw))
                except (ValueError, KeyError, TypeError, dns.exception.DNSException) as e:
                    log.warn("upgrade: zones.log:{line}: ignoring a damaged entry ({error})",
                             line=number, error=str(e))
    except FileNotFoundError:
        pass
    return states


def import_files(directory: Path, state: StateStore, journals: JournalStore) -> None:
    """Import the state files of an earlier release, once (raises OSError)."""
    directory = Path(directory)
    db = state.db
    with db.reading() as txn:
        done = txn.get(_MARK, db=db.meta) is not None
    found = _legacy_files(directory)
    if not found:
        (directory / "zones.snapshot").unlink(missing_ok=True)
        return
    if not done:
        states = _zone_states(directory)
        journal_files = sorted((directory / "journal").glob("*.jnl"))
        records = 0
        with journals.lock, db.write() as txn:
            for key, zone_state in states.items():
                txn.put(key, encode_zone_state(zone_state), db=db.serials)
            for path in journal_files:
                frames = read_frames(path.read_bytes())[0]
                key = key_of_safe_name(path.name[: -len(".jnl")])
                journals.rewrite(key, frames)
                records += len(frames)
            try:
                targets = json.loads((directory / "targets.json").read_text())["targets"]
                txn.put(b"all", json.dumps({"targets": list(targets)}).encode(), db=db.targets)
            except FileNotFoundError:
                pass
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warn("upgrade: ignoring an unreadable targets.json: {error}", error=str(e))
            txn.put(_MARK, b"1", db=db.meta)
        state._zones = None  # read again from the store
        log.info("upgrade: imported the serials of {zones} zone(s), {journals} journal file(s) "
                 "({records} records) and the target cache into {path}",
                 zones=len(states), journals=len(journal_files), records=records, path=str(db.path))
    cache = directory / "zones.snapshot"  # compiled zones: a cache, now in the store
    if cache.exists():
        cache.unlink()
        log.info("upgrade: {path} removed (compiled zones are kept in the state store now)", path=str(cache))
    aside = directory / "imported"
    aside.mkdir(mode=0o750, exist_ok=True)
    for path in found:
        target = aside / path.name
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(path, target)
    log.info("upgrade: the state files of the earlier release are kept in {path}, unused", path=str(aside))
