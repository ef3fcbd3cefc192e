"""End to end: worker processes (``[server] workers = 2``) on a real twistd aliasd.

The main process forks the workers once its first load is served; they
answer UDP and TCP queries from sockets they share with it. These tests tell the
workers apart by their processes (the main's children in /proc) and by
``aliasd_worker_queries_total{worker=...}`` on /metrics, and check what
the issue asks of them: queries spread over both, every worker on the newest
version before a change is announced, a killed worker replaced, SIGHUP in
every worker, no process left behind.

Queries are sent in bursts, each from its own socket (a fresh source port),
as many clients at once send them; which worker takes each is the kernel's
choice (the workers wait on the shared sockets with EPOLLEXCLUSIVE), so the
tests check the counters, never a particular worker.
"""

from __future__ import annotations

import os
import pwd
import re
import select
import signal
import socket
import textwrap
import threading
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from tests.aliasd_process import free_port
from tests.test_e2e_alias import ZONE as ALIAS_ZONE
from tests.test_e2e_api import ADMIN, SHOP_ZONE
from tests.test_e2e_api_changes import Client as ApiClient
from tests.test_e2e_api_changes import api_config as api_changes_config
from tests.test_e2e_api_changes import created
from tests.test_e2e_ctl import ok as ctl_ok
from tests.test_e2e_alias import config as alias_config
from tests.test_e2e_notify import NotifyListener
from tests import test_e2e_privileges
from tests.test_e2e_privileges import (
    dig_53,
    need_namespaces,
    need_root,
    proc_ids,
    start_as_nobody,
    stop,
    wait_answering_53,
)
from tests.test_e2e_ratelimit import RATE as RRL_RATE
from tests.test_e2e_ratelimit import ZONE as RRL_ZONE
from tests.test_e2e_ratelimit import flood
from tests.test_e2e_statistics import scrape
from tests.test_e2e_update import OPS, SERVER, ring
from tests.test_e2e_update import ZONE as DYNAMIC_ZONE

pytestmark = pytest.mark.e2e

WORKERS = 2
NEW_KEY = "bmV3IGtleSBhZGRlZCBieSBhIHJlbG9hZCwgMzIgb2N0cy4="
FLUSH = 0.25  # how often a worker sends its counters to the main
tree = test_e2e_privileges.tree  # the fixture: a tree the unprivileged user can traverse


def config(upstream, metrics_port: int, notify_to: str | None = None) -> str:
    """example.com (ALIAS over ``upstream``, as tests/test_e2e_alias.py) and
    example.test (dynamic, key ops), both sending NOTIFY to ``notify_to``."""
    notify = f'notify = ["{notify_to}"]\n' if notify_to else ""
    return (f'[statistics]\nlisten = "127.0.0.1:{metrics_port}"\n'
            + textwrap.dedent(alias_config(upstream))  # ends in [zones."example.com"]
            + f'allow-transfer = ["127.0.0.1"]\n{notify}'
            + f'[keys.ops]\nsecret = "{OPS}"\n'
            + f'[zones."example.test"]\nfile = "example.test.zone"\nallow-transfer = ["127.0.0.1"]\n{notify}'
            + 'update = [{ key = "ops" }]\n')


# -- the processes ----------------------------------------------------------------------------------


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (from /proc, every thread's list)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return {c for c in found if alive(c)}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead and not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


class Pool:
    """A running aliasd with workers, its metrics endpoint and its processes."""

    def __init__(self, process, metrics_port: int, workers: int = WORKERS):
        self.p = process
        self.metrics_port = metrics_port
        self.workers = workers
        process.wait_for(lambda: scrape(metrics_port).get("aliasd_workers") == workers, timeout=20)
        process.wait_for(lambda: len(self.pids()) == workers)

    @property
    def main(self) -> int:
        return self.p.proc.pid

    def pids(self) -> set[int]:
        return children(self.main)

    def metrics(self) -> dict[str, float]:
        return scrape(self.metrics_port)

    def per_worker(self, metrics: dict[str, float] | None = None) -> dict[str, float]:
        """Answers given by each worker: {worker label: count}."""
        metrics = metrics if metrics is not None else self.metrics()
        return {m.group(1): value for key, value in metrics.items()
                if (m := re.fullmatch(r'aliasd_worker_queries_total\{worker="([^"]+)"\}', key))}

    def settled(self) -> dict[str, float]:
        """The metrics once the workers' counters stopped moving (nothing in flight)."""
        last = self.metrics()
        while True:
            time.sleep(3 * FLUSH)
            now = self.metrics()
            if self.per_worker(now) == self.per_worker(last):
                return now
            last = now


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """How far each worker's counter moved between two scrapes."""
    return {w: after.get(w, 0) - before.get(w, 0) for w in after}


# -- queries from fresh source ports ------------------------------------------------------------


def fresh_sockets(count: int, host: str = "127.0.0.1") -> list[socket.socket]:
    """``count`` UDP sockets, each bound to its own ephemeral port at ``host``."""
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind((host, 0))
        socks.append(s)
    return socks


def exchange(socks: list[socket.socket], port: int, wires: list[bytes], timeout: float = 2.0) -> list[bytes | None]:
    """Send ``wires[i]`` from ``socks[i]`` to the server at the socket's own
    address, all at once, and close the sockets; the answers in order (None
    where none came within ``timeout``)."""
    answers = [None] * len(wires)
    try:
        for s, wire in zip(socks, wires):
            s.sendto(wire, (s.getsockname()[0], port))
        waiting = dict(zip(socks, range(len(wires))))
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            ready, _, _ = select.select(list(waiting), [], [], max(0.0, deadline - time.monotonic()))
            for s in ready:
                answers[waiting.pop(s)] = s.recv(65535)
        return answers
    finally:
        for s in socks:
            s.close()


def send_at_once(port: int, wires: list[bytes], timeout: float = 2.0, host: str = "127.0.0.1") -> list[bytes | None]:
    """Send each of ``wires`` from its own fresh port at ``host``, all at once; the answers."""
    return exchange(fresh_sockets(len(wires), host), port, wires, timeout)


def burst(port: int, question, rdtype: str = "A", count: int = 50, timeout: float = 2.0, **make_args) -> list:
    """``count`` queries at once from fresh ports (``question``: a name, or a
    message sent as it is, signed anew each time): the answers (None where
    none came; TSIG read, not verified)."""
    if not isinstance(question, dns.message.Message):
        question = dns.message.make_query(question, rdtype, **make_args)
        question.flags &= ~dns.flags.RD
    answers = send_at_once(port, [question.to_wire() for _ in range(count)], timeout)
    return [dns.message.from_wire(a, keyring=False) if a is not None else None for a in answers]


def addresses(response) -> set[str]:
    return {r.to_text() for rrset in response.answer if rrset.rdtype in (1, 28) for r in rrset}


def spread(pool: Pool, name: str, rdtype: str = "A", rounds: int = 10, count: int = 30) -> tuple[list, dict]:
    """Bursts until both workers answered some: (every answer, how far each worker's counter moved)."""
    before = pool.per_worker(pool.settled())
    answers = []
    for _ in range(rounds):
        answers += burst(pool.p.port, name, rdtype, count)
    return answers, moved(before, pool.per_worker(pool.settled()))


# -- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture
def listener():
    made = NotifyListener("127.0.0.1")
    yield made
    made.close()


@pytest.fixture
def start_pool(aliasd, upstream):
    """Factory: aliasd with two workers, NOTIFY sent to ``notify_to``."""
    def start(notify_to) -> Pool:
        upstream.set("target.upstream.test", "A", ["203.0.113.1", "203.0.113.2"], ttl=1)
        upstream.set("target.upstream.test", "AAAA", ["2001:db8::1"], ttl=1)
        upstream.set("v6.upstream.test", "AAAA", ["2001:db8::6"], ttl=30)
        metrics_port = free_port()
        p = aliasd(config(upstream, metrics_port, notify_to),
                   {"example.com.zone": ALIAS_ZONE, "example.test.zone": DYNAMIC_ZONE},
                   server=SERVER + f"workers = {WORKERS}\n")
        made = Pool(p, metrics_port)
        p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.1", "203.0.113.2"})
        return made

    return start


@pytest.fixture
def pool(start_pool, listener):
    return start_pool(listener.endpoint)


# -- the tests --------------------------------------------------------------------------------------------


def test_queries_from_fresh_ports_reach_both_workers_and_the_sums_add_up(pool):
    before = pool.settled()
    answers = []
    for _ in range(10):
        answers += burst(pool.p.port, "mail.example.com", "A", 40)
    assert all(a is not None and addresses(a) == {"192.0.2.25"} for a in answers)
    after = pool.settled()
    each = moved(pool.per_worker(before), pool.per_worker(after))
    print(f"400 queries: {each}")
    assert len(each) == WORKERS and all(n > 0 for n in each.values()), each
    assert sum(each.values()) == 400
    key = 'aliasd_queries_total{qtype="A",rcode="NOERROR",transport="udp"}'
    assert after[key] - before.get(key, 0) == 400  # the summed statistics count each answer once


def test_after_an_alias_change_every_worker_answers_the_new_addresses(pool, upstream):
    p = pool.p
    new = {"203.0.113.77"}
    line = "zone example.com. serial "
    versions = p.log().count(line)
    logged: list[float] = []  # when the main process's log line of the new version appeared

    def watch():
        while not logged and time.monotonic() - started < 15:
            if p.log().count(line) > versions:
                logged.append(time.monotonic())
            time.sleep(0.001)

    started = time.monotonic()
    watcher = threading.Thread(target=watch)
    watcher.start()
    upstream.set("target.upstream.test", "A", sorted(new), ttl=1)
    last_old = None  # when the last burst that got an old answer was sent
    fresh_bursts = 0
    while fresh_bursts < 20:
        assert time.monotonic() - started < 15, "the new addresses were not served"
        sent = time.monotonic()
        answers = burst(p.port, "example.com", "A", 20)
        if any(a is not None and addresses(a) != new for a in answers):
            last_old, fresh_bursts = sent, 0
        elif logged and all(a is not None for a in answers):
            fresh_bursts += 1
    watcher.join()
    lag = (last_old or started) - logged[0]  # below 0: every worker answered new before the line was read
    print(f"log line of the new version -> last burst with an old answer: {lag * 1000:+.1f} ms")
    assert lag < 0.5
    # Each worker answers the new set: both counters move, every answer new.
    answers, each = spread(pool, "example.com")
    assert all(a is not None and addresses(a) == {"203.0.113.77"} for a in answers)
    assert all(n > 0 for n in each.values()) and len(each) == WORKERS, each
    sync = sync_quantiles(pool)
    assert 0 < sync["1"] < 2.0  # 2 s: a worker that has not applied a change by then is replaced


def sync_quantiles(pool: Pool) -> dict[str, float]:
    """The server's own figure, commit -> every worker applied it: quantiles of the recent changes."""
    m = pool.metrics()
    sync = {q: m[f'aliasd_worker_sync_seconds{{quantile="{q}"}}'] for q in ("0.5", "0.99", "1")}
    print("aliasd_worker_sync_seconds: " + ", ".join(f"{q} {v * 1000:.1f} ms" for q, v in sync.items()))
    return sync


def test_an_update_is_answered_only_once_every_worker_serves_it(pool):
    before = pool.per_worker(pool.settled())
    for i in range(20):
        update = dns.update.UpdateMessage("example.test", keyring=ring(), keyname="ops.")
        update.replace(f"b{i}", 60, "A", f"192.0.2.{100 + i}")
        response = dns.query.udp(update, "127.0.0.1", port=pool.p.port, timeout=5)
        assert response.rcode() == dns.rcode.NOERROR
        # At once: 50 queries from fresh ports, every one sees the new record.
        answers = burst(pool.p.port, f"b{i}.example.test", "A", 50)
        assert [addresses(a) if a else None for a in answers] == [{f"192.0.2.{100 + i}"}] * 50, i
    each = moved(before, pool.per_worker(pool.settled()))
    assert all(n > 0 for n in each.values()) and len(each) == WORKERS, each
    assert sync_quantiles(pool)["1"] < 2.0


def test_notify_goes_out_only_once_every_worker_serves_the_new_serial(start_pool, upstream):
    secondary = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # answers NOTIFY, then asks at once
    secondary.bind(("127.0.0.1", 0))
    secondary.settimeout(10)
    try:
        pool = start_pool(f"127.0.0.1:{secondary.getsockname()[1]}")
        serial = pool.p.query("example.com", "SOA").answer[0][0].serial
        soa = dns.message.make_query("example.com", "SOA")
        for attempt in range(3):
            socks = fresh_sockets(50)  # ready before the NOTIFY comes
            upstream.set("target.upstream.test", "A", [f"203.0.113.{90 + attempt}"], ttl=1)
            while True:
                data, peer = secondary.recvfrom(65535)
                notify = dns.message.from_wire(data)
                secondary.sendto(dns.message.make_response(notify).to_wire(), peer)
                if notify.question[0].name.to_text() == "example.com." and notify.answer[0][0].serial > serial:
                    break
            # What a secondary does on NOTIFY: ask the SOA, here from 50 fresh ports at once.
            answers = exchange(socks, pool.p.port, [soa.to_wire()] * 50)
            serial = notify.answer[0][0].serial
            got = [dns.message.from_wire(a).answer[0][0].serial if a else None for a in answers]
            assert got == [serial] * 50, attempt
    finally:
        secondary.close()


def test_a_killed_worker_loses_at_most_the_queries_in_flight_and_comes_back(pool, tmp_path):
    p = pool.p
    old = pool.pids()
    victim = min(old)
    results: list = []

    def load():
        for _ in range(20):
            results.extend(burst(p.port, "mail.example.com", "A", 10, timeout=1.0))
            time.sleep(0.02)

    sender = threading.Thread(target=load)
    sender.start()
    time.sleep(0.15)
    os.kill(victim, signal.SIGKILL)
    sender.join()
    lost = sum(1 for a in results if a is None)
    print(f"200 queries around the kill: {lost} lost")
    assert len(results) == 200 and lost <= 10
    assert all(addresses(a) == {"192.0.2.25"} for a in results if a is not None)
    new = p.wait_for(lambda: (pool.pids() - old) or None, timeout=5)
    assert pool.pids() == (old - {victim}) | new and len(new) == 1
    p.wait_for(lambda: re.search(rf"\(pid {victim}\) died", p.log()))
    assert pool.metrics()["aliasd_worker_restarts_total"] == 1
    human, data = ctl_ok(tmp_path, "status")
    assert set(data["worker_pids"]) == pool.pids() and f"{WORKERS} workers (" in human, human
    assert pool.metrics()["aliasd_workers"] == WORKERS
    answers, each = spread(pool, "mail.example.com")
    assert all(a is not None for a in answers)
    assert all(n > 0 for n in each.values()), each


def test_sighup_reaches_every_worker(pool, tmp_path):
    p = pool.p
    signed = dns.message.make_query("www.example.test", "A")
    signed.use_tsig(dns.tsigkeyring.from_text({"late.": (dns.tsig.HMAC_SHA256, NEW_KEY)}), "late.")
    # Before the reload the key is unknown: NOTAUTH (BADKEY).
    (answer,) = burst(p.port, signed, count=1)
    assert answer.rcode() == dns.rcode.NOTAUTH and answer.tsig[0].error == dns.rcode.BADKEY
    old = pool.pids()
    conf = tmp_path / "aliasd.toml"
    conf.write_text(conf.read_text() + f'[keys.late]\nsecret = "{NEW_KEY}"\n')
    (tmp_path / "example.com.zone").write_text(
        textwrap.dedent(ALIAS_ZONE).replace("mail  A   192.0.2.25", "mail  A   192.0.2.26"))
    p.proc.send_signal(signal.SIGHUP)
    p.wait_for(lambda: "reload done" in p.log())
    p.wait_for(lambda: f"reload: {WORKERS} worker(s) replaced" in p.log())
    p.wait_for(lambda: len(pool.pids()) == WORKERS and not pool.pids() & old)
    # Every worker now knows the key (signed answers) and serves the file's new record.
    before = pool.per_worker(pool.settled())
    for _ in range(10):
        for answer in burst(p.port, signed, count=20):
            assert answer.rcode() == dns.rcode.NOERROR and answer.tsig[0].error == 0 and answer.tsig[0].mac
        assert all(addresses(a) == {"192.0.2.26"} for a in burst(p.port, "mail.example.com", "A", 20))
    each = moved(before, pool.per_worker(pool.settled()))
    assert len(each) == WORKERS and all(n > 0 for n in each.values()), each


def test_a_reload_of_zone_files_alone_keeps_every_worker(pool, tmp_path):
    """The configuration as it was: a reload changes zone data only, which
    every worker is streamed; no worker is replaced (a fork of each at every
    SIGHUP), and each serves the file's new record."""
    p = pool.p
    old = pool.pids()
    (tmp_path / "example.com.zone").write_text(
        textwrap.dedent(ALIAS_ZONE).replace("mail  A   192.0.2.25", "mail  A   192.0.2.27"))
    before = pool.per_worker(pool.settled())
    p.proc.send_signal(signal.SIGHUP)
    p.wait_for(lambda: "reload done: 2 zones (0 added, 0 removed, 1 file(s) read again), 0 error(s)" in p.log())
    p.wait_for(lambda: all(addresses(a) == {"192.0.2.27"} for a in burst(p.port, "mail.example.com", "A", 20)))
    for _ in range(10):
        assert all(addresses(a) == {"192.0.2.27"} for a in burst(p.port, "mail.example.com", "A", 20))
    each = moved(before, pool.per_worker(pool.settled()))
    assert len(each) == WORKERS and all(n > 0 for n in each.values()), each
    assert pool.pids() == old and "worker(s) replaced" not in p.log()


def test_sigterm_of_the_main_leaves_no_process_behind(pool):
    workers = pool.pids()
    assert len(workers) == WORKERS and all(parent(w) == pool.main for w in workers)
    assert set(server_processes(config_of(pool))) == workers | {pool.main}  # what gone_within looks for
    pool.p.proc.send_signal(signal.SIGTERM)
    assert pool.p.proc.wait(10) in (0, -signal.SIGTERM)  # twistd ends by the signal it stopped for
    gone_within(pool, 3)


def test_kill_9_of_the_main_makes_the_workers_exit(pool):
    pool.p.proc.kill()
    pool.p.proc.wait(5)
    gone_within(pool, 2)


def gone_within(pool: Pool, seconds: float) -> None:
    """No process of this server runs ``seconds`` after the main process ended:
    none of its forks (they share its command line, whatever their parent now)."""
    config = config_of(pool)
    deadline = time.monotonic() + seconds
    while left := [pid for pid in server_processes(config) if alive(pid)]:
        assert time.monotonic() < deadline, f"still running {seconds} s after the main process ended: {left}"
        time.sleep(0.05)


def config_of(pool: Pool) -> str:
    return pool.p.args[pool.p.args.index("--config") + 1]


def server_processes(config: str) -> list[int]:
    """Processes whose command line names ``config``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if config.encode() in argv:
                found.append(int(entry.name))
    return found


def test_tcp_update_notify_transfers_and_chaos_with_workers(pool):
    p = pool.p
    assert addresses(p.query("mail.example.com", "A", tcp=True)) == {"192.0.2.25"}
    assert addresses(p.query("mail.example.com", "A", host="::1")) == {"192.0.2.25"}  # the IPv6 socket too
    # UPDATE over UDP (a worker hands it to the main).
    update = dns.update.UpdateMessage("example.test", keyring=ring(), keyname="ops.")
    update.replace("u", 60, "AAAA", "2001:db8::1")
    assert dns.query.udp(update, "127.0.0.1", port=p.port, timeout=5).rcode() == dns.rcode.NOERROR
    assert p.addresses("u.example.test", "AAAA") == {"2001:db8::1"}
    # NOTIFY to a primary: answered (NOTIMP), not dropped.
    notify = dns.message.make_query("example.test", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    notify.flags |= dns.flags.AA
    assert dns.query.udp(notify, "127.0.0.1", port=p.port, timeout=2).rcode() == dns.rcode.NOTIMP
    # AXFR over TCP, IXFR over UDP (the current serial: its SOA alone).
    axfr = p.query("example.test", "AXFR", tcp=True)
    assert axfr.rcode() == dns.rcode.NOERROR and len(axfr.answer) > 3
    serial = p.query("example.test", "SOA").answer[0][0].serial
    ixfr = dns.message.make_query("example.test", "IXFR")
    ixfr.authority.append(dns.rrset.from_text("example.test.", 0, "IN", "SOA",
                                              f"ns1.example.test. h.example.test. {serial} 3600 600 86400 300"))
    response = dns.query.udp(ixfr, "127.0.0.1", port=p.port, timeout=2)
    assert response.rcode() == dns.rcode.NOERROR
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.SOA]
    assert response.answer[0][0].serial == serial
    # CHAOS over UDP: the status view, naming the worker that took the query.
    answers = burst(p.port, "aliases.aliasd", "TXT", 20, rdclass="CH", use_edns=0, payload=1232)
    named = set()
    for a in answers:
        assert a is not None and a.rcode() == dns.rcode.NOERROR
        text = " ".join(s.decode() for rdata in a.answer[0] for s in rdata.strings)
        assert "example.com." in text
        found = re.search(r"worker (\d+) \(pid (\d+)\)", text)
        assert found, text
        named.add(int(found.group(2)))
    assert named <= pool.pids() and named


def tcp_exchange(port: int, wires: list[bytes], answers: int, timeout: float = 5.0) -> list[dns.message.Message]:
    """Send ``wires`` on one TCP connection at once (pipelined), then read
    ``answers`` answers back, in the order they come: a zone transfer's
    messages as one (its records together, up to its closing SOA)."""
    got: list[dns.message.Message] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join(len(w).to_bytes(2, "big") + w for w in wires))
        expiration = time.time() + timeout
        while len(got) < answers or transfer_open(got[-1]):
            message = dns.query.receive_tcp(s, expiration, one_rr_per_rrset=True, keyring=False)[0]
            if got and transfer_open(got[-1]) and message.id == got[-1].id:
                got[-1].answer += message.answer
            else:
                got.append(message)
    return got


def transfer_open(message: dns.message.Message) -> bool:
    """An AXFR answer whose closing SOA has not come yet."""
    return (message.question and message.question[0].rdtype == dns.rdatatype.AXFR
            and sum(r.rdtype == dns.rdatatype.SOA for r in message.answer) < 2)


def test_tcp_queries_are_answered_by_both_workers(pool):
    """Plain queries over TCP, each on a connection of its own: the workers
    accept them (the main process only takes connections they hand over)."""
    before = pool.settled()
    done = []

    def client():
        for _ in range(25):
            [answer] = tcp_exchange(pool.p.port, [dns.message.make_query("mail.example.com", "A").to_wire()], 1)
            done.append(addresses(answer))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done == [{"192.0.2.25"}] * 200
    after = pool.settled()
    each = moved(pool.per_worker(before), pool.per_worker(after))
    print(f"200 TCP queries: {each}")
    assert sum(each.values()) == 200 and all(n > 0 for n in each.values()), each
    key = 'aliasd_queries_total{qtype="A",rcode="NOERROR",transport="tcp"}'
    assert after[key] - before.get(key, 0) == 200


def test_a_tcp_connection_with_a_transfer_and_an_update_is_handed_to_the_main_in_order(pool):
    """Pipelined on one connection: a query, an AXFR, a query, an UPDATE,
    a query. The worker that accepted it answers the first query, then
    hands the connection to the main process, which answers the rest in
    order on the same connection (RFC 7766 6.2.1.1)."""
    p = pool.p
    first = dns.message.make_query("mail.example.com", "A")
    axfr = dns.message.make_query("example.test", "AXFR")
    middle = dns.message.make_query("example.com", "MX")
    update = dns.update.UpdateMessage("example.test", keyring=ring(), keyname="ops.")
    update.replace("tcp-handed", 60, "A", "192.0.2.77")
    last = dns.message.make_query("tcp-handed.example.test", "A")
    before = pool.per_worker(pool.settled())
    answers = tcp_exchange(p.port, [m.to_wire() for m in (first, axfr, middle, update, last)], 5)
    assert sum(moved(before, pool.per_worker(pool.settled())).values()) == 1  # the first query; the rest: the main
    assert [a.id for a in answers] == [first.id, axfr.id, middle.id, update.id, last.id]
    assert addresses(answers[0]) == {"192.0.2.25"}
    transfer = answers[1].answer
    assert transfer[0].rdtype == dns.rdatatype.SOA and transfer[-1].rdtype == dns.rdatatype.SOA and len(transfer) > 3
    assert answers[2].answer and answers[2].answer[0].rdtype == dns.rdatatype.MX
    assert answers[3].rcode() == dns.rcode.NOERROR
    assert addresses(answers[4]) == {"192.0.2.77"}  # answered after the update, on the same connection


def test_a_tcp_client_that_reads_slowly_gets_every_answer_in_order(pool):
    """3,000 queries pipelined on one connection whose client reads only
    after sending them all: the worker stops reading while its answers wait
    (back-pressure), then answers every one, in order."""
    queries = [dns.message.make_query(f"n{i}.example.com", "A") for i in range(3000)]
    with socket.create_connection(("127.0.0.1", pool.p.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sender = threading.Thread(target=s.sendall, args=(b"".join(
            len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in queries)),))
        sender.start()
        time.sleep(1)  # answers pile up on the server's side meanwhile
        expiration = time.time() + 20
        ids = [dns.query.receive_tcp(s, expiration, keyring=False)[0].id for _ in queries]
        sender.join()
    assert ids == [q.id for q in queries]


def test_tcp_connections_outlive_the_workers_a_reload_replaces(pool, tmp_path):
    """A reload of a new configuration replaces the workers one by one; the
    TCP connections they held are handed to the main process, and go on
    answering."""
    p = pool.p
    conns = [socket.create_connection(("127.0.0.1", p.port), timeout=5) for _ in range(6)]
    try:
        def ask(s) -> set[str]:
            query = dns.message.make_query("mail.example.com", "A")
            dns.query.send_tcp(s, query, time.time() + 5)
            return addresses(dns.query.receive_tcp(s, time.time() + 5)[0])

        assert [ask(s) for s in conns] == [{"192.0.2.25"}] * 6
        replaced = p.log().count("worker(s) replaced")
        conf = tmp_path / "aliasd.toml"
        conf.write_text(conf.read_text() + f'[keys.late]\nsecret = "{NEW_KEY}"\n')
        p.proc.send_signal(signal.SIGHUP)
        p.wait_for(lambda: p.log().count("worker(s) replaced") > replaced, timeout=15)
        assert [ask(s) for s in conns] == [{"192.0.2.25"}] * 6
    finally:
        for s in conns:
            s.close()


def test_an_idle_tcp_connection_to_a_worker_is_closed(aliasd):
    """A worker closes a TCP connection idle past tcp-idle-timeout, as the
    main process does."""
    metrics_port = free_port()
    p = aliasd(f'[statistics]\nlisten = "127.0.0.1:{metrics_port}"\n[zones."example.com"]\nfile = "example.com.zone"\n',
               {"example.com.zone": RRL_ZONE}, server=f"workers = {WORKERS}\ntcp-idle-timeout = 1\n")
    Pool(p, metrics_port)
    with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
        started = time.monotonic()
        assert s.recv(1) == b""  # closed by the server, not by our timeout
        assert 0.5 < time.monotonic() - started < 4


def test_a_tcp_connection_after_a_quiet_spell_is_answered(aliasd):
    """A worker's idle timers run only while connections are open: a
    connection made after a spell with none, longer than tcp-idle-timeout,
    is answered, not closed at once (it was reset: a secondary's first
    AXFR after a quiet minute failed)."""
    metrics_port = free_port()
    p = aliasd(f'[statistics]\nlisten = "127.0.0.1:{metrics_port}"\n[zones."example.com"]\nfile = "example.com.zone"\n',
               {"example.com.zone": RRL_ZONE}, server=f"workers = {WORKERS}\ntcp-idle-timeout = 1\n")
    Pool(p, metrics_port)
    query = dns.message.make_query("www.example.com", "A")
    for _ in range(2):  # each connection accepted after 2.5 s with none open
        time.sleep(2.5)
        for _ in range(2 * WORKERS):  # (each worker takes some of them)
            answer = dns.query.tcp(query, "127.0.0.1", port=p.port, timeout=5)
            assert addresses(answer) == {"192.0.2.1"}


def test_rate_limiting_holds_for_a_client_as_a_whole(aliasd):
    """Each worker limits at rate / N: a flood spread over both gets about the rate, not N times it."""
    metrics_port = free_port()
    p = aliasd(f"""
        [statistics]
        listen = "127.0.0.1:{metrics_port}"
        [rate-limit]
        responses-per-second = {RRL_RATE}
        window = 2
        slip = 2
        [zones."example.com"]
        file = "example.com.zone"
        """, {"example.com.zone": RRL_ZONE}, server=f"workers = {WORKERS}\n")
    pool = Pool(p, metrics_port)
    before = pool.per_worker(pool.settled())
    started = time.monotonic()
    flooded = flood(p.port, "127.0.1.1", 400)
    elapsed = time.monotonic() - started
    each = moved(before, pool.per_worker(pool.settled()))
    print(f"RRL flood of 400 in {elapsed:.2f}s over workers {each}: {flooded}")
    assert len(each) == WORKERS and all(n > 0 for n in each.values()), each  # both took part of it
    assert RRL_RATE / WORKERS - 1 <= flooded["full"] <= RRL_RATE + RRL_RATE * elapsed + 1, (flooded, elapsed)
    assert flooded["slipped"] > 100 and flooded["other"] == 0, flooded
    # The workers' log lines reach the server's log, naming the worker.
    p.wait_for(lambda: re.search(r"\[worker \d\] .*rate limiting responses to 127\.0\.1\.0/24", p.log()))


def test_workers_run_as_the_service_user_and_a_replaced_one_keeps_port_53(tree):
    """Forked after twistd dropped privileges; a replacement inherits port 53, binding nothing."""
    need_root()
    need_namespaces()
    nobody = pwd.getpwnam("nobody")
    (tree / "state").mkdir()
    os.chown(tree / "state", nobody.pw_uid, nobody.pw_gid)
    proc, netns, log = start_as_nobody(tree, textwrap.dedent(f"""\
        [server]
        listen = ["127.0.0.1"]
        port = 53
        state-dir = "state"
        workers = {WORKERS}
        [zones."example.com"]
        file = "example.com.zone"
        """))
    try:
        wait_answering_53(proc, netns, log)
        first = wait_until(lambda: len(children(proc.pid)) == WORKERS and children(proc.pid))
        # Replace every worker, one after the other: then only replacements answer.
        for victim in first:
            others = children(proc.pid) - {victim}
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: len(children(proc.pid) - others - {victim}) == 1)
        now = children(proc.pid)
        assert len(now) == WORKERS and not now & first
        for pid in (proc.pid, *now):
            assert proc_ids(pid) == ([nobody.pw_uid] * 4, [nobody.pw_gid] * 4), pid
        for _ in range(20):
            assert dig_53(netns, "@127.0.0.1", "+notcp", "+tries=1", "+time=2") == "192.0.2.80"
        assert log.read_text().count(") died (signal 9); started again as pid") == WORKERS
    finally:
        stop(proc)


def wait_until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return result


def test_an_api_change_is_answered_only_once_every_worker_serves_it(aliasd):
    api_port, metrics_port = free_port(), free_port()
    p = aliasd(api_changes_config(api_port) + f'[statistics]\nlisten = "127.0.0.1:{metrics_port}"\n',
               {"shop.test.zone": SHOP_ZONE}, server=f"workers = {WORKERS}\n")
    pool = Pool(p, metrics_port)
    admin = ApiClient(api_port, ADMIN)
    before = pool.per_worker(pool.settled())
    created(admin, "fresh.test.", rrsets=[
        {"name": "www.fresh.test.", "type": "A", "ttl": 60, "records": [{"content": "192.0.2.10", "disabled": False}]}])
    # At once after the 201: the new zone from 50 fresh ports.
    assert [addresses(a) if a else None for a in burst(p.port, "www.fresh.test", "A", 50)] == [{"192.0.2.10"}] * 50
    for i in range(1, 6):
        status, _ = admin("PATCH", "/zones/fresh.test.", {"rrsets": [
            {"name": "www.fresh.test.", "type": "A", "ttl": 60, "changetype": "REPLACE",
             "records": [{"content": f"192.0.2.{10 + i}", "disabled": False}]}]})
        assert status == 204
        answers = burst(p.port, "www.fresh.test", "A", 50)
        assert [addresses(a) if a else None for a in answers] == [{f"192.0.2.{10 + i}"}] * 50, i
    each = moved(before, pool.per_worker(pool.settled()))
    assert len(each) == WORKERS and all(n > 0 for n in each.values()), each


def test_a_crash_loop_backs_off_while_the_other_worker_answers(pool):
    """Three deaths within 10 s: the next start waits 1 s; queries are answered meanwhile."""
    p = pool.p
    for death in range(1, 4):
        victim = min(pool.pids())
        os.kill(victim, signal.SIGKILL)
        p.wait_for(lambda v=victim: re.search(rf"\(pid {v}\) died", p.log()))
        if death < 3:
            p.wait_for(lambda v=victim: len(pool.pids() - {v}) == WORKERS, timeout=2)
    assert "3 deaths in 10 s: starting it again in 1 s" in p.log()
    # Held back: one worker answers everything for about a second.
    assert len(pool.pids()) == WORKERS - 1 and pool.metrics()["aliasd_workers"] == WORKERS - 1
    assert all(a is not None and addresses(a) == {"192.0.2.25"} for a in burst(p.port, "mail.example.com", "A", 50))
    p.wait_for(lambda: len(pool.pids()) == WORKERS, timeout=3)
    assert pool.metrics()["aliasd_worker_restarts_total"] == 3
