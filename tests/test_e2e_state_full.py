"""End to end: a state directory that refuses writes, then recovers (issue 12.1).

aliasd records a batch's new serials and journal records in the state
store (one LMDB transaction) before it serves anything of the batch; when
that commit fails, the batch stays queued and is retried after 1, 2, 5, 10,
30, 60 s, and nothing of the failed transaction is in the store. Here the
state directory is a small tmpfs that the test fills to the last page while
an ALIAS target moves:

- while it is full, every zone goes on serving its old address with its
  old serial, the failure is logged, and the store holds the old serials;
- once space is freed, the next retry publishes the new address with the
  next serial, recorded in the store;
- a restart on the same tmpfs serves that serial and those addresses, with
  the upstream silent (nothing comes from anywhere but the state directory).

The tmpfs lives in a mount namespace of its own (``unshare --mount``), kept
by a ``sleep`` holder process, so it survives aliasd's restart; aliasd is
started in it with ``nsenter``. The test reads and fills the tmpfs through
``/proc/<aliasd pid>/root/...``, which resolves paths in that process's mount
tree. Needs root (or CAP_SYS_ADMIN); skipped where mounting is not allowed.

Why 256 zones: LMDB reuses the pages that earlier transactions freed, and
tmpfs has those pages already, so a small commit can succeed however full
the file system is. A batch of 256 serials and 256 journal differences
needs more pages than the store has free: the data file must grow, and
its commit fails with ENOSPC every time.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import lmdb
import pytest

from aliasd.base import store
from aliasd.base.state import decode_zone_state
from tests import aliasd_process

pytestmark = pytest.mark.e2e

TARGET = "target.upstream.test"
ZONES = [f"z{i:03d}.state-full.test" for i in range(256)]
TMPFS_SIZE = 1024 * 1024  # the state store (LMDB) of 256 small zones
OLD, NEW = "203.0.113.1", "203.0.113.2"

ZONE = """\
$ORIGIN {origin}.
$TTL 300
@ SOA ns1.host.test. hostmaster.host.test. 100 3600 600 864000 60
@ NS ns1.host.test.
@ 60 ALIAS {target}.
"""

CONFIG = """
[resolver]
upstreams = ["{endpoint}"]
min-refresh = 1
max-refresh = 1
timeout = 0.3
[zone-directory]
path = "zones.d"
"""

FAILED = "cannot record the serials of"


@pytest.fixture
def tmpfs_state(tmp_path, monkeypatch):
    """``tmp_path/state`` as a 1 MiB tmpfs in a mount namespace of its own.

    Yields the holder process (its namespace keeps the tmpfs). Every
    ``twistd`` that tests.aliasd_process starts meanwhile enters that
    namespace: its TWISTD is pointed at a wrapper that runs nsenter.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs in a mount namespace")
    for program in ("unshare", "nsenter", "mount"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not installed (util-linux)")
    state = tmp_path / "state"
    state.mkdir()
    holder = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
         'mount -t tmpfs -o size="$1",mode=0750 aliasd-state "$2" && echo mounted && exec sleep 600',
         "sh", str(TMPFS_SIZE), str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    if holder.stdout.readline().strip() != "mounted":
        holder.wait(10)
        pytest.skip(f"cannot mount a tmpfs in a new mount namespace here: {holder.stderr.read().strip()}")
    wrapper = tmp_path / "twistd-in-namespace"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec nsenter --mount=/proc/{holder.pid}/ns/mnt --wd="{tmp_path}" -- "{aliasd_process.TWISTD}" "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setattr(aliasd_process, "TWISTD", str(wrapper))
    try:
        yield holder
    finally:
        holder.terminate()
        holder.wait(10)


def served(p) -> dict[str, tuple[frozenset, int]]:
    """Each zone's apex addresses and then its SOA serial, in that order:
    an address can never be seen before the serial that came with it."""
    result = {}
    for zone in ZONES:
        addresses = frozenset(p.addresses(zone))
        result[zone] = (addresses, p.query(zone, "SOA").answer[0][0].serial)
    return result


def recorded_serials(state: Path) -> dict[str, int]:
    """Each zone's serial as recorded in the state store (read as another
    process would: what a restart starts from)."""
    env = lmdb.open(str(state / "aliasd.lmdb"), readonly=True, max_dbs=8, subdir=True)
    try:
        with env.begin() as txn:
            serials = env.open_db(b"serials", txn=txn, create=False)
            return {store.name_of(key).to_text().rstrip("."): decode_zone_state(value).serial
                    for key, value in txn.cursor(db=serials)}
    finally:
        env.close()


def fill(directory: Path) -> int:
    """Write a filler file until the file system says ENOSPC; its size."""
    size = 0
    with open(directory / "filler", "wb", buffering=0) as f:
        chunk = bytes(64 * 1024)
        while True:
            try:
                size += f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                return size


def test_full_state_directory_holds_changes_back_then_publishes_them(tmpfs_state, upstream, aliasd, tmp_path):
    started = time.monotonic()

    def note(what):  # printed: pytest shows it on failure, and with -s
        print(f"{time.monotonic() - started:6.2f}s {what}")

    def failures():
        return [line for line in p.log().splitlines() if FAILED in line]

    (tmp_path / "zones.d").mkdir()
    zones = {f"zones.d/{zone}.zone": ZONE.format(origin=zone, target=TARGET) for zone in ZONES}
    config = CONFIG.format(endpoint=upstream.endpoint)
    upstream.set(TARGET, "A", [OLD], ttl=1)
    p = aliasd(config, zones, server="serial-interval = 0\n")
    note("aliasd started")

    # aliasd runs in the holder's mount namespace, and /proc/PID/root/STATE
    # is its tmpfs (the same directory seen from here is an empty mount point).
    pid = p.proc.pid
    assert os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink(f"/proc/{tmpfs_state.pid}/ns/mnt")
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    state = Path(f"/proc/{pid}/root") / (tmp_path / "state").relative_to("/")
    fs = os.statvfs(state)
    assert fs.f_blocks * fs.f_frsize == TMPFS_SIZE, "not the tmpfs"
    assert not (tmp_path / "state" / "aliasd.lmdb").exists()

    before = p.wait_for(lambda: (s := served(p)) and all(a == {OLD} for a, _ in s.values()) and s)
    note("old address served by every zone")
    old_serials = {zone: serial for zone, (_, serial) in before.items()}
    assert recorded_serials(state) == old_serials  # every served serial was recorded

    filler = fill(state)
    assert os.statvfs(state).f_bavail == 0
    note(f"tmpfs filled ({filler} octets of filler)")
    upstream.set(TARGET, "A", [NEW], ttl=1)
    note(f"upstream moved {OLD} -> {NEW}")

    p.wait_for(lambda: FAILED in p.log(), timeout=10)
    first_failure = time.monotonic()
    note("first failed write logged")
    # Held back: for five seconds (two more tries), everything old.
    seen = 1
    while time.monotonic() < first_failure + 5:
        assert p.alive(), p.log()
        assert served(p) == before, "served before its serial was recorded"
        if len(failed := failures()) > seen:
            seen = len(failed)
            note(f"failed write {seen} logged")
        time.sleep(0.2)
    failed = failures()
    assert len(failed) >= 3, failed
    assert all(f"{FAILED} {len(ZONES)} zone(s) in the state directory: [Errno {errno.ENOSPC}]" in line
               for line in failed), failed
    assert "retrying in 1s" in failed[0] and "retrying in 2s" in failed[1], failed
    assert recorded_serials(state) == old_serials, "a failed commit left something behind"

    (state / "filler").unlink()
    freed = time.monotonic()
    note("filler deleted")

    def recovered():
        now = served(p)
        for zone, (addresses, serial) in now.items():
            if addresses != {OLD}:  # the new address only ever with the new serial
                assert (addresses, serial) == ({NEW}, old_serials[zone] + 1), (zone, addresses, serial)
        return all(a == {NEW} for a, _ in now.values()) and now

    after = p.wait_for(recovered, timeout=20)
    note(f"new address served by every zone, {time.monotonic() - freed:.1f}s after the filler went")
    new_serials = {zone: serial for zone, (_, serial) in after.items()}
    assert new_serials == {zone: serial + 1 for zone, serial in old_serials.items()}
    assert recorded_serials(state) == new_serials

    assert p.alive()
    text = p.log()
    assert "Traceback" not in text and "Unhandled" not in text, text
    assert p.stop() in (0, -15)  # twistd re-raises the SIGTERM it handled, after a clean shutdown
    text = p.log()
    assert "Server Shut Down." in text and "Traceback" not in text, text
    note("stopped")

    # A restart on the same tmpfs, the upstream silent: the recorded serial
    # and the last good addresses, at once.
    upstream.behave(TARGET, "drop")
    offset = len(text)
    second = aliasd(config, zones, server="serial-interval = 0\n")
    note("restarted")
    assert os.readlink(f"/proc/{second.proc.pid}/ns/mnt") == os.readlink(f"/proc/{tmpfs_state.pid}/ns/mnt")
    assert served(second) == after
    published = re.search(r"(\d+) zones published: (.*)", second.log()[offset:])
    assert published and published[1] == str(len(ZONES)), second.log()[offset:]
    assert published[2].endswith(f" and {len(ZONES) - 10} more ({len(ZONES) - 10} restart, view unchanged)")
    for line in failures() + [line for line in text.splitlines() if "target cache" in line or "published" in line]:
        note(f"log: {line}")
