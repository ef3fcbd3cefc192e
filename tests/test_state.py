"""Unit tests: serial arithmetic and the state directory."""

from __future__ import annotations

import json

import dns.name
import pytest

from aliasd.base.state import StateDirError, StateStore, ZoneState, next_serial

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


def test_damaged_and_cut_short_log_lines_are_ignored_with_a_warning(tmp_path, log_events):
    store = StateStore(tmp_path)
    store.save_zones({N("a.example"): ZoneState(1, "d1"), N("b.example"): ZoneState(7, "d7")})
    with (tmp_path / "zones.log").open("a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"zone": "a.example.", "serial": 2, "digest": "d2"}) + "\n")
        f.write('{"zone": "b.example.", "serial": 8')  # a crash in mid-append
    fresh = StateStore(tmp_path)
    assert fresh.load_zone(N("a.example")) == ZoneState(2, "d2")
    assert fresh.load_zone(N("b.example")) == ZoneState(7, "d7")  # the cut line never counted
    warnings = [e for e in log_events if "damaged entry" in e.get("log_format", "")]
    assert [e["line"] for e in warnings] == [3, 5]
    (tmp_path / "targets.json").write_text(json.dumps({"nope": 1}))
    assert store.load_targets() == []


def test_a_batch_is_one_append_and_one_line_per_zone(tmp_path):
    store = StateStore(tmp_path)
    store.save_zones({N(f"z{i}.example"): ZoneState(i, "d") for i in range(1000)})
    store.save_zones({N("z5.example"): ZoneState(6, "e")})
    lines = (tmp_path / "zones.log").read_text().splitlines()
    assert len(lines) == 1001
    assert StateStore(tmp_path).load_zone(N("z5.example")) == ZoneState(6, "e")


def test_the_log_is_compacted_and_keeps_the_last_state_of_each_zone(tmp_path):
    store = StateStore(tmp_path)
    store.compact_slack = 10
    for serial in range(1, 60):
        store.save_zones({N("a.example"): ZoneState(serial, f"d{serial}"), N("b.example"): ZoneState(3, "b")})
    lines = (tmp_path / "zones.log").read_text().splitlines()
    assert len(lines) <= 4 * 2 + 10 + 2
    fresh = StateStore(tmp_path)
    assert fresh.load_zone(N("a.example")) == ZoneState(59, "d59")
    assert fresh.load_zone(N("b.example")) == ZoneState(3, "b")


def test_serials_of_the_per_zone_files_of_earlier_versions_are_kept(tmp_path):
    (tmp_path / "example.com.zone-state.json").write_text(
        json.dumps({"zone": "example.com.", "serial": 2026010107, "digest": "old"})
    )
    store = StateStore(tmp_path)
    assert store.load_zone(N("example.com")) == ZoneState(2026010107, "old")
    store.save_zones({N("other.example"): ZoneState(1, "x")})
    assert StateStore(tmp_path).load_zone(N("example.com")) == ZoneState(2026010107, "old")


def test_a_failed_write_records_nothing_and_leaves_no_partial_batch(tmp_path, monkeypatch):
    import errno
    import os as real_os

    store = StateStore(tmp_path)
    store.save_zones({N("a.example"): ZoneState(1, "d")})
    size = (tmp_path / "zones.log").stat().st_size
    real_write = real_os.write

    def half_then_full(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("aliasd.base.state.os.write", half_then_full)
    with pytest.raises(OSError):
        store.save_zones({N("a.example"): ZoneState(2, "e"), N("b.example"): ZoneState(5, "f")})
    monkeypatch.undo()
    assert (tmp_path / "zones.log").stat().st_size == size
    assert store.load_zone(N("a.example")) == ZoneState(1, "d")
    assert store.load_zone(N("b.example")) is None
    store.save_zones({N("a.example"): ZoneState(2, "e")})  # and it recovers
    assert StateStore(tmp_path).load_zone(N("a.example")) == ZoneState(2, "e")


def test_state_dir_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StateDirError, match="cannot create"):
        StateStore(tmp_path / "file")
