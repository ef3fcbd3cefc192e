#!/usr/bin/env python3
"""RFC 2136 dynamic UPDATE throughput: aliasd against BIND ``named``, side by side.

Both servers serve the same small zone ``example.test`` on loopback high
ports and accept TSIG-signed (hmac-sha256, key ``ops``) UPDATEs for it:
aliasd with ``[zones."example.test"] update = [ { key = "ops" } ]``, BIND with
``update-policy { grant ops zonesub ANY; };``. C client processes (default 8;
processes, not threads, so the clients' TSIG signing and message parsing do
not queue on one GIL) each keep one TCP connection (``--transport udp``: one
socket; ``--reconnect``: a new TCP connection per update, as
certbot-dns-rfc2136 does) and send their share of N UPDATEs (default 4000)
one at a time, as an ACME client would: add
``_acme-challenge.cC-I-rR.example.test TXT "<run>-cC-I-rR"``, then delete
exactly that record; every ``--keep-every``-th record is added and never
deleted. Each UPDATE is one message with one change; its answer must match
the request, carry a valid TSIG and have rcode NOERROR, or the run fails
loudly (the first failure per client is printed, exit status 1).

Afterwards every name the run touched is queried: each kept record must be
there with its exact token, each deleted name must be NXDOMAIN, and the SOA
serial must have moved during each round. Then (unless ``--no-crash-check``) each server is
killed with SIGKILL, started again on the same files, and the same check is
repeated: an answered UPDATE must survive a crash of the process. A server
that says NOERROR without doing the work fails these checks.

Durability, both on:

* aliasd: an accepted UPDATE's changed owners and its serial go into the
  state store (LMDB, ``state/aliasd.lmdb``) in one write transaction, whose
  commit flushes the data pages and then the meta page to disk, before the
  new version is served and the UPDATE answered (with workers, also only
  once every worker serves it). This is a group commit: UPDATEs that arrive
  while a commit is under way share the next one; the table says how many
  UPDATEs one commit carried. The zone file is written back every
  ``dynamic-file-sync`` (60) seconds, in a thread.
* BIND 9.18: ``ns/update.c`` writes each UPDATE's difference with
  ``dns_journal_write_transaction`` before it commits the new version and
  answers, and ``dns_journal_commit`` (``lib/dns/journal.c``) calls
  ``journal_fsync`` (fflush + fsync) twice per transaction: once after the
  transaction's data, once after the journal header and index (strace, 400
  UPDATEs: 800 fsync calls). There is no option to turn that off. The zone
  file itself is dumped later (``DNS_DUMP_DELAY``, 15 minutes after a
  change, or ``rndc sync``). BIND applies the UPDATEs of one zone one after
  another, one journal transaction each.

So neither answers before the change is on disk. The files live under ``--dir`` (default: the system temporary
directory); the script prints that file system's type, and warns on tmpfs,
where fsync costs nothing.

Prints, per server and round: updates, seconds (first update sent to last
answer, over all clients), updates/s, p50/p99 latency of one UPDATE (send to
verified answer, client signing included), the SOA serial's change, the
server's CPU time (all threads, aliasd's worker processes included) in
seconds and in milliseconds per UPDATE, the part of it spent by the
server's first thread (aliasd's reactor) and by its main process (the
reactor and the commit thread), the clients' CPU time (all together) over
the run, and the result of the checks (which cover every round); for
aliasd, how many UPDATEs one commit carried (the state store's write
transactions during the round, counted by LMDB) and, with workers, how long a change took
to be served by every worker (``aliasd_worker_sync_seconds``). Then the
aliasd/BIND ratios. ``--workers 1,2`` runs one aliasd for each count, the
rounds alternating between them (and BIND).

Needs: bind9 (``named``). Only 127.0.0.1 is used.

    .venv/bin/python bench/update_perf.py [--updates 4000] [--clients 8]
        [--transport tcp|udp] [--reconnect] [--rounds 1] [--keep-every 10] [--records 0]
        [--servers aliasd,bind] [--workers 1,2] [--no-crash-check] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.exception  # noqa: E402
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.opcode  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.tsig  # noqa: E402
import dns.update  # noqa: E402
import lmdb  # noqa: E402

from bench.common import cpu_seconds, find_program, wait_workers, workers_list  # noqa: E402
from tests.aliasd_process import AliasdProcess, free_port  # noqa: E402

ZONE = "example.test"
KEY_NAME = "ops"
HOST = "127.0.0.1"
TTL = 60


# ---------------------------------------------------------------- workload


def shares(updates: int, clients: int) -> list[int]:
    """How many UPDATEs each client sends (they add up to ``updates``)."""
    return [updates // clients + (1 if c < updates % clients else 0) for c in range(clients)]


def client_ops(client: int, count: int, round_no: int, run_id: str, keep_every: int) -> list[tuple[str, str, str]]:
    """Client ``client``'s UPDATEs in order: (op, owner name, token).

    Add record I, then delete it, except every ``keep_every``-th record (and a
    last add the share ends on), which stays.
    """
    ops: list[tuple[str, str, str]] = []
    i = 0
    while len(ops) < count:
        name = f"_acme-challenge.c{client}-{i}-r{round_no}.{ZONE}."
        token = f"{run_id}-c{client}-{i}-r{round_no}"
        ops.append(("add", name, token))
        if len(ops) < count and i % keep_every != keep_every - 1:
            ops.append(("delete", name, token))
        i += 1
    return ops


def expected_state(ops_by_client: list[list[tuple[str, str, str]]]) -> tuple[dict[str, str], set[str]]:
    """(kept name -> token, deleted names) once all ``ops`` are applied."""
    kept: dict[str, str] = {}
    deleted: set[str] = set()
    for ops in ops_by_client:
        for op, name, token in ops:
            if op == "add":
                kept[name] = token
                deleted.discard(name)
            else:
                kept.pop(name, None)
                deleted.add(name)
    return kept, deleted


def make_update(op: str, name: str, token: str, key: dns.tsig.Key) -> dns.update.UpdateMessage:
    m = dns.update.UpdateMessage(ZONE, keyring=key, keyname=key.name, keyalgorithm=key.algorithm)
    if op == "add":
        m.add(name, TTL, "TXT", f'"{token}"')
    else:  # delete exactly this record (class NONE), not the whole RRset
        m.delete(name, "TXT", f'"{token}"')
    return m


# ---------------------------------------------------------------- clients


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    return data


class Connection:
    """One client's transport: a kept TCP connection, a new TCP connection per
    exchange (``reconnect``), or a connected UDP socket (retried on timeout)."""

    def __init__(self, port: int, transport: str, reconnect: bool, timeout: float):
        self.port, self.transport, self.reconnect, self.timeout = port, transport, reconnect, timeout
        self.sock: socket.socket | None = None
        self.reconnects = 0  # kept TCP connections the server closed (reopened once per exchange)
        self.retries = 0  # UDP retransmissions after a timeout
        if not reconnect:
            self._open()

    def _open(self) -> None:
        self.close()
        if self.transport == "tcp":
            self.sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect((HOST, self.port))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, wire: bytes, msg_id: int) -> bytes:
        if self.transport == "udp":
            for attempt in range(3):
                self.sock.send(wire)
                deadline = time.monotonic() + self.timeout
                try:
                    while True:
                        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
                        answer = self.sock.recv(65535)
                        if len(answer) >= 2 and struct.unpack("!H", answer[:2])[0] == msg_id:
                            return answer
                except socket.timeout:
                    self.retries += 1
            raise dns.exception.Timeout(f"no answer over UDP after 3 tries of {self.timeout}s")
        if self.reconnect:
            self._open()
            try:
                return self._tcp_exchange(wire)
            finally:
                self.close()
        try:
            return self._tcp_exchange(wire)
        except (ConnectionError, BrokenPipeError):
            # The server closed the kept connection: say so, and try once more
            # on a new one (adding or deleting one record twice is harmless).
            self.reconnects += 1
            self._open()
            return self._tcp_exchange(wire)

    def _tcp_exchange(self, wire: bytes) -> bytes:
        self.sock.sendall(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", _recv_exact(self.sock, 2))
        return _recv_exact(self.sock, length)


def check_answer(m: dns.update.UpdateMessage, wire: bytes, key: dns.tsig.Key) -> str | None:
    """None if ``wire`` is a correctly signed NOERROR answer to ``m``, else why not."""
    header_rcode = dns.rcode.to_text(wire[3] & 0x0F) if len(wire) >= 4 else "?"
    try:
        r = dns.message.from_wire(wire, keyring=key, request_mac=m.mac)
    except Exception as e:  # noqa: BLE001 - every way the answer can be wrong is reported
        return f"answer rejected ({type(e).__name__}: {e}); header rcode {header_rcode}"
    if not m.is_response(r):
        return f"answer does not match the request (id {r.id} vs {m.id}, opcode {dns.opcode.to_text(r.opcode())})"
    if not r.had_tsig:
        return f"answer is not signed; rcode {dns.rcode.to_text(r.rcode())}"
    if r.question and (r.question[0].name != m.question[0].name or r.question[0].rdtype != dns.rdatatype.SOA):
        return f"answer's zone section is {r.question[0]}"
    if r.rcode() != dns.rcode.NOERROR:
        return f"rcode {dns.rcode.to_text(r.rcode())}"
    return None


def client_main(client: int, port: int, secret: str, ops, transport: str, reconnect: bool, timeout: float,
                barrier, results) -> None:
    """One client process: connect, wait for the others, send ``ops`` one at a
    time, put {client, start, end, latencies, error, reconnects, retries}."""
    key = dns.tsig.Key(KEY_NAME, secret, dns.tsig.HMAC_SHA256)
    out = {"client": client, "latencies": [], "error": None, "start": None, "end": None,
           "reconnects": 0, "retries": 0, "cpu": 0.0}
    conn = None
    try:
        conn = Connection(port, transport, reconnect, timeout)
    except OSError as e:
        out["error"] = f"client {client}: cannot connect: {e}"
    try:
        barrier.wait(60)
    except Exception as e:  # noqa: BLE001
        out["error"] = out["error"] or f"client {client}: start barrier: {e!r}"
    if out["error"] is None:
        latencies = out["latencies"]
        out["start"] = time.monotonic()
        cpu0 = time.process_time()
        for n, (op, name, token) in enumerate(ops):
            t0 = time.perf_counter()
            m = make_update(op, name, token, key)
            wire = m.to_wire()
            try:
                answer = conn.exchange(wire, m.id)
            except (OSError, dns.exception.DNSException) as e:
                out["error"] = f"client {client}, update {n} ({op} {name}): {type(e).__name__}: {e}"
                break
            problem = check_answer(m, answer, key)
            if problem:
                out["error"] = f"client {client}, update {n} ({op} {name} TXT \"{token}\"): {problem}"
                break
            latencies.append(time.perf_counter() - t0)
        out["end"] = time.monotonic()
        out["cpu"] = time.process_time() - cpu0
        out["reconnects"], out["retries"] = conn.reconnects, conn.retries
    if conn is not None:
        conn.close()
    results.put(out)


# ---------------------------------------------------------------- servers


def zone_text(records: int) -> str:
    """The zone both servers start from: SOA, NS, two A, and ``records``
    more A records (to see whether an UPDATE's cost grows with the zone)."""
    lines = [
        f"$ORIGIN {ZONE}.", "$TTL 300",
        "@ SOA ns1 hostmaster 1 3600 600 86400 60",
        "@ NS ns1",
        "ns1 A 192.0.2.53",
        "www A 192.0.2.80",
    ]
    lines += [f"h{i} A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(records)]
    return "\n".join(lines) + "\n"


def query(port: int, name: str, rdtype: str, timeout: float = 2.0) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    q.flags &= ~dns.flags.RD
    for attempt in range(3):
        try:
            r = dns.query.udp(q, HOST, port=port, timeout=timeout)
            if r.flags & dns.flags.TC:
                r = dns.query.tcp(q, HOST, port=port, timeout=timeout)
            return r
        except dns.exception.Timeout:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def soa_serial(port: int) -> int | None:
    r = query(port, ZONE, "SOA")
    for rrset in r.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return rrset[0].serial
    return None


def thread_seconds(pid: int) -> float:
    """utime + stime of a process's first thread alone (aliasd's reactor), from /proc."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_split(pid: int) -> tuple[float, float, float]:
    """CPU seconds so far: the whole server (workers included), its first
    thread, and its main process (all threads)."""
    return cpu_seconds(pid), thread_seconds(pid), process_seconds(pid)


def filesystem_type(path: Path) -> str:
    best, kind = "", "?"
    real = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        mount = parts[1].replace("\\040", " ")
        if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
            best, kind = mount, parts[2]
    return kind


class Server:
    label = "?"

    def __init__(self, directory: Path, secret: str, records: int = 0):
        self.directory, self.secret = directory, secret
        self.port = free_port()
        directory.mkdir(parents=True)
        (directory / f"{ZONE}.zone").write_text(zone_text(records))

    @property
    def pid(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL: no chance to write anything more."""
        raise NotImplementedError

    def log_tail(self, lines: int = 25) -> str:
        raise NotImplementedError

    def odd_log_lines(self) -> list[str]:
        return []

    def wait_serving(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if soa_serial(self.port) is not None:
                    return
            except (dns.exception.DNSException, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.label} does not answer the SOA of {ZONE} within {timeout}s\n{self.log_tail()}")


class AliasdServer(Server):
    label = "aliasd"

    def __init__(self, directory: Path, secret: str, records: int = 0, workers: int | None = None):
        super().__init__(directory, secret, records)
        if workers is not None:
            self.label = f"aliasd w={workers}"
        self.workers = workers
        self.metrics_port = free_port()
        (directory / "aliasd.toml").write_text(
            f'[server]\nlisten = ["{HOST}"]\nport = {self.port}\nstate-dir = "state"\n'
            + (f"workers = {workers}\n" if workers is not None else "")
            + "dynamic-file-sync = 60\n\n"
            f'[statistics]\nlisten = "{HOST}:{self.metrics_port}"\n\n'
            f'[keys.{KEY_NAME}]\nalgorithm = "hmac-sha256"\nsecret = "{secret}"\n\n'
            f'[zones."{ZONE}"]\nfile = "{ZONE}.zone"\nupdate = [ {{ key = "{KEY_NAME}" }} ]\n'
        )
        self.process = AliasdProcess(["--config", str(directory / "aliasd.toml")], directory, self.port)

    @property
    def pid(self) -> int:
        return self.process.proc.pid

    def start(self) -> None:
        self.process.start(timeout=120)
        self.wait_serving()
        wait_workers(self.pid, self.workers)

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        if self.process.alive():
            self.process.proc.kill()
            self.process.proc.wait(10)

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.process.log().splitlines()[-lines:])

    def commits(self) -> int:
        """The state store's write transactions so far (LMDB's last
        transaction ID, read beside the server as LMDB allows)."""
        env = lmdb.open(str(self.directory / "state" / "aliasd.lmdb"), readonly=True, max_dbs=8, subdir=True)
        try:
            return env.info()["last_txnid"]
        finally:
            env.close()

    def worker_sync(self) -> str:
        """The aliasd_worker_sync_seconds quantiles, in ms ("" without workers)."""
        with urllib.request.urlopen(f"http://{HOST}:{self.metrics_port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        found = re.findall(r'^aliasd_worker_sync_seconds\{quantile="([\d.]+)"\} (\S+)$', text, re.M)
        return ", ".join(f"q{q} {float(v) * 1000:.1f}" for q, v in found)

    def odd_log_lines(self) -> list[str]:
        words = ("Traceback", "Unhandled", "Error", "error", "failed", "CRITICAL")
        return [line for line in self.process.log().splitlines() if any(w in line for w in words)]


class BindServer(Server):
    label = "BIND"

    def __init__(self, directory: Path, secret: str, records: int = 0):
        super().__init__(directory, secret, records)
        d = directory
        (d / "named.conf").write_text(
            f'options {{ directory "{d}"; pid-file "{d}/named.pid"; session-keyfile "{d}/session.key";'
            f" listen-on port {self.port} {{ {HOST}; }}; listen-on-v6 {{ none; }}; recursion no;"
            " notify no; dnssec-validation no; allow-query { any; }; };\n"
            "controls { };\n"
            f'key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'
            f'zone "{ZONE}" {{ type primary; file "{d}/{ZONE}.zone";'
            f" update-policy {{ grant {KEY_NAME} zonesub ANY; }}; }};\n"
        )
        self.proc: subprocess.Popen | None = None
        self.named = find_program("named")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> None:
        # -g: foreground, log to stderr (into named.log), as BIND logs UPDATEs by default.
        self.proc = subprocess.Popen(
            [self.named, "-g", "-c", str(self.directory / "named.conf")],
            stdout=(self.directory / "named.log").open("a"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            self.wait_serving()
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 25) -> str:
        path = self.directory / "named.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def odd_log_lines(self) -> list[str]:
        path = self.directory / "named.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return [line for line in text.splitlines() if "update failed" in line or "journal" in line and "fail" in line]


# ---------------------------------------------------------------- one run


@dataclass
class Result:
    server: str
    round_no: int
    updates: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    serial_delta: int | None = None
    cpu: float = 0.0
    reactor_cpu: float = 0.0  # the server's first thread (aliasd: the reactor)
    main_cpu: float = 0.0  # the server's main process, all threads (aliasd: reactor and commit thread)
    client_cpu: float = 0.0
    reconnects: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # aliasd: updates per commit, worker sync

    @property
    def rate(self) -> float:
        return self.updates / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        """Server CPU milliseconds per answered UPDATE (workers included)."""
        return 1000 * self.cpu / self.updates if self.updates else float("nan")

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


def preflight(server: Server, run_id: str, timeout: float) -> str | None:
    """One add and one delete, untimed (opens BIND's journal, proves the set-up)."""
    key = dns.tsig.Key(KEY_NAME, server.secret, dns.tsig.HMAC_SHA256)
    conn = Connection(server.port, "tcp", False, timeout)
    try:
        for op in ("add", "delete"):
            m = make_update(op, f"_acme-challenge.preflight.{ZONE}.", f"{run_id}-preflight", key)
            problem = check_answer(m, conn.exchange(m.to_wire(), m.id), key)
            if problem:
                return f"preflight {op}: {problem}"
    except (OSError, dns.exception.DNSException) as e:
        return f"preflight: {type(e).__name__}: {e}"
    finally:
        conn.close()
    return None


def run_round(server: Server, round_no: int, args, run_id: str) -> tuple[Result, list]:
    ops_by_client = [client_ops(c, n, round_no, run_id, args.keep_every)
                     for c, n in enumerate(shares(args.updates, args.clients))]
    result = Result(server.label, round_no)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(args.clients + 1)
    results = ctx.Queue()
    serial0 = soa_serial(server.port)
    procs = [
        ctx.Process(target=client_main, args=(c, server.port, server.secret, ops, args.transport, args.reconnect,
                                              args.timeout, barrier, results), daemon=True)
        for c, ops in enumerate(ops_by_client)
    ]
    for p in procs:
        p.start()
    commits0 = server.commits() if isinstance(server, AliasdServer) else None
    cpu0 = cpu_split(server.pid)
    barrier.wait(60)
    outs = []
    deadline = time.monotonic() + 60 + args.updates * args.timeout / args.clients
    while len(outs) < len(procs):
        try:
            outs.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
        except Exception:  # noqa: BLE001 - queue.Empty: a client hangs
            result.errors.append(f"{len(procs) - len(outs)} client(s) gave no result in time")
            break
    result.cpu, result.reactor_cpu, result.main_cpu = (b - a for a, b in zip(cpu0, cpu_split(server.pid)))
    commits = None
    if commits0 is not None:
        commits = server.commits() - commits0
        sync = server.worker_sync()
        if sync:
            result.notes.append(f"worker sync ms: {sync}")
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.terminate()
            p.join(5)
    starts = [o["start"] for o in outs if o["start"] is not None]
    ends = [o["end"] for o in outs if o["end"] is not None]
    result.seconds = (max(ends) - min(starts)) if starts and ends else 0.0
    for o in sorted(outs, key=lambda o: o["client"]):
        result.latencies += o["latencies"]
        result.client_cpu += o["cpu"]
        result.reconnects += o["reconnects"]
        result.retries += o["retries"]
        if o["error"]:
            result.errors.append(o["error"])
    result.updates = len(result.latencies)  # answered NOERROR, signed, matching
    if commits is not None:
        result.notes.insert(0, f"{result.updates / max(commits, 1):.1f} updates per commit ({commits} commits)")
    serial1 = soa_serial(server.port)
    if serial0 is not None and serial1 is not None:
        result.serial_delta = (serial1 - serial0) % 2**32
    if result.updates and not result.serial_delta:
        result.errors.append(f"{result.updates} UPDATEs answered NOERROR, but the SOA serial went "
                             f"from {serial0} to {serial1}")
    return result, ops_by_client


def verify(server: Server, kept: dict[str, str], deleted: set[str]) -> list[str]:
    """Every kept record there with its token; every deleted name NXDOMAIN."""
    problems: list[str] = []
    for name, token in sorted(kept.items()):
        r = query(server.port, name, "TXT")
        found = [b"".join(rd.strings).decode(errors="replace")
                 for rrset in r.answer if rrset.rdtype == dns.rdatatype.TXT for rd in rrset]
        if r.rcode() != dns.rcode.NOERROR or found != [token]:
            problems.append(f"{name} TXT: rcode {dns.rcode.to_text(r.rcode())}, {found!r} instead of [{token!r}]")
    for name in sorted(deleted):
        r = query(server.port, name, "TXT")
        if r.rcode() != dns.rcode.NXDOMAIN:
            found = [rrset.to_text() for rrset in r.answer]
            problems.append(f"{name}: rcode {dns.rcode.to_text(r.rcode())} {found} instead of NXDOMAIN (was deleted)")
    return problems


def verify_settled(server: Server, kept: dict[str, str], deleted: set[str],
                   patience: float = 10.0) -> tuple[list[str], str]:
    """``verify``, and if anything is wrong, again every second for up to
    ``patience`` seconds (an answered UPDATE should be served at once; this
    tells "late" from "never"): (problems left, a note if it came right late)."""
    started = time.monotonic()
    first = verify(server, kept, deleted)
    if not first:
        return [], ""
    while time.monotonic() - started < patience:
        time.sleep(1)
        if not verify(server, kept, deleted):
            return [], (f"right only {time.monotonic() - started:.1f}s later; "
                        f"{len(first)} wrong at first, e.g. {first[0]}")
    return verify(server, kept, deleted), ""


# ---------------------------------------------------------------- main


def print_table(results: list[Result], checks: dict[str, str]) -> None:
    head = (f"{'server':<12}{'round':>6}{'updates':>9}{'seconds':>9}{'updates/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'serial+':>9}{'CPU s':>8}{'ms/upd':>8}{'reactor':>8}{'main':>6}{'clients':>8}  result")
    print(head)
    print("-" * len(head))
    for r in results:
        delta = "?" if r.serial_delta is None else str(r.serial_delta)
        state = "FAILED" if r.errors else checks.get(r.server, "ok")
        extra = []
        if r.reconnects:
            extra.append(f"{r.reconnects} reconnects")
        if r.retries:
            extra.append(f"{r.retries} UDP retries")
        per = 1000 / r.updates if r.updates else float("nan")
        print(f"{r.server:<12}{r.round_no:>6}{r.updates:>9}{r.seconds:>9.2f}{r.rate:>11.0f}{r.percentile(50):>9.2f}"
              f"{r.percentile(99):>9.2f}{delta:>9}{r.cpu:>8.2f}{r.cpu_ms:>8.2f}{r.reactor_cpu * per:>8.2f}"
              f"{r.main_cpu * per:>6.2f}{r.client_cpu:>8.2f}  {state}{' (' + ', '.join(extra) + ')' if extra else ''}")
        for note in r.notes:
            print(f"{'':<18}{note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=4000, help="UPDATE messages per server and round")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client processes")
    parser.add_argument("--transport", choices=("tcp", "udp"), default="tcp")
    parser.add_argument("--reconnect", action="store_true", help="a new TCP connection for every UPDATE")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per server, alternating servers")
    parser.add_argument("--records", type=int, default=0, help="extra A records in the zone (default: none)")
    parser.add_argument("--keep-every", type=int, default=10, help="every Nth added record is never deleted")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for one answer")
    parser.add_argument("--servers", default="aliasd,bind", help="comma-separated: aliasd, bind")
    parser.add_argument("--workers", default=None,
                        help="aliasd's [server] workers, or a list (1,2): one aliasd for each, rounds alternating")
    parser.add_argument("--no-crash-check", action="store_true", help="skip the SIGKILL-and-restart check")
    parser.add_argument("--dir", default=None, help="where the temporary directory goes (journals are fsynced there)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.reconnect and args.transport != "tcp":
        parser.error("--reconnect needs --transport tcp")
    wanted = [s.strip().lower() for s in args.servers.split(",") if s.strip()]
    if not wanted or set(wanted) - {"aliasd", "bind"}:
        parser.error("--servers takes aliasd and/or bind")
    if "bind" in wanted and find_program("named") is None:
        sys.exit("named is not installed (Debian package bind9)")

    d = Path(tempfile.mkdtemp(prefix="aliasd-update-", dir=args.dir))
    fs = filesystem_type(d)
    run_id = secrets.token_hex(4)
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    print(f"{args.updates} UPDATEs per server and round from {args.clients} clients over "
          f"{args.transport}{' (new connection each)' if args.reconnect else ''}, TSIG hmac-sha256; "
          f"every {args.keep_every}th record kept; zone of {args.records + 4} records; files in {d} ({fs})")
    if fs in ("tmpfs", "ramfs"):
        print(f"WARNING: {d} is on {fs}: fsync costs nothing there; use --dir on a disk")

    servers: list[Server] = []
    failed: dict[str, str] = {}
    results: list[Result] = []
    checks: dict[str, str] = {}
    status = 0
    try:
        made = []  # BIND first: the reference must work
        if "bind" in wanted:
            made.append(BindServer(d / "bind", secret, args.records))
        if "aliasd" in wanted:
            made += [AliasdServer(d / ("aliasd" if w is None else f"aliasd-w{w}"), secret, args.records, w)
                     for w in workers_list(args.workers)]
        for server in made:
            try:
                server.start()
            except Exception as e:  # noqa: BLE001 - report, go on with the other server
                failed[server.label] = f"did not start: {e}"
                continue
            problem = preflight(server, run_id, args.timeout)
            if problem:
                failed[server.label] = f"{problem}\n--- {server.label} log (tail) ---\n{server.log_tail()}"
                server.stop()
                continue
            servers.append(server)

        ops_seen: dict[str, list] = {s.label: [] for s in servers}
        for round_no in range(args.rounds):
            for server in servers if round_no % 2 == 0 else list(reversed(servers)):
                if server.label in failed:
                    continue
                result, ops = run_round(server, round_no, args, run_id)
                results.append(result)
                ops_seen[server.label] += ops
                if result.errors:
                    failed[server.label] = "\n".join(result.errors)

        for server in servers:
            if server.label in failed:
                continue
            kept, deleted = expected_state(ops_seen[server.label])
            problems, late = verify_settled(server, kept, deleted)
            summary = f"verified {len(kept)} kept, {len(deleted)} deleted"
            if late:
                summary += f" (LATE: {late})"
            if not problems and not args.no_crash_check:
                server.kill()
                server.start()
                problems, late = verify_settled(server, kept, deleted)
                problems = [f"after SIGKILL and restart: {p}" for p in problems]
                summary += ", also after SIGKILL + restart"
                if late:
                    summary += f" (LATE after the restart: {late})"
            if problems:
                failed[server.label] = f"{len(problems)} wrong answers after the run:\n  " + "\n  ".join(problems[:20])
            else:
                checks[server.label] = summary

        print()
        print_table(results, checks)
        by_server: dict[str, list[Result]] = {}
        for r in results:
            if not r.errors:
                by_server.setdefault(r.server, []).append(r)
        for label, a in by_server.items():
            if label == "BIND" or "BIND" not in by_server or label in failed:
                continue
            b = by_server["BIND"]
            rate = statistics.median(r.rate for r in a) / statistics.median(r.rate for r in b)
            p50 = statistics.median(r.percentile(50) for r in a) / statistics.median(r.percentile(50) for r in b)
            p99 = statistics.median(r.percentile(99) for r in a) / statistics.median(r.percentile(99) for r in b)
            cpu = statistics.median(r.cpu_ms for r in a) / statistics.median(r.cpu_ms for r in b)
            print(f"\n{label}/BIND (medians over rounds): updates/s {rate:.2f}, p50 latency {p50:.2f}, "
                  f"p99 latency {p99:.2f}, CPU per update {cpu:.2f}")
        for server in servers:
            odd = server.odd_log_lines()
            if odd:
                print(f"\n{server.label} log: {len(odd)} line(s) with errors, the first:")
                print("\n".join("  " + line for line in odd[:10]))
        for label, why in failed.items():
            status = 1
            print(f"\n{label} FAILED: {why}", file=sys.stderr)
    finally:
        for server in servers:
            try:
                server.stop()
            except Exception as e:  # noqa: BLE001
                print(f"stopping {server.label}: {e}", file=sys.stderr)
        if args.keep or status:
            print(f"\nfiles kept in {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
