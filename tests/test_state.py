"""Unit tests: serial arithmetic and the state directory."""

from __future__ import annotations

import errno
import subprocess
import sys

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


def _read_in_another_process(directory, *names: str) -> list:
    """The serials another process reads from the state store (what a
    restart would see: nothing of this process's memory)."""
    code = (
        "import sys, dns.name\n"
        "from aliasd.base.state import StateStore\n"
        "s = StateStore(sys.argv[1])\n"
        "for n in sys.argv[2:]:\n"
        "    z = s.load_zone(dns.name.from_text(n))\n"
        "    print(None if z is None else (z.serial, z.digest))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(directory), *names],
                         capture_output=True, text=True, check=True).stdout
    return [None if line == "None" else tuple(eval(line)) for line in out.splitlines()]


def test_zone_state_round_trips_and_survives_a_new_process(tmp_path):
    store = StateStore(tmp_path / "state")
    store.save_zone(N("example.com"), ZoneState(42, "abc"))
    assert _read_in_another_process(tmp_path / "state", "example.com", "other.example") == [(42, "abc"), None]
    assert store.load_zone(N("other.example")) is None
    assert (tmp_path / "state" / "aliasd.lmdb" / "data.mdb").exists()


def test_odd_zone_names_round_trip(tmp_path):
    store = StateStore(tmp_path)
    name = dns.name.from_text(r"we\/ird.example")
    store.save_zone(name, ZoneState(1, "d"))
    store.save_zone(dns.name.root, ZoneState(2, "r"))
    assert _read_in_another_process(tmp_path, r"we\/ird.example", ".") == [(1, "d"), (2, "r")]


def test_a_batch_of_a_thousand_zones_is_one_transaction(tmp_path):
    store = StateStore(tmp_path)
    before = store.db.env.info()["last_txnid"]
    store.save_zones({N(f"z{i}.example"): ZoneState(i, "d") for i in range(1000)})
    assert store.db.env.info()["last_txnid"] == before + 1
    store.save_zones({N("z5.example"): ZoneState(6, "e")})
    assert _read_in_another_process(tmp_path, "z5.example", "z999.example") == [(6, "e"), (999, "d")]


def test_writes_on_one_thread_join_the_open_transaction_and_abort_together(tmp_path):
    """Serials and journal records of a batch commit together or not at all,
    and memory follows only what committed."""
    store = StateStore(tmp_path)
    store.save_zones({N("a.example"): ZoneState(1, "d")})
    with pytest.raises(RuntimeError):
        with store.db.write():
            store.save_zones({N("a.example"): ZoneState(2, "e"), N("b.example"): ZoneState(5, "f")})
            raise RuntimeError("the batch failed half way")
    assert store.load_zone(N("a.example")) == ZoneState(1, "d")
    assert store.load_zone(N("b.example")) is None
    assert _read_in_another_process(tmp_path, "a.example", "b.example") == [(1, "d"), None]


def test_a_full_store_refuses_the_write_whole_and_keeps_what_was_recorded(tmp_path):
    store = StateStore(tmp_path, max_size=256 * 1024)
    store.save_zones({N("a.example"): ZoneState(1, "d")})
    used, limit = store.db.usage()
    assert limit == 256 * 1024 and 0 < used < limit and store.db.commit_failures == 0
    with pytest.raises(OSError) as failed:
        store.save_zones({N(f"z{i}.example"): ZoneState(i, "x" * 64) for i in range(20000)})
    assert failed.value.errno == errno.ENOSPC and "size limit" in str(failed.value)
    assert store.db.commit_failures == 1  # what aliasd_store_commit_failures_total reads
    assert store.load_zone(N("z1.example")) is None
    store.save_zones({N("a.example"): ZoneState(2, "e")})  # and it goes on
    assert _read_in_another_process(tmp_path, "a.example", "z1.example") == [(2, "e"), None]


def test_an_unreadable_target_cache_is_ignored_with_a_warning(tmp_path, log_events):
    store = StateStore(tmp_path)
    with store.db.write() as txn:
        txn.put(b"all", b"{not json", db=store.db.targets)
    assert store.load_targets() == []
    assert any("unreadable target cache" in e.get("log_format", "") for e in log_events)
    store.save_targets([{"name": "t.example."}])
    assert store.load_targets() == [{"name": "t.example."}]


def test_state_dir_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StateDirError, match="cannot create"):
        StateStore(tmp_path / "file")
