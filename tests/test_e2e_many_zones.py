"""End to end at a DNS host's scale: thousands of zones sharing one ALIAS target.

A target shared by 5,000 zones moves while a separate process probes
aliasd with up to 200 queries a second: every probe query must be
answered, 99% of them within 100 ms (the re-versioning runs in slices,
its state write in a thread), and a real BIND secondary must end up with
every zone's new serial. Reloads: one changed file among hundreds is the only one parsed
and re-versioned; SIGHUPs during a reload coalesce and the last file
contents win.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.serial
import lmdb
import pytest

from tests.aliasd_process import AliasdProcess, free_port
from tests.secondaries import Named

pytestmark = pytest.mark.e2e

SHARED = "shared.cdn.test"


def customer_zone(i: int, serial: int = 1, extra: str = "") -> str:
    origin = f"cust{i}.test"
    return textwrap.dedent(f"""\
        $ORIGIN {origin}.
        $TTL 300
        @ SOA ns1.host.test. hostmaster.host.test. {serial} 3600 600 864000 60
        @ NS ns1.host.test.
        @ NS ns2.host.test.
        @ ALIAS {SHARED}.
        @ MX 10 mail
        @ TXT "v=spf1 -all"
        www CNAME @
        mail A 192.0.2.{i % 250}
        api A 192.0.2.1
        api AAAA 2001:db8::1
        _dmarc TXT "v=DMARC1; p=none"
        {extra}
        """)


def write_zones(directory: Path, count: int) -> list[str]:
    directory.mkdir(exist_ok=True)
    for i in range(count):
        (directory / f"cust{i}.test.zone").write_text(customer_zone(i))
    return [f"cust{i}.test" for i in range(count)]


def start_aliasd(tmp_path: Path, upstream, notify: str = "", timeout: float = 180,
                 metrics_port: int | None = None) -> AliasdProcess:
    port = free_port()
    statistics = f'[statistics]\nlisten = "127.0.0.1:{metrics_port}"\n' if metrics_port else ""
    conf = tmp_path / "aliasd.toml"
    conf.write_text(textwrap.dedent(f"""\
        [server]
        listen = ["127.0.0.1"]
        port = {port}
        state-dir = "state"
        serial-interval = 0
        notify-rate = 2000
        [resolver]
        upstreams = ["127.0.0.1:{upstream.port}"]
        min-refresh = 1
        max-refresh = 2
        [zone-defaults]
        allow-transfer = ["127.0.0.1"]
        notify = [{notify}]
        [zone-directory]
        path = "zones.d"
        """) + statistics)
    return AliasdProcess(["--config", str(conf)], tmp_path, port).start(timeout=timeout)


def serials(port: int, zones: list[str]) -> dict[str, int | None]:
    """Each zone's SOA serial as served on ``port`` (None: not served)."""
    found = {}
    for zone in zones:
        try:
            r = dns.query.udp(dns.message.make_query(zone, "SOA"), "127.0.0.1", port=port, timeout=1)
            found[zone] = r.answer[0][0].serial if r.answer else None
        except Exception:
            found[zone] = None
    return found


def settled(port: int, zones: list[str], timeout: float = 60) -> dict[str, int]:
    """Every zone's serial, once two rounds a second apart agree (publishing
    a batch of thousands of zones takes a moment)."""
    last = None

    def same():
        nonlocal last
        now = serials(port, zones)
        done = now == last and None not in now.values()
        last = now
        return done and now

    return wait(same, timeout, "serials settle", interval=1)


def wait(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(interval)


PROBE = r"""
import json, random, socket, sys, time
import dns.message
port, zones, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
latencies, lost = [], 0
end = time.monotonic() + seconds
next_send = time.monotonic()
while time.monotonic() < end:
    q = dns.message.make_query(f"mail.cust{random.randrange(zones)}.test", "A")
    wire = q.to_wire()
    t0 = time.monotonic()
    s.sendto(wire, ("127.0.0.1", port))
    try:
        while True:
            data = s.recv(4096)
            if data[:2] == wire[:2]:
                break
        latencies.append(time.monotonic() - t0)
    except socket.timeout:
        lost += 1
    next_send += 0.005  # 200 queries a second
    time.sleep(max(0.0, next_send - time.monotonic()))
print(json.dumps({"answered": len(latencies), "lost": lost, "max": max(latencies), "p99": sorted(latencies)[int(len(latencies) * 0.99)]}))
"""


def test_a_target_shared_by_5000_zones_moves_without_stalling_and_reaches_bind(tmp_path, upstream):
    count = 5000
    upstream.set(SHARED, "A", ["198.51.100.1"], ttl=1)
    upstream.set(SHARED, "AAAA", [], ttl=1)
    zones = write_zones(tmp_path / "zones.d", count)
    named = Named(tmp_path / "named-dir", free_port())
    named.directory.mkdir()
    metrics_port = free_port()
    p = start_aliasd(tmp_path, upstream, notify=f'"127.0.0.1:{named.port}"', metrics_port=metrics_port)
    try:
        p.wait_for(lambda: p.addresses(f"cust{count - 1}.test") == {"198.51.100.1"}, timeout=60)
        before = settled(p.port, zones)
        named.start_many(zones, p.port)
        wait(lambda: serials(named.port, zones) == before, 120, "BIND serves every zone")

        probe = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(p.port), str(count), "25"],
            stdout=subprocess.PIPE, text=True,
        )
        time.sleep(3)
        moved = time.monotonic()
        upstream.set(SHARED, "A", ["198.51.100.2"], ttl=1)

        def all_moved():
            now = serials(p.port, zones)
            return all(now[z] is not None and now[z] != before[z] for z in zones) and now

        after = wait(all_moved, 60, "every zone has a new serial at aliasd")
        served_at = time.monotonic() - moved
        assert p.addresses("cust0.test") == {"198.51.100.2"}
        assert p.addresses(f"cust{count // 2}.test") == {"198.51.100.2"}
        wait(lambda: serials(named.port, zones) == after, 240, "BIND has every new serial", interval=2)
        on_bind_at = time.monotonic() - moved
        out, _ = probe.communicate(timeout=60)
        result = json.loads(out)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        lag = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
               if line.startswith(("aliasd_reactor", "aliasd_gc"))}
        print(f"\n{count} zones: new serials served after {served_at:.1f}s, on BIND after "
              f"{on_bind_at:.1f}s; probe {result}; aliasd {lag}")
        # Every probe query answered. On this 2-core machine BIND, the probe
        # and this test's own checks compete with aliasd for the CPUs, so
        # the bound here is on the 99th percentile; the maximum is printed
        # and reported by bench/many_zones.py.
        assert result["lost"] == 0, result
        assert result["answered"] > 1000, result
        assert result["p99"] <= 0.1, result
        assert result["max"] <= 1.0, result
        assert named.addresses(f"cust{count - 1}.test") == {"198.51.100.2"}
    finally:
        named.stop()
        p.stop()


def test_a_reload_parses_and_re_versions_only_the_changed_file(tmp_path, upstream):
    upstream.set(SHARED, "A", ["198.51.100.1"], ttl=60)
    zones = write_zones(tmp_path / "zones.d", 300)
    p = start_aliasd(tmp_path, upstream)
    try:
        p.wait_for(lambda: p.addresses("cust299.test") == {"198.51.100.1"}, timeout=30)
        before = settled(p.port, zones)
        (tmp_path / "zones.d" / "cust7.test.zone").write_text(
            customer_zone(7, extra='new TXT "reloaded"'))
        p.proc.send_signal(signal.SIGHUP)
        p.wait_for(lambda: "reload done" in p.log(), timeout=30)
        assert "reload done: 300 zones (0 added, 0 removed, 1 file(s) read again), 0 error(s)" in p.log()
        after = serials(p.port, zones)
        assert {z for z in zones if after[z] != before[z]} == {"cust7.test"}
        assert after["cust7.test"] == before["cust7.test"] + 1
        assert p.query("new.cust7.test", "TXT").answer
        # A file added and one removed: only they change.
        (tmp_path / "zones.d" / "cust300.test.zone").write_text(customer_zone(300))
        (tmp_path / "zones.d" / "cust0.test.zone").unlink()
        p.proc.send_signal(signal.SIGHUP)
        p.wait_for(lambda: p.log().count("reload done") == 2, timeout=30)
        assert ("reload done: 300 zones (1 added [cust300.test.], 1 removed [cust0.test.], 1 file(s) read again), "
                "0 error(s)") in p.log()
        assert p.query("cust0.test", "SOA").rcode() == dns.rcode.REFUSED
        p.wait_for(lambda: p.addresses("cust300.test") == {"198.51.100.1"}, timeout=10)
    finally:
        p.stop()


def test_sighups_during_a_reload_coalesce_and_the_last_contents_win(tmp_path, upstream):
    upstream.set(SHARED, "A", ["198.51.100.1"], ttl=60)
    write_zones(tmp_path / "zones.d", 300)
    p = start_aliasd(tmp_path, upstream)
    try:
        p.wait_for(lambda: p.addresses("cust299.test") == {"198.51.100.1"}, timeout=30)
        for step in range(10):
            for i in range(0, 300, 10):  # thirty files change each time
                (tmp_path / "zones.d" / f"cust{i}.test.zone").write_text(
                    customer_zone(i, serial=1, extra=f'step TXT "{step}"'))
            p.proc.send_signal(signal.SIGHUP)  # back to back: a reload of 300 zones takes longer
        p.wait_for(lambda: "reload done" in p.log() and all(
            [r.to_text() for rrset in p.query(f"step.cust{i}.test", "TXT").answer for r in rrset] == ['"9"']
            for i in range(0, 300, 10)), timeout=60)
        time.sleep(2)  # nothing older arrives later
        for i in range(0, 300, 10):
            answer = p.query(f"step.cust{i}.test", "TXT").answer
            assert [r.to_text() for rrset in answer for r in rrset] == ['"9"']
        assert p.log().count("reload done") < 10  # coalesced, not ten overlapping reloads
    finally:
        p.stop()


def test_kill_9_after_a_served_change_keeps_every_serial(tmp_path, upstream):
    """A serial that was served survives SIGKILL: it was recorded (one
    append and fsync per batch) before any zone of the batch was served."""
    upstream.set(SHARED, "A", ["198.51.100.1"], ttl=1)
    zones = write_zones(tmp_path / "zones.d", 200)
    p = start_aliasd(tmp_path, upstream)
    try:
        p.wait_for(lambda: p.addresses("cust199.test") == {"198.51.100.1"}, timeout=30)
        before = settled(p.port, zones)
        upstream.set(SHARED, "A", ["198.51.100.2"], ttl=1)
        p.wait_for(lambda: p.addresses("cust0.test") == {"198.51.100.2"}, timeout=30)
        served = serials(p.port, zones)  # some zones may still be on the old serial
        p.proc.send_signal(signal.SIGKILL)
        p.proc.wait(10)
    finally:
        p.stop()
    again = start_aliasd(tmp_path, upstream)
    try:
        after = serials(again.port, zones)
        for zone in zones:
            assert served[zone] is not None and after[zone] is not None
            assert dns.serial.Serial(after[zone]) >= dns.serial.Serial(served[zone]), zone
        assert after["cust0.test"] > before["cust0.test"]
        again.wait_for(lambda: again.addresses("cust0.test") == {"198.51.100.2"}, timeout=30)
    finally:
        again.stop()


def compiled(state: Path, damage=None) -> dict[bytes, bytes]:
    """The compiled zones in the state store (read as another process
    would); ``damage``: a function that says which entries to overwrite
    with garbage (aliasd stopped)."""
    env = lmdb.open(str(state / "aliasd.lmdb"), max_dbs=8, subdir=True)
    try:
        with env.begin(write=damage is not None) as txn:
            db = env.open_db(b"compiled", txn=txn, create=False)
            entries = dict(txn.cursor(db=db))
            for key in entries if damage is not None else ():
                if damage(key):
                    txn.put(key, b"garbage", db=db)
        return entries
    finally:
        env.close()


def test_a_file_a_reload_parsed_is_in_the_snapshot_for_the_next_start(tmp_path, upstream):
    """The snapshot is written once a reload's new data is served (not
    before: it is a cache); what the reload parsed is in it, so the next
    start parses nothing; and reloads go on while it is written."""
    upstream.set(SHARED, "A", ["198.51.100.1"], ttl=60)
    zones = write_zones(tmp_path / "zones.d", 20)
    state = tmp_path / "state"
    p = start_aliasd(tmp_path, upstream)
    try:
        wait(lambda: len(compiled(state)) == 20, 30, "the snapshot is written")
        for n in (1, 2):
            (tmp_path / "zones.d" / "cust5.test.zone").write_text(customer_zone(5, extra=f'new TXT "edited {n}"'))
            p.proc.send_signal(signal.SIGHUP)
            p.wait_for(lambda: [r.to_text() for rrset in p.query("new.cust5.test", "TXT").answer for r in rrset]
                       == [f'"edited {n}"'], timeout=30)
        wait(lambda: any(b"edited 2" in value for value in compiled(state).values()), 30,
             "the reloaded zone is in the snapshot")
        wait(lambda: p.log().count("reload done") == 2, 30, "both reloads done")
        assert "snapshot not written" not in p.log()
    finally:
        p.stop()
    again = start_aliasd(tmp_path, upstream)
    try:
        assert ": 0 parsed, 20 from the snapshot" in again.log()
        assert [r.to_text() for rrset in again.query("new.cust5.test", "TXT").answer for r in rrset] == ['"edited 2"']
        assert serials(again.port, zones)["cust9.test"] is not None
    finally:
        again.stop()


def test_a_restart_with_unchanged_files_loads_them_from_the_snapshot(tmp_path, upstream):
    upstream.set(SHARED, "A", ["198.51.100.1"], ttl=60)
    zones = write_zones(tmp_path / "zones.d", 300)
    state = tmp_path / "state"
    p = start_aliasd(tmp_path, upstream)
    try:
        processes = " in 2 processes" if (os.cpu_count() or 1) > 1 else ""
        assert f": 300 parsed{processes}, 0 from the snapshot" in p.log()
        wait(lambda: len(compiled(state)) == 300, 30, "the snapshot is written")
        p.wait_for(lambda: p.addresses("cust299.test") == {"198.51.100.1"}, timeout=30)
        before = settled(p.port, zones)
    finally:
        p.stop()
    (tmp_path / "zones.d" / "cust5.test.zone").write_text(customer_zone(5, extra='new TXT "edited"'))
    again = start_aliasd(tmp_path, upstream)
    try:
        assert ": 1 parsed, 299 from the snapshot" in again.log()
        after = serials(again.port, zones)
        assert {z for z in zones if after[z] != before[z]} == {"cust5.test"}
        assert [r.to_text() for rrset in again.query("new.cust5.test", "TXT").answer for r in rrset] == ['"edited"']
        assert again.query("mail.cust9.test", "A").answer[0][0].address == "192.0.2.9"
        assert again.addresses("cust299.test") == {"198.51.100.1"}
        # The parsed file is added to the snapshot: the next start parses nothing.
        wait(lambda: any(b"edited" in value for value in compiled(state).values()), 30,
             "the edited zone is in the snapshot")
    finally:
        again.stop()
    third = start_aliasd(tmp_path, upstream)
    try:
        assert ": 0 parsed, 300 from the snapshot" in third.log()
        assert [r.to_text() for rrset in third.query("new.cust5.test", "TXT").answer for r in rrset] == ['"edited"']
    finally:
        third.stop()
    # Damaged entries only cost parsing.
    compiled(state, damage=lambda key: key[key[0]:key[0] + 1] in b"13579")  # odd-numbered zones
    fourth = start_aliasd(tmp_path, upstream)
    try:
        line = [line for line in fourth.log().splitlines() if "zone files read" in line][-1]  # this start's
        parsed = int(line.split(": ")[-1].split(" parsed")[0])
        assert 0 < parsed < 300, line
        assert serials(fourth.port, zones) == after
    finally:
        fourth.stop()
