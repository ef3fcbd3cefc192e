#!/usr/bin/env python3
"""DNSSEC key files: generating and loading the keys of many zones (aliasd/dnssec/keys.py).

In a temporary key directory (or ``--dir``, kept and reused: keys already
there are not made again), for N zones z0.keys.test ... (every tenth one
also gets a zone whose name its own prefixes, a<i>.z<i>.keys.test, as a DNS
host's customer subdomains do):

1. generation of a KSK and a ZSK per zone, each file written with fsync:
   one ``KeyStore.ensure_many`` call for all zones (``--generate many``, the
   default, when the module has it) or ``KeyStore.ensure`` zone by zone
   (``--generate each``), time per zone;
2. loading, cold (a fresh KeyStore, as at every start; the OS page cache is
   warm, the files having just been written or read): ``load`` of every zone,
   per zone; then ``ensure`` of every zone (what ``make_signers`` calls at a
   restart) and the first use of every private key (``key.private``, which the
   signing thread makes when it first signs);
3. cProfile of a cold load of every zone: the top 15 functions by cumulative
   time.

Run with the project's venv Python:

    .venv/bin/python bench/keys_perf.py [--zones 2000] [--algorithm ECDSAP256SHA256]
        [--dir PATH] [--rounds 5] [--no-profile] [--generate many|each] [--module FILE]

``--module FILE`` takes KeyStore from another copy of the module, to compare
with an earlier version on the same keys, e.g.
``git show HEAD~1:aliasd/dnssec/keys.py > /tmp/old_keys.py``. Times are wall
clock and (in brackets) the process's CPU time; the machine's other work shows
in the first, hardly in the second.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.dnssec  # noqa: E402
import dns.name  # noqa: E402
import dns.rrset  # noqa: E402

import aliasd.dnssec.keys  # noqa: E402

KeyStore = aliasd.dnssec.keys.KeyStore


def use_module(path: Path) -> None:
    global KeyStore
    spec = importlib.util.spec_from_file_location("keys_perf_module", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    KeyStore = module.KeyStore


def zone_names(count: int) -> list[dns.name.Name]:
    names = []
    for i in range(count):
        names.append(dns.name.from_text(f"z{i}.keys.test"))
        if i % 10 == 0:
            names.append(dns.name.from_text(f"a{i}.z{i}.keys.test"))
    return names[:count]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def generate(directory: Path, zones: list[dns.name.Name], algorithm, each: bool) -> None:
    store = KeyStore(directory)
    have = {z for z in zones if store.load(z)}
    todo = [z for z in zones if z not in have]
    if have:
        print(f"generation: {len(have)} zone(s) already have keys in {directory}")
    if not todo:
        return
    if not each and hasattr(store, "ensure_many"):
        started, cpu = time.perf_counter(), time.process_time()
        made = store.ensure_many(todo, algorithm)
        total, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert all(len(made[z]) == 2 for z in todo)
        print(f"generation of {len(todo)} zones (KSK+ZSK each) with ensure_many: {total:.2f} s [{cpu:.2f} s], "
              f"{ms(total / len(todo))} per zone")
        return
    times = []
    started = time.perf_counter()
    for i, zone in enumerate(todo, 1):
        t0 = time.perf_counter()
        keys = store.ensure(zone, algorithm)
        times.append(time.perf_counter() - t0)
        assert len(keys) == 2, (zone, keys)
        if i % 1000 == 0:
            print(f"  ... {i} zones, {time.perf_counter() - started:.1f} s", flush=True)
    total = time.perf_counter() - started
    times.sort()
    print(f"generation of {len(todo)} zones (KSK+ZSK each) with ensure, zone by zone: {total:.2f} s; "
          f"per zone mean {ms(statistics.fmean(times))}, median {ms(times[len(times) // 2])}, "
          f"p99 {ms(times[int(len(times) * 0.99)])}, max {ms(times[-1])}")


def load_all(directory: Path, zones: list[dns.name.Name]) -> tuple[float, float, list]:
    started, cpu = time.perf_counter(), time.process_time()
    store = KeyStore(directory)
    loaded = [store.load(z) for z in zones]
    return time.perf_counter() - started, time.process_time() - cpu, loaded


def measure_load(directory: Path, zones: list[dns.name.Name], algorithm, rounds: int) -> None:
    n = len(zones)
    walls, cpus = [], []
    for r in range(rounds):
        seconds, cpu, loaded = load_all(directory, zones)
        assert all(len(keys) == 2 for keys in loaded)
        assert all(k.zone == z for z, keys in zip(zones, loaded) for k in keys)
        print(f"load, cold (fresh KeyStore), round {r + 1}: {seconds:.3f} s [{cpu:.3f} s] for {n} zones, "
              f"{ms(seconds / n)} [{ms(cpu / n)}] per zone")
        walls.append(seconds)
        cpus.append(cpu)
    best, median = min(walls), statistics.median(walls)
    print(f"load: best {best:.3f} s, {ms(best / n)} per zone; median {median:.3f} s, {ms(median / n)} per zone "
          f"[CPU best {ms(min(cpus) / n)}, median {ms(statistics.median(cpus) / n)} per zone]")

    started, cpu = time.perf_counter(), time.process_time()
    store = KeyStore(directory)
    ensured = [store.ensure(z, algorithm) for z in zones]
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"ensure at a restart (fresh KeyStore, keys exist): {seconds:.3f} s [{cpu:.3f} s], "
          f"{ms(seconds / n)} per zone")

    started = time.perf_counter()
    privates = [k.private for keys in ensured for k in keys]
    seconds = time.perf_counter() - started
    print(f"first use of the {len(privates)} private keys after that: {seconds:.3f} s, "
          f"{ms(seconds / n)} per zone")

    # One signature per zone with its ZSK, to show the keys work (and what a first signature costs).
    started = time.perf_counter()
    for zone, keys in zip(zones[:200], ensured[:200]):
        rrset = dns.rrset.from_text(zone, 300, "IN", "A", "192.0.2.1")
        rrsig = dns.dnssec.sign(rrset, keys[0].private, zone, keys[0].dnskey, lifetime=3600)
        dns.dnssec.validate_rrsig(rrset, rrsig, {zone: dns.rrset.from_rdata(zone, 300, *(k.dnskey for k in keys))})
    seconds = time.perf_counter() - started
    print(f"sign + validate one RRset with each of {min(200, n)} zones' ZSK: {ms(seconds / min(200, n))} per zone")


def profile_load(directory: Path, zones: list[dns.name.Name]) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    load_all(directory, zones)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(15)
    print(f"\ncProfile of a cold load of {len(zones)} zones (top 15 by cumtime):")
    print(out.getvalue().strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", type=int, default=2000)
    parser.add_argument("--algorithm", default="ECDSAP256SHA256")
    parser.add_argument("--dir", type=Path, help="key directory to use and keep (reused if it holds keys)")
    parser.add_argument("--rounds", type=int, default=5, help="cold loads timed")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--generate", choices=("many", "each"), default="many",
                        help="make the keys with one ensure_many call (if the module has it) or ensure per zone")
    parser.add_argument("--module", type=Path, help="another copy of aliasd/dnssec/keys.py to time")
    args = parser.parse_args()
    if args.module is not None:
        use_module(args.module)
        print(f"KeyStore from {args.module}")
    algorithm = dns.dnssec.Algorithm[args.algorithm.upper()]
    zones = zone_names(args.zones)
    print(f"{len(zones)} zones, {algorithm.name}, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="keys_perf.") as tmp:
        directory = args.dir if args.dir is not None else Path(tmp) / "keys"
        generate(directory, zones, algorithm, args.generate == "each")
        files = sum(1 for _ in directory.iterdir())
        print(f"key directory: {files} files")
        measure_load(directory, zones, algorithm, args.rounds)
        if not args.no_profile:
            profile_load(directory, zones)
    return 0


if __name__ == "__main__":
    sys.exit(main())
