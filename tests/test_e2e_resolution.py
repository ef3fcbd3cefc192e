"""End to end: the resolution engine against an upstream that misbehaves.

Failover between upstreams, truncated answers retried over TCP, late and
garbled answers (serve stale), pools that rotate (serial damping), loops in
the zone data, and the operator's CHAOS TXT view of it all.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.upstream import UpstreamServer

pytestmark = pytest.mark.e2e

ZONE = """\
    $ORIGIN example.com.
    $TTL 300
    @     SOA ns1 hostmaster 100 86400 600 864000 120
          NS  ns1
    @     60 ALIAS target.upstream.test.
    ns1   A   192.0.2.53
    loop1 ALIAS loop2
    loop2 ALIAS loop1
    """


def config(*upstreams, extra: str = "") -> str:
    endpoints = ", ".join(f'"{u.endpoint}"' for u in upstreams)
    return f"""
        [resolver]
        upstreams = [{endpoints}]
        min-refresh = 1
        max-refresh = 1
        serve-stale = 30
        timeout = 0.3
        {extra}
        [zones."example.com"]
        file = "example.com.zone"
        """


@pytest.fixture
def second_upstream():
    server = UpstreamServer()
    yield server
    server.close()


@pytest.mark.parametrize("failure", ["servfail", "refused", "drop", "garbage"])
def test_failover_to_the_next_upstream(aliasd, upstream, second_upstream, failure):
    upstream.behave("target.upstream.test", failure)
    second_upstream.set("target.upstream.test", "A", ["203.0.113.77"], ttl=30)
    p = aliasd(config(upstream, second_upstream), {"example.com.zone": ZONE})
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.77"})
    assert upstream.count("target.upstream.test") >= 1  # the first was asked first


def test_truncated_answer_is_retried_over_tcp(aliasd, upstream):
    upstream.set("target.upstream.test", "A", ["203.0.113.5"], ttl=30)
    upstream.behave("target.upstream.test", "truncate")
    p = aliasd(config(upstream), {"example.com.zone": ZONE})
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.5"})
    assert ("target.upstream.test.", "A") in upstream.tcp_queries


@pytest.mark.parametrize("failure", ["delay:2", "garbage"])
def test_late_or_garbled_answers_keep_the_last_good_addresses(aliasd, upstream, failure):
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=1)
    p = aliasd(config(upstream), {"example.com.zone": ZONE})
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.1"})
    upstream.set("target.upstream.test", "A", ["203.0.113.2"], ttl=1)
    upstream.behave("target.upstream.test", failure)
    p.wait_for(lambda: "target.upstream.test. A: stale" in p.log(), timeout=10)
    assert p.addresses("example.com") == {"203.0.113.1"}  # never the late answer's


def test_rotating_pool_does_not_bump_the_serial_on_every_refresh(aliasd, upstream):
    pool = [f"203.0.113.{i}" for i in range(1, 41)]  # 20 subsets: none repeats in the test
    upstream.rotate("target.upstream.test", "A", pool, size=2, ttl=1)
    p = aliasd(config(upstream), {"example.com.zone": ZONE}, server="serial-interval = 4\nserial-burst = 1\n")
    p.wait_for(lambda: p.addresses("example.com"))
    first = p.query("example.com", "SOA").answer[0][0].serial
    asked_before = upstream.count("target.upstream.test")
    time.sleep(8.5)
    refreshes = upstream.count("target.upstream.test") - asked_before
    moves = p.query("example.com", "SOA").answer[0][0].serial - first
    assert refreshes >= 6  # the pool rotated on every one of them
    assert 1 <= moves <= 3, (refreshes, moves)  # at most one per 4 s
    assert p.addresses("example.com") <= set(pool) and len(p.addresses("example.com")) == 2
    assert "held back" in p.log()


def test_alias_loop_is_reported_and_answers_like_the_transfer_view(aliasd, upstream):
    """The loop's owners have nothing but the ALIAS: the transfer view has
    no record there, so a secondary answers NXDOMAIN, and so does aliasd."""
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=30)
    p = aliasd(config(upstream) + '        allow-transfer = ["127.0.0.1"]\n', {"example.com.zone": ZONE})
    for name, rdtype in (("loop1.example.com", "A"), ("loop2.example.com", "AAAA"), ("loop1.example.com", "TXT")):
        r = p.query(name, rdtype)
        assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
        assert r.authority and r.authority[0].rdtype == dns.rdatatype.SOA  # (RFC 2308)
    axfr = dns.query.xfr("127.0.0.1", "example.com", port=p.port, relativize=False)
    owners = {rrset.name.to_text() for m in axfr for rrset in m.answer}
    assert "ns1.example.com." in owners  # (names as transferred)
    assert "loop1.example.com." not in owners and "loop2.example.com." not in owners
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.1"})
    assert "ALIAS loop in zone example.com.: loop1.example.com., loop2.example.com. serve no addresses" in p.log()


def test_chaos_txt_shows_targets_and_owners_to_loopback(aliasd, upstream):
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=30)
    upstream.behave("target.upstream.test", None)
    p = aliasd(config(upstream), {"example.com.zone": ZONE})
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.1"})

    def lines(name):
        q = dns.message.make_query(name, "TXT", rdclass="CH")
        r = dns.query.tcp(q, "127.0.0.1", port=p.port, timeout=3)
        assert r.rcode() == dns.rcode.NOERROR
        return [b"".join(rd.strings).decode() for rrset in r.answer for rd in rrset]

    targets = lines("targets.aliasd.")
    assert any(line.startswith("target.upstream.test. A resolved 203.0.113.1 ttl 30") for line in targets)
    assert any("AAAA no-addresses" in line for line in targets)
    owners = lines("aliases.aliasd.")
    assert any(line.startswith("example.com. ALIAS target.upstream.test.") and "A 203.0.113.1" in line for line in owners)
    upstream.behave("target.upstream.test", "servfail")
    p.wait_for(lambda: any("stale" in line and "SERVFAIL" in line for line in lines("targets.aliasd.")))


def test_the_full_ttl_is_served_while_a_caching_upstream_counts_it_down(aliasd, upstream):
    """A caching upstream answers the same addresses with TTLs counting
    down. The first answer may be the end of a countdown (TTL 2); once the
    full TTL has been seen, clients and secondaries get it, whatever the
    countdown says, and the serial does not move with the countdown."""
    name = "target.upstream.test"
    upstream.set(name, "A", ["203.0.113.9"], ttl=2)
    p = aliasd(config(upstream) + '        allow-transfer = ["127.0.0.1"]\n', {"example.com.zone": ZONE})

    def ttl():
        return p.query("example.com", "A").answer[0].ttl

    def serial():
        return p.query("example.com", "SOA").answer[0][0].serial

    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.9"})
    assert ttl() == 2
    upstream.set(name, "A", ["203.0.113.9"], ttl=50)  # its cache refreshed
    p.wait_for(lambda: ttl() == 50)  # before: 2 for as long as the address stayed
    before = serial()
    for countdown in (40, 20, 5, 1):
        upstream.set(name, "A", ["203.0.113.9"], ttl=countdown)
        asked = upstream.count(name)
        p.wait_for(lambda: upstream.count(name) > asked + 1)  # answered, and asked again
        assert ttl() == 50
    assert serial() == before
    axfr = dns.query.xfr("127.0.0.1", "example.com", port=p.port, relativize=False)
    apex = [rrset for m in axfr for rrset in m.answer
            if rrset.name.to_text() == "example.com." and rrset.rdtype == dns.rdatatype.A]
    assert [rrset.ttl for rrset in apex] == [50]  # what secondaries get too


def _sockets(pid: int) -> int:
    """Open sockets of a process (UDP and TCP, listening or not)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            pass  # closed meanwhile
    return count


def test_reload_with_other_upstreams_leaves_no_socket_behind(aliasd, upstream, second_upstream, tmp_path):
    """Each reload swaps the upstream client while a lookup waits for its
    (late) answer. Before, the old client's sockets were closed under the
    waiting lookup, whose retry then opened a new socket that nobody closed:
    one more per reload."""
    name = "target.upstream.test"
    for server in (upstream, second_upstream):
        server.set(name, "A", ["203.0.113.1"], ttl=1)
        server.behave(name, "delay:1.5")  # every lookup waits 1.5 s
    text = config(upstream).replace("timeout = 0.3", "timeout = 3")
    p = aliasd(text, {"example.com.zone": ZONE})
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.1"})
    baseline = _sockets(p.proc.pid)
    conf = tmp_path / "aliasd.toml"
    current = upstream
    for reloads in range(1, 5):
        other = second_upstream if current is upstream else upstream
        asked = current.count(name)
        p.wait_for(lambda: current.count(name) > asked)  # a lookup is waiting now
        conf.write_text(conf.read_text().replace(current.endpoint, other.endpoint))
        p.proc.send_signal(signal.SIGHUP)
        p.wait_for(lambda: p.log().count("reload done") == reloads)
        current = other
    time.sleep(4)  # past the old lookups' timeouts (3 s) and their retries
    assert _sockets(p.proc.pid) <= baseline
    assert p.log().count("upstream resolvers now") == 4
    p.wait_for(lambda: current.count(name) > 0)
    assert p.addresses("example.com") == {"203.0.113.1"}
