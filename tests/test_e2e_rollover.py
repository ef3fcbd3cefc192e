"""End to end: a signed zone of aliasd validates at every moment, in a
world with a parent, a registrar and validators (tests/dnssec_world.py).

BIND named serves the parent ``test.``; aliasd serves ``child.test.`` with
an apex ALIAS whose target rotates; a BIND secondary copies the child; two
Unbound validators, anchored at the parent's key, ask aliasd and the
secondary. The test is the registrar: the DS at the parent follows the
child's CDS. A probe asks both validators every half second; every AXFR
of the child taken along the way passes ``dnssec-verify``.
"""

from __future__ import annotations

import signal
import time

import dns.rcode
import pytest

from tests.dnssec_world import CHILD_ZONE, MISSING, DnssecWorld, Timings
from tests.test_e2e_dnssec import check_config, ds_of

pytestmark = pytest.mark.e2e

SERVER = "serial-interval = 0\n"


@pytest.fixture
def world_of(tmp_path):
    """Factory: the world around a child served by aliasd (stopped at the end)."""
    worlds = []

    def make(upstream) -> DnssecWorld:
        worlds.append(DnssecWorld(tmp_path, upstream))
        return worlds[-1]

    yield make
    for world in worlds:
        world.stop()


def test_todays_signing_validates_throughout_and_a_wrong_ds_is_seen(aliasd, upstream, tmp_path, world_of):
    """``dnssec = true`` (keys that never roll): the registrar installs
    the first DS from the child's CDS, the very DS ``aliasd-check --ds``
    prints; from then on every probe answer through aliasd and through the
    secondary is secure while the ALIAS target rotates, and every AXFR
    verifies. Then the registrar's mistake (a DS of no key) makes the
    validators answer SERVFAIL: the probe sees what it is there to see."""
    world = world_of(upstream)
    server = aliasd(world.child_config("dnssec = true"), world.child_files(), server=SERVER)
    with world.running(server):
        assert world.ds_texts() == sorted(line.split(" DS ", 1)[1] for line in ds_of(tmp_path, "child.test"))
        world.wait(12)
        world.check(secure=True)
        samples = world.probe.samples
        assert len(samples) >= 4 * 12, len(samples)
        for via in world.validators:  # the rotation reached the validators, both ways
            seen = {s.addresses for s in samples if s.via == via and s.name != MISSING}
            assert len(seen) >= 3, (via, seen)
        assert len(world.watch.verifications) >= 4
        assert all(not k.removed for k in world.watch.keys.values()) and len(world.watch.keys) == 2
        assert len(world.registrar.events) == 1  # nothing rolls: the first DS stays

        world.registrar.halt()
        (real,) = world.parent.ds()
        fake = real.replace(digest=bytes(32))
        world.parent.update_ds([fake], [real], world.ds_ttl)
        sabotage = time.time()
        servfail = dns.rcode.to_text(dns.rcode.SERVFAIL)
        deadline = sabotage + world.ds_ttl + 15
        while time.time() < deadline and not any(s.rcode == servfail for s in world.probe.samples[-4:]):
            world.wait(0.5)
        world.wait(2)  # and it stays so
        last = world.probe.samples[-8:]
        assert all(s.rcode == servfail for s in last), world.report(last)


#: The accelerated policy of issue 23's test: DNSKEY TTL a few seconds, lifetimes about a minute.
FAST = """
[dnssec-policy.fast]
algorithm = "{algorithm}"
keys = [ {{ role = "ksk", lifetime = "90s" }}, {{ role = "zsk", lifetime = "40s" }} ]
dnskey-ttl = "3s"
publish-safety = "1s"
retire-safety = "1s"
zone-propagation-delay = "1s"
parent-ds-ttl = "3s"
parent-propagation-delay = "1s"
parental-agents = ["127.0.0.1:{parent_port}"]
signature-validity = "10m"
refresh-before = "5m"
"""
FAST_TIMINGS = Timings(dnskey_ttl=3, publish_safety=1, retire_safety=1, zone_propagation_delay=1,
                       parent_ds_ttl=3, parent_propagation_delay=1, max_zone_ttl=2)
ED25519 = 15


def _policies_accepted(tmp_path) -> None:
    """Skip unless aliasd (the one twistd runs: PYTHONPATH) takes
    [dnssec-policy.NAME], issue 23's rollover engine: aliasd-check exits 2
    on a configuration it cannot use."""
    (tmp_path / "aliasd.toml").write_text(FAST.format(algorithm="ECDSAP256SHA256", parent_port=53)
                                          + '[zones."child.test"]\nfile = "child.test.zone"\ndnssec-policy = "fast"\n')
    (tmp_path / "child.test.zone").write_text(CHILD_ZONE)
    done = check_config(tmp_path)
    if done.returncode == 2:
        pytest.skip(f"aliasd does not take [dnssec-policy.NAME] yet (issue 23's rollover engine): "
                    f"{(done.stdout + done.stderr).strip()}")
    assert done.returncode == 0, done.stdout + done.stderr


def _fast(world: DnssecWorld, algorithm: str) -> str:
    return FAST.format(algorithm=algorithm, parent_port=world.parent.port)


def _reload(server, conf, text: str) -> None:
    done = server.log().count("reload done")
    conf.write_text(text)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(lambda: server.log().count("reload done") > done, timeout=20)


def test_rollovers_never_break_validation(aliasd, upstream, tmp_path, world_of):
    """Issue 23, how it is checked: on the accelerated policy, two ZSK
    rollovers, one KSK rollover with aliasd killed (-9) and started again
    in its middle, an algorithm rollover (ECDSAP256SHA256 to ED25519) and
    the way down to unsigned. All the while the ALIAS target rotates, the
    probe through aliasd and through the secondary gets every answer
    secure (then insecure, never bogus), no validator logs a validation
    failure, and every AXFR passes dnssec-verify. Prints how long each
    rollover took against the minimum its timings allow."""
    _policies_accepted(tmp_path)
    world = world_of(upstream)
    conf = tmp_path / "aliasd.toml"
    server = aliasd(world.child_config('dnssec-policy = "fast"', _fast(world, "ECDSAP256SHA256")),
                    world.child_files(), server=SERVER)
    with world.running(server):
        watch = world.watch
        # The KSK rollover (lifetime 90 s; the ZSK's is 40 s: two ZSK
        # rollovers, before or after it); aliasd killed once the new KSK is out.
        world.wait_until(lambda: len(watch.current(ksk=True)) == 2, 150, "a second KSK published")
        world.wait(2)
        server.proc.kill()
        server.proc.wait(10)
        killed = time.time()
        server.start()
        back = time.time()
        world.wait_until(lambda: any(r.kind == "KSK" for r in watch.rollovers()), 60, "the KSK rollover done")
        assert "rollover carries on" in server.log(), server.log()[-3000:]
        world.wait_until(lambda: sum(r.kind == "ZSK" for r in watch.rollovers()) >= 2, 60, "two ZSK rollovers")
        # The algorithm rollover: the policy now says ED25519.
        base = conf.read_text()
        _reload(server, conf, base.replace('"ECDSAP256SHA256"', '"ED25519"'))
        world.wait_until(lambda: any(r.kind == "algorithm" for r in watch.rollovers())
                         and all(k.algorithm == ED25519 for k in watch.current(True) + watch.current(False)),
                         60, "the algorithm rollover done")
        world.check(secure=True, outage=("aliasd", killed, back + 3))
        # Down to unsigned.
        insecure = time.time()
        _reload(server, conf, base.replace('dnssec-policy = "fast"', 'dnssec-policy = "insecure"'))
        world.wait_until(lambda: watch.unsigned, 60, "the zone unsigned")
        world.wait_until(lambda: not world.parent.ds(), 10, "no DS at the parent")
        unsigned = watch.unsigned
        world.wait(world.ds_ttl + 4)
        world.check(secure=True, until=insecure, outage=("aliasd", killed, back + 3))
        world.check(secure=None, since=insecure)  # secure, then insecure: never bogus
        world.check(secure=False, since=unsigned + world.ds_ttl + 2)
        assert world.registrar.events[-1].removed and not world.registrar.events[-1].added

    kinds = [r.kind for r in watch.rollovers()]
    assert kinds.count("ZSK") >= 2 and kinds.count("KSK") == 1 and kinds.count("algorithm") == 1, kinds
    # The restart carried on with the KSK published before the kill, not a new one.
    (ksk,) = [r for r in watch.rollovers() if r.kind == "KSK"]
    assert ksk.new.published < killed < ksk.old.removed, world.report()
    assert watch.unsigned - watch.cds_delete >= FAST_TIMINGS.minimum("insecure") - 1
    print("\nrollover        took   minimum (RFC 7583 with the policy's timings)")
    for r in watch.rollovers():
        print(f"{r.kind:<12} {r.took:6.1f} s {FAST_TIMINGS.minimum(r.kind):6d} s   key {r.old.tag} -> {r.new.tag}")
        assert r.took >= FAST_TIMINGS.minimum(r.kind) - 1, (r, world.report())  # (whole-second key times)
    print(f"{'insecure':<12} {watch.unsigned - watch.cds_delete:6.1f} s {FAST_TIMINGS.minimum('insecure'):6d} s")
    print(f"probe: {len(world.probe.samples)} answers; dnssec-verify: {len(watch.verifications)} AXFRs")
