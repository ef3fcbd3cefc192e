#!/usr/bin/env python3
"""SIGHUP reload of one changed zone file among many: time until served and CPU, code trees side by side.

Why: ``many_zones.py`` measures one reload per round, polling every 20 ms,
on a machine whose load moves its wall-clock figures by several times.
This starts one ``twistd aliasd`` per code tree (``--tree NAME=PATH``, put
first on PYTHONPATH), configuration shape (``[zone-directory]`` or one
``[zones."NAME"]`` table per zone) and ``[server] workers`` value, each on
its own copy of the zones of many_zones.py, and reloads them in turn, tree
after tree: each reload rewrites one zone file (a new TXT owner), sends
SIGHUP and asks for the new owner every 2 ms until it is answered. It
prints, per tree, the median and the maximum seconds until served, and the
median CPU seconds the reload cost all the server's processes (from
SIGHUP until the reload's summary line is logged).

    .venv/bin/python bench/reload_perf.py --tree old=/work/main --tree new=. \\
        [--zones 10000] [--reloads 15] [--workers 1,2] [--shapes directory,explicit]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.message  # noqa: E402
import dns.rcode  # noqa: E402

from bench.common import cpu_seconds, start_tree, wait_workers, workers_list  # noqa: E402
from bench.many_zones import ZoneSet  # noqa: E402
from tests.aliasd_process import AliasdProcess, free_port  # noqa: E402

SUMMARY = b"reload done:"


def start(d: Path, zs: ZoneSet, tree: str, workers: int | None, explicit: bool) -> AliasdProcess:
    d.mkdir(parents=True)
    port = free_port()
    per_zone = 'allow-transfer = ["127.0.0.1"]\nnotify = ["127.0.0.1:9"]\n'
    text = (f'[server]\nlisten = ["127.0.0.1"]\nport = {port}\nstate-dir = "state"\nserial-interval = 0\n'
            + (f"workers = {workers}\n" if workers is not None else ""))
    if explicit:
        text += "".join(f'[zones."{n}"]\nfile = "{zs.alias_dir}/{n}.zone"\n{per_zone}' for n in zs.names)
    else:
        text += f'[zone-defaults]\n{per_zone}[zone-directory]\npath = "{zs.alias_dir}"\n'
    (d / "aliasd.toml").write_text(text)
    process = start_tree(tree, d / "aliasd.toml", d, port, timeout=600)
    wait_workers(process.proc.pid, workers, timeout=300)
    return process


def served(port: int, owner: str, deadline: float, interval: float = 0.002) -> float | None:
    """monotonic() when ``owner`` TXT is first answered NOERROR, or None."""
    q = dns.message.make_query(owner, "TXT")
    wire = q.to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        s.settimeout(interval)
        while time.monotonic() < deadline:
            s.send(wire)
            try:
                while True:
                    r = dns.message.from_wire(s.recv(65535))
                    if r.id == q.id:
                        break
            except (TimeoutError, socket.timeout):
                continue
            if r.rcode() == dns.rcode.NOERROR and r.answer:
                return time.monotonic()
            time.sleep(interval)
    return None


def reload_once(process: AliasdProcess, zs: ZoneSet, i: int, timeout: float) -> tuple[float | None, float]:
    """(seconds from SIGHUP until the new owner is served, CPU seconds of all processes until the summary)."""
    pid = process.proc.pid
    logged = process.logfile.read_bytes().count(SUMMARY)
    owner = zs.change(False, i)
    cpu0 = cpu_seconds(pid)
    t0 = time.monotonic()
    process.proc.send_signal(signal.SIGHUP)
    t1 = served(process.port, owner, t0 + timeout)
    deadline = time.monotonic() + timeout
    while process.logfile.read_bytes().count(SUMMARY) <= logged and time.monotonic() < deadline:
        time.sleep(0.005)
    return (None if t1 is None else t1 - t0), cpu_seconds(pid) - cpu0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--zones", type=int, default=10_000)
    parser.add_argument("--reloads", type=int, default=15)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--shapes", default="directory,explicit")
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    trees = {name: str(Path(path).resolve()) for name, path in (t.split("=", 1) for t in args.tree)}
    print(f"load average at the start: {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        sets = {}
        for name in trees:
            (d / name).mkdir()
            sets[name] = ZoneSet(d / name, args.zones, 10)
        for shape in args.shapes.split(","):
            for workers in workers_list(args.workers):
                servers = {}
                try:
                    for name, tree in trees.items():
                        servers[name] = start(d / f"{name}-{shape}-w{workers}", sets[name], tree, workers,
                                              shape == "explicit")
                    figures = {name: ([], []) for name in trees}
                    for r in range(args.reloads):
                        for name, process in servers.items():
                            seconds, cpu = reload_once(process, sets[name], args.zones // 2 + r, args.timeout)
                            figures[name][0].append(seconds if seconds is not None else float("inf"))
                            figures[name][1].append(cpu)
                    print(f"{shape}, workers = {workers}, {args.reloads} reloads each, "
                          f"load average {os.getloadavg()[0]:.1f}:", flush=True)
                    for name, (walls, cpus) in figures.items():
                        print(f"  {name}: served after median {statistics.median(walls):.3f} s "
                              f"(min {min(walls):.3f}, max {max(walls):.3f}); CPU median "
                              f"{statistics.median(cpus):.3f} s (min {min(cpus):.3f}, max {max(cpus):.3f})",
                              flush=True)
                finally:
                    for process in servers.values():
                        process.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
