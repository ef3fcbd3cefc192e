#!/usr/bin/env python3
"""DNSSEC: aliasd's signed answers against PowerDNS's, signing time, re-signing after a shared-target change.

Three parts, in one run (an upstream BIND ``named`` on loopback serves the
ALIAS targets t0.cdn.test ..., as in bench/compare.py and bench/many_zones.py):

1. Queries per second with the DO bit (dnsperf ``-D``, -c 8 -q 64) for plain
   A, A at ALIAS owners and NXDOMAIN, aliasd against PowerDNS on the same
   signed zone (bench/compare.py's zone: N A + M ALIAS over T targets), over
   ``--names`` distinct names per mix spread over the zone (0: all, as
   compare.py does), each asked ``--warm-up-passes`` times first (three, as
   compare.py does: aliasd's workers each keep their own answers, and after
   one pass each had about half of them, so the timed runs measured the
   first answers the rest cost; the first pass is reported too).
   PowerDNS: bind backend with its DNSSEC database (``pdnsutil
   create-bind-db``, ``bind-dnssec-db=``, ``secure-zone``, ``set-nsec3 '1 0 0
   -'`` for NSEC3 with no salt and 0 iterations, ``rectify-zone``),
   ``expand-alias=yes`` and ``resolver=``. Before the runs a sample of each
   query kind is asked of both with DO and every answer checked: RRSIGs
   present and valid (dnspython against the zone's DNSKEY), the NXDOMAIN
   proofs signed. PowerDNS does not sign ALIAS answers when it signs live
   (its documentation: "DNSSEC 'washing' of ALIAS records is supported on
   AXFR (not on live-signing)"), so the same PowerDNS also serves the zone
   with every ALIAS replaced by its target's address (``flat.test``, signed
   the same way) and the ALIAS A row gives both: the fair comparison is with
   the flattened zone.
2. The time aliasd takes to sign that zone at start: process start until the
   SOA is answered with an RRSIG, until a sample of ALIAS owners answers its
   target's address signed (waited for ``--alias-wait`` seconds), and the
   first AXFR after that (its size and time); with a fresh state directory
   (keys made), with only the keys kept, and (``--warm``) with the whole state
   kept (the zone snapshot); the last one serves part 1. The reactor's longest stall
   (``aliasd_reactor_lag_seconds_max`` from the statistics endpoint) and the
   stalls over 100 ms the log reports. Optionally ``dnssec-verify`` of that
   AXFR. PowerDNS's start (it signs on the fly) for reference.
3. Many small signed zones (bench/many_zones.py's zones, every apex ALIAS to
   the one target t0.cdn.test, ``[zone-defaults] dnssec = true``): start with
   a fresh state directory (a KSK and a ZSK made per zone), with the keys
   kept, and (``--warm``) with the whole state kept; then t0.cdn.test changes its address upstream and every
   zone is asked with DO until its apex A is the new address with a valid
   RRSIG (checked against the zone's DNSKEY); a probe process asks ~200 mail
   A q/s meanwhile; then a few zones are transferred and checked with
   ``dnssec-verify``. aliasd asks the upstream again every 2 s
   (``max-refresh = 2``), so the first zone's time includes up to 2 s of
   noticing the change; "spread" is the time from the first zone to the last.

Needs: pdns-server, pdns-backend-bind (with sqlite3 for the DNSSEC db), bind9
(named, dnssec-verify), dnsperf, dig. Run with the project's venv Python:

    .venv/bin/python bench/dnssec_perf.py [--records 100000] [--aliases 10000]
        [--targets 1000] [--zones 1000] [--seconds 5] [--rounds 2]
        [--denial nsec3|nsec] [--skip-queries] [--skip-start] [--skip-zones] [--warm]
        [--no-verify] [--timeout 300] [--alias-wait 60] [--names 20000] [--keep]
        [--workers N] [--warm-up-passes 3]

``--workers N`` writes ``[server] workers = N`` into aliasd's configurations
(unset: the default); run it once with 1 and once with N to compare.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import random
import re
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.dnssec  # noqa: E402
import dns.exception  # noqa: E402
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdataclass  # noqa: E402
import dns.rdatatype  # noqa: E402

from bench.common import (  # noqa: E402
    UpstreamNamed,
    cpu_seconds,
    find_program,
    proc_mib,
    target_addresses,
    zone_text,
)
from bench.compare import CLIENTS, WARM_UP_PASSES, wait_answering  # noqa: E402
from bench.many_zones import NEW_T0, Probe, ZoneSet, fmt_s, probe_text  # noqa: E402
from tests.aliasd_process import AliasdProcess, free_port  # noqa: E402

T = dns.rdatatype
ALGORITHM = "ECDSAP256SHA256"
PDNS_ALGORITHM = "ecdsa256"
SAMPLE = 50  # answers checked per query kind and server


# -- asking with DO -------------------------------------------------------------------------------


def query_do(port: int, name: str, rdtype: str, timeout: float = 2.0, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, want_dnssec=True, payload=4096)
    q.flags &= ~dns.flags.RD
    return (dns.query.tcp if tcp else dns.query.udp)(q, "127.0.0.1", port=port, timeout=timeout)


def ask_many_do(port: int, questions: list[tuple[str, str]], timeout: float = 1.0, window: int = 128,
                tries: int = 2) -> list:
    """Ask every question over UDP with DO, ``window`` outstanding at once;
    the answers in order (None: no answer, or truncated, within ``tries``)."""
    results: list = [None] * len(questions)
    for _ in range(tries):
        todo = [i for i, r in enumerate(results) if r is None]
        if not todo:
            break
        pending: dict[int, tuple[int, float]] = {}
        ids = itertools.cycle(range(random.randrange(65536), random.randrange(65536) + 65536))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sent = 0
            while sent < len(todo) or pending:
                while sent < len(todo) and len(pending) < window:
                    qid = next(ids) & 0xFFFF
                    if qid in pending:
                        continue
                    name, rdtype = questions[todo[sent]]
                    q = dns.message.make_query(name, rdtype, want_dnssec=True, payload=4096)
                    q.flags &= ~dns.flags.RD
                    q.id = qid
                    try:
                        sock.sendto(q.to_wire(), ("127.0.0.1", port))
                    except BlockingIOError:
                        break
                    pending[qid] = (todo[sent], time.monotonic())
                    sent += 1
                ready, _, _ = select.select([sock], [], [], 0.02)
                while ready:
                    try:
                        wire = sock.recv(65535)
                    except (BlockingIOError, ConnectionRefusedError):
                        break
                    try:
                        r = dns.message.from_wire(wire)
                    except dns.exception.DNSException:
                        continue
                    if r.id in pending and r.question and not r.flags & dns.flags.TC:
                        i, _ = pending[r.id]
                        if r.question[0].name == dns.name.from_text(questions[i][0]):
                            results[i] = r
                            del pending[r.id]
                now = time.monotonic()
                for qid, (i, at) in list(pending.items()):
                    if now - at > timeout:
                        del pending[qid]
    return results


# -- checking signed answers ----------------------------------------------------------------------


def dnskeys_of(port: int, zone: str) -> dict:
    """{origin: DNSKEY RRset} of a zone as served (for dns.dnssec.validate)."""
    r = query_do(port, zone, "DNSKEY", tcp=True, timeout=10)
    origin = dns.name.from_text(zone)
    return {origin: r.find_rrset(r.answer, origin, dns.rdataclass.IN, T.DNSKEY)}


def _signed(section: list, rrset, keys: dict) -> str | None:
    """None if ``rrset`` has a valid RRSIG in ``section``, else what is wrong."""
    sigs = [s for s in section if s.rdtype == T.RRSIG and s.covers == rrset.rdtype and s.name == rrset.name]
    if not sigs:
        return f"no RRSIG for {rrset.name} {T.to_text(rrset.rdtype)}"
    try:
        dns.dnssec.validate(rrset, sigs[0], keys)
    except dns.dnssec.ValidationFailure as e:
        return f"RRSIG for {rrset.name} {T.to_text(rrset.rdtype)} does not validate: {e}"
    return None


def check_answer(r, kind: str, keys: dict, want: set[str] | None = None) -> str | None:
    """None if ``r`` is a correct, signed answer of ``kind`` ("A" or
    "NXDOMAIN"), else a short description of the problem."""
    if r is None:
        return "no answer"
    if not r.ednsflags & dns.flags.DO:
        return "DO bit not echoed"
    if kind == "NXDOMAIN":
        if r.rcode() != dns.rcode.NXDOMAIN:
            return f"rcode {dns.rcode.to_text(r.rcode())}"
        types = {s.rdtype for s in r.authority if s.rdtype != T.RRSIG}
        if T.SOA not in types or not types & {T.NSEC, T.NSEC3}:
            return f"authority has {sorted(T.to_text(t) for t in types)}"
        for rrset in r.authority:
            if rrset.rdtype != T.RRSIG:
                problem = _signed(r.authority, rrset, keys)
                if problem:
                    return problem
        return None
    if r.rcode() != dns.rcode.NOERROR:
        return f"rcode {dns.rcode.to_text(r.rcode())}"
    a = [s for s in r.answer if s.rdtype == T.A]
    if not a:
        return "no A in the answer"
    if want is not None and {rd.address for rd in a[0]} != want:
        return f"A is {sorted(rd.address for rd in a[0])}, not {sorted(want)}"
    return _signed(r.answer, a[0], keys)


def check_sample(port: int, zone: str, questions: list[tuple]) -> tuple[int, collections.Counter, int]:
    """Ask (name, qtype, kind, wanted addresses or None) with DO; how many
    answers are correct and correctly signed, and the problems of the others, counted."""
    keys = dnskeys_of(port, zone)
    answers = ask_many_do(port, [(q[0], q[1]) for q in questions], tries=3)
    problems = collections.Counter()
    good = 0
    for (name, _, kind, want), r in zip(questions, answers):
        problem = check_answer(r, kind, keys, want)
        if problem is None:
            good += 1
        else:
            problems[re.sub(r"\S+\.test\.", "NAME", problem)] += 1
    return good, problems, len(questions)


# -- tools ----------------------------------------------------------------------------------------


def dnsperf_do(port: int, qfile: Path, seconds: int, pid: int) -> tuple[float, float]:
    """(queries per second, CPU seconds per 100k answers of the server's
    processes: aliasd's workers included, as bench/compare.py counts)."""
    before = cpu_seconds(pid)
    out = subprocess.run(
        ["dnsperf", "-D", "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile), "-l", str(seconds),
         "-c", str(CLIENTS), "-q", "64"],
        capture_output=True, text=True, check=True,
    ).stdout
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    if lost and int(lost.group(1)):
        print(f"    ({lost.group(1)} queries lost on port {port})", flush=True)
    cpu = cpu_seconds(pid) - before
    completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
    return float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1)), cpu * 100_000 / max(completed, 1)


def warm_up_do(port: int, qfile: Path, passes: int = 1) -> tuple[float, int]:
    """``passes`` over the query file: the first one's q/s and queries lost
    (answers not yet cached), then the rest (every worker's answers kept)."""
    results = []
    for n in range(passes):
        out = subprocess.run(
            ["dnsperf", "-D", "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile), "-n", "1", "-c", str(CLIENTS),
             "-q", "64"],
            capture_output=True, text=True, check=True,
        ).stdout
        lost = re.search(r"Queries lost:\s+(\d+)", out)
        results.append((float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1)),
                        int(lost.group(1)) if lost else 0))
    return results[0]


def axfr(port: int, zone: str, path: Path, timeout: int = 300) -> tuple[float, collections.Counter]:
    """AXFR ``zone`` into ``path`` (master-file text, one SOA); seconds and
    the records counted by type."""
    t0 = time.monotonic()
    with path.open("w") as out:
        subprocess.run(["dig", "@127.0.0.1", "-p", str(port), zone, "AXFR", "+onesoa", "+noall", "+answer",
                        "+tries=1", f"+time={timeout}"], stdout=out, check=True, timeout=timeout + 30)
    elapsed = time.monotonic() - t0
    counts = collections.Counter()
    with path.open() as f:
        for line in f:
            parts = line.split(None, 4)
            if len(parts) >= 4 and not line.startswith(";"):
                counts[parts[3]] += 1
    return elapsed, counts


def dnssec_verify(zone: str, path: Path) -> tuple[bool, float, str]:
    t0 = time.monotonic()
    done = subprocess.run([find_program("dnssec-verify"), "-o", zone, str(path)],
                          capture_output=True, text=True, timeout=900)
    output = "\n".join(" ".join(line.split()) for line in (done.stdout + done.stderr).strip().splitlines())
    return done.returncode == 0, time.monotonic() - t0, output


def scrape(port: int) -> dict[str, float]:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values


def log_stalls(text: str) -> list[float]:
    """The stalls aliasd logged (aliasd.base.lag: "reactor held up for 0.123s")."""
    return [float(x) for x in re.findall(r"reactor held up for ([\d.]+)s", text)]


def log_problems(text: str) -> list[str]:
    lines = [line for line in text.splitlines()
             if re.search(r"Traceback|Unhandled|\berror\b|\bfailed\b|\[-\] .*Error", line, re.I)]
    return lines[:10]


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def wait_until(predicate, timeout: float, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


# -- aliasd ---------------------------------------------------------------------------------------


class Aliasd:
    """twistd aliasd in ``directory`` with ``config`` (the [statistics] listener added)."""

    def __init__(self, directory: Path, config: str, workers: int | None = None):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port, self.stats_port = free_port(), free_port()
        (directory / "aliasd.toml").write_text(
            f'[server]\nlisten = ["127.0.0.1"]\nport = {self.port}\nstate-dir = "state"\nserial-interval = 0\n'
            + (f"workers = {workers}\n" if workers is not None else "") +
            f'[statistics]\nlisten = "127.0.0.1:{self.stats_port}"\n' + config
        )
        self.process: AliasdProcess | None = None
        self.log_offset = 0

    @property
    def state(self) -> Path:
        return self.directory / "state"

    def clean(self, keep_keys: bool) -> None:
        """Empty the state directory (keeping ``keys/`` if asked)."""
        if not self.state.exists():
            return
        for child in self.state.iterdir():
            if keep_keys and child.name == "keys":
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()

    def start(self, timeout: float) -> float:
        """Start; returns time.monotonic() at the process start."""
        log = self.directory / "aliasd.log"
        self.log_offset = log.stat().st_size if log.exists() else 0
        self.process = AliasdProcess(["--config", str(self.directory / "aliasd.toml")], self.directory, self.port)
        started = time.monotonic()
        self.process.start(timeout=timeout)
        return started

    def log(self) -> str:
        """The log of the current run."""
        log = self.directory / "aliasd.log"
        if not log.exists():
            return ""
        with log.open() as f:
            f.seek(self.log_offset)
            return f.read()

    @property
    def pid(self) -> int:
        return self.process.proc.pid

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


# -- part 2: signing the big zone at start --------------------------------------------------------


def big_zone_start(server: Aliasd, kind: str, args, alias_sample: list[tuple[str, str]], alias_wait: float) -> dict:
    """Start aliasd on the big signed zone after cleaning its state as ``kind``
    says; the start-up figures."""
    if kind == "fresh":
        server.clean(keep_keys=False)
    elif kind == "keys kept":
        server.clean(keep_keys=True)
    fig: dict = {"kind": kind}
    started = server.start(args.timeout)
    fig["process"] = time.monotonic() - started
    keys: dict = {}
    first_any = first_signed = None
    deadline = started + args.timeout
    while time.monotonic() < deadline and first_signed is None:
        try:
            r = query_do(server.port, "bench.test", "SOA", timeout=0.5)
        except (dns.exception.Timeout, OSError):
            continue
        now = time.monotonic() - started
        if r.rcode() == dns.rcode.NOERROR and r.answer:
            first_any = first_any if first_any is not None else now
            if any(s.rdtype == T.RRSIG for s in r.answer):
                first_signed = now
                break
        time.sleep(0.02)
    fig["soa"], fig["soa_signed"] = first_any, first_signed
    if first_signed is None:
        fig["failed"] = "no signed SOA"
        return fig
    keys = dnskeys_of(server.port, "bench.test")

    last: list = [None]

    def aliases_signed():
        answers = ask_many_do(server.port, [(n, "A") for n, _ in alias_sample], timeout=0.5)
        problems = [check_answer(r, "A", keys, {want}) for r, (_, want) in zip(answers, alias_sample)]
        last[0] = collections.Counter(re.sub(r"\S+\.test\.", "NAME", p) for p in problems if p)
        return not last[0]
    fig["aliases_signed"] = (time.monotonic() - started) if wait_until(aliases_signed, alias_wait, 0.25) else None
    fig["alias_problems"] = last[0]
    m = scrape(server.stats_port)
    fig["lag_served"] = m.get("aliasd_reactor_lag_seconds_max")
    fig["rss"] = proc_mib(server.pid)
    seconds, counts = axfr(server.port, "bench.test", server.directory / f"axfr-{kind.replace(' ', '-')}.txt")
    fig["axfr"], fig["axfr_done"], fig["axfr_counts"] = seconds, time.monotonic() - started, counts
    m = scrape(server.stats_port)
    fig["lag"] = m.get("aliasd_reactor_lag_seconds_max")
    fig["gc"] = m.get("aliasd_gc_pause_seconds_max")
    fig["stalls"] = m.get("aliasd_reactor_stalls")
    fig["hwm"] = proc_mib(server.pid, "VmHWM")
    text = server.log()
    fig["logged_stalls"] = log_stalls(text)
    fig["problems"] = log_problems(text)
    fig["keys_made"] = len(re.findall(r"generated (?:KSK|ZSK) ", text))
    fig["versions"] = re.findall(r"zone bench\.test\. (serial \d+ \(.+?\)), \d+ records", text)
    served = re.search(r"zones loaded and served in ([\d.]+) s", text)
    fig["served_log"] = float(served.group(1)) if served else None
    print(f"  aliasd {kind}: signed SOA {fmt_s(first_signed)} (first SOA {fmt_s(first_any)}),"
          f" sampled ALIAS signed {fmt_s(fig['aliases_signed'])}, first AXFR {seconds:.2f} s"
          f" ({sum(counts.values())} records, {counts['RRSIG']} RRSIG, {counts['NSEC3'] or counts['NSEC']}"
          f" {'NSEC3' if counts['NSEC3'] else 'NSEC'}), done {fig['axfr_done']:.2f} s after start;"
          f" longest stall {ms(fig['lag'])} ({ms(fig['lag_served'])} until served),"
          f" {len(fig['logged_stalls'])} logged stalls >= 100 ms", flush=True)
    return fig


# -- PowerDNS -------------------------------------------------------------------------------------


class PowerDNS:
    """pdns_server, bind backend with its DNSSEC database, live-signing ``zones``."""

    def __init__(self, directory: Path, zones: dict[str, Path], upstream_port: int, denial: str):
        self.directory, self.zones, self.denial = directory, zones, denial
        directory.mkdir(parents=True)
        self.port = free_port()
        d = directory
        (d / "zones.conf").write_text("".join(f'zone "{z}" {{ type master; file "{f}"; }};\n'
                                              for z, f in zones.items()))
        (d / "pdns.conf").write_text(
            f"launch=bind\nbind-config={d}/zones.conf\nbind-dnssec-db={d}/bind-dnssec.db\n"
            f"local-address=127.0.0.1\nlocal-port={self.port}\n"
            f"expand-alias=yes\nresolver=127.0.0.1:{upstream_port}\noutgoing-axfr-expand-alias=yes\n"
            f"disable-axfr=no\nallow-axfr-ips=127.0.0.0/8\n"
            f"default-ksk-algorithm={PDNS_ALGORITHM}\n"
            f"socket-dir={d}\nguardian=no\ndaemon=no\nsecurity-poll-suffix=\nloglevel=3\n"
        )
        self.proc: subprocess.Popen | None = None

    def util(self, *argv: str) -> str:
        done = subprocess.run([find_program("pdnsutil"), f"--config-dir={self.directory}", *argv],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"pdnsutil {' '.join(argv)}: exit {done.returncode}\n{done.stdout}{done.stderr}")
        return done.stdout

    def secure(self) -> float:
        """Create the DNSSEC database and sign every zone; seconds taken."""
        t0 = time.monotonic()
        self.util("create-bind-db", str(self.directory / "bind-dnssec.db"))
        for zone in self.zones:
            self.util("secure-zone", zone)
            if self.denial == "nsec3":
                self.util("set-nsec3", zone, "1 0 0 -")
            self.util("rectify-zone", zone)
        return time.monotonic() - t0

    def start(self) -> float:
        started = time.monotonic()
        self.proc = subprocess.Popen([find_program("pdns_server"), f"--config-dir={self.directory}"],
                                     stdout=(self.directory / "pdns.log").open("w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def spread(count: int, limit: int) -> list[int]:
    """Up to ``limit`` numbers spread evenly over range(count) (all if limit is 0)."""
    if not limit or limit >= count:
        return list(range(count))
    return [i * count // limit for i in range(limit)]


def flat_zone_text(origin: str, records: int, aliases: int, targets: int) -> str:
    """``zone_text`` with every ALIAS replaced by its target's A and AAAA."""
    lines = zone_text(origin, records, 0, targets).splitlines()
    for i in range(aliases):
        a, aaaa = target_addresses(i % targets)
        lines += [f"a{i} A {a}", f"a{i} AAAA {aaaa}"]
    return "\n".join(lines) + "\n"


def wait_signed_soa(port: int, zone: str, started: float, timeout: float) -> float | None:
    def signed():
        try:
            r = query_do(port, zone, "SOA", timeout=0.5)
        except (dns.exception.Timeout, OSError):
            return False
        return any(s.rdtype == T.RRSIG for s in r.answer)
    return (time.monotonic() - started) if wait_until(signed, timeout) else None


# -- part 1 and 2 ---------------------------------------------------------------------------------


def big_zone(d: Path, upstream: UpstreamNamed, args, out: dict) -> None:
    print(f"zone bench.test: {args.records} A + {args.aliases} ALIAS over {args.targets} targets,"
          f" signed ({ALGORITHM}, {args.denial})", flush=True)
    (d / "bench.zone").write_text(zone_text("bench.test", args.records, args.aliases, args.targets))
    step = max(1, args.aliases // 200)
    alias_sample = [(f"a{i}.bench.test", target_addresses(i % args.targets)[0]) for i in range(0, args.aliases, step)]
    alias_sample.append((f"a{args.aliases - 1}.bench.test", target_addresses((args.aliases - 1) % args.targets)[0]))
    server = Aliasd(d / "aliasd", (
        f'[resolver]\nupstreams = ["127.0.0.1:{upstream.port}"]\nmin-refresh = 300\n'
        f'[dnssec]\nalgorithm = "{ALGORITHM}"\ndenial = "{args.denial}"\n'
        f'[zones."bench.test"]\nfile = "{d / "bench.zone"}"\nallow-transfer = ["127.0.0.1"]\ndnssec = true\n'
    ), args.workers)
    pdns = None
    try:
        # Part 2: aliasd signing the zone at start (fresh, keys kept, warm if asked); the last one stays up.
        starts = []
        kinds = ["fresh"] if args.skip_start else ["fresh", "keys kept"] + (["warm"] if args.warm else [])
        alias_wait = args.alias_wait
        for n, kind in enumerate(kinds):
            fig = big_zone_start(server, kind, args, alias_sample, alias_wait)
            starts.append(fig)
            if fig.get("aliases_signed") is None and "failed" not in fig:
                print(f"  !! aliasd {kind}: the sampled ALIAS owners do not answer their target's address signed"
                      f" within {alias_wait:.0f} s of the signed SOA: {dict(fig['alias_problems'] or {})}", flush=True)
                alias_wait = min(alias_wait, 10)  # no use waiting as long again
            if "failed" in fig:
                out["big_failed"] = f"aliasd {kind}: {fig['failed']}\n{server.log()[-3000:]}"
                return
            if n == 0 and not args.no_verify:
                ok, seconds, output = dnssec_verify("bench.test", server.directory / "axfr-fresh.txt")
                out["verify"] = (ok, seconds, output.splitlines()[-3:] if ok else output.splitlines()[-15:])
                print(f"  dnssec-verify of aliasd's AXFR: {'ok' if ok else 'FAILED'} ({seconds:.1f} s)", flush=True)
            if n < len(kinds) - 1:
                # the snapshot is written once the server runs: let it finish before stopping
                wait_until(lambda: (server.state / "zones.snapshot").exists(), 120, 0.2)
                time.sleep(1)
                server.stop()
        out["starts"] = starts
        if args.skip_queries:
            return

        # PowerDNS on the same zone, and on the zone with the ALIAS flattened.
        (d / "flat.zone").write_text(flat_zone_text("flat.test", args.records, args.aliases, args.targets))
        pdns = PowerDNS(d / "pdns", {"bench.test": d / "bench.zone", "flat.test": d / "flat.zone"},
                        upstream.port, args.denial)
        out["pdns_secure"] = pdns.secure()
        started = pdns.start()
        out["pdns_start"] = wait_signed_soa(pdns.port, "bench.test", started, args.timeout)
        wait_signed_soa(pdns.port, "flat.test", started, args.timeout)
        wait_answering(pdns.port, "a1.bench.test", timeout=60)
        out["pdns_rss"] = proc_mib(pdns.proc.pid)
        print(f"  PowerDNS: pdnsutil create-bind-db/secure-zone/set-nsec3/rectify-zone {out['pdns_secure']:.1f} s,"
              f" start until a signed SOA {fmt_s(out['pdns_start'])}", flush=True)

        # Are the answers signed?
        rng = random.Random(7)
        samples = {
            "plain A": [(f"h{i}.bench.test", "A", "A", {f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"})
                        for i in rng.sample(range(args.records), min(SAMPLE, args.records))],
            "ALIAS A": [(f"a{i}.bench.test", "A", "A", {target_addresses(i % args.targets)[0]})
                        for i in rng.sample(range(args.aliases), min(SAMPLE, args.aliases))],
            "NXDOMAIN": [(f"missing{i}.bench.test", "A", "NXDOMAIN", None) for i in rng.sample(range(args.records), min(SAMPLE, args.records))],
        }
        checks = {}
        for mix, questions in samples.items():
            checks[mix, "aliasd"] = check_sample(server.port, "bench.test", questions)
            checks[mix, "pdns"] = check_sample(pdns.port, "bench.test", questions)
        flat_questions = [(n.replace("bench.test", "flat.test"), *rest) for n, *rest in samples["ALIAS A"]]
        checks["ALIAS A", "pdns flat"] = check_sample(pdns.port, "flat.test", flat_questions)
        out["checks"] = checks
        for (mix, who), (good, problems, total) in checks.items():
            print(f"  signed answers, {mix}, {who}: {good}/{total}"
                  + (f"  problems: {dict(problems)}" if problems else ""), flush=True)

        # Part 1: dnsperf -D.
        hosts = spread(args.records, args.names)
        aliases = spread(args.aliases, args.names)
        mixes = {
            "plain A": [(server.port, pdns.port, [f"h{i}.bench.test A" for i in hosts])],
            "ALIAS A": [(server.port, pdns.port, [f"a{i}.bench.test A" for i in aliases]),
                        (None, pdns.port, [f"a{i}.flat.test A" for i in aliases])],
            "NXDOMAIN": [(server.port, pdns.port, [f"missing{i}.bench.test A" for i in hosts])],
        }
        out["names"] = {"plain A": len(hosts), "ALIAS A": len(aliases), "NXDOMAIN": len(hosts)}
        rates: dict = collections.defaultdict(list)
        cpu: dict = collections.defaultdict(list)  # CPU s per 100k answers, as ``rates``
        mix_stalls: dict = {}
        first_pass: dict = {}
        for mix, runs in mixes.items():
            mark = len(server.log())
            files = []
            for n, (a_port, p_port, lines) in enumerate(runs):
                qfile = d / f"{mix.replace(' ', '_')}{n}.q"
                qfile.write_text("\n".join(lines) + "\n")
                label = "pdns" if n == 0 else "pdns flat"
                files.append((a_port, p_port, qfile, label))
                for port, who in ((a_port, "aliasd"), (p_port, label)):
                    if port is not None:
                        first_pass[mix, who] = warm_up_do(port, qfile, args.warm_up_passes)
            warm_stalls = log_stalls(server.log()[mark:])
            mark = len(server.log())
            for _ in range(args.rounds):  # alternate, so drift hits all alike
                for a_port, p_port, qfile, label in files:
                    for port, who, pid in ((p_port, label, pdns.proc.pid), (a_port, "aliasd", server.pid)):
                        if port is not None:
                            rate, seconds = dnsperf_do(port, qfile, args.seconds, pid)
                            rates[mix, who].append(rate)
                            cpu[mix, who].append(seconds)
            mix_stalls[mix] = (warm_stalls, log_stalls(server.log()[mark:]))
            print(f"  {mix} with DO: " + ", ".join(f"{who} {statistics.median(v):.0f} q/s"
                                                   for (m, who), v in rates.items() if m == mix)
                  + f"; aliasd stalls >= 100 ms logged: {len(mix_stalls[mix][0])} in the warm-up,"
                  f" {len(mix_stalls[mix][1])} in the runs", flush=True)
        out["rates"] = dict(rates)
        out["cpu"] = dict(cpu)
        out["mix_stalls"] = mix_stalls
        out["first_pass"] = first_pass
        out["aliasd_rss_after"] = proc_mib(server.pid)
        out["aliasd_hwm_after"] = proc_mib(server.pid, "VmHWM")
        out["pdns_rss_after"] = proc_mib(pdns.proc.pid)
        m = scrape(server.stats_port)
        out["query_lag"] = m.get("aliasd_reactor_lag_seconds_max")
        text = server.log()
        out["query_problems"] = log_problems(text)
    finally:
        server.stop()
        if pdns is not None:
            pdns.stop()


# -- part 3: many zones ---------------------------------------------------------------------------


def many_zones(d: Path, upstream: UpstreamNamed, args, out: dict) -> None:
    (d / "many").mkdir()
    zs = ZoneSet(d / "many", args.zones, 1)  # every apex ALIAS to t0.cdn.test
    print(f"{args.zones} zones, apex ALIAS to t0.cdn.test, [zone-defaults] dnssec = true", flush=True)
    server = Aliasd(d / "many-aliasd", (
        f'[resolver]\nupstreams = ["127.0.0.1:{upstream.port}"]\nmin-refresh = 1\nmax-refresh = 2\n'
        f'[dnssec]\nalgorithm = "{ALGORITHM}"\ndenial = "{args.denial}"\n'
        f'[zone-defaults]\nallow-transfer = ["127.0.0.1"]\ndnssec = true\n'
        f'[zone-directory]\npath = "{zs.alias_dir}"\n'
    ), args.workers)
    old_a = target_addresses(0)[0]
    changed = False
    probe = None
    try:
        keys: dict = {}
        kinds = ["fresh", "keys kept"] + (["warm"] if args.warm else [])
        for n, kind in enumerate(kinds):
            if kind == "fresh":
                server.clean(keep_keys=False)
            elif kind == "keys kept":
                server.clean(keep_keys=True)
            keys_before = len(list((server.state / "keys").glob("*.private"))) if (server.state / "keys").exists() else 0
            started = server.start(args.timeout)
            process = time.monotonic() - started
            first = last = None
            todo = list(zs.names)
            while todo and time.monotonic() - started < args.timeout:
                answers = ask_many_do(server.port, [(z, "SOA") for z in todo], timeout=0.5, tries=1)
                now = time.monotonic() - started
                left = [z for z, r in zip(todo, answers)
                        if r is None or r.rcode() != dns.rcode.NOERROR or not any(s.rdtype == T.RRSIG for s in r.answer)]
                if len(left) < len(todo) and first is None:
                    first = now
                todo = left
                if not todo:
                    last = now
                else:
                    time.sleep(0.05)
            # every zone's apex A signed, with the target's address (checked against its keys)
            apex_ok = None
            if last is not None:
                if not keys:
                    answers = ask_many_do(server.port, [(z, "DNSKEY") for z in zs.names], tries=3)
                    for z, r in zip(zs.names, answers):
                        origin = dns.name.from_text(z)
                        try:
                            keys[z] = {origin: r.find_rrset(r.answer, origin, dns.rdataclass.IN, T.DNSKEY)}
                        except (AttributeError, KeyError):  # no answer over UDP: ask over TCP
                            keys[z] = dnskeys_of(server.port, z)

                def apex_signed():
                    answers = ask_many_do(server.port, [(z, "A") for z in zs.names], timeout=0.5)
                    return all(check_answer(r, "A", keys[z], {old_a}) is None for z, r in zip(zs.names, answers))
                apex_ok = (time.monotonic() - started) if wait_until(apex_signed, args.timeout, 0.1) else None
            m = scrape(server.stats_port)
            text = server.log()
            fig = {
                "process": process, "first": first, "last": last, "apex": apex_ok,
                "lag": m.get("aliasd_reactor_lag_seconds_max"), "stalls": m.get("aliasd_reactor_stalls"),
                "logged_stalls": log_stalls(text), "problems": log_problems(text),
                "keys_made": len(list((server.state / "keys").glob("*.private"))) - keys_before,
                "rss": proc_mib(server.pid), "hwm": proc_mib(server.pid, "VmHWM"),
                "key_files": len(list((server.state / "keys").glob("*.private"))) if (server.state / "keys").exists() else 0,
            }
            out.setdefault("many_starts", {})[kind] = fig
            print(f"  aliasd {kind} start: answering {process:.2f} s, first zone signed {fmt_s(first)},"
                  f" all {args.zones} signed {fmt_s(last)}, all apex A signed {fmt_s(apex_ok)};"
                  f" longest stall {ms(fig['lag'])}, {len(fig['logged_stalls'])} logged stalls,"
                  f" {fig['keys_made']} keys generated", flush=True)
            if last is None:
                out["many_failed"] = f"{kind} start: not every zone signed within {args.timeout} s\n{text[-3000:]}"
                return
            if n < len(kinds) - 1:
                wait_until(lambda: (server.state / "zones.snapshot").exists(), 120, 0.2)
                time.sleep(1)
                server.stop()

        # The shared target moves.
        before = scrape(server.stats_port)
        offset = len(server.log())
        probe = Probe(server.port, [f"mail.{n}" for n in zs.names], rate=200)
        time.sleep(1)
        t0 = time.monotonic()
        upstream.change(0, *NEW_T0)
        changed = True
        first = last = None
        todo = list(zs.names)
        problems: collections.Counter = collections.Counter()
        while todo and time.monotonic() - t0 < args.timeout:
            answers = ask_many_do(server.port, [(z, "A") for z in todo], timeout=0.5, tries=1)
            now = time.monotonic() - t0
            left, problems = [], collections.Counter()
            for z, r in zip(todo, answers):
                problem = check_answer(r, "A", keys[z], {NEW_T0[0]})
                if problem is not None:
                    left.append(z)
                    if r is not None and {rd.address for s in r.answer if s.rdtype == T.A for rd in s} == {NEW_T0[0]}:
                        problems[re.sub(r"\S+\.example\.", "ZONE", problem)] += 1  # new address, bad signature
            if len(left) < len(todo) and first is None:
                first = now
            todo = left
            if not todo:
                last = now
            else:
                time.sleep(0.1)
        time.sleep(0.5)
        probe_result = probe.finish()
        probe = None
        after = scrape(server.stats_port)
        text = server.log()[offset:]
        serials = ask_many_do(server.port, [(z, "SOA") for z in zs.names[:5]])
        out["change"] = {
            "first": first, "last": last, "left": len(todo), "new_address_unsigned": dict(problems),
            "probe": probe_result, "stalls": (after.get("aliasd_reactor_stalls", 0) - before.get("aliasd_reactor_stalls", 0)),
            "logged_stalls": log_stalls(text), "problems": log_problems(text),
            "serials": [r.answer[0][0].serial if r is not None and r.answer else None for r in serials],
        }
        print(f"  t0.cdn.test changed: first zone serves the new A signed {fmt_s(first)},"
              f" all {args.zones} {fmt_s(last)}; probe: {probe_text(probe_result)};"
              f" {len(out['change']['logged_stalls'])} stalls logged meanwhile", flush=True)
        # A few zones transferred and verified.
        verified = []
        if not args.no_verify:
            for z in (zs.names[0], zs.names[len(zs.names) // 2], zs.names[-1]):
                path = server.directory / f"axfr-{z}.txt"
                axfr(server.port, z, path, timeout=30)
                ok, seconds, output = dnssec_verify(z, path)
                has_new = NEW_T0[0] in path.read_text()
                verified.append((z, ok and has_new, output.splitlines()[-2:] if ok else output.splitlines()[-10:]))
            out["change"]["verified"] = verified
            print("  dnssec-verify after the change: " + ", ".join(f"{z} {'ok' if ok else 'FAILED'}"
                                                                    for z, ok, _ in verified), flush=True)
    finally:
        if probe is not None:
            probe.finish()
        server.stop()
        if changed:
            upstream.change(0, *target_addresses(0))


# -- output ---------------------------------------------------------------------------------------


def print_report(out: dict, args, total: float) -> None:
    print()
    print("=" * 100)
    if "starts" in out:
        print(f"aliasd signing bench.test ({args.records} A + {args.aliases} ALIAS over {args.targets} targets,"
              f" {ALGORITHM}, {args.denial}) at start; seconds from process start:")
        print(f"{'':<12}{'load+sign':>10}{'answering':>10}{'SOA+RRSIG':>10}{'ALIAS sig':>10}{'1st AXFR':>10}"
              f"{'AXFR done':>10}{'max stall':>10}{'logged':>8}{'RSS MiB':>9}{'HWM MiB':>9}")
        for f in out["starts"]:
            print(f"{f['kind']:<12}{(f['served_log'] or float('nan')):>10.2f}{f['process']:>10.2f}{f['soa_signed']:>10.2f}"
                  f"{(f['aliases_signed'] or float('nan')):>10.2f}{f['axfr']:>10.2f}{f['axfr_done']:>10.2f}"
                  f"{ms(f['lag']):>10}{len(f['logged_stalls']):>8}{f['rss']:>9.0f}{f['hwm']:>9.0f}")
        f = out["starts"][0]
        c = f["axfr_counts"]
        print(f"  AXFR: {sum(c.values())} records: " + ", ".join(f"{k} {v}" for k, v in c.most_common()))
        print("  load+sign: aliasd's own log line \"zones loaded and served in\" (from the zone files read);"
              " answering: the process answers at all (keys made or loaded before that);"
              " SOA+RRSIG: bench.test's SOA answered with its RRSIG (aliasd serves a zone only once signed);"
              " ALIAS sig: ~200 ALIAS owners answer their target's address with a valid RRSIG;"
              " max stall: aliasd_reactor_lag_seconds_max after the AXFR; logged: stalls >= 100 ms in the log")
        for f in out["starts"]:
            if f["logged_stalls"]:
                print(f"  {f['kind']}: logged stalls (s): {', '.join(f'{s:.2f}' for s in sorted(f['logged_stalls'], reverse=True)[:8])}"
                      f"{' ...' if len(f['logged_stalls']) > 8 else ''}; longest GC pause {ms(f['gc'])}")
            if f.get("aliases_signed") is None and f.get("alias_problems"):
                print(f"  {f['kind']}: ALIAS owners not answered signed with their address: {dict(f['alias_problems'])}")
            if f["soa"] is not None and f["soa"] < f["soa_signed"]:
                print(f"  {f['kind']}: the SOA was answered without RRSIG first, at {f['soa']:.2f} s")
            if f["problems"]:
                print(f"  {f['kind']}: log lines: " + " | ".join(f["problems"][:5]))
            print(f"  {f['kind']}: versions logged: {'; '.join(f['versions'])}; keys generated: {f['keys_made']}")
        if "verify" in out:
            ok, seconds, lines = out["verify"]
            print(f"  dnssec-verify of the fresh start's AXFR: {'ok' if ok else 'FAILED'} ({seconds:.1f} s): "
                  + " / ".join(lines))
        if "pdns_start" in out:
            print(f"  PowerDNS (signs on the fly): pdnsutil secure-zone etc. {out['pdns_secure']:.1f} s for both zones,"
                  f" start until a signed SOA {fmt_s(out['pdns_start'])}")
    if "big_failed" in out:
        print(out["big_failed"])
    if "rates" in out:
        rates = out["rates"]
        print()
        n = out["names"]
        print(f"queries with DO (dnsperf -D -c {CLIENTS} -q 64, aliasd workers = {args.workers or 'default'},"
              f" {args.seconds} s x {args.rounds} rounds, alternating;"
              f" medians), bench.test signed ({args.denial}); distinct names asked: plain A {n['plain A']},"
              f" ALIAS A {n['ALIAS A']}, NXDOMAIN {n['NXDOMAIN']}, each asked {args.warm_up_passes} times before the runs:")
        print(f"{'':<12}{'aliasd':>10}{'PowerDNS':>10}{'ratio':>8}{'target':>8}   signed answers in the sample"
              " (aliasd, PowerDNS)")
        targets = {"plain A": 0.7, "ALIAS A": 1.0, "NXDOMAIN": 0.7}
        for mix in ("plain A", "ALIAS A", "NXDOMAIN"):
            a, p = statistics.median(rates[mix, "aliasd"]), statistics.median(rates[mix, "pdns"])
            ga, _, asked = out["checks"][mix, "aliasd"]
            gp, _, _ = out["checks"][mix, "pdns"]
            note = "" if gp else "  <- PowerDNS answers unsigned: not comparable"
            note += "" if ga else "  <- aliasd's answers are wrong or unsigned (see below)"
            print(f"{mix:<12}{a:>10.0f}{p:>10.0f}{a / p:>8.2f}{'>= ' + str(targets[mix]):>8}   {ga}/{asked}, {gp}/{asked}{note}")
            if mix == "ALIAS A" and (mix, "pdns flat") in rates:
                pf = statistics.median(rates[mix, "pdns flat"])
                gf, _, _ = out["checks"][mix, "pdns flat"]
                met = "met" if a / pf >= targets[mix] else "NOT met"
                print(f"{'  vs flat':<12}{a:>10.0f}{pf:>10.0f}{a / pf:>8.2f}{'>= 1.0':>8}   {ga}/{asked}, {gf}/{asked}"
                      f"  <- PowerDNS on flat.test (ALIAS replaced by A/AAAA, signed): {met}")
        for mix in ("plain A", "ALIAS A", "NXDOMAIN"):
            print(f"  {mix} rounds: aliasd {[round(x) for x in rates[mix, 'aliasd']]},"
                  f" PowerDNS {[round(x) for x in rates[mix, 'pdns']]}"
                  + (f", PowerDNS flat {[round(x) for x in rates[mix, 'pdns flat']]}" if (mix, "pdns flat") in rates else ""))
        cpu = out["cpu"]
        print("  CPU s per 100k answers (all the server's processes; medians): " + "; ".join(
            f"{mix} " + ", ".join(f"{who} {statistics.median(cpu[mix, who]):.2f}"
                                  for who in ("aliasd", "pdns", "pdns flat") if (mix, who) in cpu)
            for mix in ("plain A", "ALIAS A", "NXDOMAIN")))
        for (mix, who), (good, problems, _) in out["checks"].items():
            if problems:
                print(f"  {mix}, {who}: {dict(problems)}")
        print("  first pass over the names (nothing cached yet), q/s (queries lost): " + "; ".join(
            f"{mix} " + ", ".join(f"{who} {qps:.0f} ({lost})" for (m, who), (qps, lost) in out["first_pass"].items() if m == mix)
            for mix in ("plain A", "ALIAS A", "NXDOMAIN")))
        for mix, (warm, runs) in out["mix_stalls"].items():
            if warm or runs:
                print(f"  {mix}: aliasd reactor stalls >= 100 ms (log): warm-up {len(warm)}"
                      f" (longest {max(warm, default=0):.2f} s), runs {len(runs)} (longest {max(runs, default=0):.2f} s)")
        print(f"  memory: aliasd {out['aliasd_rss_after']:.0f} MiB (peak {out['aliasd_hwm_after']:.0f}),"
              f" PowerDNS {out['pdns_rss_after']:.0f} MiB (both zones);"
              f" aliasd's longest reactor stall since start {ms(out['query_lag'])}")
        if out.get("query_problems"):
            print("  aliasd log lines: " + " | ".join(out["query_problems"][:5]))
    if "many_starts" in out:
        print()
        print(f"{args.zones} signed zones (apex ALIAS to one shared target, {ALGORITHM}, {args.denial}); seconds from"
              " process start:")
        print(f"{'':<12}{'answering':>10}{'1st zone':>10}{'all SOA':>10}{'all apex':>10}{'max stall':>10}"
              f"{'logged':>8}{'key files':>10}{'RSS MiB':>9}")
        for kind, f in out["many_starts"].items():
            print(f"{kind:<12}{f['process']:>10.2f}{(f['first'] or float('nan')):>10.2f}"
                  f"{(f['last'] or float('nan')):>10.2f}{(f['apex'] or float('nan')):>10.2f}{ms(f['lag']):>10}"
                  f"{len(f['logged_stalls']):>8}{f['keys_made']:>10}{f['rss']:>9.0f}")
        fresh, kept = out["many_starts"].get("fresh"), out["many_starts"].get("keys kept")
        if fresh and kept and fresh["last"] and kept["last"]:
            per = (fresh["last"] - kept["last"]) / args.zones * 1000
            print(f"  fresh minus keys kept (all SOA signed): {per:+.1f} ms per zone;"
                  f" {fresh['key_files']} private key files after the fresh start")
        print("  answering: the process answers at all; 1st zone / all SOA: a zone's SOA answered with its RRSIG;"
              " all apex: every apex A = the target's address with a valid RRSIG; key files: *.private made by this start")
        for kind, f in out["many_starts"].items():
            if f["logged_stalls"]:
                print(f"  {kind}: logged stalls (s): "
                      + ", ".join(f"{s:.2f}" for s in sorted(f["logged_stalls"], reverse=True)[:8]))
            if f["problems"]:
                print(f"  {kind}: log lines: " + " | ".join(f["problems"][:5]))
    if "many_failed" in out:
        print(out["many_failed"])
    if "change" in out:
        c = out["change"]
        print(f"  t0.cdn.test changed upstream (aliasd asks again every <= 2 s): every zone's apex A = the new address"
              f" with a valid RRSIG: first zone {fmt_s(c['first'])}, all {args.zones} {fmt_s(c['last'])}"
              + (f" (spread {c['last'] - c['first']:.2f} s)" if c["first"] is not None and c["last"] is not None else "")
              + (f"; {c['left']} zones never did" if c["left"] else ""))
        print(f"  probe (~200 mail A q/s meanwhile): {probe_text(c['probe'])}; reactor stalls >= 100 ms:"
              f" {c['stalls']:.0f}" + (f" (logged, s: {', '.join(f'{s:.2f}' for s in sorted(c['logged_stalls'], reverse=True)[:8])})"
                                        if c["logged_stalls"] else ""))
        if c["new_address_unsigned"]:
            print(f"  new address seen with a signature problem (last poll): {c['new_address_unsigned']}")
        if c.get("verified"):
            print("  dnssec-verify of AXFRs after the change: "
                  + "; ".join(f"{z}: {'ok' if ok else 'FAILED'} ({' / '.join(lines)})" for z, ok, lines in c["verified"]))
        if c["problems"]:
            print("  log lines: " + " | ".join(c["problems"][:5]))
    print()
    print(f"total: {total:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in out.get("part_seconds", {}).items()) + ")")
    print("command: " + shlex.join([sys.executable, *sys.argv]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100000)
    parser.add_argument("--aliases", type=int, default=10000)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--zones", type=int, default=1000, help="signed small zones for the shared-target change")
    parser.add_argument("--seconds", type=int, default=5, help="dnsperf run per query mix and server")
    parser.add_argument("--names", type=int, default=20000,
                        help="distinct names per query mix, spread over the zone (0: every name, as compare.py);"
                             " each is answered once before the timed runs, and aliasd's first answers are slow")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warm-up-passes", type=int, default=WARM_UP_PASSES,
                        help="passes over each query file before the timed runs, the first one reported"
                             " (1: as before session 30, when aliasd's workers answered part of the names"
                             " for the first time in the timed runs)")
    parser.add_argument("--denial", choices=("nsec3", "nsec"), default="nsec3")
    parser.add_argument("--timeout", type=float, default=300, help="give up on one wait after this long")
    parser.add_argument("--alias-wait", type=float, default=60,
                        help="seconds after the big zone's signed SOA to wait for its ALIAS answers")
    parser.add_argument("--warm", action="store_true", help="also start aliasd with the whole state kept (both zone sets)")
    parser.add_argument("--skip-queries", action="store_true", help="no PowerDNS, no dnsperf")
    parser.add_argument("--skip-start", action="store_true", help="only the fresh start of the big zone")
    parser.add_argument("--skip-zones", action="store_true", help="no many-zones part")
    parser.add_argument("--no-verify", action="store_true", help="no dnssec-verify runs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--workers", type=int, default=None,
                        help="aliasd's [server] workers (unset: the configuration's default)")
    args = parser.parse_args()
    needed = ["named", "dig"] + ([] if args.no_verify else ["dnssec-verify"])
    needed += [] if args.skip_queries else ["pdns_server", "pdnsutil", "dnsperf"]
    for program in needed:
        if find_program(program) is None:
            sys.exit(f"{program} is not installed")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    started = time.monotonic()
    d = Path(tempfile.mkdtemp(prefix="aliasd-dnssec-perf-"))
    upstream = None
    out: dict = {}
    try:
        upstream = UpstreamNamed(d / "upstream", free_port(), max(args.targets, 1))
        wait_answering(upstream.port, "t0.cdn.test", timeout=60)
        big_zone(d, upstream, args, out)
        out["part_seconds"] = {"big zone": time.monotonic() - started}
        if not args.skip_zones:
            t0 = time.monotonic()
            many_zones(d, upstream, args, out)
            out["part_seconds"]["many zones"] = time.monotonic() - t0
        print_report(out, args, time.monotonic() - started)
    finally:
        if upstream is not None:
            upstream.stop()
        if args.keep:
            print(f"kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
