#!/usr/bin/env python3
"""Zones created through the HTTP API (issue 22): how fast, and what it costs DNS.

Starts the server under test with its API on loopback high ports, a catalog
of its zones that a BIND ``named`` consumes (``catalog-zones``; every zone
notifies it), and one zone made through the API that a probe process asks
every 10 ms (``www.probe.bench.`` A) for the whole run:

* aliasd (default): the ``[api]`` section of tests/api_server.py, a
  ``[catalog]``, and ``[zone-defaults]`` notify and allow-transfer;
* ``--target pdns``: PowerDNS 4.7 (gsqlite3, as in the contract test) as a
  baseline: ``primary=yes``, ``also-notify`` the consumer, a ``Producer``
  catalog zone made through the API and each zone created with ``"catalog"``.

Then:

1. creates N zones (``--zones``, default 1,000) with ``POST .../zones``,
   ``--clients`` requests at a time (each zone: kind Master, default SOA,
   2 NS, www and mail A, MX, TXT), and reports the time until every POST was
   answered and until the BIND catalog consumer serves every zone's SOA;
2. sends ``--patches`` PATCHes (a TXT REPLACE in a random zone, one at a
   time) and reports their latency p50/p99;
3. reports the probe's maximum and p99 latency over the whole run, and the
   queries left unanswered within 1 s (issue 22: the probe stays under 50 ms
   while 1,000 zones are created).

Needs bind9 (and pdns-server, pdns-backend-sqlite3 for the baseline) from
Debian. It takes both CPU cores for a
while at full size: run it on a quiet machine. Run with the project's venv
Python:

    .venv/bin/python bench/api_perf.py [--target aliasd|pdns] [--zones 1000] [--clients 4]
        [--patches 200] [--timeout 300] [--keep]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import find_program
from bench.many_zones import TCP_PER_CLIENT, Probe, has_soa, wait_groups
from tests.aliasd_process import AliasdProcess, free_port
from tests.api_server import ApiServer, PowerDNSApi, api_config
from tests.secondaries import Named

CATALOG = "catalog.bench."
PROBE_ZONE = "probe.bench."


def zone_name(i: int) -> str:
    return f"z{i}.api.bench."


def zone_body(name: str, **extra) -> dict:
    """A small customer zone; the SOA comes from the API's default-soa."""
    def rrset(owner: str, rdtype: str, *contents: str) -> dict:
        return {"name": owner, "type": rdtype, "ttl": 300,
                "records": [{"content": c, "disabled": False} for c in contents]}
    return {
        "name": name, "kind": "Master", "nameservers": [f"ns1.{name}", f"ns2.{name}"], **extra,
        "rrsets": [
            rrset(f"ns1.{name}", "A", "192.0.2.53"), rrset(f"ns2.{name}", "A", "192.0.2.54"),
            rrset(f"www.{name}", "A", "192.0.2.80"), rrset(f"mail.{name}", "A", "192.0.2.25"),
            rrset(name, "MX", f"10 mail.{name}"), rrset(name, "TXT", '"v=spf1 mx -all"'),
        ],
    }


class BenchAliasd(ApiServer):
    """aliasd under test: its process and its API; its [catalog] lists
    every zone it serves."""

    kind = "aliasd"

    def __init__(self, directory: Path, secondary_port: int):
        self.http_port = free_port()
        self.dns_port = free_port()
        self.metrics_port = free_port()
        per_zone = f'notify = ["127.0.0.1:{secondary_port}"]\nallow-transfer = ["127.0.0.1"]\n'
        config = directory / "aliasd.toml"
        config.write_text(
            textwrap.dedent(
                f"""\
                [server]
                listen = ["127.0.0.1"]
                port = {self.dns_port}
                state-dir = "state"
                serial-interval = 0
                tcp-max-per-client = {TCP_PER_CLIENT}

                [statistics]
                listen = "127.0.0.1:{self.metrics_port}"

                """
            )
            + f"[zone-defaults]\n{per_zone}\n[catalog]\nzone = \"{CATALOG}\"\n{per_zone}\n"
            + api_config(self.http_port)
        )
        self.process = AliasdProcess(["--config", str(config)], directory, self.dns_port).start(timeout=60)
        self.wait_http()

    def zone_body(self, name: str) -> dict:
        return zone_body(name)

    def stalls(self) -> str:
        """The longest reactor stall and garbage collection since start (its metrics)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as page:
            metrics = dict(line.split(" ", 1) for line in page.read().decode().splitlines()
                           if line.startswith(("aliasd_reactor_lag_seconds_max ", "aliasd_gc_pause_seconds_max ")))
        return (f"longest reactor stall {float(metrics['aliasd_reactor_lag_seconds_max']) * 1000:.1f} ms, "
                f"longest garbage collection {float(metrics['aliasd_gc_pause_seconds_max']) * 1000:.1f} ms")

    def log(self) -> str:
        return self.process.log()

    def stop(self) -> None:
        self.process.stop()


class BenchPowerDNS(PowerDNSApi):
    """PowerDNS 4.7 as the baseline: a Producer catalog zone, made through
    the API, that each zone joins when it is created."""

    def __init__(self, directory: Path, secondary_port: int):
        super().__init__(directory, settings=(
            # NOTIFY the consumer; the catalog's serial and the NOTIFYs are
            # worked out every xfr-cycle-interval seconds (default 60).
            f"primary=yes\nalso-notify=127.0.0.1:{secondary_port}\nallow-axfr-ips=127.0.0.0/8\n"
            "xfr-cycle-interval=1\n"))
        # soa_edit_api "" keeps the default SOA's serial 1: PowerDNS then
        # serves the catalog with a serial from the clock, which must be
        # higher (with YYYYMMDD01 it would go back, and BIND would ignore it).
        created = self.request("POST", "/zones", {"name": CATALOG, "kind": "Producer", "nameservers": ["invalid."],
                                                  "soa_edit_api": ""})
        if created.status != 201:
            raise RuntimeError(f"creating the catalog {CATALOG} failed: {created.status} {created.text}")

    def zone_body(self, name: str) -> dict:
        return zone_body(name, catalog=CATALOG)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def run(args, directory: Path) -> int:
    secondary_port = free_port()
    if args.target == "pdns":
        server: BenchAliasd | BenchPowerDNS = BenchPowerDNS(directory / "pdns", secondary_port)
    else:
        server = BenchAliasd(directory, secondary_port)
    named = None
    try:
        created = server.request("POST", "/zones", server.zone_body(PROBE_ZONE))
        if created.status != 201:
            print(f"creating {PROBE_ZONE} failed: {created.status} {created.text}", file=sys.stderr)
            return 1
        (directory / "named").mkdir()
        named = Named(directory / "named", secondary_port).start_catalog_consumer(CATALOG, server.dns_port)
        probe = Probe(server.dns_port, [f"www.{PROBE_ZONE}"], rate=100, timeout=1.0)

        names = [zone_name(i) for i in range(args.zones)]
        post_latencies: list[float] = []
        failures: list[str] = []

        def create(name: str) -> None:
            at = time.monotonic()
            response = server.request("POST", "/zones", server.zone_body(name), timeout=60)
            post_latencies.append(time.monotonic() - at)
            if response.status != 201:
                failures.append(f"{name}: {response.status} {response.text[:200]}")

        start = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(create, names))
        created_in = time.monotonic() - start
        if failures:
            print(f"{len(failures)} POSTs failed, e.g. {failures[:3]}", file=sys.stderr)
        served = wait_groups({"secondary": (named.port, [(n, "SOA", has_soa()) for n in names])},
                             start, args.timeout)["secondary"][1]

        patch_latencies: list[float] = []
        for i in range(args.patches):
            name = random.choice(names)
            at = time.monotonic()
            response = server.request("PATCH", f"/zones/{name}", {"rrsets": [{
                "name": f"txt{i}.{name}", "type": "TXT", "ttl": 60, "changetype": "REPLACE",
                "records": [{"content": f'"patch {i}"', "disabled": False}]}]})
            patch_latencies.append(time.monotonic() - at)
            if response.status != 204:
                failures.append(f"PATCH {name}: {response.status} {response.text[:200]}")
        probed = probe.finish()

        print(f"{server.kind}, {args.zones} zones created through the API ({args.clients} clients at a time)")
        print(f"  all POSTs answered        {created_in:8.2f} s   (POST p50 {ms(statistics.median(post_latencies))},"
              f" p99 {ms(percentile(post_latencies, 0.99))})")
        waited = f"{served:8.2f} s" if served is not None else "  not within --timeout"
        print(f"  BIND catalog consumer     {waited}   (from the first POST until it serves every zone's SOA)")
        if patch_latencies:
            print(f"  PATCH latency ({len(patch_latencies)})      p50 {ms(statistics.median(patch_latencies))},"
                  f" p99 {ms(percentile(patch_latencies, 0.99))}")
        if probed.get("max_ms") is None:
            print("  DNS probe (every 10 ms)   no answer at all", probed)
            failures.append("probe")
        else:
            print(f"  DNS probe (every 10 ms)   max {probed['max_ms']:.1f} ms, p99 {probed['p99_ms']:.1f} ms,"
                  f" {probed['unanswered']} of {probed['sent']} unanswered within 1 s")
        if hasattr(server, "stalls"):
            print(f"  aliasd                    {server.stalls()}")
        return 1 if failures or served is None else 0
    finally:
        if named is not None:
            named.stop()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("aliasd", "pdns"), default="aliasd",
                        help="the server under test (pdns: PowerDNS 4.7, the baseline)")
    parser.add_argument("--zones", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4, help="POSTs in flight at once")
    parser.add_argument("--patches", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300, help="give up waiting for the secondary after this long")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if find_program("named") is None:
        print("named is not installed (Debian package bind9)", file=sys.stderr)
        return 2
    directory = Path(tempfile.mkdtemp(prefix="aliasd-api-perf-"))
    try:
        return run(args, directory)
    finally:
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
