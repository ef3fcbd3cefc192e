"""End to end, quickly: a real twistd aliasd with two worker processes.

The full suite of worker tests is tests/test_e2e_workers.py; this is the
smoke test of the core (aliasd.service.workers, aliasd.listen.worker):
queries from fresh source ports reach both workers, an ALIAS change is
answered by every worker, a killed worker comes back, SIGTERM leaves no
process behind.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import dns.query
import dns.rcode
import dns.update
import pytest

from tests.aliasd_process import free_port
from tests.test_e2e_alias import ZONE, config
from tests.test_e2e_statistics import scrape
from tests.test_e2e_update import SERVER as UPDATE_SERVER
from tests.test_e2e_update import ZONE as UPDATE_ZONE
from tests.test_e2e_update import config as update_config
from tests.test_e2e_update import ring

pytestmark = pytest.mark.e2e


def children(pid: int) -> set[int]:
    """The processes ``pid`` forked (its worker processes)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat  # a zombie is gone too, only not reaped by its parent yet


def per_worker(metrics: dict[str, float]) -> dict[str, float]:
    return {key.split('"')[1]: value for key, value in metrics.items()
            if key.startswith("aliasd_worker_queries_total{")}


@pytest.fixture
def two_workers(aliasd, upstream):
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=30)
    metrics_port = free_port()
    p = aliasd(config(upstream) + f'[statistics]\nlisten = "127.0.0.1:{metrics_port}"\n',
               {"example.com.zone": ZONE}, server="workers = 2\n")
    p.metrics_port = metrics_port
    p.wait_for(lambda: len(children(p.proc.pid)) == 2 and "2 workers answer UDP and TCP queries" in p.log())
    return p


def test_queries_from_fresh_ports_reach_both_workers_and_an_alias_change_every_worker(two_workers, upstream):
    p = two_workers
    p.wait_for(lambda: p.addresses("www.example.com") == {"203.0.113.1"})
    before = per_worker(scrape(p.metrics_port))
    for _ in range(200):  # dnspython opens a socket, so a fresh source port, per query
        assert p.addresses("www.example.com") == {"203.0.113.1"}
    after = p.wait_for(lambda: (m := per_worker(scrape(p.metrics_port))) and
                       sum(m.values()) - sum(before.values()) >= 200 and m)
    assert set(after) == {"1", "2"}
    assert all(after[w] - before.get(w, 0) > 0 for w in ("1", "2")), (before, after)

    upstream.set("target.upstream.test", "A", ["203.0.113.9"], ttl=30)
    p.wait_for(lambda: p.addresses("www.example.com") == {"203.0.113.9"})
    time.sleep(0.05)  # the visibility bound is 10 ms
    seen = per_worker(scrape(p.metrics_port))
    answers = [p.addresses("www.example.com") for _ in range(100)]
    assert all(a == {"203.0.113.9"} for a in answers)
    now = p.wait_for(lambda: (m := per_worker(scrape(p.metrics_port))) and
                     sum(m.values()) - sum(seen.values()) >= 100 and m)
    assert all(now[w] > seen[w] for w in ("1", "2")), "both workers answered after the change"
    assert 'aliasd_worker_sync_seconds{quantile="1"}' in scrape(p.metrics_port)


def test_a_killed_worker_comes_back_and_sigterm_leaves_no_process(two_workers):
    p = two_workers
    first = children(p.proc.pid)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    p.wait_for(lambda: "died (signal 9); started again as pid" in p.log())
    p.wait_for(lambda: len(children(p.proc.pid)) == 2)
    workers = children(p.proc.pid)
    assert victim not in workers and len(workers - first) == 1
    for _ in range(20):
        assert p.addresses("ns1.example.com") == {"192.0.2.53"}
    assert scrape(p.metrics_port)["aliasd_worker_restarts_total"] == 1
    status = p.query("aliases.aliasd", "TXT", rdclass="CH", use_edns=0, payload=4096)  # by the main, naming the worker
    assert re.search(r'"answered by worker [12] \(pid (\d+)\)"', status.answer[0].to_text())

    conf = p.workdir / "aliasd.toml"
    conf.write_text(conf.read_text().replace("serve-stale = 4", "serve-stale = 5"))
    p.proc.send_signal(signal.SIGHUP)  # a new configuration reaches every worker: each is replaced by a fresh fork
    p.wait_for(lambda: "reload: 2 worker(s) replaced" in p.log(), timeout=15)
    replaced = children(p.proc.pid)
    assert len(replaced) == 2 and replaced.isdisjoint(workers)
    assert p.addresses("ns1.example.com") == {"192.0.2.53"}
    workers |= replaced

    p.stop()
    assert "Server Shut Down" in p.log()  # a clean stop (twistd then exits by the signal it got)
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)


def test_kill_9_of_the_main_process_ends_the_workers(two_workers):
    p = two_workers
    workers = children(p.proc.pid)
    p.proc.send_signal(signal.SIGKILL)
    p.proc.wait(5)
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)


def test_an_acknowledged_update_is_answered_by_every_worker(aliasd):
    p = aliasd(update_config(), {"example.test.zone": UPDATE_ZONE}, server=UPDATE_SERVER + "workers = 2\n")
    p.wait_for(lambda: len(children(p.proc.pid)) == 2 and "2 workers answer UDP and TCP queries" in p.log())
    for n in range(5):
        update = dns.update.UpdateMessage("example.test", keyring=ring(), keyname="ops.")
        update.add(f"new{n}", 60, "A", f"192.0.2.{100 + n}")
        assert dns.query.udp(update, "127.0.0.1", port=p.port, timeout=5).rcode() == dns.rcode.NOERROR
        # Answered once every worker serves it: no query after the answer misses it.
        answers = [p.addresses(f"new{n}.example.test") for _ in range(40)]
        assert answers == [{f"192.0.2.{100 + n}"}] * 40
