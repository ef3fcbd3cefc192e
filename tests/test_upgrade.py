"""The first start after an upgrade imports the state files of the earlier
release into the state store (aliasd.service.upgrade): no serial goes back,
no journal record or target address is lost, and the old files are moved
aside, never read again."""

from __future__ import annotations

import json
import time

import dns.name
import pytest

from aliasd.base import store
from aliasd.base.state import StateStore, ZoneState
from aliasd.replicate import journaldb
from aliasd.service import upgrade
from tests.test_e2e_transfer import ZONE, config

N = dns.name.from_text


def _legacy_state(directory, serial=500, target_address="203.0.113.7"):
    """A state directory as the earlier release left it."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"zone": "example.com.", "serial": serial - 1, "digest": "older"}),
             json.dumps({"zone": "example.com.", "serial": serial, "digest": "legacy"}),
             json.dumps({"zone": "gone.example.", "serial": 77, "digest": "g"})]
    # The last line cut short by a crash: it was never served, so it never counts.
    (directory / "zones.log").write_text("\n".join(lines) + "\n" + '{"zone": "example.com.", "serial": 9')
    (directory / "old.example.zone-state.json").write_text(
        json.dumps({"zone": "old.example.", "serial": 2026010107, "digest": "o"}))
    (directory / "targets.json").write_text(json.dumps({"targets": [{
        "name": "target.upstream.test.", "type": 1, "status": "resolved", "addresses": [target_address],
        "ttl": 30, "last_success": time.time() - 5}]}))
    (directory / "journal").mkdir()
    frames = [journaldb.file_frame(journaldb.BASE, b"s" * 32), journaldb.file_frame(journaldb.UPDATE, b"u1")]
    # A torn frame at the end (a crash in mid-append) is left out.
    (directory / "journal" / "example.com.jnl").write_bytes(b"".join(frames) + frames[1][:-1])
    (directory / "journal" / "we%2fird.example.jnl").write_bytes(frames[0])


def test_the_files_of_the_earlier_release_are_imported_once_and_moved_aside(tmp_path):
    state_dir = tmp_path / "state"
    _legacy_state(state_dir)
    state = StateStore(state_dir)
    journals = journaldb.JournalStore(state.db)
    upgrade.import_files(state_dir, state, journals)
    assert state.load_zone(N("example.com")) == ZoneState(500, "legacy")
    assert state.load_zone(N("gone.example")) == ZoneState(77, "g")  # removed zones keep their serial
    assert state.load_zone(N("old.example")) == ZoneState(2026010107, "o")
    assert journals.read(store.key_of(N("example.com"))) == [(b"B", b"s" * 32), (b"U", b"u1")]
    assert journals.read(store.key_of(N(r"we\/ird.example"))) == [(b"B", b"s" * 32)]
    assert [t["addresses"] for t in state.load_targets()] == [["203.0.113.7"]]
    assert not (state_dir / "zones.log").exists() and not (state_dir / "journal").exists()
    assert sorted(p.name for p in (state_dir / "imported").iterdir()) == [
        "journal", "old.example.zone-state.json", "targets.json", "zones.log"]
    # Files of the earlier release that show up again are never imported twice.
    (state_dir / "zones.log").write_text(json.dumps({"zone": "example.com.", "serial": 1, "digest": "x"}) + "\n")
    upgrade.import_files(state_dir, state, journals)
    assert state.load_zone(N("example.com")) == ZoneState(500, "legacy")
    assert not (state_dir / "zones.log").exists()


@pytest.mark.e2e
def test_a_restart_after_the_upgrade_goes_on_from_the_old_serial_and_addresses(aliasd, upstream, tmp_path):
    _legacy_state(tmp_path / "state", serial=500)
    upstream.behave("target.upstream.test", "drop")  # nothing from upstream: the addresses are the cache's
    first = aliasd(config(upstream), {"example.com.zone": ZONE})
    # Not the file's 100: above the 500 the secondaries hold (the view's digest is new).
    assert first.query("example.com", "SOA").answer[0][0].serial == 501
    assert first.addresses("example.com") == {"203.0.113.7"}
    assert "upgrade: imported the serials of 3 zone(s), 2 journal file(s)" in first.log()
    first.stop()
    second = aliasd(config(upstream), {"example.com.zone": ZONE})
    assert second.query("example.com", "SOA").answer[0][0].serial == 501
    assert second.log().count("upgrade: imported") == 1  # (twistd appends to the log file)
