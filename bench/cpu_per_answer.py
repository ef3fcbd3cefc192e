#!/usr/bin/env python3
"""CPU microseconds per answer of aliasd, two code trees side by side.

Why: on a machine whose cores the load generator shares, queries per second
say little; CPU time per answer is what a change to the answer path moves.
This starts one ``twistd aliasd`` per code tree (``--tree NAME=PATH``, put
first on PYTHONPATH) and ``[server] workers`` value, on the same zones, and
drives each with dnsperf at a fixed rate, the trees alternately mix by mix
(so both see the same minutes of a noisy machine). It prints, per mix, the
CPU µs per answer of the first pass over the query file (every answer
made for the first time, by the worker that got the query), then the
CPU µs per answer of all the server's processes and of the main process
alone (which answers nothing with workers >= 2), and the memory (PSS of
all processes) once every mix has run.

Zones: bench.test (N plain A and M ALIAS owners over targets in the served
zone targets.test: no upstream needed), signed.test (the first 10,000 of
the same A records, or ``--signed``, signed with NSEC3: the "DO A" and "DO
NXDOMAIN" mixes ask with DO), and Z small zones c0.example ... (the
"zones mail A" and "zones NXDOMAIN" mixes, as bench/many_zones.py asks).

    .venv/bin/python bench/cpu_per_answer.py --tree old=/work/main --tree new=. \\
        [--workers 1,2] [--rate 20000,0] [--seconds 8] [--zones 10000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import process_tree, pss_mib, start_tree, workers_list  # noqa: E402
from bench.compare import CLIENTS, wait_workers  # noqa: E402
from bench.many_zones import ZoneSet  # noqa: E402
from tests.aliasd_process import AliasdProcess, free_port  # noqa: E402

TARGETS = 100
SIGNED = 10_000  # A records of signed.test (at most, unless --signed): signing at start takes time


def own_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` alone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> tuple[float, float]:
    """(CPU seconds of ``pid`` and its live children, of ``pid`` alone)."""
    total = 0.0
    for member in process_tree(pid):
        try:
            total += own_cpu(member)
        except OSError:
            continue
    return total, own_cpu(pid)


def write_zones(d: Path, records: int, aliases: int, zones: int, signed: int = SIGNED) -> None:
    head = ["$TTL 300", "@ SOA ns1 hostmaster 1 3600 600 86400 60", "@ NS ns1", "ns1 A 192.0.2.53"]
    hosts = [f"host{i} A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(records)]
    (d / "bench.zone").write_text("\n".join(
        ["$ORIGIN bench.test.", *head, *hosts, *(f"alias{i} ALIAS lb{i % TARGETS}.targets.test." for i in range(aliases))]
    ) + "\n")
    (d / "signed.zone").write_text("\n".join(["$ORIGIN signed.test.", *head, *hosts[:signed]]) + "\n")
    (d / "targets.zone").write_text("\n".join(
        ["$ORIGIN targets.test.", *head, *(f"lb{i} A 198.51.100.{i}" for i in range(TARGETS))]
    ) + "\n")
    (d / "cdn.zone").write_text("\n".join(
        ["$ORIGIN cdn.test.", *head, *(f"t{i} A 198.51.101.{i}" for i in range(TARGETS))]
    ) + "\n")
    ZoneSet(d, zones, TARGETS)  # zones.d/c{i}.example.zone, apex ALIAS to t{i % TARGETS}.cdn.test


def query_files(d: Path, records: int, aliases: int, zones: int,
                signed: int = SIGNED) -> dict[str, tuple[Path, list[str]]]:
    """mix -> (query file, extra dnsperf arguments)."""
    rng = random.Random(1)
    hosts, nx, order = list(range(records)), list(range(records)), list(range(zones))
    for items in (hosts, nx, order):
        rng.shuffle(items)
    mixes = {
        "plain A": ([f"host{i}.bench.test A" for i in hosts], []),
        "ALIAS A": ([f"alias{i}.bench.test A" for i in range(aliases)], []),
        "NXDOMAIN": ([f"missing{i}.bench.test A" for i in nx], []),
        "DO A": ([f"host{i}.signed.test A" for i in hosts if i < signed], ["-D"]),
        "DO NXDOMAIN": ([f"missing{i}.signed.test A" for i in nx if i < signed], ["-D"]),
        "zones mail A": ([f"mail.c{i}.example A" for i in order], []),
        "zones NXDOMAIN": ([f"nx{i}.c{i}.example A" for i in order], []),
    }
    files = {}
    for mix, (lines, extra) in mixes.items():
        path = d / (mix.replace(" ", "_") + ".queries")
        path.write_text("\n".join(lines) + "\n")
        files[mix] = (path, extra)
    return files


def start(d: Path, tree: str, workers: int | None) -> AliasdProcess:
    d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    zones = d.parent / "zones"
    (d / "aliasd.toml").write_text(
        f'[server]\nlisten = ["127.0.0.1"]\nport = {port}\nstate-dir = "state"\n'
        + (f"workers = {workers}\n" if workers is not None else "")
        + f'[zone-directory]\npath = "{zones / "zones.d"}"\n'
        + "".join(f'[zones."{z}"]\nfile = "{zones / f}"\n' for z, f in
                  (("bench.test", "bench.zone"), ("targets.test", "targets.zone"), ("cdn.test", "cdn.zone")))
        + f'[zones."signed.test"]\nfile = "{zones / "signed.zone"}"\ndnssec = true\n'
    )
    process = start_tree(tree, d / "aliasd.toml", d, port, timeout=300)
    wait_workers(process.proc.pid, workers)
    process.wait_for(lambda: process.addresses("alias0.bench.test") == {"198.51.100.0"}, timeout=120)
    process.wait_for(lambda: len(process.query("host0.signed.test", want_dnssec=True).answer) == 2, timeout=120)
    return process


def dnsperf(port: int, qfile: Path, extra: list[str], seconds: int, rate: int) -> int:
    """Queries completed in one run (``rate`` 0: as fast as 64 outstanding per client allow)."""
    limit = ["-Q", str(rate)] if rate else []
    out = subprocess.run(
        ["dnsperf", *extra, "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile), "-l", str(seconds),
         "-c", str(CLIENTS), "-q", "64", *limit],
        capture_output=True, text=True, check=True,
    ).stdout
    return int(re.search(r"Queries completed:\s+(\d+)", out).group(1))


def measure(process: AliasdProcess, qfile: Path, extra: list[str], seconds: int, rate: int) -> tuple[float, float, int]:
    """(µs per answer, all processes; main process alone; answers)."""
    pid = process.proc.pid
    total0, main0 = tree_cpu(pid)
    answers = dnsperf(process.port, qfile, extra, seconds, rate)
    total1, main1 = tree_cpu(pid)
    n = max(answers, 1)
    return (total1 - total0) * 1e6 / n, (main1 - main0) * 1e6 / n, answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rate", default="20000", help="dnsperf -Q, a list such as 20000,0 (0: unthrottled)")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--aliases", type=int, default=10_000)
    parser.add_argument("--zones", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--mixes", default="", help="comma-separated subset of the mixes")
    parser.add_argument("--signed", type=int, default=SIGNED, help="A records of signed.test (the DO mixes)")
    parser.add_argument("--passes", type=int, default=1,
                        help="passes over a mix's query file before it is measured (each worker keeps its own answers)")
    args = parser.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "zones").mkdir()
        signed = min(args.records, args.signed)
        write_zones(d / "zones", args.records, args.aliases, args.zones, signed)
        files = query_files(d, args.records, args.aliases, args.zones, signed)
        wanted = [m.strip() for m in args.mixes.split(",") if m.strip()] or list(files)
        for workers in workers_list(args.workers):
            servers = {name: start(d / f"{name}-w{workers}", str(Path(path).resolve()), workers)
                       for name, path in trees.items()}
            try:
                print(f"workers = {workers}, dnsperf -c {CLIENTS} -q 64, {args.seconds} s per run:"
                      " CPU µs per answer, all processes (main process alone)", flush=True)
                for mix in wanted:
                    qfile, extra = files[mix]
                    first = []
                    for name, process in servers.items():  # warm the caches: --passes over the file
                        total0, _ = tree_cpu(process.proc.pid)
                        out = subprocess.run(["dnsperf", *extra, "-s", "127.0.0.1", "-p", str(process.port), "-d",
                                              str(qfile), "-n", "1", "-c", str(CLIENTS), "-q", "64"],
                                             capture_output=True, text=True, check=True).stdout
                        answers = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
                        first.append(f"{name} {(tree_cpu(process.proc.pid)[0] - total0) * 1e6 / max(answers, 1):5.1f}")
                        if args.passes > 1:
                            subprocess.run(["dnsperf", *extra, "-s", "127.0.0.1", "-p", str(process.port), "-d",
                                            str(qfile), "-n", str(args.passes - 1), "-c", str(CLIENTS), "-q", "64"],
                                           capture_output=True, check=True)
                    print(f"  {mix:<15} {'first pass':<11} " + "  ".join(first), flush=True)
                    for rate in (int(r) for r in args.rate.split(",")):
                        cells = []
                        for _ in range(args.rounds):
                            for name, process in servers.items():
                                us, main_us, answers = measure(process, qfile, extra, args.seconds, rate)
                                cells.append(f"{name} {us:5.1f} ({main_us:4.1f}) {answers / args.seconds:6.0f} q/s")
                        print(f"  {mix:<15} {'-Q ' + str(rate) if rate else 'unthrottled':<11} "
                              + "  ".join(cells), flush=True)
                print("  PSS MiB, all processes, after the mixes: "
                      + "  ".join(f"{name} {pss_mib(p.proc.pid):.0f}" for name, p in servers.items()), flush=True)
            finally:
                for process in servers.values():
                    process.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
