#!/usr/bin/env python3
"""Many small zones: aliasd beside PowerDNS, BIND and Knot on the same data.

Generates N customer zones of about 12 records each (SOA, 2 NS, an apex ALIAS
to one of T shared targets t0.cdn.test ..., MX, TXT, www CNAME to the apex,
mail A, api A + AAAA, _dmarc TXT, a CNAME to an outside name). The targets
live in an upstream BIND ``named`` on loopback that aliasd (``[resolver]
upstreams``) and PowerDNS (bind backend, ``expand-alias=yes``, ``resolver=``)
both ask. BIND and Knot cannot do ALIAS: they serve the same zones with the
apex ALIAS replaced by the target's A and AAAA.

Each server runs alone (one after the other) on a loopback high port, and
gives: cold start (process start until a sample of ~200 zones and the last
zone answer their SOA, and the sample's apex A the target's address; aliasd
with an empty state directory), warm start (the same files again; aliasd
keeps its state), reload of one changed zone file among N (aliasd SIGHUP,
PowerDNS ``pdns_control bind-reload-now``, BIND ``rndc reload ZONE``, Knot
``knotc zone-reload``), VmRSS/VmHWM of the main process and PSS summed over all its processes
after the cold start, and dnsperf query rates (-c 8 -q 64: 8 client
sockets, so that answers spread over aliasd's workers) for apex A at
random zones, mail A and NXDOMAIN, each with the CPU seconds the server's
processes spent per 100,000 answers.

Then, for aliasd only: a BIND secondary of every zone (time until it serves
them all), a change of t0.cdn.test upstream, and the time until aliasd serves
the new address at every dependent apex, and until the secondary serves every
dependent zone's new serial, while a probe process asks aliasd ~200 mail A
queries/s (max latency, unanswered within 1 s).

Needs: bind9, pdns-server, pdns-backend-bind, knot, dnsperf (Debian packages).
Run with the project's venv Python:

    .venv/bin/python bench/many_zones.py [--zones 10000] [--targets 10] [--rounds 1]
        [--seconds 5] [--timeout 180] [--skip-pdns] [--skip-bind] [--skip-knot]
        [--skip-secondary] [--explicit-zones] [--keep] [--workers 1,2] [--no-compile]

aliasd's modules are compiled first (``python -m compileall``), as an
install (pip, a distro package) has them; ``--no-compile`` removes their
.pyc instead and measures a source checkout, which compiles them at every
start when PYTHONDONTWRITEBYTECODE is set.

``--workers N`` writes ``[server] workers = N`` into aliasd's configuration
(unset: the default); a list (``1,2``) measures aliasd once with each, side
by side.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import multiprocessing
import os
import random
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.exception  # noqa: E402
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

from bench.common import UpstreamNamed, bytecode, find_program, proc_mib, pss_mib, target_addresses, workers_list  # noqa: E402
from bench.compare import CLIENTS, dnsperf_cpu, wait_answering, wait_workers, warm_up  # noqa: E402
from tests.aliasd_process import AliasdProcess, free_port  # noqa: E402
from tests.secondaries import Secondary  # noqa: E402

NEW_T0 = ("203.0.113.77", "2001:db8:ffff::77")  # t0.cdn.test after the shared-target change
TRANSFERS = 32  # the BIND secondary's transfers-in and transfers-per-ns
TCP_PER_CLIENT = 100  # aliasd's tcp-max-per-client (default 20)


# -- the data -------------------------------------------------------------------------------------


def zone_name(i: int) -> str:
    return f"c{i}.example"


class ZoneSet:
    """The generated zones: with ALIAS (aliasd, PowerDNS) in ``alias_dir`` and
    flattened (BIND, Knot) in ``flat_dir``, one ``NAME.zone`` file per zone."""

    def __init__(self, directory: Path, zones: int, targets: int):
        self.count, self.targets = zones, targets
        self.names = [zone_name(i) for i in range(zones)]
        self.alias_dir, self.flat_dir = directory / "zones.d", directory / "flat.d"
        self.serials: dict[tuple[Path, int], int] = {}
        self.extra: dict[tuple[Path, int], list[str]] = {}
        for d, flat in ((self.alias_dir, False), (self.flat_dir, True)):
            d.mkdir()
            for i in range(zones):
                (d / f"{self.names[i]}.zone").write_text(self.text(i, flat))

    def target(self, i: int) -> int:
        return i % self.targets

    def text(self, i: int, flat: bool, serial: int = 1, extra: list[str] = ()) -> str:
        t = self.target(i)
        if flat:
            a, aaaa = target_addresses(t)
            apex = [f"@ A {a}", f"@ AAAA {aaaa}"]
        else:
            apex = [f"@ ALIAS t{t}.cdn.test."]
        lines = [
            f"$ORIGIN {self.names[i]}.", "$TTL 300",
            f"@ SOA ns1.dns-host.test. hostmaster.dns-host.test. {serial} 86400 600 864000 60",
            "@ NS ns1.dns-host.test.", "@ NS ns2.dns-host.test.", *apex,
            "@ MX 10 mail", '@ TXT "v=spf1 mx -all"', "www CNAME @",
            f"mail A 10.{i >> 8 & 255}.{i & 255}.25", f"api A 10.{i >> 8 & 255}.{i & 255}.80",
            f"api AAAA 2001:db8:{i:x}::80", '_dmarc TXT "v=DMARC1; p=none"',
            f"shop CNAME c{i}.shops.saas.test.", *extra,
        ]
        return "\n".join(lines) + "\n"

    def change(self, flat: bool, i: int) -> str:
        """Rewrite zone ``i`` with a higher serial and one more TXT record; the
        new record's owner name (not asked before, so no cache holds it)."""
        d = self.flat_dir if flat else self.alias_dir
        serial = self.serials[d, i] = self.serials.get((d, i), 1) + 1
        owner = f"changed{serial}"
        extra = self.extra.setdefault((d, i), [])
        extra.append(f'{owner} TXT "serial {serial}"')
        (d / f"{self.names[i]}.zone").write_text(self.text(i, flat, serial, extra))
        return f"{owner}.{self.names[i]}"

    def sample(self, size: int = 200) -> list[int]:
        """About ``size`` zones spread over the set, and the last one."""
        return sorted(set(range(0, self.count, max(1, self.count // size))) | {self.count - 1})


# -- asking many questions at once ----------------------------------------------------------------


def ask_many(port: int, questions: list[tuple[str, str]], timeout: float = 1.0, window: int = 256,
             tries: int = 1) -> list:
    """Ask all ``questions`` over UDP, ``window`` outstanding at once; the
    answers in order (None for no answer within ``timeout`` in ``tries`` tries)."""
    results = _ask_many(port, questions, timeout, window)
    for _ in range(tries - 1):
        again = [i for i, r in enumerate(results) if r is None]
        if not again:
            break
        for i, r in zip(again, _ask_many(port, [questions[i] for i in again], timeout, window)):
            results[i] = r
    return results


def _ask_many(port: int, questions: list[tuple[str, str]], timeout: float, window: int) -> list:
    results: list = [None] * len(questions)
    pending: dict[int, tuple[int, float]] = {}
    ids = itertools.cycle(range(random.randrange(65536), random.randrange(65536) + 65536))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sent = 0
        while sent < len(questions) or pending:
            while sent < len(questions) and len(pending) < window:
                qid = next(ids) & 0xFFFF
                if qid in pending:
                    continue
                name, rdtype = questions[sent]
                q = dns.message.make_query(name, rdtype)
                q.flags &= ~dns.flags.RD
                q.id = qid
                try:
                    sock.sendto(q.to_wire(), ("127.0.0.1", port))
                except BlockingIOError:
                    break
                pending[qid] = (sent, time.monotonic())
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
                if r.id in pending and r.question:
                    i, _ = pending[r.id]
                    name, rdtype = questions[i]
                    if r.question[0].name.to_text().rstrip(".").lower() == name.rstrip(".").lower():
                        results[i] = r
                        del pending[r.id]
            now = time.monotonic()
            for qid, (i, at) in list(pending.items()):
                if now - at > timeout:
                    del pending[qid]
    return results


def has_soa(serial_above: int = 0):
    def check(r) -> bool:
        return any(rr.rdtype == dns.rdatatype.SOA and rr[0].serial > serial_above for rr in r.answer)
    return check


def addresses_are(wanted: set[str], rdtype: str = "A"):
    t = dns.rdatatype.from_text(rdtype)

    def check(r) -> bool:
        return {rd.to_text() for rr in r.answer if rr.rdtype == t for rd in rr} == wanted
    return check


def has_txt(r) -> bool:
    return any(rr.rdtype == dns.rdatatype.TXT for rr in r.answer)


def wait_groups(groups: dict, since: float, timeout: float, interval: float = 0.1) -> dict:
    """Poll each group (port, [(name, type, check)]) until every check passes.

    Returns per group (first, last): seconds from ``since`` until the first
    check and until every check passed; last is None if ``timeout`` ran out.
    """
    todo = {label: list(checks) for label, (port, checks) in groups.items()}
    first: dict[str, float | None] = {label: None for label in groups}
    done: dict[str, float | None] = {label: None for label in groups}
    deadline = since + timeout
    up = {label: False for label in groups}
    while any(todo.values()) and time.monotonic() < deadline:
        for label, checks in todo.items():
            if not checks:
                continue
            port = groups[label][0]
            if not up[label]:  # until it answers at all, look often
                up[label] = ask_many(port, [checks[0][:2]], timeout=0.05)[0] is not None
                if not up[label]:
                    continue
            answers = ask_many(port, [(n, t) for n, t, _ in checks], timeout=0.5)
            now = time.monotonic()
            left = [c for c, r in zip(checks, answers) if r is None or r.rcode() != dns.rcode.NOERROR or not c[2](r)]
            if len(left) < len(checks) and first[label] is None:
                first[label] = now - since
            todo[label] = left
            if not left:
                done[label] = now - since
        if any(todo.values()):
            time.sleep(interval if all(up[label] for label in todo if todo[label]) else 0.01)
    return {label: (first[label], done[label]) for label in groups}


def load_checks(zs: ZoneSet) -> list[tuple]:
    """The cold/warm start checks: SOA of the sample and the last zone, and
    the sample's apex A answering the target's address."""
    checks = [(zs.names[i], "SOA", has_soa()) for i in zs.sample()]
    checks += [(zs.names[i], "A", addresses_are({target_addresses(zs.target(i))[0]})) for i in zs.sample()]
    return checks


# -- the probe ------------------------------------------------------------------------------------


def _probe(port: int, names: list[str], rate: float, timeout: float, stop, out) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    pending: dict[int, float] = {}
    latencies: list[float] = []
    sent = lost = 0
    next_send = time.monotonic()
    stopping_at = None
    while True:
        now = time.monotonic()
        if stopping_at is None and stop.is_set():
            stopping_at = now
        if stopping_at is not None and (not pending or now - stopping_at > timeout):
            break
        if stopping_at is None and now >= next_send:
            q = dns.message.make_query(random.choice(names), "A")
            q.flags &= ~dns.flags.RD
            q.id = sent & 0xFFFF
            sock.sendto(q.to_wire(), ("127.0.0.1", port))
            pending[q.id] = time.monotonic()
            sent += 1
            next_send += 1 / rate
        ready, _, _ = select.select([sock], [], [], max(0.0, min(next_send - time.monotonic(), 0.005)))
        while ready:
            try:
                wire = sock.recv(65535)
            except BlockingIOError:
                break
            at = time.monotonic()
            qid = int.from_bytes(wire[:2], "big")
            if qid in pending:
                latencies.append(at - pending.pop(qid))
        now = time.monotonic()
        for qid, at in list(pending.items()):
            if now - at > timeout:
                del pending[qid]
                lost += 1
    lost += len(pending)
    latencies.sort()
    out.send({
        "sent": sent, "unanswered": lost,
        "max_ms": latencies[-1] * 1000 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None,
    })


class Probe:
    """A separate process asking ``rate`` queries/s (own GIL, own timing)."""

    def __init__(self, port: int, names: list[str], rate: float = 200, timeout: float = 1.0):
        ctx = multiprocessing.get_context("fork")
        self.stop_event = ctx.Event()
        self.reader, writer = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_probe, daemon=True,
                                args=(port, names, rate, timeout, self.stop_event, writer))
        self.proc.start()

    def finish(self) -> dict:
        self.stop_event.set()
        result = self.reader.recv() if self.reader.poll(10) else {}
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
        return result


# -- the servers ----------------------------------------------------------------------------------


def kill_group(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            pass


class Server:
    """One server under test: start, stop, trigger a zone reload, its pid."""

    label = "?"
    alias = True  # serves the zones with ALIAS (else flattened)

    def __init__(self, directory: Path, zs: ZoneSet):
        self.directory, self.zs = directory, zs
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        directory.mkdir()
        self.logfile = directory / "server.log"

    def zone_file(self, name: str) -> Path:
        return (self.zs.alias_dir if self.alias else self.zs.flat_dir) / f"{name}.zone"

    def clean(self) -> None:
        """Forget state kept between runs (before a cold start)."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float) -> None:
        self.proc = subprocess.Popen(self.argv(), cwd=self.directory, stdout=self.logfile.open("a"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        kill_group(self.proc)

    def reload(self, zone: str) -> None:
        raise NotImplementedError


class Aliasd(Server):
    label = "aliasd"

    def __init__(self, directory, zs, upstream_port: int, secondary_port: int, explicit: bool,
                 workers: int | None = None):
        super().__init__(directory, zs)
        self.process: AliasdProcess | None = None
        self.workers = workers
        if workers is not None:
            self.label = f"aliasd w={workers}"
        text = (
            f'[server]\nlisten = ["127.0.0.1"]\nport = {self.port}\nstate-dir = "state"\nserial-interval = 0\n'
            + (f"workers = {workers}\n" if workers is not None else "") +
            # the secondary pulls up to 32 zones at once, and BIND closes a
            # finished transfer's connection a little later: more than the
            # default 20 TCP connections per client are open at times.
            f'tcp-max-per-client = {TCP_PER_CLIENT}\n'
            # max-refresh 2: the upstream's TTL stays 300 (as PowerDNS sees it),
            # but aliasd asks again every 2 s and notices the change quickly.
            f'[resolver]\nupstreams = ["127.0.0.1:{upstream_port}"]\nmin-refresh = 1\nmax-refresh = 2\n'
        )
        per_zone = f'allow-transfer = ["127.0.0.1"]\nnotify = ["127.0.0.1:{secondary_port}"]\n'
        if explicit:
            text += "".join(f'[zones."{n}"]\nfile = "{zs.alias_dir}/{n}.zone"\n{per_zone}' for n in zs.names)
        else:
            text += f'[zone-defaults]\n{per_zone}[zone-directory]\npath = "{zs.alias_dir}"\n'
        (directory / "aliasd.toml").write_text(text)

    def clean(self) -> None:
        shutil.rmtree(self.directory / "state", ignore_errors=True)

    def start(self, timeout: float) -> None:
        self.process = AliasdProcess(["--config", str(self.directory / "aliasd.toml")], self.directory, self.port)
        try:
            self.process.start(timeout=timeout)
        except RuntimeError as e:
            raise TimeoutError(str(e).splitlines()[0]) from None
        self.proc = self.process.proc

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def reload(self, zone: str) -> None:
        self.proc.send_signal(signal.SIGHUP)


class PowerDNS(Server):
    label = "PowerDNS"

    def __init__(self, directory, zs, upstream_port: int):
        super().__init__(directory, zs)
        d = directory
        (d / "zones.conf").write_text("".join(
            f'zone "{n}" {{ type master; file "{zs.alias_dir}/{n}.zone"; }};\n' for n in zs.names))
        (d / "pdns.conf").write_text(
            f"launch=bind\nbind-config={d}/zones.conf\nlocal-address=127.0.0.1\nlocal-port={self.port}\n"
            f"expand-alias=yes\nresolver=127.0.0.1:{upstream_port}\n"
            f"socket-dir={d}\nguardian=no\ndaemon=no\nsecurity-poll-suffix=\nloglevel=3\n"
        )

    def argv(self) -> list[str]:
        return [find_program("pdns_server"), f"--config-dir={self.directory}", "--config-name="]

    def reload(self, zone: str) -> None:
        subprocess.run([find_program("pdns_control"), f"--config-dir={self.directory}", "--config-name=",
                        f"--socket-dir={self.directory}", "bind-reload-now", zone],
                       check=True, capture_output=True, timeout=60)


class Bind(Server):
    label = "BIND"
    alias = False

    def __init__(self, directory, zs):
        super().__init__(directory, zs)
        d = directory
        self.rndc_port = free_port()
        secret = base64.b64encode(os.urandom(32)).decode()
        key = f'key "rndc-key" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'
        (d / "rndc.conf").write_text(key + 'options { default-key "rndc-key"; default-server 127.0.0.1;'
                                     f' default-port {self.rndc_port}; }};\n')
        (d / "named.conf").write_text(
            f'options {{ directory "{d}"; pid-file "{d}/named.pid"; session-keyfile "{d}/session.key";'
            f' listen-on port {self.port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};'
            f' recursion no; notify no; dnssec-validation no; allow-query {{ any; }}; }};\n'
            + key
            + f'controls {{ inet 127.0.0.1 port {self.rndc_port} allow {{ 127.0.0.1; }} keys {{ "rndc-key"; }}; }};\n'
            + "".join(f'zone "{n}" {{ type primary; file "{zs.flat_dir}/{n}.zone"; }};\n' for n in zs.names)
        )

    def argv(self) -> list[str]:
        return [find_program("named"), "-g", "-c", str(self.directory / "named.conf")]

    def reload(self, zone: str) -> None:
        subprocess.run([find_program("rndc"), "-c", str(self.directory / "rndc.conf"), "reload", zone],
                       check=True, capture_output=True, timeout=60)


class Knot(Server):
    label = "Knot"
    alias = False

    def __init__(self, directory, zs):
        super().__init__(directory, zs)
        d = directory
        (d / "knot.conf").write_text(
            f'server:\n    rundir: "{d}"\n    listen: 127.0.0.1@{self.port}\n'
            f'log:\n  - target: stderr\n    any: notice\n'
            f'database:\n    storage: "{d}/db"\n'
            f'template:\n  - id: default\n    storage: "{zs.flat_dir}"\n    file: "%s.zone"\n'
            f'    zonefile-sync: -1\n    journal-content: none\n'
            f'zone:\n' + "".join(f"  - domain: {n}\n" for n in zs.names)
        )

    def clean(self) -> None:
        shutil.rmtree(self.directory / "db", ignore_errors=True)

    def argv(self) -> list[str]:
        return [find_program("knotd"), "-c", str(self.directory / "knot.conf")]

    def reload(self, zone: str) -> None:
        subprocess.run([find_program("knotc"), "-s", str(self.directory / "knot.sock"), "zone-reload", zone],
                       check=True, capture_output=True, timeout=60)


class ManyZoneNamed(Secondary):
    """BIND named, secondary of every zone of a primary on loopback."""

    name = "secondary-named"

    def start(self, zones: list[str], primary_port: int) -> "ManyZoneNamed":
        d = self.directory
        d.mkdir(exist_ok=True)
        # serial-query-rate (default 20/s) limits how fast named answers NOTIFY
        # with its SOA query; transfers-in/-per-ns (default 10/2) how many
        # zones it pulls at once. A transfer refused (aliasd's
        # tcp-max-per-client) is tried again only after a back-off of 30 s or more.
        # (notify-rate and startup-notify-rate limit NOTIFY that named sends:
        # none here, notify no.)
        (d / "named.conf").write_text(
            f'options {{ directory "{d}"; pid-file "{d}/named.pid"; session-keyfile "{d}/session.key";'
            f' listen-on port {self.port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};'
            f' recursion no; notify no; dnssec-validation no; allow-query {{ any; }};'
            f' serial-query-rate 10000; transfers-in {TRANSFERS}; transfers-per-ns {TRANSFERS}; }};\n'
            'controls { };\n'
            + "".join(
                f'zone "{n}" {{ type secondary; primaries {{ 127.0.0.1 port {primary_port}; }};'
                f' allow-notify {{ 127.0.0.1; }}; }};\n' for n in zones)
        )
        self.proc = subprocess.Popen([find_program("named"), "-g", "-c", str(d / "named.conf")],
                                     stdout=self.logfile.open("w"), stderr=subprocess.STDOUT,
                                     cwd=d, start_new_session=True)
        self.wait_started(timeout=120)
        return self

    def stop(self) -> None:
        kill_group(self.proc)


# -- the measurements -----------------------------------------------------------------------------


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def timed_start(server: Server, timeout: float) -> float | None:
    """Start ``server``; seconds until every load check passes, or None."""
    t0 = time.monotonic()
    try:
        server.start(timeout)
    except TimeoutError as e:
        print(f"  {server.label}: {e}", flush=True)
        return None
    _, done = wait_groups({"s": (server.port, load_checks(server.zs))}, t0, timeout)["s"]
    return done


def query_files(directory: Path, zs: ZoneSet) -> dict[str, Path]:
    order = list(range(zs.count))
    random.Random(1).shuffle(order)
    mixes = {
        "apex A": [f"{zs.names[i]} A" for i in order],
        "mail A": [f"mail.{zs.names[i]} A" for i in order],
        "NXDOMAIN": [f"nx{i}.{zs.names[i]} A" for i in order],
    }
    files = {}
    for mix, lines in mixes.items():
        files[mix] = directory / f"{mix.replace(' ', '_')}.queries"
        files[mix].write_text("\n".join(lines) + "\n")
    return files


def measure(server: Server, args, qfiles: dict[str, Path], after=None) -> dict:
    """Cold and warm starts, reload, memory and query rates of one server;
    ``after(server, figures)`` runs while it still serves."""
    zs, label = server.zs, server.label
    fig: dict = {"cold": [], "warm": [], "reload": [], **{m: [] for m in qfiles}}
    print(f"{label}: port {server.port}", flush=True)
    try:
        for r in range(args.rounds):
            server.clean()
            seconds = timed_start(server, args.timeout)
            fig["cold"].append(seconds)
            print(f"  cold start: {fmt_s(seconds)}", flush=True)
            if seconds is None:
                fig["failed"] = "cold start timed out"
                return fig
            if r == 0:
                if isinstance(server, Aliasd):
                    wait_workers(server.pid, server.workers)
                fig["rss"], fig["hwm"] = proc_mib(server.pid), proc_mib(server.pid, "VmHWM")
                fig["pss"] = pss_mib(server.pid)
            server.stop()
            seconds = timed_start(server, args.timeout)
            fig["warm"].append(seconds)
            print(f"  warm start: {fmt_s(seconds)}", flush=True)
            if seconds is None:
                fig["failed"] = "warm start timed out"
                return fig
            if r < args.rounds - 1:
                server.stop()
        for r in range(args.rounds):
            i = zs.count // 2 + r
            owner = zs.change(not server.alias, i)
            t0 = time.monotonic()
            try:
                server.reload(zs.names[i])
            except subprocess.SubprocessError as e:
                print(f"  reload command failed: {e}", flush=True)
                fig["reload"].append(None)
                continue
            _, seconds = wait_groups({"s": (server.port, [(owner, "TXT", has_txt)])}, t0, args.timeout, 0.02)["s"]
            fig["reload"].append(seconds)
            print(f"  reload of {zs.names[i]}: {fmt_s(seconds)}", flush=True)
        for mix, qfile in qfiles.items():
            warm_up(server.port, qfile)
            for _ in range(args.rounds):
                rate, cpu = dnsperf_cpu(server.pid, server.port, qfile, args.seconds)
                fig[mix].append(rate)
                fig.setdefault(f"{mix} cpu", []).append(cpu)
            print(f"  {mix}: {median(fig[mix]):.0f} q/s, {median(fig[mix + ' cpu']):.3f} CPU s per 100k", flush=True)
        if after is not None:
            after(server, fig)
    finally:
        server.stop()
    return fig


def shared_target_change(server: Aliasd, secondary_dir: Path, secondary_port: int,
                         upstream: UpstreamNamed, args, fig: dict) -> None:
    zs = server.zs
    print("aliasd: BIND secondary of every zone, then a change of t0.cdn.test", flush=True)
    answers = ask_many(server.port, [(n, "SOA") for n in zs.names], tries=5)
    serials = {}
    for n, r in zip(zs.names, answers):
        if r is None or not r.answer:
            fig["secondary"] = f"aliasd does not answer the SOA of {n}"
            return
        serials[n] = r.answer[0][0].serial
    secondary = ManyZoneNamed(secondary_dir, secondary_port)
    probe = None
    try:
        t0 = time.monotonic()
        secondary.start(zs.names, server.port)
        checks = [(n, "SOA", has_soa(serials[n] - 1)) for n in zs.names]
        _, fig["secondary_load"] = wait_groups({"s": (secondary_port, checks)}, t0, args.timeout, 0.5)["s"]
        print(f"  secondary serves all {zs.count} zones: {fmt_s(fig['secondary_load'])}", flush=True)
        if fig["secondary_load"] is None:
            return
        dependent = [i for i in range(zs.count) if zs.target(i) == 0]
        fig["dependent"] = len(dependent)
        probe = Probe(server.port, [f"mail.{n}" for n in zs.names], rate=200)
        time.sleep(1)
        t0 = time.monotonic()
        upstream.change(0, *NEW_T0)
        result = wait_groups({
            "aliasd": (server.port, [(zs.names[i], "A", addresses_are({NEW_T0[0]})) for i in dependent]),
            "secondary": (secondary_port, [(zs.names[i], "SOA", has_soa(serials[zs.names[i]])) for i in dependent]),
        }, t0, args.timeout, 0.05)
        time.sleep(1)
        fig["probe"] = probe.finish()
        fig["change"] = result
        (first_a, all_a), (first_s, all_s) = result["aliasd"], result["secondary"]
        print(f"  aliasd: first new apex {fmt_s(first_a)}, all {len(dependent)} {fmt_s(all_a)};"
              f" secondary: first {fmt_s(first_s)}, all {fmt_s(all_s)}", flush=True)
        print(f"  probe: {probe_text(fig['probe'])}", flush=True)
    finally:
        if probe is not None and "probe" not in fig:
            probe.finish()
        secondary.stop()
        if "change" in fig or "probe" in fig:  # the other servers start from the original data
            upstream.change(0, *target_addresses(0))


# -- output ---------------------------------------------------------------------------------------


def fmt_s(seconds: float | None) -> str:
    return "timed out" if seconds is None else f"{seconds:.2f} s"


def probe_text(p: dict | None) -> str:
    if not p:
        return "no result"
    def ms(v):
        return "-" if v is None else f"{v:.1f} ms"
    return (f"{p['sent']} sent, max latency {ms(p['max_ms'])}, p99 {ms(p['p99_ms'])},"
            f" unanswered within 1 s: {p['unanswered']}")


def cell(values, kind: str) -> str:
    if values is None:
        return "-"
    if isinstance(values, list):
        if not values:
            return "-"
        if any(v is None for v in values):
            return "timed out"
        value = median(values)
    else:
        value = values
    if kind == "s":
        return f"{value:.2f}"
    if kind == "cpu":
        return f"{value:.3f}"
    return f"{value:.0f}"


def print_table(results: dict, args, zs_count: int) -> None:
    labels = list(results)
    rows = [
        ("cold start s", "cold", "s"), ("warm start s", "warm", "s"), ("reload 1 zone s", "reload", "s"),
        ("VmRSS MiB (main)", "rss", "n"), ("VmHWM MiB (main)", "hwm", "n"), ("PSS MiB (all)", "pss", "n"),
        ("apex A q/s", "apex A", "n"), ("mail A q/s", "mail A", "n"), ("NXDOMAIN q/s", "NXDOMAIN", "n"),
        ("apex A CPU/100k", "apex A cpu", "cpu"), ("mail A CPU/100k", "mail A cpu", "cpu"),
        ("NXDOMAIN CPU/100k", "NXDOMAIN cpu", "cpu"),
    ]
    ours = [label for label in labels if label.startswith("aliasd")] if "PowerDNS" in results else []
    print()
    print(f"{zs_count} zones, {args.targets} shared ALIAS targets; median of {args.rounds} round(s); "
          f"dnsperf -c {CLIENTS} -q 64 for {args.seconds} s")
    print(f"{'':<19}" + "".join(f"{label:>13}" for label in labels)
          + "".join(f"{label.replace('aliasd', 'ratio'):>13}" for label in ours))
    for title, key, kind in rows:
        line = f"{title:<19}" + "".join(f"{cell(results[label].get(key), kind):>13}" for label in labels)
        for label in ours:
            a, p = results[label].get(key), results["PowerDNS"].get(key)
            a = median(a) if isinstance(a, list) else a
            p = median(p) if isinstance(p, list) else p
            line += f"{a / p:>13.2f}" if a and p and not (
                isinstance(results[label].get(key), list) and None in results[label][key]) else f"{'-':>13}"
        print(line)
    for label in labels:
        if "failed" in results[label]:
            print(f"{label}: {results[label]['failed']}")
    if any(label.startswith("aliasd") for label in labels):
        form = "explicit [zones.NAME] tables" if args.explicit_zones else "[zone-defaults] + [zone-directory]"
        print(f"aliasd: {form}; [resolver] min-refresh 1, max-refresh 2; serial-interval 0;"
              f" state directory empty at the cold start, kept at the warm start;"
              f" {'no .pyc of its modules' if args.no_compile else 'its modules compiled (.pyc) as installed'}.")
    if "BIND" in results or "Knot" in results:
        print("BIND and Knot cannot do ALIAS: they serve the apex ALIAS replaced by the target's A and AAAA.")
    for label in (label for label in labels if label.startswith("aliasd")):
        secondary_table(label, results[label], zs_count)
    print("CPU/100k: CPU seconds (utime + stime of the server and all its processes) per 100,000 answers;"
          " PSS summed over the server's processes (/proc/PID/smaps_rollup).")
    print()
    print("command: " + shlex.join([sys.executable, *sys.argv]))


def secondary_table(label: str, a: dict, zs_count: int) -> None:
    if "secondary_load" in a or "change" in a or "secondary" in a:
        print()
        print(f"{label} with a BIND secondary of every zone (serial-query-rate 10000, transfers-in/-per-ns {TRANSFERS};"
              f" aliasd tcp-max-per-client {TCP_PER_CLIENT}):")
        if "secondary" in a:
            print(f"  {a['secondary']}")
        if "secondary_load" in a:
            print(f"  secondary start until it serves all {zs_count} zones: {fmt_s(a['secondary_load'])}")
        if "change" in a:
            (first_a, all_a), (first_s, all_s) = a["change"]["aliasd"], a["change"]["secondary"]
            n = a["dependent"]
            print(f"  t0.cdn.test changed upstream (aliasd asks again every 2 s, max-refresh = 2),"
                  f" {n} dependent zones:")
            print(f"    aliasd serves the new apex A: first zone {fmt_s(first_a)}, all {n} {fmt_s(all_a)}")
            print(f"    secondary serves the new serial: first zone {fmt_s(first_s)}, all {n} {fmt_s(all_s)}")
            print(f"    probe (~200 mail A q/s to aliasd meanwhile): {probe_text(a.get('probe'))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", type=int, default=10000)
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=5, help="dnsperf run per query mix")
    parser.add_argument("--timeout", type=float, default=180, help="give up on one wait after this long")
    parser.add_argument("--skip-pdns", action="store_true")
    parser.add_argument("--skip-bind", action="store_true")
    parser.add_argument("--skip-knot", action="store_true")
    parser.add_argument("--skip-secondary", action="store_true")
    parser.add_argument("--explicit-zones", action="store_true",
                        help='list every zone as [zones."NAME"] instead of [zone-defaults] + [zone-directory]')
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-compile", action="store_true",
                        help="measure aliasd without .pyc of its modules (a source checkout); "
                             "default: compiled first, as an install is")
    parser.add_argument("--workers", default=None,
                        help="aliasd's [server] workers, or a list (1,2) to measure aliasd with each; "
                             "unset: the configuration's default")
    args = parser.parse_args()
    needed = ["named", "dnsperf"] + ([] if args.skip_pdns else ["pdns_server", "pdns_control"])
    needed += [] if args.skip_bind and args.skip_secondary else ["rndc"]
    needed += [] if args.skip_knot else ["knotd", "knotc"]
    for program in needed:
        if find_program(program) is None:
            sys.exit(f"{program} is not installed")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    started = time.monotonic()
    print(bytecode(not args.no_compile), flush=True)
    d = Path(tempfile.mkdtemp(prefix="aliasd-many-zones-"))
    upstream = None
    results: dict[str, dict] = {}
    try:
        upstream = UpstreamNamed(d / "upstream", free_port(), args.targets)
        wait_answering(upstream.port, "t0.cdn.test", timeout=60)
        zs = ZoneSet(d, args.zones, args.targets)
        qfiles = query_files(d, zs)
        print(f"{args.zones} zones generated in {d} ({time.monotonic() - started:.1f} s)", flush=True)
        secondary_port = free_port()
        after = None
        if not args.skip_secondary:
            def after(server, fig):
                shared_target_change(server, d / f"secondary-{server.port}", secondary_port, upstream, args, fig)
        for workers in workers_list(args.workers):
            aliasd = Aliasd(d / f"aliasd-w{workers}", zs, upstream.port, secondary_port, args.explicit_zones,
                            workers)
            results[aliasd.label] = measure(aliasd, args, qfiles, after)
        if not args.skip_pdns:
            results["PowerDNS"] = measure(PowerDNS(d / "pdns", zs, upstream.port), args, qfiles)
        if not args.skip_bind:
            results["BIND"] = measure(Bind(d / "bind", zs), args, qfiles)
        if not args.skip_knot:
            results["Knot"] = measure(Knot(d / "knot", zs), args, qfiles)
        print_table(results, args, args.zones)
        print(f"total: {time.monotonic() - started:.0f} s")
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
