"""Unit tests: a backup put back keeps the served serials (aliasd.service.restore)."""

from __future__ import annotations

import shutil

import dns.name
import pytest

from aliasd.base.db import NAME
from aliasd.base.state import StateStore, ZoneState
from aliasd.service.restore import RestoreError, restore

A, B, C = (dns.name.from_text(n) for n in ("a.test.", "b.test.", "c.test."))


def store_with(directory, serials: dict) -> None:
    state = StateStore(directory)
    state.save_zones(serials)
    state.db.close()


def served(directory) -> dict:
    state = StateStore(directory)
    try:
        return dict(state.load_zones())
    finally:
        state.db.close()


def test_the_newer_serial_of_each_zone_is_kept_with_its_view(tmp_path):
    state, backup = tmp_path / "state", tmp_path / "backup"
    store_with(state, {A: ZoneState(10, "a10"), B: ZoneState(2**32 - 2, "b-old")})
    backup.mkdir()
    shutil.copytree(state / NAME, backup / NAME)
    (backup / "keys").mkdir()
    (backup / "keys" / "Ka.test.+013+00001.key").write_text("key")
    store_with(state, {A: ZoneState(12, "a12"), B: ZoneState(3, "b-wrapped"), C: ZoneState(7, "c7")})
    done = restore(backup, state)
    assert "3 zone serial(s) carried over from the replaced store, where newer than the backup's" in done
    # (B went round: 3 is newer than 2**32 - 2 in serial arithmetic, RFC 1982)
    assert served(state) == {A: ZoneState(12, "a12"), B: ZoneState(3, "b-wrapped"), C: ZoneState(7, "c7")}
    assert (state / "keys" / "Ka.test.+013+00001.key").read_text() == "key"
    assert len(list(state.glob(f"{NAME}.before-restore-*"))) == 1


def test_an_older_replaced_store_leaves_the_backups_serials(tmp_path):
    state, backup = tmp_path / "state", tmp_path / "backup"
    store_with(backup, {A: ZoneState(20, "a20")})
    store_with(state, {A: ZoneState(15, "a15")})
    restore(backup, state)
    assert served(state) == {A: ZoneState(20, "a20")}


def test_without_the_replaced_store_a_floor_is_needed_and_raises_every_serial(tmp_path):
    state, backup = tmp_path / "state", tmp_path / "backup"
    store_with(backup, {A: ZoneState(5, "a5"), B: ZoneState(2026120900, "b")})
    with pytest.raises(RestoreError, match="give --serial-floor"):
        restore(backup, state)
    restore(backup, state, serial_floor=2026120700)
    assert served(state) == {A: ZoneState(2026120700, "a5"), B: ZoneState(2026120900, "b")}


def test_a_directory_that_is_no_backup_is_refused(tmp_path):
    with pytest.raises(RestoreError, match="not a backup of aliasd"):
        restore(tmp_path / "nothing", tmp_path / "state")
    assert not (tmp_path / "state").exists()  # nothing was touched
