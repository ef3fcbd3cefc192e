"""Unit tests: the parent side of rollovers (aliasd.dnssec.parent) against
loopback parental agents (tests/upstream.py serving DS sets the test
changes) and a real ds-submit-command script, on the real reactor run in
a thread of the test process (the tests call into it)."""

from __future__ import annotations

import os
import stat
import subprocess
import textwrap
import threading
import time

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from twisted.internet import process, reactor, task, threads

from aliasd.base.config import Endpoint
from aliasd.dnssec.parent import Parent, ParentAgents
from tests.upstream import UpstreamServer

ZONE = dns.name.from_text("child.test.")
OLD = "11111 13 2 " + "ab" * 32
NEW = "22222 13 2 " + "cd" * 32


def wire(text: str) -> bytes:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DS, text).to_wire()


@pytest.fixture(scope="module", autouse=True)
def running_reactor():
    """The global reactor, running in a thread for this process. Signal
    handlers are the main thread's, so children that exit are reaped by
    polling, as twistd's SIGCHLD handler would."""
    if not reactor.running:
        threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True).start()
        deadline = time.monotonic() + 5
        while not reactor.running and time.monotonic() < deadline:
            time.sleep(0.01)
        reaper = task.LoopingCall(process.reapAllProcesses)
        reactor.callFromThread(reaper.start, 0.05)
    yield reactor


def in_reactor(f, *args, **kwargs):
    return threads.blockingCallFromThread(reactor, f, *args, **kwargs)


@pytest.fixture
def agents():
    servers = [UpstreamServer(), UpstreamServer()]
    yield servers
    for s in servers:
        s.close()


@pytest.fixture
def view(agents):
    made = in_reactor(ParentAgents, reactor, {ZONE: Parent(tuple(Endpoint("127.0.0.1", s.port) for s in agents))})
    made.timeout = 1.0
    yield made
    in_reactor(made.close)


def check(view, want=(), gone=()) -> bool:
    return in_reactor(view.ds_state, ZONE, frozenset(wire(t) for t in want), frozenset(wire(t) for t in gone))


def test_the_parent_shows_a_ds_only_once_every_agent_shows_it(view, agents):
    first, second = agents
    for agent in agents:
        agent.set("child.test.", "DS", [OLD], ttl=3)
    assert check(view, want=[OLD]) is True
    assert check(view, want=[NEW]) is False
    first.set("child.test.", "DS", [OLD, NEW], ttl=3)
    assert check(view, want=[NEW]) is False  # the second agent does not show it yet
    second.set("child.test.", "DS", [OLD, NEW], ttl=3)
    assert check(view, want=[NEW]) is True
    assert check(view, want=[NEW], gone=[OLD]) is False  # the old one is still there
    first.set("child.test.", "DS", [NEW], ttl=3)
    assert check(view, want=[NEW], gone=[OLD]) is False
    second.set("child.test.", "DS", [NEW], ttl=3)
    assert check(view, want=[NEW], gone=[OLD]) is True
    assert view.seen[ZONE] == {Endpoint("127.0.0.1", a.port): frozenset({wire(NEW)}) for a in agents}
    assert all(len(a.queries) >= 7 for a in agents) and view.errors == {}


def test_no_ds_and_no_zone_at_the_parent_are_answers_not_errors(view, agents):
    first, second = agents
    first.set("child.test.", "A", ["192.0.2.1"])  # NODATA for DS
    second.behave("child.test.", "nxdomain")
    assert check(view, gone=[OLD]) is True  # going insecure: no DS anywhere
    assert check(view, want=[NEW]) is False and view.errors == {}


def test_an_error_at_any_agent_is_not_yet_and_counted_for_backoff(view, agents, log_events):
    second = agents[1]
    for agent in agents:
        agent.set("child.test.", "DS", [NEW])
    second.behave("child.test.", "servfail")
    assert check(view, want=[NEW]) is False
    second.behave("child.test.", "drop")  # a timeout
    started = time.monotonic()
    assert check(view, want=[NEW]) is False
    assert time.monotonic() - started < 3  # a short timeout
    assert view.error_count(ZONE) == 2
    lines = [e["log_format"].format(**e) for e in log_events if "parental agent" in e.get("log_format", "")]
    assert len(lines) == 2 and "(SERVFAIL)" in lines[0] and "(timeout)" in lines[1]
    assert f"127.0.0.1:{second.port}" in lines[0]
    second.behave("child.test.", None)
    assert check(view, want=[NEW]) is True and view.error_count(ZONE) == 0


def test_a_truncated_answer_is_asked_again_over_tcp(view, agents):
    for agent in agents:
        agent.set("child.test.", "DS", [OLD, NEW])
        agent.behave("child.test.", "truncate")
    assert check(view, want=[NEW, OLD]) is True
    assert all(a.tcp_queries == [("child.test.", "DS")] for a in agents)


def test_zones_without_agents_are_never_shown_published(view):
    other = dns.name.from_text("other.test.")
    assert view.has_agents(ZONE) and not view.has_agents(other)
    assert in_reactor(view.ds_state, other, frozenset(), frozenset()) is False


SCRIPT = """\
    #!/bin/sh
    # Fails while the count file holds fewer than FAILS lines; records what it was given.
    count=$(cat "{dir}/count" 2>/dev/null | wc -l)
    echo run >> "{dir}/count"
    printf '%s|%s|%s|%s\\n' "$*" "$ALIASD_ZONE" "$ALIASD_DS_ADD" "$ALIASD_DS_WITHDRAW" | tr '\\n' '~' >> "{dir}/calls"
    echo >> "{dir}/calls"
    if [ "$count" -lt {fails} ]; then echo "registrar said no (try $count)"; exit 3; fi
    exit 0
"""


def script(tmp_path, fails: int) -> str:
    path = tmp_path / "push-ds"
    path.write_text(textwrap.dedent(SCRIPT.format(dir=tmp_path, fails=fails)))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def wait_for(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if in_reactor(predicate):
            return
        time.sleep(0.05)
    raise AssertionError("not reached in time")


def test_a_failing_submit_command_is_logged_and_run_again_until_it_succeeds(tmp_path, log_events):
    command = script(tmp_path, fails=2)
    view = in_reactor(ParentAgents, reactor, {ZONE: Parent.from_policy([], f"{command} --registrar test")})
    view.submit_retry = 0.2
    in_reactor(view.submit, ZONE, [NEW], [OLD])
    assert in_reactor(view.pending, ZONE)
    wait_for(lambda: not view.pending(ZONE))
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [f"--registrar test child.test.|child.test.|{NEW}|{OLD}~"] * 3
    failures = [e for e in log_events if "ds-submit-command" in e.get("log_format", "") and "failed" in e["log_format"]]
    assert [e["tries"] for e in failures] == [1, 2]
    text = failures[1]["log_format"].format(**failures[1])
    assert "exit status 3" in text and "registrar said no (try 1)" in text and "again in 0s" in text
    assert failures[1]["delay"] == pytest.approx(0.4)  # doubled
    assert any("ds-submit-command done" in e.get("log_format", "") for e in log_events)


def test_a_newer_submission_replaces_one_still_failing(tmp_path):
    command = script(tmp_path, fails=1000)
    view = in_reactor(ParentAgents, reactor, {ZONE: Parent.from_policy([], command)})
    view.submit_retry = 0.2
    in_reactor(view.submit, ZONE, [NEW], [])
    wait_for(lambda: (tmp_path / "calls").exists() and view._running.get(ZONE) is None)
    in_reactor(view.submit, ZONE, [], [OLD])  # the step changed
    time.sleep(1.0)
    in_reactor(view.cancel, ZONE)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == f"child.test.|child.test.|{NEW}|~"
    assert len(calls) >= 3 and set(calls[1:]) == {f"child.test.|child.test.||{OLD}~"}
    time.sleep(0.5)
    assert len((tmp_path / "calls").read_text().splitlines()) == len(calls)  # cancelled: no more runs
    assert os.path.exists(command)


def test_parents_come_from_the_zones_policies():
    from aliasd.dnssec.parent import parents_from

    class Policy:
        parental_agents = (Endpoint("127.0.0.1", 5353),)
        ds_submit_command = "/usr/local/sbin/push-ds --registrar 'my registrar'"

    made = parents_from({ZONE: Policy(), dns.name.from_text("plain.test."): None})
    assert made == {ZONE: Parent((Endpoint("127.0.0.1", 5353),),
                                 ("/usr/local/sbin/push-ds", "--registrar", "my registrar"))}
    assert Parent.from_policy(["192.0.2.53", "[2001:db8::53]:5353"], None).agents == (
        Endpoint("192.0.2.53", 53), Endpoint("2001:db8::53", 5353))


def test_parents_can_follow_the_engines_policies(agents):
    """With ``policy_of`` (the engine's Rollovers.policy) the agents are
    those of the zone's policy now: a reload or a zone going insecure
    needs no other call."""

    class Policy:
        def __init__(self, agents):
            self.parental_agents = tuple(Endpoint("127.0.0.1", a.port) for a in agents)
            self.ds_submit_command = None

    policies = {ZONE: Policy(agents[:1])}
    view = in_reactor(ParentAgents, reactor, policy_of=policies.get)
    view.timeout = 1.0
    agents[0].set("child.test.", "DS", [NEW])
    try:
        assert check(view, want=[NEW]) is True
        policies[ZONE] = Policy(agents)  # the second agent does not show it
        assert check(view, want=[NEW]) is False
        assert not view.has_agents(dns.name.from_text("other.test."))
        del policies[ZONE]
        assert not view.has_agents(ZONE) and check(view, want=[NEW]) is False
    finally:
        in_reactor(view.close)


PARENT_ZONE = """\
$TTL 3
@ SOA ns hostmaster 1 60 60 600 3
@ NS ns
ns A 127.0.0.1
child NS ns.child
ns.child A 127.0.0.1
"""


@pytest.mark.e2e
def test_a_bind_parent_is_a_parental_agent(tmp_path):
    """A real authoritative BIND named (recursion off) serving the parent
    zone; the test plays the registrar with nsupdate. (RD is set in the
    check: an authoritative server answers its own data all the same.)"""
    from tests.aliasd_process import free_port
    from tests.conftest import need
    from tests.secondaries import Named

    directory = tmp_path / "parent"
    directory.mkdir()
    (directory / "test.zone").write_text(PARENT_ZONE)
    named = Named(directory, free_port())
    (directory / "named.conf").write_text(
        named._options() + " };\ncontrols { };\n"
        f'zone "test" {{ type primary; file "{directory}/test.zone"; allow-update {{ 127.0.0.1; }}; }};\n')
    named._spawn([need("named"), "-g", "-c", str(directory / "named.conf")])
    named.wait_started()

    def registrar(*commands: str) -> None:
        script = f"server 127.0.0.1 {named.port}\nzone test\n" + "".join(f"{c}\n" for c in commands) + "send\n"
        subprocess.run([need("nsupdate")], input=script, text=True, check=True, timeout=10)

    view = in_reactor(ParentAgents, reactor, {ZONE: Parent((Endpoint("127.0.0.1", named.port),))})
    try:
        assert check(view, gone=[OLD]) is True  # a delegation without DS: none shown
        registrar(f"update add child.test. 3 DS {OLD}")
        assert check(view, want=[OLD]) is True
        registrar(f"update add child.test. 3 DS {NEW}")
        assert check(view, want=[NEW], gone=[OLD]) is False
        registrar(f"update delete child.test. DS {OLD}")
        assert check(view, want=[NEW], gone=[OLD]) is True and view.error_count(ZONE) == 0
    finally:
        in_reactor(view.close)
        named.stop()
