#!/usr/bin/env python3
"""The resolution engine at scale: 10,000 ALIAS records over 1,000 targets.

Starts ``twistd aliasd`` with a zone of M ALIAS records whose T distinct
targets a local upstream (tests.upstream.UpstreamServer on loopback)
answers, and prints: time from start until every ALIAS owner answers its
target's addresses, upstream queries in the first round and per refresh
cycle afterwards (one per distinct target and type is the ideal), how many
serials the zone went through, and the server's resident memory.

    python bench/resolution_perf.py [--aliases 10000] [--targets 1000] [--ttl 20] [--cycles 3]
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--aliases", type=int, default=10000)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--ttl", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args()
    upstream = UpstreamServer()
    serve_targets(upstream, args.targets, ttl=args.ttl)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "alias.zone").write_text(zone_text("alias.test", 0, args.aliases, args.targets))
        port = free_port()
        (d / "aliasd.toml").write_text(
            f"""
[server]
listen = ["127.0.0.1"]
port = {port}
state-dir = "state"
[resolver]
upstreams = ["{upstream.endpoint}"]
min-refresh = {args.ttl}
max-refresh = 3600
[zones."alias.test"]
file = "alias.zone"
"""
        )
        started = time.monotonic()
        process = AliasdProcess(["--config", str(d / "aliasd.toml")], d, port).start(timeout=300)
        answering = time.monotonic() - started
        try:
            # Every owner answers once its target's addresses are in the version.
            sample = [f"a{i}.alias.test" for i in range(0, args.aliases, max(1, args.aliases // 200))]
            sample.append(f"a{args.aliases - 1}.alias.test")
            pending = set(sample)
            while pending:
                pending = {n for n in pending if not process.addresses(n)}
                if pending:
                    time.sleep(0.2)
            resolved = time.monotonic() - started
            first_round = len(upstream.queries)
            cycles = []
            for _ in range(args.cycles):
                before = len(upstream.queries)
                time.sleep(args.ttl)
                cycles.append(len(upstream.queries) - before)
            serial = process.query("alias.test", "SOA").answer[0][0].serial
            print(f"{args.aliases} ALIAS over {args.targets} targets (A and AAAA), target TTL {args.ttl}s")
            print(f"start to answering queries: {answering:.1f} s")
            print(f"start to every ALIAS resolved: {resolved:.1f} s")
            print(f"upstream queries, first round: {first_round} (ideal {2 * args.targets})")
            print(f"upstream queries per {args.ttl}s refresh cycle: {cycles} (ideal {2 * args.targets})")
            print(f"zone serial now {serial} (file serial 1): {serial - 1} published versions")
            print(f"server memory: VmRSS {proc_mib(process.proc.pid):.0f} MiB, peak {proc_mib(process.proc.pid, 'VmHWM'):.0f} MiB")
        finally:
            process.stop()
            upstream.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
