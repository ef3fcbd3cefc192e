"""The parent side of a KSK rollover: DS checks at the parental agents, DS submission.

Why: a KSK (or CSK, or algorithm) rollover may only move on once the
parent publishes the new DS, and later only once the old one is gone; a
step taken early makes the zone bogus for every validating resolver. The
rollover engine (aliasd.dnssec.rollover) decides *when* to ask; this module
answers *what the parent shows*, and hands the DS changes to the operator's
``ds-submit-command``.

``ParentAgents.ds_state`` asks every parental agent of the zone's policy
(``parental-agents``: the parent's servers, or a validating resolver) for
the zone's DS RRset, over UDP with TCP when the answer is truncated (the
resolve stage's UpstreamResolver: random IDs and source ports, 0x20 case
randomisation). RD is set: an authoritative server ignores it, a resolver
needs it (with RD clear a resolver answers from its cache only). It fires
True only when every agent answers and shows every DS of ``want`` and none
of ``gone``; an error or timeout at any agent counts as "not yet": it is
logged (a few lines a minute) and counted (``errors``), so the engine can
back off.

``ParentAgents.submit`` runs the zone's ``ds-submit-command`` (never on the
reactor thread's time: a child process) as::

    COMMAND [ARGS...] ZONE
    env ALIASD_ZONE=ZONE
        ALIASD_DS_ADD=<DS presentation lines to add, one a line>
        ALIASD_DS_WITHDRAW=<DS presentation lines to withdraw, one a line>

Exit status 0 is success; anything else is logged with the command's output
and retried with doubling delays until it succeeds, or a newer ``submit``
(or ``cancel``) for the zone replaces it.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Callable, Iterable, Mapping

import dns.name
from twisted.application import service
from twisted.internet import defer, utils
from twisted.logger import Logger
from twisted.names import dns as tdns
from twisted.names import error as terror

from aliasd.base.config import Endpoint, parse_endpoint
from aliasd.base.logthrottle import LogThrottle
from aliasd.resolve.resolution import describe_failure
from aliasd.resolve.upstream import UpstreamResolver

log = Logger()

DS = 43


@dataclasses.dataclass(frozen=True)
class Parent:
    """Where a zone's DS is checked, and how it is submitted (from its policy)."""

    agents: tuple[Endpoint, ...] = ()
    submit_command: tuple[str, ...] = ()  # argv before the zone; empty: none

    @classmethod
    def from_policy(cls, agents: Iterable[str | Endpoint], command: str | None) -> Parent:
        """From the policy's ``parental-agents`` (Endpoints, or ADDR[:PORT]
        texts) and ``ds-submit-command`` (split as a shell would, but run
        without one). ValueError names what is wrong."""
        endpoints = tuple(a if isinstance(a, Endpoint) else parse_endpoint(a, 53) for a in agents)
        argv = tuple(shlex.split(command)) if command else ()
        return cls(endpoints, argv)


def parents_from(policies: Mapping[dns.name.Name, object]) -> dict[dns.name.Name, Parent]:
    """Each zone's Parent from its dnssec-policy (an object with
    ``parental_agents`` and ``ds_submit_command``; None: no policy)."""
    return {zone: Parent.from_policy(getattr(policy, "parental_agents", ()) or (),
                                     getattr(policy, "ds_submit_command", None))
            for zone, policy in policies.items() if policy is not None}


class _Submission:
    """One zone's DS change waiting for its command to succeed."""

    def __init__(self, add: list[str], withdraw: list[str]):
        self.add = list(add)
        self.withdraw = list(withdraw)
        self.tries = 0
        self.retry = None  # the delayed call of the next try


class ParentAgents(service.Service):
    """The ParentView of the rollover engine (see the module docstring); a
    service so that stopping the server closes the agents' sockets and
    stops the submissions' retries."""

    #: Seconds each agent gets to answer a DS query (one resend after half).
    timeout = 2.0
    #: First delay before a failed ds-submit-command is run again; doubles.
    submit_retry = 10.0
    submit_retry_max = 600.0
    #: Octets of a failed command's output kept in its log line.
    output_limit = 2000

    #: Query sockets per agent's client (few checks: a small pool of random ports).
    pool_size = 2

    def __init__(self, reactor, parents: Mapping[dns.name.Name, Parent] | None = None,
                 policy_of: Callable[[dns.name.Name], object] | None = None):
        self.reactor = reactor
        self.parents: dict[dns.name.Name, Parent] = dict(parents or {})
        # Or each zone's policy as the engine holds it now (Rollovers.policy:
        # also the kept one of a zone going insecure), read at each use.
        self.policy_of = policy_of
        self._from_policy: dict[tuple, Parent] = {}
        self._resolvers: dict[Endpoint, UpstreamResolver] = {}
        #: Zone -> consecutive checks with an error at some agent (for backoff).
        self.errors: dict[dns.name.Name, int] = {}
        #: Zone -> {agent: DS rdata wires} at the last check that reached them all.
        self.seen: dict[dns.name.Name, dict[Endpoint, frozenset[bytes]]] = {}
        self._submissions: dict[dns.name.Name, _Submission] = {}
        self._running: dict[dns.name.Name, _Submission] = {}
        self._throttle = LogThrottle("parental agent errors", burst=10, clock=reactor.seconds)

    def set_parents(self, parents: Mapping[dns.name.Name, Parent]) -> None:
        """The zones' parents now (a reload); clients of agents no longer named are closed."""
        self.parents = dict(parents)
        wanted = {a for p in self.parents.values() for a in p.agents}
        for agent in [a for a in self._resolvers if a not in wanted]:
            self._resolvers.pop(agent).close()

    def parent_of(self, zone: dns.name.Name) -> Parent | None:
        """The zone's Parent: from its policy when ``policy_of`` is given, else as set."""
        if self.policy_of is None:
            return self.parents.get(zone)
        policy = self.policy_of(zone)
        if policy is None:
            return None
        key = (tuple(getattr(policy, "parental_agents", ()) or ()), getattr(policy, "ds_submit_command", None))
        made = self._from_policy.get(key)
        if made is None:
            made = self._from_policy[key] = Parent.from_policy(*key)
        return made

    def has_agents(self, zone: dns.name.Name) -> bool:
        parent = self.parent_of(zone)
        return parent is not None and bool(parent.agents)

    # -- DS checks -------------------------------------------------------------

    def error_count(self, zone: dns.name.Name) -> int:
        """Consecutive checks of ``zone`` that some agent did not answer (0
        after one that all answered): what the engine's backoff goes by."""
        return self.errors.get(zone, 0)

    def ds_state(self, zone: dns.name.Name, want: frozenset[bytes], gone: frozenset[bytes]) -> defer.Deferred:
        """True once every agent shows all of ``want`` and none of ``gone``
        (DS rdata in wire form); False otherwise, errors included."""
        parent = self.parent_of(zone)
        if parent is None or not parent.agents:
            return defer.succeed(False)
        asked = [self._ask(zone, agent) for agent in parent.agents]
        d = defer.gatherResults(asked)
        d.addCallback(self._judge, zone, parent.agents, frozenset(want), frozenset(gone))
        return d

    def _ask(self, zone: dns.name.Name, agent: Endpoint) -> defer.Deferred:
        """The DS rdata ``agent`` answers for ``zone`` (NODATA, NXDOMAIN: none);
        None on an error, logged."""
        resolver = self._resolvers.get(agent)
        if resolver is None:
            resolver = self._resolvers[agent] = UpstreamResolver([agent], self.reactor)
            resolver.pool_size = self.pool_size
        query = tdns.Query(zone.to_text(omit_final_dot=True), DS, tdns.IN)
        d = resolver.query(query, timeout=(self.timeout / 2, self.timeout / 2))
        d.addCallbacks(_ds_rdatas, self._no_ds, (zone,), None, (zone, agent), None)
        return d

    def _no_ds(self, failure, zone: dns.name.Name, agent: Endpoint):
        # (Exact types: SERVFAIL, REFUSED... are subclasses of DomainError.)
        if failure.type in (terror.DNSNameError, terror.DomainError, terror.AuthoritativeDomainError):
            return frozenset()  # NXDOMAIN: no DS there
        if self._throttle.allow():
            log.warn("DNSSEC {zone}: parental agent {agent} gave no DS answer ({why}); the step waits",  # noqa: G010
                     zone=zone.to_text(), agent=str(agent), why=describe_failure(failure))
        return None

    def _judge(self, answers: list, zone: dns.name.Name, agents, want: frozenset, gone: frozenset) -> bool:
        if any(a is None for a in answers):
            self.errors[zone] = self.errors.get(zone, 0) + 1
            return False
        self.errors.pop(zone, None)
        self.seen[zone] = dict(zip(agents, answers))
        return all(want <= shown and not (gone & shown) for shown in answers)

    def stopService(self):
        super().stopService()
        self.close()

    def close(self) -> None:
        """Close every agent's client and stop retrying submissions (service stop)."""
        for resolver in self._resolvers.values():
            resolver.close()
        self._resolvers.clear()
        for zone in list(self._submissions):
            self.cancel(zone)

    # -- DS submission -----------------------------------------------------------

    def submit(self, zone: dns.name.Name, add: list[str], withdraw: list[str]) -> None:
        """Run the zone's ds-submit-command for these DS changes (presentation
        lines) until it succeeds; replaces a submission not done yet."""
        parent = self.parent_of(zone)
        if parent is None or not parent.submit_command:
            return
        self.cancel(zone)
        submission = self._submissions[zone] = _Submission(add, withdraw)
        if zone not in self._running:
            self._run(zone, submission)

    def cancel(self, zone: dns.name.Name) -> None:
        """Stop retrying the zone's submission (the step it was for changed)."""
        submission = self._submissions.pop(zone, None)
        if submission is not None and submission.retry is not None and submission.retry.active():
            submission.retry.cancel()

    def pending(self, zone: dns.name.Name) -> bool:
        """Is a DS change of the zone waiting for its command to succeed?"""
        return zone in self._submissions

    def _run(self, zone: dns.name.Name, submission: _Submission) -> None:
        submission.retry = None
        parent = self.parent_of(zone)
        if parent is None or not parent.submit_command or self._submissions.get(zone) is not submission:
            return
        submission.tries += 1
        argv = [*parent.submit_command, zone.to_text()]
        env = {**os.environ, "ALIASD_ZONE": zone.to_text(),
               "ALIASD_DS_ADD": "\n".join(submission.add), "ALIASD_DS_WITHDRAW": "\n".join(submission.withdraw)}
        self._running[zone] = submission
        d = utils.getProcessOutputAndValue(argv[0], argv[1:], env=env, reactor=self.reactor)
        d.addCallbacks(self._ran, self._not_run, (zone, submission, argv), None, (zone, submission, argv), None)
        d.addErrback(lambda f: log.failure("DNSSEC {zone}: ds-submit-command", f, zone=zone.to_text()))

    def _ran(self, result, zone, submission: _Submission, argv) -> None:
        out, err, code = result
        if code == 0:
            self._running.pop(zone, None)
            if self._submissions.get(zone) is submission:
                del self._submissions[zone]
            log.info("DNSSEC {zone}: ds-submit-command done (add {add}, withdraw {withdraw})",
                     zone=zone.to_text(), add=len(submission.add), withdraw=len(submission.withdraw))
            self._next(zone)
            return
        output = (out + err).decode(errors="replace").strip()[-self.output_limit:]
        self._failed(zone, submission, argv, f"exit status {code}", output)

    def _not_run(self, failure, zone, submission: _Submission, argv) -> None:
        self._failed(zone, submission, argv, failure.getErrorMessage(), "")

    def _failed(self, zone, submission: _Submission, argv, why: str, output: str) -> None:
        self._running.pop(zone, None)
        if self._submissions.get(zone) is not submission:
            self._next(zone)  # replaced meanwhile: run the newer one
            return
        delay = min(self.submit_retry * 2 ** (submission.tries - 1), self.submit_retry_max)
        log.error("DNSSEC {zone}: ds-submit-command {command} failed ({why}), try {tries}; again in {delay:.0f}s"
                  "{output}", zone=zone.to_text(), command=shlex.join(argv), why=why, tries=submission.tries,
                  delay=delay, output=f": {output}" if output else "")
        submission.retry = self.reactor.callLater(delay, self._run, zone, submission)

    def _next(self, zone) -> None:
        """A newer submission that waited for the one running."""
        waiting = self._submissions.get(zone)
        if waiting is not None and waiting.tries == 0 and zone not in self._running:
            self._run(zone, waiting)


def _ds_rdatas(result, zone: dns.name.Name) -> frozenset[bytes]:
    """The DS rdata (wire) at ``zone`` in an answer's answer section."""
    answers, _, _ = result
    owner = zone.to_text(omit_final_dot=True).lower().encode()
    return frozenset(rr.payload.data for rr in answers
                     if rr.type == DS and rr.name.name.lower() == owner and isinstance(rr.payload, tdns.UnknownRecord))
