#!/usr/bin/env python3
"""Warm starts at many zones: CPU seconds until ready, code trees alternately.

Why: many_zones.py gives a warm start's wall-clock seconds, which on a
shared 2-core machine move with the load more than with a change. This
starts ``twistd aliasd`` of each code tree (``--tree NAME=PATH``, put first
on PYTHONPATH) on many_zones.py's zones, with the state directory kept
from the tree's own previous start (the first start of each, cold, is not
counted), and waits, as many_zones.py does, until a sample of ~200 zones
and the last one answer their SOA and the sample's apex A is its target's
address. It prints per start: the wall seconds, the CPU seconds of the
server's processes at that moment (workers are forked once every zone is
served: usually after), what aliasd's log says (zone files read, zones
loaded) and the reactor stalls it logged; then the medians per tree.

    .venv/bin/python bench/warm_start.py --tree old=/tmp/old --tree new=. \\
        [--zones 10000] [--workers 1,2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import UpstreamNamed, cpu_seconds, process_tree, workers_list  # noqa: E402
from bench.cpu_per_answer import own_cpu  # noqa: E402
from bench.many_zones import ZoneSet, load_checks, wait_groups  # noqa: E402
from tests.aliasd_process import TWISTD, free_port  # noqa: E402


def start(tree: Path, directory: Path, zs: ZoneSet, upstream_port: int, workers: int | None) -> dict:
    """One start of ``tree``'s aliasd in ``directory`` (its state kept there)."""
    port = free_port()
    directory.mkdir(exist_ok=True)
    (directory / "aliasd.toml").write_text(
        f'[server]\nlisten = ["127.0.0.1"]\nport = {port}\nstate-dir = "state"\nserial-interval = 0\n'
        + (f"workers = {workers}\n" if workers is not None else "")
        + f'[resolver]\nupstreams = ["127.0.0.1:{upstream_port}"]\nmin-refresh = 1\nmax-refresh = 2\n'
        f'[zone-directory]\npath = "{zs.alias_dir}"\n'
    )
    log = directory / "aliasd.log"
    log.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree)
    started = time.monotonic()
    proc = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", f"--logfile={log}", "aliasd", "--config", str(directory / "aliasd.toml"),
         "--state-dir", str(directory / "state")],
        cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        _, ready = wait_groups({"s": (port, load_checks(zs))}, started, 180)["s"]
        cpu, main = cpu_seconds(proc.pid), own_cpu(proc.pid)
        processes = len(process_tree(proc.pid))
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()

    def logged(pattern: str) -> float | None:
        found = re.search(pattern, text)
        return float(found.group(1)) if found else None

    stalls = [float(s) for s in re.findall(r"reactor held up for ([\d.]+)s", text)]
    return {"ready": ready, "cpu": cpu, "main": main, "processes": processes,
            "read": logged(r"zone files read in ([\d.]+) s"), "loaded": logged(r"zones loaded and served in ([\d.]+) s"),
            "stalls": len(stalls), "longest": max(stalls, default=0.0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--zones", type=int, default=10000)
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = {name: Path(path).resolve() for name, path in (t.split("=", 1) for t in args.tree)}
    for path in trees.values():  # as installed (bench/common.bytecode)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(path / "aliasd")], check=True)
    d = Path(tempfile.mkdtemp(prefix="aliasd-warm-start-"))
    upstream = None
    figures: dict[tuple, list] = {}
    try:
        upstream = UpstreamNamed(d / "upstream", free_port(), args.targets)
        zs = ZoneSet(d, args.zones, args.targets)
        runs = [(w, name) for w in workers_list(args.workers) for name in trees]
        for w, name in runs:  # the state each tree's warm starts keep
            start(trees[name], d / f"{name}-w{w}", zs, upstream.port, w)
        for r in range(args.rounds):
            for w, name in runs:
                f = start(trees[name], d / f"{name}-w{w}", zs, upstream.port, w)
                figures.setdefault((name, w), []).append(f)
                print(f"round {r} {name} workers={w}: ready {f['ready']:.2f} s, CPU {f['cpu']:.2f} s "
                      f"(main {f['main']:.2f}, {f['processes']} processes), log: read {f['read']} s, "
                      f"loaded {f['loaded']} s, {f['stalls']} stalls >= 0.1 s, longest {f['longest']:.3f} s; "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
        for (name, w), runs_of in figures.items():
            med = {k: statistics.median(x[k] for x in runs_of if x[k] is not None) for k in ("ready", "cpu")}
            print(f"median {name} workers={w}: ready {med['ready']:.2f} s, CPU {med['cpu']:.2f} s "
                  f"({len(runs_of)} starts; longest stall {max(x['longest'] for x in runs_of):.3f} s)")
    finally:
        if upstream is not None:
            upstream.stop()
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
