"""Automated key rollovers: the engine that keeps signed zones valid.

Why a module of its own: the signer publishes and signs by each key's
timing metadata (aliasd.dnssec.keys, BIND's Publish, Activate, Inactive,
Delete, SyncPublish, SyncDelete); this engine decides those times, one
rollover step at a time, as [dnssec-policy.NAME] says (RFC 7583, RFC 6781):

- ZSK, pre-publication: the successor is published, signs from
  Ipub later (the predecessor stops then), the predecessor leaves after
  Iret. Every time is written to the key files at the first step.
- KSK and CSK, double-KSK: the successor is published and signs the
  DNSKEY RRset at once; after Ipub its CDS/CDNSKEY replace the
  predecessor's; the engine waits until the parent shows the new DS, then
  until the old DS is gone, then waits out the DS TTL and removes the
  predecessor.
- A policy change (algorithm, roles): every new key at once, both
  algorithms sign everything, the DS is swapped as for a KSK, then the old
  keys leave together (RFC 6781 4.1.4, signatures and DNSKEYs together).
- "insecure": CDS/CDNSKEY delete (RFC 8078 section 4), no DS at any
  agent, the DS TTL waited out, then the signatures go.

The key files hold the timings; the store (meta, one record per zone)
holds only the progress: the step, the keys involved, the moments the
parent's DS was seen. A record is written before the key files of its
step, so a restart finds either the step with its keys, or the step's
files missing and does it again with a new key.

One heap and one DelayedCall for every zone (never one timer per zone);
key generation and file writes run in a thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import dns.name
from dns.dnssectypes import Algorithm
from twisted.internet import defer, threads
from twisted.logger import Logger

from aliasd.base.config import INSECURE, DnssecPolicy, parse_endpoint
from aliasd.base.timer import HeadTimer
from aliasd.dnssec.keys import KSK_FLAGS, ZSK_FLAGS, ZoneKey, new_key

log = Logger()

_PREFIX = b"rollover:"
_POLICY = b"rollover-policy:"
#: What a zone going insecure keeps from the policy it had (timings, agents, signing).
_TIMINGS = ("dnskey_ttl", "publish_safety", "retire_safety", "zone_propagation_delay", "parent_ds_ttl",
            "parent_propagation_delay", "max_zone_ttl", "parental_agents", "ds_submit_command", "denial",
            "signature_validity", "refresh_before")
#: A zone's key events are spread over up to this share of a lifetime (earlier, never later) ...
JITTER_SHARE = 0.1
#: ... and at most this many seconds.
JITTER_MAX = 86400


class ParentView(Protocol):
    """The parent's DS as the parental agents show it (aliasd.dnssec.parent)."""

    def ds_state(self, zone: dns.name.Name, want: frozenset[bytes], gone: frozenset[bytes]) -> defer.Deferred:
        ...

    def submit(self, zone: dns.name.Name, add: list[str], withdraw: list[str]) -> None:
        ...

    def has_agents(self, zone: dns.name.Name) -> bool:
        ...


class NoParent:
    """No parental agents anywhere: every DS step is confirmed by hand."""

    def ds_state(self, zone, want, gone):
        return defer.succeed(False)

    def submit(self, zone, add, withdraw) -> None:
        pass

    def has_agents(self, zone) -> bool:
        return False


def jitter(zone: dns.name.Name, lifetime: int) -> int:
    """Seconds a zone's key events come early: the same for a zone across
    restarts (a hash of its name), spread over JITTER_SHARE of the lifetime."""
    spread = min(int(lifetime * JITTER_SHARE), JITTER_MAX)
    if spread <= 0:
        return 0
    digest = hashlib.sha256(zone.to_wire()).digest()
    return int.from_bytes(digest[:8], "big") % spread


def check_interval(policy: DnssecPolicy) -> float:
    """Seconds between two looks at the parent's DS: its TTL / 24, within [1, 60]."""
    return min(60.0, max(1.0, policy.parent_ds_ttl / 24))


def role_of(key: ZoneKey) -> str:
    return "ksk" if key.is_ksk else "zsk"


def _ts(when: datetime | None) -> float | None:
    return None if when is None else when.timestamp()


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)


def ds_wire(key: ZoneKey) -> bytes:
    import dns.dnssec  # (cryptography: imported by signed zones only, aliasd.dnssec.keys)

    return dns.dnssec.make_ds(key.zone, key.dnskey, "SHA256").to_wire()


def ds_text(key: ZoneKey) -> str:
    import dns.dnssec

    return f"{key.zone.to_text()} IN DS {dns.dnssec.make_ds(key.zone, key.dnskey, 'SHA256').to_text()}"


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class _Zone:
    policy: DnssecPolicy
    keys: list[ZoneKey]
    record: dict | None = None
    due: float | None = None  # when the engine next acts for the zone
    waiting: str = ""  # what it waits for, in words
    interval: float = 0.0  # the next DS check's delay (backs off on errors)
    check_at: float | None = None  # when the parent is asked next (not kept: a restart asks at once)
    busy: bool = False  # a step is running in a thread


class Rollovers:
    """The rollover engine: one per process (built in service/tap.py).

    ``apply(zone, keys, cds_delete, signed)`` hands the zone's keys to the
    signer (a new Signer for the zone, or none once ``signed`` is false).
    ``max_ttl(zone)`` is the longest TTL the zone serves now (RFC 7583
    TTLsig). ``keystore`` reads and writes the key files.
    """

    def __init__(self, clock, db, keystore, apply: Callable, parent: ParentView | None = None,
                 max_ttl: Callable[[dns.name.Name], int] = lambda zone: 0,
                 in_thread: Callable = threads.deferToThread):
        self.clock = clock
        self.db = db
        self.keystore = keystore
        self.apply = apply
        self.parent = parent or NoParent()
        self.max_ttl = max_ttl
        self.in_thread = in_thread
        self.zones: dict[dns.name.Name, _Zone] = {}
        self._heap: list = []  # (due, tie-breaker, zone)
        self._order = itertools.count()
        self._timer = HeadTimer(clock, self._fire)

    # -- set-up

    def configure(self, policies: dict[dns.name.Name, DnssecPolicy], keys: dict[dns.name.Name, list[ZoneKey]]
                  ) -> None:
        """The signed zones, their policies and their keys (at start and
        after a reload): each zone carries on from its stored step."""
        stored = self._records()
        policies = self.with_kept_timings(policies)
        old, self.zones = self.zones, {}
        for zone, policy in policies.items():
            self._take(zone, policy, keys.get(zone, ()), stored.get(zone), old.get(zone))
        self._arm()

    def configure_zone(self, zone: dns.name.Name, policy: DnssecPolicy | None, keys: list[ZoneKey]) -> None:
        """One zone added (created at runtime) or gone (``policy`` None),
        the others left as they are."""
        old = self.zones.pop(zone, None)
        if policy is not None:
            (policy,) = self.with_kept_timings({zone: policy}).values()
            self._take(zone, policy, keys, self._records(zone).get(zone), old)
        self._arm()

    def _take(self, zone: dns.name.Name, policy: DnssecPolicy, keys, record: dict | None, old: _Zone | None) -> None:
        if policy.builtin:
            return  # dnssec = true: never rolled
        if old is not None and old.busy:  # (a step in its thread: it finishes with this state)
            self.zones[zone] = old
            old.policy = policy
            return
        state = self.zones[zone] = _Zone(policy, list(keys), record)
        if state.record is not None:
            self._repair(zone, state)
        if state.record is not None and policy.name != INSECURE and state.record.get("kind") == "insecure":
            # Taken back from insecure: the zone's keys are its own again.
            self._forget(zone)
            state.record = None
        self._plan(zone)
        if state.record is not None:
            log.info("zone {zone}: DNSSEC {kind} rollover carries on at step {step}: {next}",
                     zone=zone.to_text(), kind=state.record["kind"], step=state.record["step"],
                     next=self._next_words(zone))
            if state.record.get("kind") == "insecure":
                self.apply(zone, state.keys, True, True)

    def _repair(self, zone: dns.name.Name, state: _Zone) -> None:
        """After a crash inside a step: the record was written before the
        key files. A successor missing: the step is done again (successors
        already written leave at once: no DS names them). Timings the
        record holds but a file lacks: written now."""
        record, now = state.record, int(self.clock.seconds())
        tags = {k.tag for k in state.keys}
        if record["step"] == "publish" and not set(record["new"]) <= tags:
            orphans = [_timed(k, Inactive=now, Delete=now) for k in state.keys if k.tag in set(record["new"])]
            for key in orphans:
                self.keystore.save(key)
            state.keys = _merged(state.keys, orphans)
            self._forget(zone)
            state.record = None
            log.warn("zone {zone}: DNSSEC {kind} rollover was cut short before its keys were written; "  # noqa: G010
                     "it starts again", zone=zone.to_text(), kind=record["kind"])
            return
        old = set(record["old"])
        wanted: dict[str, float] = {}
        if record["kind"] == "zsk" and record["step"] in ("publish", "retire"):
            wanted = {"Inactive": record["activate"], "Delete": record["old_delete"]}
        elif record["step"] == "retire":
            wanted = {"Inactive": record["until"], "Delete": record["until"]}
        fixed = [_timed(k, **wanted) for k in state.keys
                 if wanted and k.tag in old and "Delete" not in k.timing]
        for key in fixed:
            self.keystore.save(key)
        state.keys = _merged(state.keys, fixed)

    def with_kept_timings(self, policies: dict[dns.name.Name, DnssecPolicy]) -> dict[dns.name.Name, DnssecPolicy]:
        """Each zone's named policy's timings are kept in the store, so that
        a zone moved to "insecure" goes on with the timings it had."""
        only = next(iter(policies)).to_text().encode() if len(policies) == 1 else b""  # (one zone: its own)
        with self.db.reading() as txn:
            kept = {dns.name.from_text(k[len(_POLICY):].decode()): v
                    for k, v in self.db.items_under(txn, self.db.meta, _POLICY + only)}
        out, changed = dict(policies), {}
        for zone, policy in policies.items():
            if policy.name == INSECURE:
                if zone in kept:
                    timings = {k: v for k, v in json.loads(kept[zone]).items() if k in _TIMINGS}
                    timings["parental_agents"] = tuple(parse_endpoint(a, 53) for a in timings["parental_agents"])
                    out[zone] = dataclasses.replace(policy, **timings)
            elif not policy.builtin:
                value = {k: getattr(policy, k) for k in _TIMINGS}
                value["parental_agents"] = [str(a) for a in policy.parental_agents]
                value = json.dumps(value, sort_keys=True).encode()
                if kept.get(zone) != value:
                    changed[zone] = value
        if changed:
            with self.db.write() as txn:
                for zone, value in changed.items():
                    txn.put(_POLICY + zone.to_text().encode(), value, db=self.db.meta)
        return out

    def policy(self, zone: dns.name.Name) -> DnssecPolicy | None:
        """The policy the engine follows for ``zone`` (for "insecure", with
        the timings, agents and command of the policy the zone had)."""
        state = self.zones.get(zone)
        return state.policy if state is not None else None

    def _records(self, zone: dns.name.Name | None = None) -> dict[dns.name.Name, dict]:
        """The stored progress of every zone (or of ``zone`` only)."""
        prefix = _PREFIX + (zone.to_text().encode() if zone is not None else b"")
        with self.db.reading() as txn:
            found = {dns.name.from_text(k[len(_PREFIX):].decode()): json.loads(v)
                     for k, v in self.db.items_under(txn, self.db.meta, prefix)}
        return found if zone is None else {z: r for z, r in found.items() if z == zone}

    def _store(self, zone: dns.name.Name, record: dict | None) -> None:
        """One transaction: the zone's progress, or its end."""
        key = _PREFIX + zone.to_text().encode()
        with self.db.write() as txn:
            if record is None:
                txn.delete(key, db=self.db.meta)
            else:
                txn.put(key, json.dumps(record, sort_keys=True).encode(), db=self.db.meta)

    def _forget(self, zone: dns.name.Name) -> None:
        self._store(zone, None)

    # -- what comes next

    def _current(self, state: _Zone) -> list[ZoneKey]:
        """The keys that are the zone's own (no Delete time set)."""
        return [k for k in state.keys if "Delete" not in k.timing]

    def _matches(self, state: _Zone) -> bool:
        """Do the current keys have the policy's algorithm and roles?"""
        policy = state.policy
        current = self._current(state)
        wanted = {"ksk", "zsk"} if policy.split else {"ksk"}
        algorithm = Algorithm.make(policy.algorithm)
        return bool(current) and all(k.algorithm == algorithm for k in current) and \
            {role_of(k) for k in current} == wanted

    def _plan(self, zone: dns.name.Name) -> None:
        """Work out the zone's next moment (``due``) and what it waits for."""
        self._work_out(zone)
        self._push(zone)

    def _work_out(self, zone: dns.name.Name) -> None:
        state = self.zones[zone]
        state.waiting, state.due = "", None
        record = state.record
        now = self.clock.seconds()
        if record is None:
            if state.policy.name == INSECURE:
                if any(k.published(now) for k in state.keys):
                    state.due, state.waiting = now, "going insecure"
                return
            if not self._matches(state):
                state.due, state.waiting = now, f"a rollover to policy {state.policy.name}"
                return
            starts = [(self._start_time(zone, state, k), role_of(k), k.tag) for k in self._current(state)
                      if state.policy.lifetime(self._role(state, k)) > 0]
            if starts:
                when, role, tag = min(starts)
                state.due, state.waiting = when, f"a {self._role_name(state, role)} rollover of key {tag}"
            return
        step = record["step"]
        if step in ("publish", "retire"):
            state.due = record["until"]
            state.waiting = "the DS at the parent" if step == "publish" and record["kind"] != "zsk" else ""
        elif step in ("ds-publish", "ds-withdraw", "cds-delete"):
            what = "published" if step == "ds-publish" else "withdrawn"
            if self.parent.has_agents(zone):
                state.due = max(now, state.check_at or now)
                state.waiting = f"the DS {what} at every parental agent"
            else:
                state.waiting = f"aliasd-ctl dnssec-checkds {zone.to_text()} {what}"
        elif step in ("unsign", "done"):
            state.due = record.get("until", now)

    def _role(self, state: _Zone, key: ZoneKey) -> str:
        return "csk" if key.is_ksk and not state.policy.split else role_of(key)

    @staticmethod
    def _role_name(state: _Zone, role: str) -> str:
        return "CSK" if role == "ksk" and not state.policy.split else role.upper()

    def _start_time(self, zone: dns.name.Name, state: _Zone, key: ZoneKey) -> float:
        """When the successor of ``key`` is published: its lifetime after it
        became active, less the time to publish, less the zone's jitter."""
        lifetime = state.policy.lifetime(self._role(state, key))
        activated = _ts(key.timing.get("Activate") or key.timing.get("Created")) or self.clock.seconds()
        return activated + lifetime - state.policy.publish_interval - jitter(zone, lifetime)

    def _push(self, zone: dns.name.Name) -> None:
        state = self.zones[zone]
        if state.due is not None:
            heapq.heappush(self._heap, (state.due, next(self._order), zone))

    def _arm(self) -> None:
        """One DelayedCall, for the earliest due zone."""
        while self._heap and (self._heap[0][2] not in self.zones
                              or self.zones[self._heap[0][2]].due != self._heap[0][0]):
            heapq.heappop(self._heap)  # replanned or gone
        self._timer.at(self._heap[0][0] if self._heap else None)

    def _fire(self) -> None:
        now = self.clock.seconds()
        while self._heap and self._heap[0][0] <= now:
            due, _, zone = heapq.heappop(self._heap)
            state = self.zones.get(zone)
            if state is None or state.due != due or state.busy:
                continue
            state.due = None
            self._act(zone)
        self._arm()

    # -- the steps

    def _act(self, zone: dns.name.Name) -> None:
        state = self.zones[zone]
        record = state.record
        if record is None:
            if state.policy.name == INSECURE:
                self._run(zone, self._begin_insecure)
            elif not self._matches(state):
                self._run(zone, self._begin_policy)
            else:
                due = [k for k in self._current(state) if state.policy.lifetime(self._role(state, k)) > 0
                       and self._start_time(zone, state, k) <= self.clock.seconds()]
                if due:
                    self._run(zone, lambda z, s: self._begin_roll(z, s, due[0]))
            return
        step = record["step"]
        if step == "publish" and record["kind"] == "zsk":
            self._advance(zone, "retire", until=record["old_delete"])
        elif step == "publish":
            self._advance(zone, "ds-publish")
            self._submit(zone, state, "add")
            self._check(zone)
        elif step in ("ds-publish", "ds-withdraw", "cds-delete"):
            self._check(zone)
        elif step == "retire":
            self._finish(zone)
        elif step in ("unsign", "done"):
            self._run(zone, self._unsign)

    def _run(self, zone: dns.name.Name, step: Callable) -> None:
        """A step that writes key files, in a thread; the signer gets the keys after."""
        state = self.zones[zone]
        state.busy = True

        def done(result):
            state.busy = False
            if self.zones.get(zone) is state:
                keys, cds_delete, signed = result
                state.keys = keys
                self.apply(zone, keys, cds_delete, signed)
                self._plan(zone)
                self._log_step(zone)
                self._arm()

        def failed(failure):
            state.busy = False
            log.failure("zone {zone}: DNSSEC rollover step failed; tried again in a minute", failure,
                        zone=zone.to_text())
            state.due = self.clock.seconds() + 60
            self._push(zone)
            self._arm()

        self.in_thread(step, zone, state).addCallbacks(done, failed)

    def _save_step(self, zone: dns.name.Name, state: _Zone, record: dict, made: list[ZoneKey],
                   changed: list[ZoneKey]) -> list[ZoneKey]:
        """Record the step, then write its key files (in the thread)."""
        self._store(zone, record)
        for key in made + changed:
            self.keystore.save(key)
        state.record = record
        return _merged(state.keys, made + changed)

    def _begin_roll(self, zone: dns.name.Name, state: _Zone, old: ZoneKey):
        """First step of a ZSK (pre-publication) or KSK/CSK (double-KSK) rollover."""
        policy = state.policy
        now = int(self.clock.seconds())
        ipub = policy.publish_interval
        if old.is_zsk:
            activate = now + ipub
            delete = activate + policy.retire_interval("zsk", self.max_ttl(zone))
            new = new_key(zone, old.algorithm, ZSK_FLAGS, state.keys,
                          {"Publish": _dt(now), "Activate": _dt(activate)})
            changed = [_timed(old, Inactive=activate, Delete=delete)]
            record = {"kind": "zsk", "step": "publish", "old": [old.tag], "new": [new.tag], "since": now,
                      "started": now, "until": activate, "activate": activate, "old_delete": delete}
        else:
            sync = now + ipub + max(0, self.max_ttl(zone) - policy.dnskey_ttl)
            new = new_key(zone, old.algorithm, KSK_FLAGS, state.keys,
                          {"Publish": _dt(now), "Activate": _dt(now), "SyncPublish": _dt(sync)})
            changed = [_timed(old, SyncDelete=sync)]
            record = {"kind": self._role(state, old), "step": "publish", "old": [old.tag], "new": [new.tag],
                      "since": now, "started": now, "until": sync}
        return self._save_step(zone, state, record, [new], changed), False, True

    def _begin_policy(self, zone: dns.name.Name, state: _Zone):
        """First step of a rollover to the policy's keys (algorithm or roles):
        every new key published and signing at once, DS swapped later."""
        policy = state.policy
        now = int(self.clock.seconds())
        sync = now + policy.publish_interval + max(0, self.max_ttl(zone) - policy.dnskey_ttl)
        old = self._current(state)
        made: list[ZoneKey] = []
        flags = [KSK_FLAGS, ZSK_FLAGS] if policy.split else [KSK_FLAGS]
        for flag in flags:
            timing = {"Publish": _dt(now), "Activate": _dt(now)}
            if flag == KSK_FLAGS:
                timing["SyncPublish"] = _dt(sync)
            made.append(new_key(zone, policy.algorithm, flag, state.keys + made, timing))
        changed = [_timed(k, SyncDelete=sync) for k in old if k.is_ksk]
        record = {"kind": "policy", "step": "publish", "old": [k.tag for k in old], "new": [k.tag for k in made],
                  "since": now, "started": now, "until": sync}
        return self._save_step(zone, state, record, made, changed), False, True

    def _begin_insecure(self, zone: dns.name.Name, state: _Zone):
        now = int(self.clock.seconds())
        record = {"kind": "insecure", "step": "cds-delete", "old": [k.tag for k in self._current(state)],
                  "new": [], "since": now, "started": now}
        self._store(zone, record)
        state.record = record
        self.parent.submit(zone, [], [ds_text(k) for k in state.keys if k.is_ksk and k.published(now)])
        return state.keys, True, True

    def _unsign(self, zone: dns.name.Name, state: _Zone):
        """Last step of going insecure: every key inactive and deleted now."""
        now = int(self.clock.seconds())
        changed = [_timed(k, Inactive=min(now, _ts(k.timing.get("Inactive")) or now),
                          Delete=min(now, _ts(k.timing.get("Delete")) or now)) for k in state.keys]
        record = dict(state.record, step="done")
        keys = self._save_step(zone, state, record, [], changed)
        self._forget(zone)
        state.record = None
        return keys, False, False

    def _retire(self, zone: dns.name.Name, state: _Zone):
        """The old DS is gone from the parent: the old KSK(s) (and for a
        policy rollover every old key) leave once the DS TTL has passed."""
        now = int(self.clock.seconds())
        policy = state.policy
        delete = now + policy.parent_propagation_delay + policy.parent_ds_ttl + policy.retire_safety
        record = state.record
        old = set(record["old"])
        changed = [_timed(k, Inactive=delete, Delete=delete) for k in state.keys
                   if k.tag in old and "Delete" not in k.timing]
        record = dict(record, step="retire", until=delete)
        return self._save_step(zone, state, record, [], changed), False, True

    def _advance(self, zone: dns.name.Name, step: str, **fields) -> None:
        """A step that only moves the record (no key file changes)."""
        state = self.zones[zone]
        record = dict(state.record, step=step, since=int(self.clock.seconds()), **fields)
        state.check_at = None
        self._store(zone, record)
        state.record = record
        state.interval = check_interval(state.policy)
        self._plan(zone)
        self._log_step(zone)

    def _finish(self, zone: dns.name.Name) -> None:
        state = self.zones[zone]
        kind = state.record["kind"]
        took = self.clock.seconds() - state.record.get("started", state.record["since"])
        self._forget(zone)
        state.record = None
        self._plan(zone)
        log.info("zone {zone}: DNSSEC {kind} rollover done in {took:.0f} s; next: {next}",
                 zone=zone.to_text(), kind=kind, took=took, next=self._next_words(zone))

    # -- the parent

    def _ds_sets(self, state: _Zone) -> tuple[frozenset[bytes], frozenset[bytes]]:
        record = state.record
        new, old = set(record["new"]), set(record["old"])
        ksks = [k for k in state.keys if k.is_ksk]
        want = frozenset(ds_wire(k) for k in ksks if k.tag in new)
        gone = frozenset(ds_wire(k) for k in ksks if k.tag in old)
        if record["step"] == "ds-publish":
            return want, frozenset()
        if record["step"] == "cds-delete":
            return frozenset(), frozenset(ds_wire(k) for k in ksks)
        return want, gone

    def _submit(self, zone: dns.name.Name, state: _Zone, what: str) -> None:
        """Hand ds-submit-command the new DS (``add``) or, once the parent
        shows it, the old DS to withdraw (``withdraw``)."""
        tags = set(state.record["new" if what == "add" else "old"])
        records = [ds_text(k) for k in state.keys if k.is_ksk and k.tag in tags]
        self.parent.submit(zone, records if what == "add" else [], records if what == "withdraw" else [])

    def _check(self, zone: dns.name.Name) -> None:
        """Ask the parental agents; without any, wait for the operator."""
        state = self.zones[zone]
        if not self.parent.has_agents(zone):
            self._plan(zone)
            return
        want, gone = self._ds_sets(state)
        step = state.record["step"]
        state.busy = True

        def seen(ok):
            state.busy = False
            if self.zones.get(zone) is not state or state.record is None or state.record["step"] != step:
                return
            if ok:
                state.interval = check_interval(state.policy)
                self._ds_seen(zone, "withdrawn" if step != "ds-publish" else "published")
                return
            errors = getattr(self.parent, "error_count", lambda _: 0)(zone)
            # An agent that did not answer (ParentAgents counts them): back
            # off, doubling up to a minute; one that answered "not yet": the
            # policy's pace.
            state.interval = (min(60.0, max(state.interval, check_interval(state.policy)) * 2) if errors
                              else check_interval(state.policy))
            self._again(zone, state)

        def error(failure):
            state.busy = False
            log.warn("zone {zone}: parental agents: {error}; asked again later", zone=zone.to_text(),  # noqa: G010
                     error=failure.getErrorMessage())
            state.interval = min(60.0, max(state.interval, check_interval(state.policy)) * 2)
            self._again(zone, state)

        defer.maybeDeferred(self.parent.ds_state, zone, want, gone).addCallbacks(seen, error)

    def _again(self, zone: dns.name.Name, state: _Zone) -> None:
        state.interval = state.interval or check_interval(state.policy)
        state.check_at = self.clock.seconds() + state.interval
        self._plan(zone)
        self._arm()

    def _ds_seen(self, zone: dns.name.Name, what: str) -> None:
        """The parent shows the DS step done (agents or the operator)."""
        state = self.zones[zone]
        state.check_at = None
        now = int(self.clock.seconds())
        seen = dict(state.record.get("ds", {}), **{what: now})
        if state.record["step"] == "ds-publish":
            self._advance(zone, "ds-withdraw", ds=seen)
            self._submit(zone, state, "withdraw")
            self._check(zone)
        elif state.record["step"] == "cds-delete":
            policy = state.policy
            until = now + policy.parent_propagation_delay + policy.parent_ds_ttl + policy.retire_safety
            self._advance(zone, "unsign", ds=seen, until=until)
            self._arm()
        else:
            state.record = dict(state.record, ds=seen)
            self._run(zone, self._retire)

    # -- the operator

    def confirm_ds(self, zone: dns.name.Name, what: str) -> str:
        """The operator's word that the parent shows the DS ``published`` or
        ``withdrawn`` (for zones without parental agents)."""
        if what not in ("published", "withdrawn"):
            raise ValueError(f"expected published or withdrawn, got {what!r}")
        state = self.zones.get(zone)
        if state is None or state.record is None:
            raise ValueError(f"zone {zone.to_text()} has no rollover running")
        step = state.record["step"]
        expected = {"ds-publish": "published", "ds-withdraw": "withdrawn", "cds-delete": "withdrawn"}.get(step)
        if expected is None:
            raise ValueError(f"zone {zone.to_text()} waits for no DS now (step {step}: {self._next_words(zone)})")
        if what != expected:
            raise ValueError(f"zone {zone.to_text()} waits for the DS {expected}, not {what}")
        if state.busy:
            raise ValueError(f"zone {zone.to_text()}: a step is running; try again in a moment")
        self._ds_seen(zone, what)
        return f"zone {zone.to_text()}: DS {what} confirmed; next: {self._next_words(zone)}"

    def rollover(self, zone: dns.name.Name, tag: int | None) -> str:
        """Start a rollover of key ``tag`` (the KSK or CSK when None) now."""
        state = self.zones.get(zone)
        if state is None:
            raise ValueError(f"zone {zone.to_text()} is not signed under a dnssec-policy")
        if state.record is not None or state.busy:
            raise ValueError(f"zone {zone.to_text()}: a {state.record['kind'] if state.record else ''} "
                             "rollover is running already (one at a time)")
        current = self._current(state)
        keys = [k for k in current if (k.tag == tag if tag is not None else k.is_ksk)]
        if not keys:
            raise ValueError(f"zone {zone.to_text()} has no current key {tag}"
                             if tag is not None else f"zone {zone.to_text()} has no KSK")
        self._run(zone, lambda z, s: self._begin_roll(z, s, keys[0]))
        return f"zone {zone.to_text()}: rollover of key {keys[0].tag} started"

    def stop(self) -> None:
        """No more steps from this engine (shutdown; a test's restart)."""
        self._timer.at(None)
        self._heap.clear()
        self.zones = {}

    # -- what operators see

    def _next_words(self, zone: dns.name.Name) -> str:
        state = self.zones[zone]
        if state.due is None and not state.waiting:
            return "nothing (no key is rolled)"
        if state.due is None:
            return f"waiting for {state.waiting}"
        what = state.waiting or {"retire": "the old key removed", "unsign": "the signatures removed",
                                 "publish": "the new key active"}.get((state.record or {}).get("step"), "the next step")
        return f"{what} at {_when(state.due)}"

    def _log_step(self, zone: dns.name.Name) -> None:
        state = self.zones[zone]
        if state.record is None:
            log.info("zone {zone}: DNSSEC keys: next: {next}", zone=zone.to_text(), next=self._next_words(zone))
            return
        log.info("zone {zone}: DNSSEC {kind} rollover, step {step} (keys {old} -> {new}); next: {next}",
                 zone=zone.to_text(), kind=state.record["kind"], step=state.record["step"],
                 old=state.record["old"], new=state.record["new"], next=self._next_words(zone))

    def state(self, zone: dns.name.Name) -> dict:
        """Every key with its state and next event; the running step and what it waits for."""
        state = self.zones.get(zone)
        if state is None:
            return {"policy": None, "keys": [], "rollover": None}
        now = self.clock.seconds()
        keys = []
        for key in state.keys:
            upcoming = sorted((when.timestamp(), tag) for tag, when in key.timing.items()
                              if when.timestamp() > now and tag != "Created")
            keys.append({
                "tag": key.tag, "role": self._role(state, key), "algorithm": int(key.algorithm),
                "state": _key_state(key, now),
                "next_event": upcoming[0][1] if upcoming else None,
                "next_time": _when(upcoming[0][0]) if upcoming else None,
            })
        record = state.record
        return {"policy": state.policy.name, "keys": keys,
                "rollover": None if record is None else {"kind": record["kind"], "step": record["step"],
                                                         "waiting_for": state.waiting or None,
                                                         "ds_seen": record.get("ds", {})},
                "next": self._next_words(zone), "next_time": _when(state.due) if state.due else None}

    def next_event_seconds(self) -> dict[dns.name.Name, float]:
        """Seconds until each zone's next key event (its rollover's next
        step, or the next start; zones waiting on the operator are left out)."""
        now = self.clock.seconds()
        return {zone: max(0.0, state.due - now) for zone, state in self.zones.items() if state.due is not None}


def _key_state(key: ZoneKey, now: float) -> str:
    if key.published(now) is False and "Delete" in key.timing and key.timing["Delete"].timestamp() <= now:
        return "removed"
    if key.active(now):
        return "active"
    if key.published(now):
        return "retired" if "Inactive" in key.timing and key.timing["Inactive"].timestamp() <= now else "published"
    return "created"


def _merged(keys: list[ZoneKey], written: list[ZoneKey]) -> list[ZoneKey]:
    """``keys`` with those ``written`` in place of (or beside) their namesakes."""
    tags = {(k.algorithm, k.tag) for k in written}
    return sorted([k for k in keys if (k.algorithm, k.tag) not in tags] + written, key=lambda k: (k.flags, k.tag))


def _timed(key: ZoneKey, **times: float) -> ZoneKey:
    """``key`` with these timing tags set (UNIX times)."""
    return dataclasses.replace(key, timing={**key.timing, **{tag: _dt(when) for tag, when in times.items()}})
