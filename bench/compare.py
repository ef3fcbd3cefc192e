#!/usr/bin/env python3
"""aliasd against PowerDNS Authoritative, side by side on one machine.

Both serve the same generated zone (N A records and M ALIAS records over T
targets, plus the SOA and NS) on loopback; the ALIAS targets live in a BIND
``named`` on loopback that both use as their upstream (PowerDNS:
``launch=bind``, ``expand-alias=yes``, ``resolver=``; aliasd: ``upstreams``).
dnsperf drives each server in alternating rounds for each query mix (plain
A, A at ALIAS owners, NXDOMAIN), after one warm-up pass over the names
(both servers cache answers); ``dig AXFR`` times a full transfer of each
(PowerDNS with ``outgoing-axfr-expand-alias=yes`` so both send the same
records). Prints the median of each figure, the aliasd/PowerDNS ratio,
start-up time (process start until the zone's SOA is answered; aliasd warm,
with its zone snapshot, and cold, with an empty state directory) and
resident memory after loading, after the AXFRs and at peak (VmHWM).

Needs: pdns-server, pdns-backend-bind, bind9, dnsperf, dig (Debian packages).

    python bench/compare.py [--records 100000] [--aliases 10000] [--targets 1000]
                            [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.message  # noqa: E402
import dns.query  # noqa: E402

from bench.common import proc_mib, target_addresses, zone_text  # noqa: E402
from tests.aliasd_process import AliasdProcess, free_port  # noqa: E402


def wait_answering(port: int, name: str, timeout: float = 120, rdtype: str = "A", interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=1)
            if r.answer:
                return
        except Exception:
            pass
        time.sleep(interval)
    raise RuntimeError(f"nothing answers {name} on port {port}")


def start_seconds(started: float, port: int, zone: str) -> float:
    """Seconds from ``started`` until the zone's SOA is answered (polled every 20 ms)."""
    wait_answering(port, zone, timeout=600, rdtype="SOA", interval=0.02)
    return time.monotonic() - started


def dnsperf(port: int, qfile: Path, seconds: int) -> float:
    out = subprocess.run(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile), "-l", str(seconds), "-c", "4", "-q", "64"],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))


def warm_up(port: int, qfile: Path) -> None:
    """One pass over the query file: both servers answer from warm caches."""
    subprocess.run(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile), "-n", "1", "-c", "4", "-q", "64"],
        capture_output=True, text=True, check=True,
    )


def axfr_seconds(port: int, zone: str) -> tuple[float, int]:
    t0 = time.monotonic()
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), zone, "AXFR", "+noall", "+stats", "+tries=1", "+time=120"],
        capture_output=True, text=True, check=True,
    ).stdout
    elapsed = time.monotonic() - t0
    records = int(re.search(r"XFR size: (\d+) records", out).group(1))
    return elapsed, records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100000)
    parser.add_argument("--aliases", type=int, default=10000)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for program in ("pdns_server", "named", "dnsperf", "dig"):
        if not (shutil.which(program) or Path(f"/usr/sbin/{program}").exists()):
            sys.exit(f"{program} is not installed")
    d = Path(tempfile.mkdtemp(prefix="aliasd-compare-"))
    procs: list[subprocess.Popen] = []
    try:
        # The upstream: named, authoritative for the ALIAS targets.
        up_port = free_port()
        targets = ["$ORIGIN cdn.test.", "$TTL 300", "@ SOA ns1 h 1 3600 600 86400 60", "@ NS ns1", "ns1 A 192.0.2.53"]
        for t in range(args.targets):
            a, aaaa = target_addresses(t)
            targets += [f"t{t} A {a}", f"t{t} AAAA {aaaa}"]
        (d / "cdn.zone").write_text("\n".join(targets) + "\n")
        (d / "upstream.conf").write_text(
            f'options {{ directory "{d}"; pid-file "{d}/named.pid"; listen-on port {up_port} {{ 127.0.0.1; }};'
            f' listen-on-v6 {{ none; }}; recursion no; dnssec-validation no; }};\ncontrols {{ }};\n'
            f'zone "cdn.test" {{ type primary; file "{d}/cdn.zone"; }};\n'
        )
        named = shutil.which("named") or "/usr/sbin/named"
        procs.append(subprocess.Popen([named, "-g", "-c", str(d / "upstream.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_answering(up_port, "t0.cdn.test")

        # The zone both servers serve.
        (d / "bench.zone").write_text(zone_text("bench.test", args.records, args.aliases, args.targets))

        # PowerDNS with the bind backend.
        pdns_port = free_port()
        (d / "pdns-zones.conf").write_text(f'zone "bench.test" {{ type master; file "{d}/bench.zone"; }};\n')
        (d / "pdns.conf").write_text(
            f"launch=bind\nbind-config={d}/pdns-zones.conf\nlocal-address=127.0.0.1\nlocal-port={pdns_port}\n"
            f"expand-alias=yes\nresolver=127.0.0.1:{up_port}\noutgoing-axfr-expand-alias=yes\n"
            f"disable-axfr=no\nallow-axfr-ips=127.0.0.0/8\nsocket-dir={d}\nguardian=no\ndaemon=no\n"
            f"security-poll-suffix=\nloglevel=3\n"
        )
        started = time.monotonic()
        pdns = subprocess.Popen(["pdns_server", f"--config-dir={d}", "--config-name="],
                                stdout=(d / "pdns.log").open("w"), stderr=subprocess.STDOUT)
        procs.append(pdns)
        start = {"pdns": start_seconds(started, pdns_port, "bench.test")}
        wait_answering(pdns_port, "h1.bench.test")
        wait_answering(pdns_port, "a1.bench.test")
        loaded = {"pdns": proc_mib(pdns.pid)}

        # aliasd.
        a_port = free_port()
        (d / "aliasd.toml").write_text(
            f'[server]\nlisten = ["127.0.0.1"]\nport = {a_port}\nstate-dir = "state"\n'
            f'[resolver]\nupstreams = ["127.0.0.1:{up_port}"]\nmin-refresh = 300\n'
            f'[zones."bench.test"]\nfile = "bench.zone"\nallow-transfer = ["127.0.0.1"]\n'
        )
        # Cold (empty state directory), then warm (the zone snapshot kept).
        for kind in ("aliasd cold", "aliasd"):
            started = time.monotonic()
            aliasd = AliasdProcess(["--config", str(d / "aliasd.toml")], d, a_port).start(timeout=300)
            start[kind] = start_seconds(started, a_port, "bench.test")
            wait_answering(a_port, f"a{args.aliases - 1}.bench.test")
            loaded[kind] = proc_mib(aliasd.proc.pid)
            if kind == "aliasd cold":
                deadline = time.monotonic() + 120  # the snapshot is written once the server runs
                while not (d / "state" / "zones.snapshot").exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
                aliasd.stop()

        mixes = {
            "plain A": [f"h{i}.bench.test A" for i in range(args.records)],
            "ALIAS A": [f"a{i}.bench.test A" for i in range(args.aliases)],
            "NXDOMAIN": [f"missing{i}.bench.test A" for i in range(args.records)],
        }
        results: dict[str, dict[str, list[float]]] = {m: {"aliasd": [], "pdns": []} for m in mixes}
        for name, queries in mixes.items():
            qfile = d / f"{name.replace(' ', '_')}.q"
            qfile.write_text("\n".join(queries) + "\n")
            warm_up(pdns_port, qfile)
            warm_up(a_port, qfile)
            for _ in range(args.rounds):  # alternate, so drift hits both alike
                results[name]["pdns"].append(dnsperf(pdns_port, qfile, args.seconds))
                results[name]["aliasd"].append(dnsperf(a_port, qfile, args.seconds))
        axfr = {"aliasd": [], "pdns": []}
        sizes = {}
        for _ in range(args.rounds):
            for who, port in (("pdns", pdns_port), ("aliasd", a_port)):
                seconds, records = axfr_seconds(port, "bench.test")
                axfr[who].append(seconds)
                sizes[who] = records
        after_axfr = {"aliasd": proc_mib(aliasd.proc.pid), "pdns": proc_mib(pdns.pid)}

        print(f"zone: {args.records} A + {args.aliases} ALIAS over {args.targets} targets; "
              f"dnsperf {args.seconds}s x {args.rounds} rounds per mix, alternating; medians")
        print(f"{'':<12}{'aliasd':>12}{'PowerDNS':>12}{'ratio':>8}")
        for name in mixes:
            a = statistics.median(results[name]["aliasd"])
            p = statistics.median(results[name]["pdns"])
            print(f"{name + ' q/s':<12}{a:>12.0f}{p:>12.0f}{a / p:>8.2f}")
        a, p = statistics.median(axfr["aliasd"]), statistics.median(axfr["pdns"])
        print(f"{'AXFR s':<12}{a:>12.2f}{p:>12.2f}{a / p:>8.2f}   records: aliasd {sizes['aliasd']}, PowerDNS {sizes['pdns']}")
        p = start["pdns"]
        for label, a in (("start s", start["aliasd"]), ("cold start s", start["aliasd cold"])):
            print(f"{label:<12}{a:>12.2f}{p:>12.2f}{a / p:>8.2f}")
        for label, figures in (("MiB loaded", loaded), ("MiB AXFR", after_axfr)):
            a, p = figures["aliasd"], figures["pdns"]
            print(f"{label:<12}{a:>12.0f}{p:>12.0f}{a / p:>8.2f}")
        ma, mp = proc_mib(aliasd.proc.pid, "VmHWM"), proc_mib(pdns.pid, "VmHWM")
        print(f"{'MiB peak':<12}{ma:>12.0f}{mp:>12.0f}{ma / mp:>8.2f}")
        aliasd.stop()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
