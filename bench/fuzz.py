#!/usr/bin/env python3
"""A long fuzz run against a real twistd aliasd: packets sent, memory before/after.

Sends mutated queries (bit flips, truncations, insertions, lying section
counts; see tests/test_fuzz.py) over UDP for a fixed time, checks that every
answer parses and fits the UDP limit, then that the server still answers,
and prints the server's resident memory before and after.

    python bench/fuzz.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import random
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.message  # noqa: E402

from bench.common import proc_mib  # noqa: E402
from tests.aliasd_process import AliasdProcess, free_port  # noqa: E402
from tests.test_fuzz import SEEDS, mutate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "z.zone").write_text(
            "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\n"
            "www A 192.0.2.1\n*.w A 192.0.2.9\n"
        )
        port = free_port()
        process = AliasdProcess(["--zone", "example.com=z.zone", "--listen", "127.0.0.1", "--port", str(port)], d, port).start()
        try:
            before = proc_mib(process.proc.pid)
            rng = random.Random(2)
            sent = answers = bad = 0
            deadline = time.monotonic() + args.seconds
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.setblocking(False)
                while time.monotonic() < deadline:
                    for _ in range(200):
                        udp.sendto(mutate(rng, rng.choice(SEEDS)), ("127.0.0.1", port))
                        sent += 1
                    time.sleep(0.005)
                    while True:
                        try:
                            data = udp.recv(65535)
                        except BlockingIOError:
                            break
                        answers += 1
                        try:
                            dns.message.from_wire(data, keyring=False, one_rr_per_rrset=True)
                            assert len(data) <= 1232
                        except Exception:
                            bad += 1
            alive = process.query("www.example.com").rcode() == 0
            after = proc_mib(process.proc.pid)
            print(f"{args.seconds:.0f} s: {sent} mutated packets sent, {answers} answers, {bad} malformed or oversized")
            print(f"server still answering: {alive}; RSS before {before:.1f} MiB, after {after:.1f} MiB")
        finally:
            process.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
