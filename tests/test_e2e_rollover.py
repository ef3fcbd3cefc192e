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

import time

import dns.rcode
import pytest

from tests.dnssec_world import MISSING, DnssecWorld
from tests.test_e2e_dnssec import ds_of

pytestmark = pytest.mark.e2e

SERVER = "serial-interval = 0\n"


def test_todays_signing_validates_throughout_and_a_wrong_ds_is_seen(aliasd, upstream, tmp_path):
    """``dnssec = true`` (keys that never roll): the registrar installs
    the first DS from the child's CDS, the very DS ``aliasd-check --ds``
    prints; from then on every probe answer through aliasd and through the
    secondary is secure while the ALIAS target rotates, and every AXFR
    verifies. Then the registrar's mistake (a DS of no key) makes the
    validators answer SERVFAIL: the probe sees what it is there to see."""
    world = DnssecWorld(tmp_path, upstream)
    server = aliasd(world.child_config("dnssec = true"), world.child_files(), server=SERVER)
    with world.running(server):
        assert world.ds_texts() == sorted(line.split(" DS ", 1)[1] for line in ds_of(tmp_path, "child.test"))
        world.wait(12)
        world.check(secure=True)
        samples = world.probe.samples
        assert len(samples) >= 4 * 20, len(samples)
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
