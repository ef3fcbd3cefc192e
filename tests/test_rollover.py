"""Unit tests: the key-rollover engine (aliasd.dnssec.rollover) on a test
clock, with a real state store and real key files: every step in order,
a restart from the store at each step, jitter, the DS checks, the
operator's confirmations, policy changes and going insecure."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import dns.dnssec
import dns.name
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from aliasd.base.config import (
    INSECURE,
    ConfigError,
    DnssecPolicy,
    parse_duration,
    settings_from_dict,
)
from aliasd.base.db import StateDB
from aliasd.dnssec.keys import KeyStore, key_roles
from aliasd.dnssec.rollover import Rollovers, check_interval, ds_wire, jitter

ZONE = dns.name.from_text("child.test.")
START = 1_800_000_000
#: The e2e tests' policy (rollover-contract.md): Ipub = 1 + 3 + 1 = 5 s, Iret = 5 s.
FAST = DnssecPolicy("fast", keys=(("ksk", 90), ("zsk", 40)), dnskey_ttl=3, publish_safety=1, retire_safety=1,
                    zone_propagation_delay=1, parent_ds_ttl=3, parent_propagation_delay=1,
                    signature_validity=600, refresh_before=300)
KSK_ONLY_ROLLED = dataclasses.replace(FAST, keys=(("ksk", 90), ("zsk", 0)))


class Parent:
    """A parent whose DS RRset the test sets; counts the engine's looks and submissions."""

    def __init__(self, agents=True):
        self.ds: set[bytes] = set()
        self.agents = agents
        self.looks = 0
        self.submitted: list = []
        self.fail = False

    def ds_state(self, zone, want, gone):
        self.looks += 1
        if self.fail == "counted":  # as ParentAgents has it: not yet, and an error counted
            return defer.succeed(False)
        if self.fail:
            return defer.fail(OSError("agent unreachable"))
        return defer.succeed(want <= self.ds and not gone & self.ds)

    def error_count(self, zone):
        return 1 if self.fail else 0

    def submit(self, zone, add, withdraw):
        self.submitted.append((list(add), list(withdraw)))

    def has_agents(self, zone):
        return self.agents


class World:
    """The engine, its store and key directory, and what it handed the signer."""

    def __init__(self, tmp_path, policy=FAST, parent=None, clock=None, keys=None):
        self.tmp_path = tmp_path
        self.clock = clock or Clock()
        if clock is None:
            self.clock.advance(START)
        self.db = StateDB(tmp_path / "state")
        self.keystore = KeyStore(tmp_path / "keys")
        self.parent = parent if parent is not None else Parent()
        self.applied: list = []
        self.policy = policy
        if keys is None:
            keys = self.keystore.ensure(ZONE, policy.algorithm, policy.split, now=self.clock.seconds())
        self.engine = Rollovers(self.clock, self.db, self.keystore, self._apply, self.parent,
                                in_thread=defer.maybeDeferred)
        self.engine.configure({ZONE: policy}, {ZONE: keys})

    def _apply(self, zone, keys, cds_delete, signed):
        self.applied.append((keys, cds_delete, signed))

    @property
    def keys(self):
        return self.engine.zones[ZONE].keys

    @property
    def record(self):
        return self.engine.zones[ZONE].record

    def restart(self, policy=None):
        """A new engine on the same store and key files (a restart); this one stops."""
        self.engine.stop()
        return World(self.tmp_path, policy or self.policy, self.parent, self.clock,
                     KeyStore(self.tmp_path / "keys").load(ZONE))

    def restart_same(self, policy=None):
        """Restart, and check the new engine is at the same step, with the
        same keys and the same next moment (a DS step: asks the parent at
        once, the time of its next look is not kept); returns it."""
        record, due = self.record, self.engine.zones[ZONE].due
        looking = self.engine.zones[ZONE].check_at is not None
        keys = sorted((k.tag, tuple(sorted(k.timing.items()))) for k in self.keys)
        world = self.restart(policy)
        assert world.record == record
        assert world.engine.zones[ZONE].due == (self.clock.seconds() if looking else due)
        assert sorted((k.tag, tuple(sorted(k.timing.items()))) for k in world.keys) == keys
        return world

    def run_until(self, predicate, limit=600, step=0.5):
        """Advance the clock until ``predicate()``; checks the zone is valid at every moment."""
        for _ in range(int(limit / step)):
            if predicate():
                return
            self.clock.advance(step)
            check_valid(self.keys, self.clock.seconds())
        raise AssertionError("never happened")


def check_valid(keys, now):
    """At ``now`` a KSK and a ZSK (or a CSK) sign; a ZSK that signs was
    published Ipub before (no validator holding the old DNSKEY RRset sees
    a signature it cannot check) and one that stopped signing stays
    published Iret after (cached signatures keep their key)."""
    published, active, _ = key_roles(keys, now)
    assert any(k.is_ksk for k in active), f"no active KSK at {now}"
    assert any(k.is_zsk for k in active) or not any(k.is_zsk for k in published), f"no active ZSK at {now}"
    for key in published:
        if not key.is_zsk:
            continue
        timing = {tag: when.timestamp() for tag, when in key.timing.items()}
        if timing["Activate"] > START + 1:  # (a successor, not the first key)
            assert timing["Activate"] - timing["Publish"] >= FAST.publish_interval
        if "Inactive" in timing and timing["Inactive"] != timing["Delete"]:  # (a policy rollover's old keys: below)
            assert timing["Delete"] - timing["Inactive"] >= FAST.retire_interval("zsk")


def tags(keys, now, which=1):
    return sorted(k.tag for k in key_roles(keys, now)[which])


# -- configuration ----------------------------------------------------------


def test_durations_take_units_and_integers():
    assert [parse_duration(t) for t in ("90s", "5m", "1h", "30d", "120")] == [90, 300, 3600, 2592000, 120]
    with pytest.raises(ValueError, match="units s, m, h, d"):
        parse_duration("1w")
    settings = settings_from_dict({"dnssec": {"signature-validity": "14d", "refresh-before": 86400}}, "t.toml", None)
    assert (settings.dnssec.signature_validity, settings.dnssec.refresh_before) == (14 * 86400, 86400)


def _config(keys, **extra):
    return {"dnssec-policy": {"p": {"keys": keys, "dnskey-ttl": "1h", **extra}},
            "zones": {"child.test": {"file": "z", "dnssec-policy": "p"}}}


def test_policy_as_the_issue_writes_it(tmp_path):
    settings = settings_from_dict({
        "dnssec-policy": {"standard": {
            "algorithm": "ECDSAP256SHA256",
            "keys": [{"role": "ksk", "lifetime": "365d"}, {"role": "zsk", "lifetime": "30d"}],
            "dnskey-ttl": "1h", "publish-safety": "1h", "retire-safety": "1h", "zone-propagation-delay": "5m",
            "parent-ds-ttl": "1d", "parent-propagation-delay": "1h", "parental-agents": ["192.0.2.53:53"],
            "ds-submit-command": "/usr/local/sbin/push-ds", "denial": "nsec3", "signature-validity": "14d",
            "refresh-before": "7d"}},
        "zone-defaults": {"dnssec-policy": "standard"},
        "zones": {"example.com": {"file": "z"}, "plain.com": {"file": "z", "dnssec": False},
                  "old.com": {"file": "z", "dnssec-policy": INSECURE}}}, "t.toml", tmp_path)
    by_name = {z.name.to_text(): z for z in settings.zones}
    policy = settings.policy_of(by_name["example.com."])
    assert policy.keys == (("ksk", 365 * 86400), ("zsk", 30 * 86400))
    assert (policy.dnskey_ttl, policy.parent_ds_ttl, str(policy.parental_agents[0])) == (3600, 86400, "192.0.2.53:53")
    assert settings.policy_of(by_name["plain.com."]) is None
    assert settings.policy_of(by_name["old.com."]).name == INSECURE


def test_dnssec_true_is_the_builtin_policy_that_never_rolls(tmp_path):
    settings = settings_from_dict({"dnssec": {"algorithm": "ED25519"}, "zones": {"a.test": {"file": "z", "dnssec": True}}},
                                  "t.toml", tmp_path)
    policy = settings.policy_of(settings.zones[0])
    assert policy.builtin and policy.algorithm == "ED25519" and all(life == 0 for _, life in policy.keys)
    assert policy.signing.dnskey_ttl is None  # the SOA's TTL, as before policies


def test_lifetimes_shorter_than_a_rollover_are_refused_naming_the_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"keys: lifetimes shorter.*zsk lifetime 600 s < 15000 s"):
        settings_from_dict(_config([{"role": "ksk", "lifetime": "365d"}, {"role": "zsk", "lifetime": "10m"}]),
                           "t.toml", tmp_path)
    # KSK: Ipub (5m + 1h + 1h) + parent propagation (1h) + Iret (1h + 1d + 1h); ZSK: Ipub + Iret (5m + 1h + 1h).
    with pytest.raises(ConfigError, match=r"ksk lifetime 86400 s < 104700 s"):
        settings_from_dict(_config([{"role": "ksk", "lifetime": "1d"}, {"role": "zsk", "lifetime": "30d"}]),
                           "t.toml", tmp_path)
    ok = settings_from_dict(_config([{"role": "csk", "lifetime": 0}]), "t.toml", tmp_path)
    assert ok.policies[0].keys == (("csk", 0),)


@pytest.mark.parametrize("keys, problem", [
    ([{"role": "ksk"}], "one KSK and one ZSK, or one CSK"),
    ([{"role": "big"}], "role: must be"),
    ([{"role": "csk", "lifetime": "1y"}], "units s, m, h, d"),
])
def test_bad_policy_keys(tmp_path, keys, problem):
    with pytest.raises(ConfigError, match=problem):
        settings_from_dict(_config(keys), "t.toml", tmp_path)


def test_unknown_policy_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"dnssec-policy: no \[dnssec-policy.nope\]"):
        settings_from_dict({"zones": {"a.test": {"file": "z", "dnssec-policy": "nope"}}}, "t.toml", tmp_path)


# -- scheduling -------------------------------------------------------------


def test_jitter_is_the_same_across_restarts_and_spreads_zones():
    values = [jitter(dns.name.from_text(f"z{i}.test."), 30 * 86400) for i in range(1000)]
    assert values[:10] == [jitter(dns.name.from_text(f"z{i}.test."), 30 * 86400) for i in range(10)]
    assert all(0 <= v < 86400 for v in values)
    assert len({v // 3600 for v in values}) == 24  # every hour of the day gets some
    assert jitter(ZONE, 0) == 0


def test_check_interval_is_clamped():
    assert check_interval(FAST) == 1.0
    assert check_interval(dataclasses.replace(FAST, parent_ds_ttl=86400)) == 60.0
    assert check_interval(dataclasses.replace(FAST, parent_ds_ttl=240)) == 10.0


def test_ten_thousand_zones_one_timer(tmp_path):
    clock = Clock()
    clock.advance(START)
    keys = KeyStore(tmp_path / "keys").ensure(ZONE, now=START)  # (only their timing counts here)
    zones = [dns.name.from_text(f"z{i}.test.") for i in range(10000)]
    monthly = dataclasses.replace(FAST, keys=(("ksk", 0), ("zsk", 30 * 86400)))
    engine = Rollovers(clock, StateDB(tmp_path / "state"), KeyStore(tmp_path / "keys"), lambda *a: None,
                       Parent(), in_thread=defer.maybeDeferred)
    engine.configure(dict.fromkeys(zones, monthly), dict.fromkeys(zones, keys))
    assert len(clock.getDelayedCalls()) == 1
    due = engine.next_event_seconds()
    assert len(due) == 10000
    # Spread over a day (a tenth of the lifetime, at most a day): no minute has more than 30 of them.
    per_minute = {}
    for seconds in due.values():
        per_minute[seconds // 60] = per_minute.get(seconds // 60, 0) + 1
    assert max(due.values()) - min(due.values()) > 86000 and max(per_minute.values()) <= 30


# -- ZSK pre-publication ----------------------------------------------------


def test_zsk_rollover_every_step_and_restart_at_each(tmp_path):
    world = World(tmp_path, FAST)
    old_zsk = next(k for k in world.keys if k.is_zsk)
    start = START + 40 - FAST.publish_interval - jitter(ZONE, 40)
    assert world.engine.next_event_seconds()[ZONE] == pytest.approx(start - START)
    world.run_until(lambda: world.record is not None)
    assert world.clock.seconds() == pytest.approx(start, abs=0.5)
    record = world.record
    assert (record["kind"], record["step"], record["old"]) == ("zsk", "publish", [old_zsk.tag])
    new_tag = record["new"][0]
    new = next(k for k in world.keys if k.tag == new_tag)
    now = world.clock.seconds()
    # Published now, signing after Ipub; the old key stops then and leaves Iret later.
    assert new.timing["Activate"].timestamp() - new.timing["Publish"].timestamp() == FAST.publish_interval
    old = next(k for k in world.keys if k.tag == old_zsk.tag)
    assert old.timing["Inactive"] == new.timing["Activate"]
    assert old.timing["Delete"].timestamp() - old.timing["Inactive"].timestamp() == FAST.retire_interval("zsk")
    assert new_tag in tags(world.keys, now, 0) and new_tag not in tags(world.keys, now)
    assert world.applied[-1][2] is True and new_tag in [k.tag for k in world.applied[-1][0]]

    # A restart now carries on with the same step, keys and times.
    world = world.restart_same()

    world.run_until(lambda: world.record["step"] == "retire")
    assert world.clock.seconds() >= new.timing["Activate"].timestamp()
    assert tags(world.keys, world.clock.seconds()) == sorted([new_tag] + [k.tag for k in world.keys if k.is_ksk])
    world = world.restart_same()

    world.run_until(lambda: world.record is None)
    assert world.clock.seconds() >= old.timing["Delete"].timestamp()
    assert old_zsk.tag not in tags(world.keys, world.clock.seconds(), 0)
    # The next rollover is for the new key's lifetime.
    expected = new.timing["Activate"].timestamp() + 40 - FAST.publish_interval - jitter(ZONE, 40)
    assert world.engine.zones[ZONE].due == expected


def test_a_crash_before_the_step_keys_were_written_does_the_step_again(tmp_path):
    world = World(tmp_path, FAST)
    world.run_until(lambda: world.record is not None)
    record = world.record
    store = KeyStore(tmp_path / "keys")
    new = next(k for k in world.keys if k.tag == record["new"][0])
    for suffix in (".key", ".private"):  # the record was written, the key files were not
        (tmp_path / "keys" / f"{new.stem}{suffix}").unlink()
    old = next(k for k in world.keys if k.tag == record["old"][0])
    store.save(dataclasses.replace(old, timing={t: w for t, w in old.timing.items() if t not in ("Inactive", "Delete")}))
    again = world.restart()
    again.run_until(lambda: again.record is not None)
    assert again.record["step"] == "publish" and again.record["new"] != record["new"]
    assert sorted(k.tag for k in KeyStore(tmp_path / "keys").load(ZONE)) == sorted(k.tag for k in again.keys)


# -- KSK double-KSK with the parent -----------------------------------------


def test_ksk_rollover_waits_for_the_parent_both_ways(tmp_path):
    parent = Parent()
    world = World(tmp_path, KSK_ONLY_ROLLED, parent)
    old_ksk = next(k for k in world.keys if k.is_ksk)
    parent.ds = {ds_wire(old_ksk)}
    world.run_until(lambda: world.record is not None)
    new_tag = world.record["new"][0]
    new = next(k for k in world.keys if k.tag == new_tag)
    now = world.clock.seconds()
    # Published and signing the DNSKEY RRset at once; CDS only after Ipub, then the old key's goes.
    assert new_tag in tags(world.keys, now) and new.syncing(now) is False
    assert new.timing["SyncPublish"].timestamp() == now + FAST.publish_interval
    old = next(k for k in world.keys if k.tag == old_ksk.tag)
    assert old.timing["SyncDelete"] == new.timing["SyncPublish"]

    world.run_until(lambda: world.record["step"] == "ds-publish")
    assert parent.submitted == [([f"child.test. IN DS {dns.dnssec.make_ds(ZONE, new.dnskey, 'SHA256')}"], [])]
    assert tags(world.keys, world.clock.seconds(), 2) == [new_tag]  # CDS: the new key only
    looks = parent.looks
    world.clock.pump([0.5] * 60)
    assert 25 <= parent.looks - looks <= 31  # once a second (parent-ds-ttl 3 s / 24, at least 1 s)
    assert world.record["step"] == "ds-publish"
    world = world.restart()
    assert world.record["step"] == "ds-publish"

    parent.ds.add(ds_wire(new))  # the registrar adds the new DS ...
    world.clock.pump([0.5] * 2)
    assert world.record["step"] == "ds-withdraw" and "published" in world.record["ds"]
    # Only now is the old DS handed to ds-submit-command for withdrawal.
    assert parent.submitted[1:] == [([], [f"child.test. IN DS {dns.dnssec.make_ds(ZONE, old_ksk.dnskey, 'SHA256')}"])]
    world.clock.pump([0.5] * 20)
    assert world.record["step"] == "ds-withdraw"  # ... the old one is still there
    parent.ds.discard(ds_wire(old_ksk))
    world.clock.pump([0.5] * 2)
    assert world.record["step"] == "retire"
    gone_at = world.clock.seconds()
    old = next(k for k in world.keys if k.tag == old_ksk.tag)
    wait = FAST.parent_propagation_delay + FAST.parent_ds_ttl + FAST.retire_safety
    assert old.timing["Delete"].timestamp() == pytest.approx(gone_at + wait, abs=1)
    world = world.restart_same()
    world.run_until(lambda: world.record is None)
    assert tags(world.keys, world.clock.seconds(), 0) == sorted(
        [new_tag] + [k.tag for k in world.keys if k.is_zsk and k.published(world.clock.seconds())])


@pytest.mark.parametrize("fail", [True, "counted"], ids=["failed check", "agent errors counted"])
def test_parent_errors_back_off_to_once_a_minute(tmp_path, fail):
    parent = Parent()
    world = World(tmp_path, dataclasses.replace(KSK_ONLY_ROLLED, parent_ds_ttl=240), parent)
    world.engine.rollover(ZONE, None)
    world.run_until(lambda: world.record["step"] == "ds-publish")
    parent.fail = fail
    looks = parent.looks
    world.clock.pump([1] * 600)
    assert 10 <= parent.looks - looks <= 14  # 20, 40, 60, 60, ... s apart
    parent.fail = False


def test_without_agents_the_operator_confirms_each_step(tmp_path):
    parent = Parent(agents=False)
    world = World(tmp_path, dataclasses.replace(FAST, keys=(("ksk", 0), ("zsk", 0))), parent)  # rolled by hand only
    with pytest.raises(ValueError, match="no rollover running"):
        world.engine.confirm_ds(ZONE, "published")
    assert "rollover of key" in world.engine.rollover(ZONE, None)
    with pytest.raises(ValueError, match="one at a time"):
        world.engine.rollover(ZONE, None)
    with pytest.raises(ValueError, match="waits for no DS now"):
        world.engine.confirm_ds(ZONE, "published")
    world.run_until(lambda: world.record["step"] == "ds-publish")
    assert world.engine.state(ZONE)["rollover"]["waiting_for"] == "aliasd-ctl dnssec-checkds child.test. published"
    assert ZONE not in world.engine.next_event_seconds()
    world.clock.advance(3600)
    assert world.record["step"] == "ds-publish" and parent.looks == 0
    with pytest.raises(ValueError, match="waits for the DS published, not withdrawn"):
        world.engine.confirm_ds(ZONE, "withdrawn")
    assert "next: waiting for" in world.engine.confirm_ds(ZONE, "published")
    world = world.restart()
    assert world.record["step"] == "ds-withdraw"
    world.engine.confirm_ds(ZONE, "withdrawn")
    assert world.record["step"] == "retire"
    world.run_until(lambda: world.record is None)


def test_state_lists_every_key(tmp_path):
    world = World(tmp_path, FAST)
    world.engine.rollover(ZONE, None)
    state = world.engine.state(ZONE)
    assert state["policy"] == "fast" and state["rollover"]["step"] == "publish"
    assert sorted(k["role"] for k in state["keys"]) == ["ksk", "ksk", "zsk"]
    old = next(k for k in state["keys"] if k["tag"] == world.record["old"][0])
    assert (old["state"], old["next_event"]) == ("active", "SyncDelete")


# -- policy changes and going insecure ---------------------------------------


def test_algorithm_rollover_swaps_every_key(tmp_path):
    parent = Parent()
    world = World(tmp_path, FAST, parent)
    old = list(world.keys)
    parent.ds = {ds_wire(k) for k in old if k.is_ksk}
    ed = dataclasses.replace(FAST, algorithm="ED25519", keys=(("csk", 0),))
    world = world.restart(ed)
    assert world.record is None
    world.clock.advance(0)
    assert world.record["kind"] == "policy"
    new = [k for k in world.keys if k.tag in world.record["new"]]
    assert [(k.algorithm, k.is_ksk) for k in new] == [(dns.dnssec.Algorithm.ED25519, True)]
    now = world.clock.seconds()
    # Both algorithms sign everything from the first moment (never half-signed).
    assert sorted(k.algorithm for k in key_roles(world.keys, now)[1]) == [13, 13, 15]
    world = world.restart_same(ed)
    world.run_until(lambda: world.record["step"] == "ds-publish")
    world = world.restart_same(ed)
    parent.ds = {ds_wire(new[0])}
    world.run_until(lambda: world.record["step"] == "retire")
    world = world.restart_same(ed)
    # The old keys leave together (DNSKEY and signatures), long after every
    # RRset had the new algorithm's signature too.
    deletes = {k.timing["Delete"] for k in world.keys if k.tag not in world.record["new"]}
    assert len(deletes) == 1
    assert deletes.pop().timestamp() - new[0].timing["Activate"].timestamp() >= FAST.publish_interval
    world.run_until(lambda: world.record is None, step=1)
    assert tags(world.keys, world.clock.seconds(), 0) == [new[0].tag]


def test_going_insecure_waits_for_no_ds_then_the_ds_ttl(tmp_path):
    parent = Parent()
    world = World(tmp_path, FAST, parent)
    ksk = next(k for k in world.keys if k.is_ksk)
    parent.ds = {ds_wire(ksk)}
    world = world.restart(DnssecPolicy(INSECURE))  # the timings it had are kept (the store)
    assert world.engine.policy(ZONE) == dataclasses.replace(FAST, name=INSECURE, keys=DnssecPolicy.keys)
    world.clock.advance(0)
    assert world.record["step"] == "cds-delete" and world.applied[-1][1:] == (True, True)
    # None was ever published as far as anyone knows: still asked, and
    # an unknown DS is a DS (the agents' answer counts, not the belief).
    assert parent.submitted[-1] == ([], [f"child.test. IN DS {dns.dnssec.make_ds(ZONE, ksk.dnskey, 'SHA256')}"])
    world.clock.pump([1] * 20)
    assert world.record["step"] == "cds-delete"
    world = world.restart(DnssecPolicy(INSECURE))
    assert world.applied[-1][1] is True  # the CDS delete again
    parent.ds = set()
    world.clock.pump([0.5] * 2)
    assert world.record["step"] == "unsign"
    world = world.restart_same(DnssecPolicy(INSECURE))
    until = world.record["until"]
    assert until - world.clock.seconds() == pytest.approx(FAST.parent_propagation_delay + FAST.parent_ds_ttl
                                                           + FAST.retire_safety, abs=1)
    world.clock.advance(until - world.clock.seconds() - 0.5)
    assert world.applied[-1][2] is True
    world.clock.advance(1)
    assert world.record is None and world.applied[-1][2] is False
    assert not key_roles(world.keys, world.clock.seconds())[0]
    assert not key_roles(KeyStore(tmp_path / "keys").load(ZONE), world.clock.seconds())[0]


# -- the files say the truth -------------------------------------------------


@pytest.mark.skipif(shutil.which("dnssec-settime") is None, reason="needs bind9-utils")
def test_dnssec_settime_shows_the_rollover_timing(tmp_path):
    world = World(tmp_path, FAST)
    world.run_until(lambda: world.record is not None)
    old = next(k for k in world.keys if k.tag == world.record["old"][0])
    out = subprocess.run(["dnssec-settime", "-u", "-p", "all", str(tmp_path / "keys" / old.stem)],
                         capture_output=True, text=True, check=True).stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert int(lines["Inactive"]) == int(old.timing["Inactive"].timestamp())
    assert int(lines["Delete"]) == int(old.timing["Delete"].timestamp())


class FollowingParent(Parent):
    """A registrar that follows CDS at once: every DS check succeeds."""

    def ds_state(self, zone, want, gone):
        self.looks += 1
        return defer.succeed(True)


@pytest.mark.parametrize("policy, start, minimum", [
    (KSK_ONLY_ROLLED, "ksk", FAST.publish_interval + FAST.retire_interval("ksk")),
    (dataclasses.replace(FAST, algorithm="ED25519", keys=(("csk", 0),)), "policy",
     FAST.publish_interval + FAST.retire_interval("ksk")),
])
def test_a_rollover_with_a_parent_that_follows_at_once_takes_ipub_plus_iret(tmp_path, policy, start, minimum):
    """The time a KSK or algorithm rollover takes when the DS changes as
    soon as asked: Ipub + Iret, nothing wasted between the steps."""
    world = World(tmp_path, FAST if start == "policy" else policy, FollowingParent())
    if start == "policy":
        world = world.restart(policy)
    else:
        world.engine.rollover(ZONE, None)
    began = world.clock.seconds()
    world.run_until(lambda: world.record is not None, step=0.1)
    world.run_until(lambda: world.record is None, step=0.1)
    took = world.clock.seconds() - began
    assert minimum <= took <= minimum + 0.5, took


def test_a_zone_created_or_deleted_at_runtime_joins_or_leaves_alone(tmp_path):
    world = World(tmp_path, FAST)
    other = dns.name.from_text("new.test.")
    keys = world.keystore.ensure(other, now=world.clock.seconds())
    before = world.engine.zones[ZONE]
    world.engine.configure_zone(other, FAST, keys)
    assert world.engine.zones[ZONE] is before and set(world.engine.next_event_seconds()) == {ZONE, other}
    world.engine.configure_zone(other, None, [])
    assert set(world.engine.zones) == {ZONE} and len(world.clock.getDelayedCalls()) == 1
