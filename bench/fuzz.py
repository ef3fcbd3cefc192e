#!/usr/bin/env python3
"""A long fuzz run against a real twistd aliasd: packets sent, memory before/after.

Sends hostile packets over UDP for a fixed time: mutated queries (bit flips,
truncations, insertions, lying section counts) and the targeted generators
of tests/test_fuzz.py (odd EDNS options and OPT placement, TSIG garbage and
correct signatures with the server's key, compression loops, bad label
lengths, long names, odd types, classes and opcodes, signed queries cut
short), some of those mutated further. Checks that every answer parses and
fits the client's UDP limit, counts SERVFAIL answers (an exception inside
the server) and tracebacks in its log, checks that the server still answers,
and prints the server's resident memory before and after.

    python bench/fuzz.py [--seconds 60] [--targeted 0.5] [--seed 2]
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
import dns.rcode  # noqa: E402

from bench.common import proc_mib  # noqa: E402
from tests.aliasd_process import AliasdProcess, free_port  # noqa: E402
from tests.test_fuzz import (  # noqa: E402
    SEEDS,
    SERVER_CONFIG,
    ZONE_TEXT,
    Packet,
    client_limit,
    mutate,
    targeted_packet,
)


def next_packet(rng: random.Random, targeted: float) -> Packet:
    """A targeted packet (a quarter of them mutated further) or a mutated query."""
    if rng.random() < targeted:
        packet = targeted_packet(rng)
        if rng.randrange(4) == 0:
            return Packet(mutate(rng, packet.wire), "mutated " + packet.what)
        return packet
    return Packet(mutate(rng, rng.choice(SEEDS)), "mutated query")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--targeted", type=float, default=0.5,
                        help="share of targeted packets (the rest are mutated queries); default 0.5")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--answer-cache-size", type=int, default=None,
                        help="the server's [server] answer-cache-size (default: its default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "example.com.zone").write_text(ZONE_TEXT)
        server = f"[server]\nanswer-cache-size = {args.answer_cache_size}\n" if args.answer_cache_size else ""
        (d / "aliasd.toml").write_text(server + SERVER_CONFIG)
        port = free_port()
        process = AliasdProcess(
            ["--config", str(d / "aliasd.toml"), "--listen", "127.0.0.1", "--port", str(port)], d, port
        ).start()
        try:
            before = proc_mib(process.proc.pid)
            rng = random.Random(args.seed)
            sent = targeted = answers = malformed = oversized = servfail = 0
            started = time.monotonic()
            deadline = started + args.seconds
            samples, next_sample = [], started + args.seconds / 6
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.setblocking(False)
                while time.monotonic() < deadline:
                    if time.monotonic() >= next_sample:
                        samples.append(f"{time.monotonic() - started:.0f}s {proc_mib(process.proc.pid):.1f}")
                        next_sample += args.seconds / 6
                    batch: dict[bytes, list[bytes]] = {}  # by message ID
                    for _ in range(200):
                        packet = next_packet(rng, args.targeted)
                        udp.sendto(packet.wire, ("127.0.0.1", port))
                        sent += 1
                        targeted += not packet.what.startswith("mutated")
                        batch.setdefault(packet.wire[:2], []).append(packet.wire)
                    time.sleep(0.005)
                    while True:
                        try:
                            data = udp.recv(65535)
                        except BlockingIOError:
                            break
                        answers += 1
                        try:
                            answer = dns.message.from_wire(data, keyring=False, one_rr_per_rrset=True)
                        except Exception:
                            malformed += 1
                            continue
                        servfail += answer.rcode() == dns.rcode.SERVFAIL
                        # The request is not known for sure (IDs repeat): the most generous limit.
                        limit = max((client_limit(w) for w in batch.get(data[:2], ())), default=1232)
                        oversized += len(data) > limit
            alive = process.query("www.example.com").rcode() == 0
            after = proc_mib(process.proc.pid)
            log = process.log()
            print(
                f"{args.seconds:.0f} s: {sent} packets sent ({targeted} targeted, {sent - targeted} mutated), "
                f"{answers} answers, {malformed} malformed, "
                f"{oversized} oversized (over the client's UDP limit)"
            )
            print(f"SERVFAIL answers {servfail}; tracebacks in the server log {log.count('Traceback')}")
            print(f"server still answering: {alive}; RSS before {before:.1f} MiB, after {after:.1f} MiB")
            print(f"RSS during the run (MiB): {', '.join(samples)}")
        finally:
            process.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
