"""Unit tests: serial arithmetic and the state directory."""

from __future__ import annotations

import json

import dns.name
import pytest

from aliasd.state import StateDirError, StateStore, ZoneState, next_serial

N = dns.name.from_text


def test_first_serial_is_the_files():
    assert next_serial(2026010101, None, changed=True) == 2026010101


def test_unchanged_view_keeps_the_serial_even_if_the_file_is_older():
    assert next_serial(100, 150, changed=False) == 150


def test_changed_view_moves_by_one_and_wraps_per_rfc1982():
    assert next_serial(100, 150, changed=True) == 151
    assert next_serial(2**31, 2**32 - 1, changed=True) == 0  # 2**31 is older


def test_newer_file_serial_wins_in_rfc1982_order():
    assert next_serial(2026020101, 2026010105, changed=True) == 2026020101
    assert next_serial(2026020101, 2026010105, changed=False) == 2026020101
    # 5 is "after" 2**32 - 10 in serial arithmetic, though smaller as an integer.
    assert next_serial(5, 2**32 - 10, changed=False) == 5
    # ... while a serial more than 2**31 behind is not newer.
    assert next_serial(2**31 + 20, 10, changed=True) == 11


def test_zone_state_round_trips_and_survives_a_new_store(tmp_path):
    store = StateStore(tmp_path / "state")
    store.save_zone(N("example.com"), ZoneState(42, "abc"))
    assert StateStore(tmp_path / "state").load_zone(N("example.com")) == ZoneState(42, "abc")
    assert store.load_zone(N("other.example")) is None
    assert not [p for p in (tmp_path / "state").iterdir() if p.name.startswith(".")]


def test_odd_zone_names_get_safe_file_names(tmp_path):
    store = StateStore(tmp_path)
    name = dns.name.from_text(r"we\/ird.example")
    store.save_zone(name, ZoneState(1, "d"))
    assert store.load_zone(name) == ZoneState(1, "d")
    assert all("/" not in p.name for p in tmp_path.iterdir())
    store.save_zone(dns.name.root, ZoneState(2, "r"))
    assert store.load_zone(dns.name.root) == ZoneState(2, "r")


def test_corrupt_state_is_ignored_with_a_warning(tmp_path):
    store = StateStore(tmp_path)
    store.save_zone(N("example.com"), ZoneState(1, "d"))
    (path,) = tmp_path.glob("example.com*")
    path.write_text("{not json")
    assert store.load_zone(N("example.com")) is None
    (tmp_path / "targets.json").write_text(json.dumps({"nope": 1}))
    assert store.load_targets() == []


def test_state_dir_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StateDirError, match="cannot create"):
        StateStore(tmp_path / "file")
