#!/usr/bin/env python3
"""aliasd against PowerDNS Authoritative, side by side on one machine.

Both serve the same generated zone (N A records and M ALIAS records over T
targets, plus the SOA and NS) on loopback; the ALIAS targets live in a BIND
``named`` on loopback that both use as their upstream (PowerDNS:
``launch=bind``, ``expand-alias=yes``, ``resolver=``; aliasd: ``upstreams``).
dnsperf drives each server in alternating rounds for each query mix (plain
A, A at ALIAS owners, NXDOMAIN), after three warm-up passes over the names
(both servers cache answers); ``dig AXFR`` times a full transfer of each
(PowerDNS with ``outgoing-axfr-expand-alias=yes`` so both send the same
records). Prints the median of each figure, the aliasd/PowerDNS ratio,
start-up time (process start until the zone's SOA is answered; aliasd warm,
with its zone snapshot, and cold, with an empty state directory) and
memory (PSS summed over the server's processes: aliasd's workers share
pages with the main process) after loading and after the AXFRs, peak VmHWM
of the main process, and CPU seconds per 100,000 answers (utime + stime of
the server and all its processes, before and after each dnsperf run).
dnsperf uses 8 client sockets, so that answers spread over aliasd's workers.

Needs: pdns-server, pdns-backend-bind, bind9, dnsperf, dig (Debian packages).

    python bench/compare.py [--records 100000] [--aliases 10000] [--targets 1000]
                            [--seconds 5] [--rounds 3] [--workers 1,2]

``--workers N`` writes ``[server] workers = N`` into aliasd's configuration
(unset: the default); a list (``1,2``) runs aliasd once with each and
prints them side by side.
"""

from __future__ import annotations

import argparse
import re
import shlex
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

from bench.common import (  # noqa: E402
    cpu_seconds, process_tree, proc_mib, pss_mib, target_addresses, wait_workers, workers_list, zone_text,
)
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


CLIENTS = 8  # dnsperf client sockets: at least 8, so that answers spread over aliasd's workers


def dnsperf_run(port: int, qfile: Path, seconds: int) -> tuple[float, int]:
    """(queries per second, queries completed) of one dnsperf run."""
    out = subprocess.run(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile), "-l", str(seconds),
         "-c", str(CLIENTS), "-q", "64"],
        capture_output=True, text=True, check=True,
    ).stdout
    completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
    return float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1)), completed


def dnsperf(port: int, qfile: Path, seconds: int) -> float:
    return dnsperf_run(port, qfile, seconds)[0]


def dnsperf_cpu(pid: int, port: int, qfile: Path, seconds: int) -> tuple[float, float]:
    """(queries per second, CPU seconds per 100k answers of the server's processes)."""
    before = cpu_seconds(pid)
    rate, completed = dnsperf_run(port, qfile, seconds)
    return rate, (cpu_seconds(pid) - before) * 100_000 / max(completed, 1)


#: Passes over the query file before a measurement. One left aliasd's workers
#: partly cold: each keeps its own answers and takes about half of each pass.
WARM_UP_PASSES = 3


def warm_up(port: int, qfile: Path) -> None:
    """Passes over the query file, the same for every server: each answers
    from warm caches (every worker's, with aliasd's worker processes)."""
    subprocess.run(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile), "-n", str(WARM_UP_PASSES),
         "-c", str(CLIENTS), "-q", "64"],
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


def aliasd_config(d: Path, port: int, up_port: int, workers: int | None) -> None:
    (d / "aliasd.toml").write_text(
        f'[server]\nlisten = ["127.0.0.1"]\nport = {port}\nstate-dir = "state"\n'
        + (f"workers = {workers}\n" if workers is not None else "")
        + f'[resolver]\nupstreams = ["127.0.0.1:{up_port}"]\nmin-refresh = 300\n'
        f'[zones."bench.test"]\nfile = "bench.zone"\nallow-transfer = ["127.0.0.1"]\n'
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100000)
    parser.add_argument("--aliases", type=int, default=10000)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default=None,
                        help="aliasd's [server] workers, or a list (1,2) to run aliasd with each; "
                             "unset: the configuration's default")
    args = parser.parse_args()
    worker_counts = workers_list(args.workers)
    for program in ("pdns_server", "named", "dnsperf", "dig"):
        if not (shutil.which(program) or Path(f"/usr/sbin/{program}").exists()):
            sys.exit(f"{program} is not installed")
    d = Path(tempfile.mkdtemp(prefix="aliasd-compare-"))
    procs: list[subprocess.Popen] = []
    aliasd = None
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
        pdns_start = start_seconds(started, pdns_port, "bench.test")
        wait_answering(pdns_port, "h1.bench.test")
        wait_answering(pdns_port, "a1.bench.test")
        pdns_loaded = pss_mib(pdns.pid)

        mixes = {
            "plain A": [f"h{i}.bench.test A" for i in range(args.records)],
            "ALIAS A": [f"a{i}.bench.test A" for i in range(args.aliases)],
            "NXDOMAIN": [f"missing{i}.bench.test A" for i in range(args.records)],
        }
        qfiles = {}
        for name, queries in mixes.items():
            qfiles[name] = d / f"{name.replace(' ', '_')}.q"
            qfiles[name].write_text("\n".join(queries) + "\n")
            warm_up(pdns_port, qfiles[name])
        pdns_fig: dict[str, list] = {"axfr": []}
        columns: dict[str, dict] = {}
        a_port = free_port()
        for workers in worker_counts:
            label = "aliasd" if workers is None else f"aliasd w={workers}"
            fig = columns[label] = {}
            aliasd_config(d, a_port, up_port, workers)
            shutil.rmtree(d / "state", ignore_errors=True)
            # Cold (empty state directory), then warm (the zone snapshot kept).
            for kind in ("cold", "warm"):
                started = time.monotonic()
                aliasd = AliasdProcess(["--config", str(d / "aliasd.toml")], d, a_port).start(timeout=300)
                fig[kind] = start_seconds(started, a_port, "bench.test")
                wait_answering(a_port, f"a{args.aliases - 1}.bench.test")
                if kind == "cold":
                    deadline = time.monotonic() + 120  # the snapshot is written once the server runs
                    while not (d / "state" / "zones.snapshot").exists() and time.monotonic() < deadline:
                        time.sleep(0.2)
                    aliasd.stop()
            pid = aliasd.proc.pid
            wait_workers(pid, workers)
            fig["processes"] = len(process_tree(pid))
            fig["loaded"] = pss_mib(pid)
            for name, qfile in qfiles.items():
                warm_up(a_port, qfile)
                for _ in range(args.rounds):  # alternate, so drift hits both alike
                    pdns_fig.setdefault(name, []).append(dnsperf_cpu(pdns.pid, pdns_port, qfile, args.seconds))
                    fig.setdefault(name, []).append(dnsperf_cpu(pid, a_port, qfile, args.seconds))
            fig["axfr"], sizes = [], {}
            for _ in range(args.rounds):
                for who, port, figures in (("pdns", pdns_port, pdns_fig), ("aliasd", a_port, fig)):
                    seconds, records = axfr_seconds(port, "bench.test")
                    figures["axfr"].append(seconds)
                    sizes[who] = records
            fig["after AXFR"] = pss_mib(pid)
            fig["peak"] = proc_mib(pid, "VmHWM")
            fig["sizes"] = sizes
            aliasd.stop()
        pdns_fig.update(cold=pdns_start, warm=pdns_start, loaded=pdns_loaded, **{"after AXFR": pss_mib(pdns.pid)},
                        peak=proc_mib(pdns.pid, "VmHWM"))
        print_table(args, columns, pdns_fig, list(mixes))
    finally:
        if aliasd is not None:  # (a failed measurement must not leave it running)
            aliasd.stop()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(d, ignore_errors=True)
    return 0


def print_table(args, columns: dict[str, dict], pdns: dict, mixes: list[str]) -> None:
    """One column per aliasd run and PowerDNS's, then aliasd/PowerDNS for each run."""
    print(f"zone: {args.records} A + {args.aliases} ALIAS over {args.targets} targets; dnsperf -c {CLIENTS} -q 64"
          f" {args.seconds}s x {args.rounds} rounds per mix, alternating; medians")
    labels = list(columns)
    print(f"{'':<22}" + "".join(f"{label:>14}" for label in labels) + f"{'PowerDNS':>12}"
          + "".join(f"{'ratio ' + label.removeprefix('aliasd '):>14}" for label in labels))

    def row(title: str, values: list[float], p: float, digits: int) -> None:
        line = f"{title:<22}" + "".join(f"{v:>14.{digits}f}" for v in values) + f"{p:>12.{digits}f}"
        print(line + "".join(f"{v / p:>14.2f}" for v in values))

    for name in mixes:
        row(f"{name} q/s", [statistics.median(r for r, _ in c[name]) for c in columns.values()],
            statistics.median(r for r, _ in pdns[name]), 0)
        row(f"{name} CPU s/100k", [statistics.median(cpu for _, cpu in c[name]) for c in columns.values()],
            statistics.median(cpu for _, cpu in pdns[name]), 3)
    row("AXFR s", [statistics.median(c["axfr"]) for c in columns.values()], statistics.median(pdns["axfr"]), 2)
    row("start s", [c["warm"] for c in columns.values()], pdns["warm"], 2)
    row("cold start s", [c["cold"] for c in columns.values()], pdns["cold"], 2)
    row("PSS MiB loaded", [c["loaded"] for c in columns.values()], pdns["loaded"], 0)
    row("PSS MiB after AXFR", [c["after AXFR"] for c in columns.values()], pdns["after AXFR"], 0)
    row("MiB peak (main)", [c["peak"] for c in columns.values()], pdns["peak"], 0)
    for label, c in columns.items():
        print(f"{label}: {c['processes']} process(es); AXFR records: aliasd {c['sizes']['aliasd']},"
              f" PowerDNS {c['sizes']['pdns']}")
    print("CPU: utime + stime of the server and all its processes per 100,000 answers;"
          " PSS summed over its processes (/proc/PID/smaps_rollup)")
    print("command: " + shlex.join([sys.executable, *sys.argv]))


if __name__ == "__main__":
    raise SystemExit(main())
