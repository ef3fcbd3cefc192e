#!/usr/bin/env python3
"""Query throughput of a real twistd aliasd, measured with dnsperf.

Generates a zone of N plain A records and M ALIAS owners (whose targets live
in a second served zone, so no network is needed), starts ``twistd aliasd``
on a free loopback port, and drives it with dnsperf for a fixed time per
query mix: (a) plain A, (b) A at ALIAS owners, (c) NXDOMAIN. Prints queries
per second and mean latency for each.

    python bench/query_perf.py [--seconds 10] [--records 10000] [--aliases 1000]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.aliasd_process import AliasdProcess, free_port  # noqa: E402


def write_zones(directory: Path, records: int, aliases: int) -> None:
    lines = [
        "$ORIGIN bench.test.",
        "$TTL 300",
        "@ SOA ns1 hostmaster 1 3600 600 86400 60",
        "@ NS ns1",
        "ns1 A 192.0.2.53",
        "@ ALIAS lb0.targets.test.",
    ]
    lines += [f"host{i} A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(records)]
    lines += [f"alias{i} ALIAS lb{i % 100}.targets.test." for i in range(aliases)]
    (directory / "bench.zone").write_text("\n".join(lines) + "\n")
    targets = ["$ORIGIN targets.test.", "$TTL 60", "@ SOA ns1 hostmaster 1 3600 600 86400 60"]
    for i in range(100):
        targets += [f"lb{i} A 198.51.100.{i}", f"lb{i} A 198.51.101.{i}", f"lb{i} AAAA 2001:db8::{i:x}"]
    (directory / "targets.zone").write_text("\n".join(targets) + "\n")


def run_dnsperf(port: int, queries: list[str], seconds: int, directory: Path, name: str) -> dict:
    qfile = directory / f"{name}.queries"
    qfile.write_text("\n".join(queries) + "\n")
    out = subprocess.run(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile), "-l", str(seconds), "-c", "4", "-q", "64"],
        capture_output=True, text=True, check=True,
    ).stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    latency = float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out).group(1))
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
    return {"qps": qps, "latency_ms": latency * 1000, "lost": lost}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--aliases", type=int, default=1000)
    parser.add_argument(
        "--rate-limit", type=int, default=0, metavar="N",
        help="turn on RRL at N responses/s (a high N measures its cost without limiting)",
    )
    args = parser.parse_args()
    if shutil.which("dnsperf") is None:
        sys.exit("dnsperf is not installed (apt-get install dnsperf)")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_zones(directory, args.records, args.aliases)
        port = free_port()
        extra = []
        if args.rate_limit:
            (directory / "rrl.toml").write_text(f"[rate-limit]\nresponses-per-second = {args.rate_limit}\n")
            extra = ["--config", str(directory / "rrl.toml")]
        process = AliasdProcess(
            [*extra, "--zone", "bench.test=bench.zone", "--zone", "targets.test=targets.zone",
             "--listen", "127.0.0.1", "--port", str(port)],
            directory, port,
        ).start(timeout=60)
        try:
            mixes = {
                "plain A": [f"host{i}.bench.test A" for i in range(args.records)],
                "ALIAS A": [f"alias{i}.bench.test A" for i in range(args.aliases)],
                "NXDOMAIN": [f"missing{i}.bench.test A" for i in range(args.records)],
            }
            rrl = f", RRL at {args.rate_limit}/s" if args.rate_limit else ""
            print(f"aliasd, {args.records} A + {args.aliases} ALIAS records{rrl}, dnsperf {args.seconds}s per mix")
            print(f"{'mix':<10} {'queries/s':>10} {'mean ms':>8} {'lost':>6}")
            for name, queries in mixes.items():
                result = run_dnsperf(port, queries, args.seconds, directory, name.replace(" ", "_"))
                print(f"{name:<10} {result['qps']:>10.0f} {result['latency_ms']:>8.2f} {result['lost']:>6}")
        finally:
            process.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
