"""Unit tests: UPDATE requests through the query handler and the authority
(aliasd.answer.update_requests), on a test clock: the records an update
changes in place, the reply written plainly, the log line per commit."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.TSIG import TSIG
import dns.tsig
import dns.update
import pytest
from twisted.internet import defer
from twisted.logger import formatEvent

from aliasd.answer.answers import QueryHandler
from aliasd.base.config import UpdateRule
from aliasd.base import replies
from aliasd.base.replies import HEADER, plain_reply, render
from aliasd.service.authority import ZoneAuthority
from tests.helpers import zone_source

ORIGIN = dns.name.from_text("example.com.")
TXT = dns.rdatatype.TXT
KEY = dns.tsig.Key("ops", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", dns.tsig.HMAC_SHA256)


@pytest.fixture
def served(clock):
    """(authority, handler, answers): example.com. served, updates by key ``ops``."""
    source = zone_source("example.com", """\
        $ORIGIN example.com.
        @ 300 SOA ns1 hostmaster 10 3600 600 86400 300
        @ 300 NS ns1
        ns1 300 A 192.0.2.1
        """)
    authority = ZoneAuthority(clock=clock, run_in_thread=defer.maybeDeferred)
    authority.set_sources([source], wait=True)
    handler = QueryHandler(authority, keyring={KEY.name: KEY}, update_rules={ORIGIN: [UpdateRule("ops")]})
    return authority, handler, []


def send(handler, answers, name: str, delete: bool = False) -> dns.update.UpdateMessage:
    """Send one signed UPDATE adding (or deleting) ``name`` TXT "x"; its
    verified answer goes into ``answers`` as (request, reply)."""
    m = dns.update.UpdateMessage("example.com", keyring=KEY, keyname=KEY.name, keyalgorithm=KEY.algorithm)
    if delete:
        m.delete(name, "TXT", '"x"')
    else:
        m.add(name, 60, "TXT", '"x"')
    result = handler.handle(m.to_wire(), "127.0.0.1#5353", over_udp=False)

    def answered(wire):
        answers.append((m, dns.message.from_wire(wire, keyring=KEY, request_mac=m.mac)))

    if isinstance(result, defer.Deferred):
        result.addCallback(answered)
    else:
        answered(result)
    return m


def test_only_records_nobody_else_has_seen_are_changed_in_place(served, clock):
    """The second update of a batch changes the first's records in place;
    a source handed out through ``sources`` (a file written in a thread, a
    reload, the API) or built into a version is never changed again."""
    authority, handler, answers = served
    send(handler, answers, "a.example.com.")
    first = authority.registry.sources[ORIGIN]
    assert authority.records_private(ORIGIN, first)  # the update's own copy
    assert first.records is not authority.versions[ORIGIN].source.records
    send(handler, answers, "b.example.com.")
    second = authority.registry.sources[ORIGIN]
    assert second.records is first.records  # changed in place, not copied
    handed = authority.sources[ORIGIN]
    kept = dict(handed.records)
    assert not authority.records_private(ORIGIN, handed)
    send(handler, answers, "c.example.com.")
    third = authority.registry.sources[ORIGIN]
    assert third.records is not handed.records and dict(handed.records) == kept
    for _ in range(5):
        clock.advance(0)  # built, recorded, served
    assert [r.rcode() for _, r in answers] == [dns.rcode.NOERROR] * 3
    built = authority.versions[ORIGIN].source
    assert built is third and not authority.records_private(ORIGIN, built)
    send(handler, answers, "a.example.com.", delete=True)
    fourth = authority.registry.sources[ORIGIN]
    assert fourth.records is not built.records
    served_records = dict(built.records)
    send(handler, answers, "d.example.com.")
    assert authority.registry.sources[ORIGIN].records is fourth.records
    assert dict(built.records) == served_records  # what is served never moves
    for _ in range(5):
        clock.advance(0)
    assert len(answers) == 5
    names = {owner.to_text() for owner, rdtype in authority.versions[ORIGIN].source.rrsets if rdtype == TXT}
    assert names == {"b.example.com.", "c.example.com.", "d.example.com."}
    assert authority.versions[ORIGIN].serial == 15  # one serial per update, never back


def test_the_plain_reply_is_dnspythons_reply(served):
    """plain_reply writes the octets make_response and to_wire wrote
    (TSIG time and MAC aside), signed so that the client verifies it."""
    _, handler, _ = served
    m = dns.update.UpdateMessage("Example.COM", keyring=KEY, keyname=KEY.name, keyalgorithm=KEY.algorithm)
    m.add("a.example.com.", 60, "TXT", '"x"')
    query = dns.message.from_wire(m.to_wire(), keyring=lambda *_: KEY, one_rr_per_rrset=True)
    for rcode in (dns.rcode.NOERROR, dns.rcode.REFUSED, dns.rcode.SERVFAIL):
        mine = plain_reply(query, rcode, 65535, KEY)
        response = dns.message.make_response(query)
        response.set_rcode(rcode)
        theirs = render(response, 65535)
        assert len(mine) == len(theirs)
        tsig_rdata_at = len(theirs) - (len(KEY.name.to_wire()) + 10)  # owner, type, class, TTL, length
        assert mine[:tsig_rdata_at] == theirs[:tsig_rdata_at]
        reply = dns.message.from_wire(mine, keyring=KEY, request_mac=m.mac)
        assert m.is_response(reply) and reply.had_tsig and reply.rcode() == rcode
    assert len(plain_reply(query, 0, 40, KEY)) == 12  # too long: a bare TC header
    unsigned = dns.message.from_wire(dns.update.UpdateMessage("example.com").to_wire())
    assert dns.message.from_wire(plain_reply(unsigned, dns.rcode.REFUSED, 512, None)).rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("key", [KEY, dns.tsig.Key("Ops.", KEY.secret, "HMAC-SHA512.")], ids=["sha256", "SHA512-upper"])
@pytest.mark.parametrize("request_mac", [None, bytes(range(32))], ids=["no-request-mac", "request-mac"])
def test_the_reply_is_signed_as_dns_tsig_sign_signs(monkeypatch, key, request_mac):
    """replies._tsig_rdata gives the octets of dns.tsig.sign's record
    (MAC included) for the same time: the digest is RFC 8945's."""
    unsigned = HEADER.pack(7, 0xA800, 1, 0, 0, 0) + ORIGIN.to_wire() + b"\x00\x06\x00\x01"
    monkeypatch.setattr(replies.time, "time", lambda: 1_700_000_000.5)
    template = TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, key.algorithm, 0, 300, b"", 7, 0, b"")
    record, _ = dns.tsig.sign(unsigned, key, template, 1_700_000_000, request_mac)
    assert replies._tsig_rdata(unsigned, key, 7, request_mac) == record.to_wire()


def test_updates_that_share_a_commit_share_a_log_line(served, clock, log_events):
    authority, handler, answers = served
    send(handler, answers, "one.example.com.")
    for _ in range(5):
        clock.advance(0)
    for name in ("two", "three", "four"):
        send(handler, answers, f"{name}.example.com.")
    for _ in range(5):
        clock.advance(0)
    lines = [formatEvent(e) for e in log_events if "example.com." in formatEvent(e)]
    assert "update of zone example.com. by key ops. from 127.0.0.1#5353: serial 11, 2 name(s) changed" in lines  # (the apex: its serial)
    assert ("3 updates of zone example.com.: serials 12 to 14, 6 name(s) changed, "
            "by key ops. from 127.0.0.1#5353 (3)") in lines
    assert len(answers) == 4
