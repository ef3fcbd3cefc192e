#!/usr/bin/env python3
"""AXFR of a large zone from a real twistd aliasd: wall time and peak memory.

Generates a zone of N A records and M ALIAS records over T distinct targets
that a local upstream (tests.upstream.UpstreamServer, loopback) resolves,
starts ``twistd aliasd``, waits until every target is resolved and the
serial is stable, then times ``dig AXFR`` (C client, so the figure is the
server's) over several rounds, and reads the server's peak resident memory
(VmHWM) from /proc.

    python bench/axfr_perf.py [--records 100000] [--aliases 10000] [--targets 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import proc_mib, serve_targets, zone_text  # noqa: E402
from tests.aliasd_process import AliasdProcess, free_port  # noqa: E402
from tests.upstream import UpstreamServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100000)
    parser.add_argument("--aliases", type=int, default=10000)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    upstream = UpstreamServer()
    serve_targets(upstream, args.targets, ttl=3600)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "big.zone").write_text(zone_text("big.test", args.records, args.aliases, args.targets))
        port = free_port()
        (d / "aliasd.toml").write_text(
            f"""
[server]
listen = ["127.0.0.1"]
port = {port}
state-dir = "state"
[resolver]
upstreams = ["{upstream.endpoint}"]
min-refresh = 600
max-refresh = 3600
[zones."big.test"]
file = "big.zone"
allow-transfer = ["127.0.0.1"]
"""
        )
        started = time.monotonic()
        process = AliasdProcess(["--config", str(d / "aliasd.toml")], d, port).start(timeout=300)
        loaded = time.monotonic() - started
        try:
            last = f"a{args.aliases - 1}.big.test"
            process.wait_for(lambda: process.addresses(last), timeout=600, interval=0.5)
            resolved = time.monotonic() - started
            serial = None
            while True:  # wait for the serial to settle
                now = process.query("big.test", "SOA").answer[0][0].serial
                if now == serial:
                    break
                serial = now
                time.sleep(2)
            rss_before = proc_mib(process.proc.pid, "VmRSS")
            times, size = [], ""
            for _ in range(args.rounds):
                t0 = time.monotonic()
                out = subprocess.run(
                    ["dig", "@127.0.0.1", "-p", str(port), "big.test", "AXFR", "+noall", "+stats", "+tries=1", "+time=60"],
                    capture_output=True, text=True, check=True,
                ).stdout
                times.append(time.monotonic() - t0)
                size = re.search(r"XFR size: (\d+) records \(messages (\d+), bytes (\d+)\)", out)
            records, messages, nbytes = (int(x) for x in size.groups())
            expected = args.records + 2 * args.aliases + 4  # SOA counted twice by dig
            print(f"zone: {args.records} A + {args.aliases} ALIAS over {args.targets} targets (A+AAAA each)")
            print(f"start to answering: {loaded:.1f} s; start to all ALIAS resolved: {resolved:.1f} s")
            print(f"AXFR: {records} records (expected {expected}), {messages} messages, {nbytes} bytes")
            print(f"AXFR wall time (dig): first {times[0]:.2f} s (renders the version), "
                  f"then median {statistics.median(times[1:] or times):.2f} s over {len(times) - 1} more (rendering reused)")
            print(f"server memory: VmRSS {rss_before:.0f} MiB before transfers, VmHWM (peak) {proc_mib(process.proc.pid, 'VmHWM'):.0f} MiB")
            print(f"upstream queries: {len(upstream.queries)} for {args.targets} targets x 2 types")
        finally:
            process.stop()
            upstream.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
