"""Unit tests: the NOTIFY sender's retries, matching and superseding (task.Clock)."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype as T
import dns.tsig
import pytest

from aliasd.base.config import Endpoint
from aliasd.replicate.notify import NotifySender
from tests.test_journal import version

SECONDARY = Endpoint("127.0.0.1", 5399)
SECONDARY6 = Endpoint("::1", 5398)
ZONE = dns.name.from_text("example.com")


@pytest.fixture
def sent():
    return []


@pytest.fixture
def sender(clock, sent):
    return NotifySender(
        clock, {ZONE: (SECONDARY, SECONDARY6)}, send=lambda wire, target: sent.append((wire, target)),
        first_timeout=1.0, max_tries=4,
    )


@pytest.fixture
def events(log_events):
    return log_events


def reply(wire: bytes, rcode=dns.rcode.NOERROR, opcode=dns.opcode.NOTIFY) -> bytes:
    request = dns.message.from_wire(wire)
    response = dns.message.make_response(request)
    response.set_opcode(opcode)
    response.set_rcode(rcode)
    return response.to_wire()


def test_notify_carries_new_soa_and_aa_to_each_secondary(sender, sent):
    sender.zone_changed(version(11, ["192.0.2.1"]))
    assert {t for _, t in sent} == {SECONDARY, SECONDARY6}
    message = dns.message.from_wire(sent[0][0])
    assert message.opcode() == dns.opcode.NOTIFY
    assert message.flags & dns.flags.AA and not message.flags & dns.flags.QR
    assert message.question[0].name == ZONE and message.question[0].rdtype == T.SOA
    assert message.answer[0][0].serial == 11


def test_retransmits_with_doubling_timeouts_until_tries_run_out(sender, sent, clock, events):
    sender.zone_changed(version(11, ["192.0.2.1"]))
    times = []
    for step in range(40):  # 20 s: tries at 0, 1, 3, 7; gives up at 15
        clock.advance(0.5)
        times.extend([clock.seconds()] * (len([s for s in sent if s[1] == SECONDARY]) - len(times) - 1))
    ipv4 = [s for s in sent if s[1] == SECONDARY]
    assert len(ipv4) == 4  # max_tries
    assert len({wire for wire, _ in ipv4}) == 1  # a retransmission is the same message
    assert times == [1.0, 3.0, 7.0]  # 1, 2, 4 seconds apart
    failures = [e for e in events if "failed" in e.get("log_format", "") and e.get("target") == str(SECONDARY)]
    assert len(failures) == 1 and sender.failed == 2  # both secondaries gave up
    assert sender.pending() == []


def test_matching_response_stops_retries(sender, sent, clock):
    sender.zone_changed(version(11, ["192.0.2.1"]))
    wire = sent[0][0]
    sender.response_received(reply(wire), "127.0.0.2", SECONDARY.port)  # wrong address
    sender.response_received(reply(wire), SECONDARY.host, SECONDARY.port + 1)  # wrong port
    sender.response_received(reply(wire, opcode=dns.opcode.QUERY), SECONDARY.host, SECONDARY.port)
    sender.response_received(wire, SECONDARY.host, SECONDARY.port)  # not a response
    assert len(sender.pending()) == 2
    sender.response_received(reply(wire), SECONDARY.host, SECONDARY.port)
    assert [p[1] for p in sender.pending()] == [str(SECONDARY6)]
    assert sender.acknowledged == 1
    before = len(sent)
    clock.advance(100)
    assert all(t == SECONDARY6 for _, t in sent[before:])


def test_error_rcode_is_an_outcome_logged_once(sender, sent, events):
    sender.zone_changed(version(11, ["192.0.2.1"]))
    sender.response_received(reply(sent[0][0], rcode=dns.rcode.NOTAUTH), SECONDARY.host, SECONDARY.port)
    assert sender.failed == 1
    assert [e["rcode"] for e in events if "rcode" in e] == ["NOTAUTH"]


def test_new_serial_supersedes_pending_notify_with_fresh_id(sender, sent, clock):
    sender.zone_changed(version(11, ["192.0.2.1"]))
    first = dns.message.from_wire(sent[0][0])
    sender.zone_changed(version(12, ["192.0.2.2"]))
    second = dns.message.from_wire(sent[2][0])
    assert second.answer[0][0].serial == 12 and second.id != first.id
    assert [p[2] for p in sender.pending()] == [12, 12]
    # A late answer to the old NOTIFY does not settle the new one.
    sender.response_received(reply(sent[0][0]), SECONDARY.host, SECONDARY.port)
    assert len(sender.pending()) == 2
    clock.advance(1)
    assert all(dns.message.from_wire(w).answer[0][0].serial == 12 for w, _ in sent[4:])


def test_signed_notify_and_verified_response(clock, sent):
    key = dns.tsig.Key("k.", b"0123456789abcdef0123456789abcdef", "hmac-sha256")
    sender = NotifySender(clock, {ZONE: (SECONDARY,)}, {ZONE: key}, send=lambda w, t: sent.append((w, t)))
    sender.zone_changed(version(11, ["192.0.2.1"]))
    request = dns.message.from_wire(sent[0][0], keyring={key.name: key})
    assert request.had_tsig
    forged = dns.message.make_response(dns.message.from_wire(sent[0][0], keyring=False))
    sender.response_received(forged.to_wire(), SECONDARY.host, SECONDARY.port)  # unsigned: rejected
    assert len(sender.pending()) == 1
    response = dns.message.make_response(request)
    sender.response_received(response.to_wire(), SECONDARY.host, SECONDARY.port)
    assert sender.pending() == [] and sender.acknowledged == 1


def test_nothing_is_sent_before_the_service_starts(clock):
    sender = NotifySender(clock, {ZONE: (SECONDARY,)})
    sender.zone_changed(version(11, ["192.0.2.1"]))
    assert sender.pending() == [] and clock.getDelayedCalls() == []


def _zone_versions(count: int):
    """``count`` small zones' versions (zoneN.example), built once."""
    from aliasd.zones.zone import ZoneVersion
    from tests.helpers import zone_source

    versions = []
    for i in range(count):
        source = zone_source(f"zone{i}.example", "@ 300 SOA ns h 1 3600 600 86400 60\n@ 300 NS ns\n")
        versions.append(ZoneVersion.build(source, {}))
    return versions


def test_notify_is_paced_at_the_configured_rate(clock):
    sent = []
    versions = _zone_versions(300)
    sender = NotifySender(
        clock, {v.origin: (SECONDARY,) for v in versions},
        send=lambda wire, target: sent.append(wire), rate=100, first_timeout=60,
    )
    for v in versions:
        sender.zone_changed(v)
    assert len(sent) == 10  # a tenth of a second's worth at once
    clock.pump([0.01] * 100)
    assert 105 <= len(sent) <= 112  # then 100 per second
    clock.pump([0.01] * 200)
    assert len(sent) == 300 and sender.queued == 0
    zones = {dns.message.from_wire(w).question[0].name for w in sent}
    assert len(zones) == 300  # each zone once, none twice


def test_a_newer_serial_replaces_a_queued_notify(clock):
    sent = []
    versions = _zone_versions(30)
    sender = NotifySender(
        clock, {v.origin: (SECONDARY,) for v in versions},
        send=lambda wire, target: sent.append(dns.message.from_wire(wire)), rate=10, first_timeout=60,
    )
    for v in versions:
        sender.zone_changed(v)
    newer = ZoneVersion_with_serial(versions[-1], 7)
    sender.zone_changed(newer)
    clock.pump([0.1] * 100)
    last = [m for m in sent if m.question[0].name == newer.origin]
    assert [m.answer[0][0].serial for m in last] == [7]  # the queued serial 1 was never sent
    assert len(sent) == 30


def ZoneVersion_with_serial(version, serial):
    from aliasd.zones.zone import ZoneVersion

    return ZoneVersion.build(version.source, {}, serial=serial)


def test_query_ids_never_run_out_and_never_repeat_in_flight(clock):
    """More zones than query IDs towards one secondary that never answers."""
    sent = []
    space = 1024  # the 16-bit space, scaled down so the test clock stays fast
    count = space + 500
    base = _zone_versions(1)[0]
    sender = NotifySender(
        clock, {}, send=lambda wire, target: sent.append(wire[:2]), rate=10**9, first_timeout=3600,
        max_tries=1,
    )
    sender.id_space = space

    class Renamed:
        """A stand-in version: only origin, serial and the SOA are read."""

        def __init__(self, i):
            self.origin = dns.name.from_text(f"z{i}.example")
            self.serial = 1
            self.soa = base.soa
            self.soa_packed = base.soa_packed

    for i in range(count):
        v = Renamed(i)
        sender.targets[v.origin] = (SECONDARY,)
        sender.zone_changed(v)
    assert len(sent) == space and len(set(sent)) == space  # every ID once
    assert sender.queued == 500  # the rest wait for an ID, no endless loop
    clock.advance(3600)  # the first ones time out, freeing their IDs
    clock.advance(1)
    assert sender.queued == 0 and len(sent) == count


def test_the_notify_written_from_packed_records_is_what_dnspython_makes():
    """aliasd.replicate.notify writes unsigned NOTIFYs itself (thousands at once): the
    same message as dnspython's, question and answer included."""
    from aliasd.replicate.notify import _notify_wire
    from aliasd.zones.zone import ZoneVersion
    from tests.helpers import zone_source

    source = zone_source("Example.COM.", "$ORIGIN Example.COM.\n@ 300 SOA ns1 h 7 1 2 3 4\n@ 300 NS ns1\n")
    version = ZoneVersion.build(source, {}, serial=2026120201)
    ours = dns.message.from_wire(_notify_wire(version, 4321))
    theirs = dns.message.make_query(version.origin, dns.rdatatype.SOA, id=4321)
    theirs.set_opcode(dns.opcode.NOTIFY)
    theirs.flags = (theirs.flags & ~dns.flags.RD) | dns.flags.AA
    theirs.answer.append(version.soa)
    assert ours == theirs
    assert ours.answer[0][0].serial == 2026120201 and ours.question[0].name.labels[0] == b"Example"
