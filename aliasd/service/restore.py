"""Put a backup (``aliasd-ctl backup``) back in a state directory, serials kept.

Why a step of its own and not a copy: a backup's store holds the serials
served when it was taken. Copied back as it is, a zone whose file changed
since would be served with the old serial plus one, which may be below
what its secondaries already hold: they would ignore the zone until the
serial caught up (RFC 1982), and never go back themselves. So the served
serials of the store being replaced are carried over wherever they are
newer (with the digest of the view they stood for: a different view gets
that serial plus one). When that store is lost, ``serial_floor`` raises
every zone's serial to at least that number (a date-based serial such as
2026120800 is above what any secondary holds).

The server must be stopped. The store and key directory being replaced are
kept beside the new ones (``*.before-restore-TIME``), not deleted.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dns.serial
import lmdb

from aliasd.base.db import DEFAULT_MAX_SIZE, NAME

KEYS = "keys"


class RestoreError(Exception):
    """The restore cannot be done; the message says why."""


def _serials(path: Path) -> dict[bytes, bytes]:
    """Every served serial record of the store at ``path`` ({} when there is none)."""
    if not (path / "data.mdb").exists():
        return {}
    env = lmdb.open(str(path), readonly=True, max_dbs=8, lock=False, subdir=True)
    try:
        try:
            db = env.open_db(b"serials", create=False)
        except lmdb.NotFoundError:
            return {}
        with env.begin(db=db) as txn:
            return dict(txn.cursor())
    finally:
        env.close()


def _newer(a: int, b: int) -> bool:
    return dns.serial.Serial(a) > dns.serial.Serial(b)


def restore(backup: Path, state_dir: Path, serial_floor: int | None = None) -> list[str]:
    """Restore ``backup`` into ``state_dir``; returns what was done, line by line."""
    if not (backup / NAME / "data.mdb").is_file():
        raise RestoreError(f"{backup}: not a backup of aliasd (no {NAME}/data.mdb)")
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    current = state_dir / NAME
    if not (current / "data.mdb").exists() and serial_floor is None:
        raise RestoreError(f"{state_dir}: no state store to carry the served serials over from; give "
                           "--serial-floor (a serial above any the secondaries hold, e.g. today's date as "
                           "YYYYMMDD00)")
    try:
        served = _serials(current)
    except lmdb.Error as e:
        if serial_floor is None:
            raise RestoreError(f"{current}: cannot read the served serials ({e}); give --serial-floor "
                               "(a serial above any the secondaries hold, e.g. today's date as YYYYMMDD00)") from None
        served = {}
    done = []
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for name in (NAME, KEYS):
        if (state_dir / name).exists():
            aside = state_dir / f"{name}.before-restore-{stamp}"
            os.rename(state_dir / name, aside)
            done.append(f"{state_dir / name} kept as {aside}")
        if (backup / name).exists():
            shutil.copytree(backup / name, state_dir / name)
            done.append(f"{backup / name} copied to {state_dir / name}")
    env = lmdb.open(str(current), map_size=DEFAULT_MAX_SIZE, max_dbs=8, subdir=True)
    try:
        db = env.open_db(b"serials")
        kept = raised = 0
        with env.begin(write=True, db=db) as txn:
            for key, value in served.items():
                restored = txn.get(key)
                if restored is None or _newer(int.from_bytes(value[:4], "big"), int.from_bytes(restored[:4], "big")):
                    txn.put(key, value)
                    kept += 1
            if serial_floor is not None:
                for key, value in list(txn.cursor()):
                    if _newer(serial_floor, int.from_bytes(value[:4], "big")):
                        txn.put(key, serial_floor.to_bytes(4, "big") + value[4:])
                        raised += 1
        done.append(f"{kept} zone serial(s) carried over from the replaced store, where newer than the backup's")
        if serial_floor is not None:
            done.append(f"{raised} zone serial(s) raised to the floor {serial_floor}")
    finally:
        env.close()
    _give_to_owner(state_dir)
    return done


def _give_to_owner(state_dir: Path) -> None:
    """Run as root: the restored files take the state directory's owner, who runs aliasd."""
    if os.geteuid() != 0:
        return
    st = state_dir.stat()
    for name in (NAME, KEYS):
        top = state_dir / name
        if not top.exists():
            continue
        for path in [top, *top.rglob("*")]:
            os.chown(path, st.st_uid, st.st_gid)
