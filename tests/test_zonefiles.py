"""Unit tests: which zone files a reload reads again (aliasd.service.reload.ZoneFiles)."""

from __future__ import annotations

import os

import dns.name

from aliasd.base.config import ZoneSettings
from aliasd.service import reload
from aliasd.service.reload import ZoneFiles

ZONE = "$ORIGIN {name}.\n@ 300 SOA ns1 h 5 3600 600 86400 60\n@ 300 NS ns1\nns1 300 A 192.0.2.{last}\n"


def zones(tmp_path, count: int) -> tuple[ZoneSettings, ...]:
    made = []
    for i in range(count):
        path = tmp_path / f"z{i}.test.zone"
        path.write_text(ZONE.format(name=f"z{i}.test", last=10))
        made.append(ZoneSettings(dns.name.from_text(f"z{i}.test"), path))
    return tuple(made)


def address(source) -> str:
    return source.rrsets[dns.name.from_text("ns1", source.origin), 1][0].to_text()


def test_only_the_changed_file_is_read_again_once_the_files_settled(tmp_path, monkeypatch):
    monkeypatch.setattr(reload, "RACY_NS", 0)  # every file counts as settled once read
    settings = zones(tmp_path, 3)
    files = ZoneFiles()
    results, fresh = files.read_all(settings)
    assert len(fresh) == 3
    assert files.read_changed(settings) == ([], [])
    settings[1].file.write_text(ZONE.format(name="z1.test", last=11))
    changed, fresh = files.read_changed(settings)
    assert [(zone, address(source)) for zone, source in changed] == [(settings[1], "192.0.2.11")]
    assert fresh == [changed[0][1]] and files.parsed == 1
    assert files.read_changed(settings) == ([], [])
    # Other zones (or equal ones, not the same objects): the caller reads them all.
    assert files.read_changed(settings[:2]) is None
    assert files.read_changed(tuple(ZoneSettings(z.name, z.file) for z in settings)) is None


def test_a_file_rewritten_within_the_timestamp_tick_of_its_read_is_read_again(tmp_path, monkeypatch):
    """A file system keeps times in ticks (a few ms, or a second): a file
    rewritten in the tick in which it was read can show the very size,
    times and inode it had. One modified just before its read is read again
    at the next reload, its digest compared."""
    (zone,) = zones(tmp_path, 1)
    files = ZoneFiles()
    files.read_all((zone,))  # written just now
    as_read = os.stat(zone.file)
    zone.file.write_text(ZONE.format(name="z0.test", last=99))  # same size
    real = os.stat
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: as_read if str(path) == str(zone.file) else real(path, *a, **k))
    changed, fresh = files.read_changed((zone,))
    assert [address(source) for _, source in changed] == ["192.0.2.99"] and fresh == [changed[0][1]]


def test_an_unchanged_file_read_again_is_not_parsed_nor_new(tmp_path):
    (zone,) = zones(tmp_path, 1)
    files = ZoneFiles()
    results, _ = files.read_all((zone,))
    os.utime(zone.file)  # touched: another time, the same content
    changed, fresh = files.read_changed((zone,))
    assert changed == [(zone, results[zone.name])] and fresh == [] and files.parsed == 0


def test_a_restart_takes_an_unchanged_file_from_the_snapshot_without_reading_it(tmp_path, monkeypatch):
    """The stamp kept with a snapshot entry (once settled) stands for the
    file's content at the next start; a file read while not settled is read
    at that start, and stamped for the one after."""
    from pathlib import Path

    from aliasd.zones.snapshot import Snapshot

    (zone,) = zones(tmp_path, 1)
    state = tmp_path / "state"
    state.mkdir()
    first = ZoneFiles(Snapshot(state))
    first.read_all((zone,))  # written just now: no stamp kept
    first.snapshot.save()
    real = Path.read_bytes
    reads = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or real(self))
    monkeypatch.setattr(reload, "RACY_NS", 0)  # from now on it has settled
    second = ZoneFiles(Snapshot(state))
    results, _ = second.read_all((zone,))
    assert reads == [zone.file] and second.from_snapshot == 1 and second.parsed == 0
    second.snapshot.save()
    third = ZoneFiles(Snapshot(state))
    results, _ = third.read_all((zone,))
    assert reads == [zone.file] and third.from_snapshot == 1 and address(results[zone.name]) == "192.0.2.10"
    zone.file.write_text(ZONE.format(name="z0.test", last=12))
    results, _ = ZoneFiles(Snapshot(state)).read_all((zone,))
    assert reads == [zone.file] * 2 and address(results[zone.name]) == "192.0.2.12"


SNAPSHOT_SAVE = """
import sys
from pathlib import Path

from aliasd.zones.snapshot import Snapshot


def anonymous_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])


snapshot = Snapshot(Path(sys.argv[1]))
records = {b"\\\\x03www\\\\x00": bytes(1200)}  # one record set, about 1.2 KiB, shared by every entry
for i in range(16000):
    snapshot.put(b"\\\\x06z%05d\\\\x00" % i, bytes(32), records, "c" * 64)
before = anonymous_kib()
snapshot.save()
print((anonymous_kib() - before) // 1024)
"""


def test_a_big_snapshot_save_leaves_no_copy_of_its_pages_in_memory(tmp_path):
    """LMDB keeps every page a write transaction dirtied on a free list in
    memory for good: the first save of a start at many zones, written in one
    transaction, kept a copy of all of it (about 14 MiB at 10,000 zones).
    A save of about 19 MiB of entries now adds a few MiB at most."""
    import subprocess
    import sys

    state = tmp_path / "state"
    state.mkdir()
    result = subprocess.run([sys.executable, "-c", SNAPSHOT_SAVE, str(state)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(reload.__file__).rsplit("/aliasd/", 1)[0]})
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) <= 4, f"RssAnon grew by {result.stdout.strip()} MiB over the save"
    from aliasd.zones.snapshot import Snapshot

    kept = Snapshot(state)
    kept.load()
    assert len(kept.entries) == 16000  # all written
def test_files_parsed_in_forked_processes_give_what_one_process_gives(tmp_path):
    """At start many files are parsed at once: a share in this process, the
    rest in forked processes, which send back packed records, digest and
    count. The sources are made on the zone's own name and path, a broken
    file's error names its line, and all else is what parsing in this
    process alone gives (the first half here, the second forked: a broken
    file and an ALIAS in each)."""
    from aliasd.base import store

    settings = tuple(ZoneSettings(store.cached(z.name), z.file) for z in zones(tmp_path, 12))  # (as configured)
    aliased, broken = (settings[3], settings[9]), (settings[2], settings[7])
    for zone in aliased:
        zone.file.write_text(ZONE.format(name=zone.name.to_text(True), last=10) + "@ 300 ALIAS t.cdn.test.\n")
    for zone in broken:
        zone.file.write_text(ZONE.format(name=zone.name.to_text(True), last=300))  # 192.0.2.300
    files = ZoneFiles()
    files.parallel_from = 4
    results, fresh = files.read_all(settings, workers=2)
    assert files.workers == 2 and files.parsed == 10 and len(fresh) == 10
    alone = ZoneFiles()
    expected, _ = alone.read_all(settings)
    assert alone.workers == 1
    for zone in broken:
        assert str(results[zone.name]) == str(expected[zone.name])
        assert str(results[zone.name]).startswith(f"{zone.file}:4: ")
    for zone in settings:
        if zone in broken:
            continue
        got, want = results[zone.name], expected[zone.name]
        assert got.origin is zone.name and got.path is zone.file
        assert got.records == want.records and list(got.records) == list(want.records)
        assert got.aliases == want.aliases and got.digest == want.digest
        assert got.record_count() == want.record_count() == 3 + (zone in aliased)
        assert files.digest_of(zone.name) == alone.digest_of(zone.name)
    for zone in aliased:
        (owner, rule), = results[zone.name].aliases.items()
        assert owner is zone.name and rule.target == dns.name.from_text("t.cdn.test")
