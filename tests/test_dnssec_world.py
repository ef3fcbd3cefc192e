"""Unit tests of the DNSSEC world's bookkeeping (tests/dnssec_world.py):
what the key watch makes of what it sees, which rollovers it pairs, what
the probe counts as wrong. The world itself runs in test_e2e_rollover.py."""

from __future__ import annotations

from tests.dnssec_world import MISSING, KeyWatch, Probe, Sample, Timings
from tests.test_e2e_rollover import FAST_TIMINGS

ECDSA, ED25519 = 13, 15


def _seen(watch: KeyWatch, at: float, dnskeys=(), zsk_signers=(), ksk_signers=(), cds=()) -> None:
    """One look of the watch at moment ``at``."""
    watch._record(at, frozenset(dnskeys), frozenset(zsk_signers), frozenset(ksk_signers), frozenset(cds))


def test_the_watch_pairs_each_rollover_and_not_the_end_of_signing():
    watch = KeyWatch(child_port=0)
    ksk, zsk, zsk2, ksk2 = (1, ECDSA, True), (2, ECDSA, False), (3, ECDSA, False), (4, ECDSA, True)
    _seen(watch, 0, [ksk, zsk], [zsk[:2]], [ksk[:2]], [ksk[:2]])
    _seen(watch, 30, [ksk, zsk, zsk2], [zsk[:2]], [ksk[:2]], [ksk[:2]])  # ZSK pre-published
    _seen(watch, 35, [ksk, zsk, zsk2], [zsk2[:2]], [ksk[:2]], [ksk[:2]])  # the new one signs
    _seen(watch, 40, [ksk, zsk2], [zsk2[:2]], [ksk[:2]], [ksk[:2]])  # the old one leaves
    _seen(watch, 50, [ksk, ksk2, zsk2], [zsk2[:2]], [ksk[:2], ksk2[:2]], [ksk[:2]])
    _seen(watch, 55, [ksk, ksk2, zsk2], [zsk2[:2]], [ksk[:2], ksk2[:2]], [ksk2[:2]])
    _seen(watch, 61, [ksk2, zsk2], [zsk2[:2]], [ksk2[:2]], [ksk2[:2]])
    new = [(5, ED25519, True), (6, ED25519, False)]
    _seen(watch, 70, [ksk2, zsk2, *new], [zsk2[:2], (6, ED25519)], [ksk2[:2], (5, ED25519)], [(5, ED25519)])
    _seen(watch, 82, new, [(6, ED25519)], [(5, ED25519)], [(5, ED25519)])
    _seen(watch, 90, new, [(6, ED25519)], [(5, ED25519)], [(0, 0)])
    _seen(watch, 96, [], [], [], [])
    assert [(r.kind, r.old.tag, r.new.tag, r.took) for r in watch.rollovers()] == [
        ("ZSK", 2, 3, 10), ("KSK", 1, 4, 11), ("algorithm", 3, 6, 12)]
    assert (watch.cds_delete, watch.unsigned) == (90, 96)
    assert watch.keys[(3, ECDSA)].signing == 35 and watch.keys[(4, ECDSA)].cds == 55
    assert watch.current(ksk=True) == []


def test_minimum_rollover_times_follow_the_policy():
    # Ipub = 1 + 3 + 1; a ZSK's Iret = 1 + 3 + 1; the parent's wait = 1 + 3 + 1.
    assert [FAST_TIMINGS.minimum(kind) for kind in ("ZSK", "KSK", "algorithm", "insecure")] == [10, 10, 10, 5]
    assert Timings(3, 1, 1, 1, 3, 1, max_zone_ttl=60).minimum("ZSK") == 5 + 62


def test_the_probe_counts_bogus_insecure_and_empty_answers_as_wrong():
    probe = Probe({})
    probe.samples = [
        Sample(1, "aliasd", "child.test.", "NOERROR", True, frozenset({"198.51.100.1"})),
        Sample(2, "aliasd", MISSING, "NXDOMAIN", True),
        Sample(3, "secondary", "child.test.", "SERVFAIL", False),
        Sample(4, "aliasd", "child.test.", "NOERROR", False, frozenset({"198.51.100.1"})),
        Sample(5, "aliasd", "child.test.", "NOERROR", True),  # no address
    ]
    assert [s.at for s in probe.wrong(secure=True)] == [3, 4, 5]
    assert [s.at for s in probe.wrong(secure=None)] == [3, 5]
    assert [s.at for s in probe.wrong(secure=False)] == [1, 2, 3, 5]
    assert [s.at for s in probe.wrong(secure=True, since=2, until=4)] == [3]
