#!/usr/bin/env python3
"""Signing cost: dns.dnssec.sign against aliasd.dnssec.rrsig.sign_wires, per algorithm.

For an A RRset of two addresses and an MX RRset of two (mixed-case)
exchanges, prints µs per signature for dnspython's ``dns.dnssec.sign(...,
deterministic=True)`` (given the RRset, as aliasd's Signer calls it), for
``sign_wires`` (given the wires, as aliasd stores them) and for the bare
``cryptography`` signature of the same data (the floor). Then the cost of
an MX rdata's canonical form by hand against ``from_wire().to_digestable()``,
and whether ``cryptography`` releases the GIL while it signs (see
``gil_probe``), which decides whether signing in two threads can use two
cores. Times are the best of five batches: the machine may be shared.

    .venv/bin/python bench/sign_perf.py [--iterations 2000] [--threads-n 4000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.dnssec  # noqa: E402
import dns.name  # noqa: E402
import dns.rdata  # noqa: E402
import dns.rdataclass  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.rrset  # noqa: E402

from aliasd.dnssec.keys import ZSK_FLAGS, KeyStore  # noqa: E402
from aliasd.dnssec.rrsig import PreparedKey, canonical_rdata, sign_wires  # noqa: E402

A = dns.dnssec.Algorithm
T = dns.rdatatype
IN = dns.rdataclass.IN
ZONE = dns.name.from_text("example.com.")
INCEPTION, EXPIRATION = 1_700_000_000, 1_700_000_000 + 14 * 86400
ALGORITHMS = (A.ECDSAP256SHA256, A.ECDSAP384SHA384, A.ED25519, A.ED448, A.RSASHA256, A.RSASHA512)

RRSETS = {
    "A x2": ("www.example.com.", T.A, ["192.0.2.1", "192.0.2.2"]),
    "MX x2": ("example.com.", T.MX, ["10 Mail.Example.com.", "20 MX2.example.COM."]),
}


def per_call_us(fn, iterations: int, batches: int = 5) -> float:
    """µs per call: the best of ``batches`` batches (the machine may be shared)."""
    fn()  # warm
    size = max(1, iterations // batches)
    best = float("inf")
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(size):
            fn()
        best = min(best, (time.perf_counter() - start) / size)
    return best * 1e6


def build(owner, rdtype, texts):
    rrset = dns.rrset.from_text_list(owner, 300, "IN", rdtype, texts)
    wires = [rd.to_wire() for rd in rrset]
    return rrset, rrset.name.to_wire(), wires


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--threads-n", type=int, default=4000, help="signatures in the GIL test")
    args = parser.parse_args()
    n = args.iterations

    with tempfile.TemporaryDirectory() as tmp:
        store = KeyStore(Path(tmp))
        keys = {alg: store.generate(ZONE, alg, ZSK_FLAGS, existing=[]) for alg in ALGORITHMS}

    print(f"dnspython {dns.version.version}, {n} iterations, µs per signature "
          f"(one RRset, one key; {os.cpu_count()} CPUs)")
    print(f"{'algorithm':<17}{'RRset':<7}{'dns.dnssec.sign':>16}{'sign_wires':>12}{'raw sig':>10}"
          f"{'speed-up':>10}{'overhead':>10}")
    for alg, key in keys.items():
        prepared = PreparedKey(key)
        for label, (owner, rdtype, texts) in RRSETS.items():
            rrset, owner_wire, wires = build(owner, rdtype, texts)

            def dnspython():
                return dns.dnssec.sign(rrset, key.private, ZONE, key.dnskey, inception=INCEPTION,
                                       expiration=EXPIRATION, deterministic=True).to_wire()

            def ours():
                return sign_wires(prepared, owner_wire, rdtype, 300, wires, INCEPTION, EXPIRATION)

            assert ours() == dnspython(), (alg, label)
            data = b"x" * 120  # about the size of the signed data here
            t_dnspython = per_call_us(dnspython, n)
            t_ours = per_call_us(ours, n)
            t_raw = per_call_us(lambda: prepared.sign(data), n)
            print(f"{alg.name:<17}{label:<7}{t_dnspython:>16.1f}{t_ours:>12.1f}{t_raw:>10.1f}"
                  f"{t_dnspython / t_ours:>9.1f}x{t_ours - t_raw:>10.1f}")

    print()
    mx = [rd.to_wire() for rd in dns.rrset.from_text_list("example.com.", 300, "IN", "MX",
                                                          ["10 Mail.Example.com."])]
    wire = mx[0]
    hand = per_call_us(lambda: canonical_rdata(T.MX, wire), n * 10)
    decoded = per_call_us(lambda: dns.rdata.from_wire(IN, T.MX, wire, 0, len(wire)).to_digestable(), n * 10)
    print(f"canonical form of an MX rdata: by hand {hand:.2f} µs, from_wire().to_digestable() {decoded:.2f} µs")

    print()
    gil_probe(keys, args.threads_n)


def _run_threads(fn, n: int, threads: int) -> tuple[float, float]:
    """(wall, process CPU) seconds for ``n`` calls of ``fn`` split over ``threads`` threads; best of 3."""
    def work(k):
        for _ in range(k):
            fn()

    best = None
    for _ in range(3):
        workers = [threading.Thread(target=work, args=(n // threads,)) for _ in range(threads)]
        wall, cpu = time.perf_counter(), time.process_time()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best[0]:
            best = (wall, cpu)
    return best


def _busy_rate(fn, seconds: float = 1.0) -> tuple[float, float]:
    """Calls of ``fn`` per second alone, and while another thread runs pure Python."""
    def rate():
        calls, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            fn()
            calls += 1
        return calls / seconds

    alone = rate()
    spinning = [True]

    def spin():
        while spinning[0]:
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        busy = rate()
    finally:
        spinning[0] = False
        spinner.join()
    return alone, busy


def gil_probe(keys, count: int) -> None:
    """Does signing in two threads use two cores?

    cryptography 50 releases the GIL around the signing itself (under gdb,
    ``break PyEval_SaveThread`` stops once per ``sign`` call of every
    algorithm here, in pyo3's ``Python::detach``); the Python around it
    holds the GIL. Measured: ``count`` signatures in one thread against
    half in each of two, wall time and process CPU / wall (near 2: both
    cores worked; near 1: serialised), with pure Python as the control
    (the GIL: no gain) and the machine's own parallelism (two processes).
    Then the convoy cost: signatures per second while another thread runs
    pure Python (each re-attach after a release may wait for that thread's
    switch interval), against pure Python in the same situation.
    """
    data = b"x" * 100
    print(f"GIL: {count} calls in one thread, then {count // 2} in each of two "
          f"({os.cpu_count()} CPUs; best of 3)")

    def python_work():
        sum(range(1500))

    rows = [("pure Python (control)", python_work, count)]
    for alg, key in keys.items():
        prepared = PreparedKey(key)
        slow = alg in (A.RSASHA256, A.RSASHA512, A.ED448, A.ECDSAP384SHA384)
        rows.append((f"{alg.name} sign", lambda sign=prepared.sign: sign(data), count // 8 if slow else count))
        if alg in (A.ECDSAP256SHA256, A.ED25519):
            _, owner_wire, wires = build(*RRSETS["A x2"])
            rows.append((f"{alg.name} sign_wires",
                         lambda p=prepared, o=owner_wire, w=wires: sign_wires(p, o, T.A, 300, w, INCEPTION, EXPIRATION),
                         count))
    for name, fn, n in rows:
        one, two = _run_threads(fn, n, 1), _run_threads(fn, n, 2)
        print(f"  {name:<28} n={n:<5} 1 thread {one[0] * 1000:7.1f} ms (CPU/wall {one[1] / one[0]:.2f}), "
              f"2 threads {two[0] * 1000:7.1f} ms (CPU/wall {two[1] / two[0]:.2f}): x{one[0] / two[0]:.2f}")
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_spin_for, [0.01, 0.01]))  # start the workers
        start = time.perf_counter()
        _spin_for(0.5)
        one = time.perf_counter() - start
        start = time.perf_counter()
        list(pool.map(_spin_for, [0.5, 0.5]))
        two = time.perf_counter() - start
    print(f"  machine: 0.5 s of CPU in each of two processes took {two:.2f} s (1.0 s would be no parallelism; "
          f"one alone {one:.2f} s)")

    print("Convoy: calls per second alone, and while another thread runs pure Python")
    for name, fn, _ in rows[:1] + [r for r in rows if r[0].startswith(("ECDSAP256SHA256", "ED25519", "RSASHA256"))]:
        alone, busy = _busy_rate(fn)
        print(f"  {name:<28} {alone:9.0f}/s alone, {busy:9.0f}/s beside a busy thread ({busy / alone * 100:3.0f}%)")


def _spin_for(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

if __name__ == "__main__":
    main()
