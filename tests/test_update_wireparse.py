"""Unit tests: UPDATEs read from the wire (aliasd.update.wireparse) against
dnspython's full parse: the same message for the common shape, None (the
full parse decides) for every other, TSIG errors included; and through the
query handler, the same answers with the wire parser as without it.

Every shape of tests/test_update.py is also read both ways (its ``run``)."""

from __future__ import annotations

import time
from unittest import mock

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.update
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aliasd.update import wireparse
from aliasd.update.rfc2136 import restore_ttls
from tests.helpers import update_summary
from tests.test_update import KEYRING, TSIG_KEY, with_ttl
from tests.test_update_requests import served  # noqa: F401 (a fixture)

OTHER = dns.tsig.Key("ops.", "b3RoZXJvdGhlcm90aGVyb3RoZXJvdGhlcm90aGVy", "hmac-sha256")


def signed(update: dns.update.UpdateMessage, key=TSIG_KEY, **kw) -> bytes:
    update.use_tsig({key.name: key}, key.name, **kw)
    return update.to_wire()


def full(wire: bytes) -> dns.message.Message:
    message = dns.message.from_wire(wire, keyring=KEYRING, one_rr_per_rrset=True)
    restore_ttls(message, wire)
    return message


def new() -> dns.update.UpdateMessage:
    return dns.update.UpdateMessage("example.com.")


def test_a_common_update_reads_as_dnspythons():
    update = new()
    update.present("www")
    update.absent("www", "AAAA")
    update.present("mail", "MX", "10 mail")
    update.add("www", 60, "A", "192.0.2.9")
    update.add("www", 60, "AAAA", "2001:db8::9")
    update.add("_acme-challenge", 0, "TXT", '"a" "b"')
    update.add("x", 60, "MX", "10 www")  # a compressed name in rdata
    update.delete("www", "A", "192.0.2.10")
    update.delete("old", "CNAME")
    update.delete("gone")
    wire = signed(update)
    fast = wireparse.parse(wire, KEYRING)
    assert fast is not None and update_summary(fast) == update_summary(full(wire))
    assert [len(fast.prerequisite), len(fast.update)] == [3, 7]


def test_ttls_are_those_sent_even_where_dnspython_drops_them():
    update = new()
    with_ttl(update.prerequisite, "www.example.com.", dns.rdataclass.ANY, "A", 7)
    with_ttl(update.update, "www.example.com.", dns.rdataclass.NONE, "A", 2**31 + 5, "192.0.2.10")
    fast = wireparse.parse(signed(update), KEYRING)
    assert [fast.prerequisite[0].ttl, fast.update[0].ttl] == [7, 2**31 + 5]


def unusual(name: str):
    """Wire forms of shapes the wire parser leaves to the full parse."""
    update = new()
    update.add("www", 60, "A", "192.0.2.9")
    if name == "edns":
        update.use_edns(0)
        return signed(update)
    if name == "unsigned":
        return update.to_wire()
    if name == "unknown key":
        return signed(update, dns.tsig.Key("nobody.", OTHER.secret, "hmac-sha256"))
    if name == "bad signature":
        return signed(update, OTHER)
    if name == "bad time":
        with mock.patch("time.time", return_value=time.time() - 3600):
            return signed(update)
    if name == "class CH zone":
        update = dns.update.UpdateMessage("example.com.", rdclass=dns.rdataclass.CH)
        update.add("www", 60, "TXT", '"x"')
        return signed(update)
    if name == "a query":
        return signed(dns.message.make_query("example.com.", "SOA"))
    if name == "trailing junk":
        return signed(update) + b"\0"
    if name == "truncated":
        return signed(update)[:-3]
    if name == "any class with rdata":
        rrset = dns.rrset.RRset(dns.name.from_text("www.example.com."), dns.rdataclass.ANY, dns.rdatatype.A)
        rrset.add(dns.rdata.GenericRdata(dns.rdataclass.ANY, dns.rdatatype.A, bytes([192, 0, 2, 1])), 0)
        update.update.append(rrset)
        return signed(update)
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["edns", "unsigned", "unknown key", "bad signature", "bad time",
                                  "class CH zone", "a query", "trailing junk", "truncated",
                                  "any class with rdata"])
def test_other_shapes_and_every_tsig_error_are_left_to_the_full_parse(name):
    assert wireparse.parse(unusual(name), KEYRING) is None


@pytest.mark.parametrize("name, rcode, tsig_error", [
    ("bad signature", dns.rcode.NOTAUTH, dns.rcode.BADSIG),
    ("bad time", dns.rcode.NOTAUTH, dns.rcode.BADTIME),
    ("unknown key", dns.rcode.NOTAUTH, dns.rcode.BADKEY),
    ("unsigned", dns.rcode.REFUSED, None),
    ("edns", dns.rcode.NOERROR, None),
])
def test_the_handler_answers_as_before(served, clock, name, rcode, tsig_error):  # noqa: F811
    """The full parse still answers what the wire parser leaves: TSIG
    errors as RFC 8945 says (BADTIME signed), an unsigned update refused."""
    authority, handler, _ = served
    wire = unusual(name)
    result = handler.handle(wire, "127.0.0.1#5353", over_udp=False)
    answers = []
    if hasattr(result, "addCallback"):
        result.addCallback(answers.append)
        for _ in range(10):
            clock.advance(0.1)
    else:
        answers.append(result)
    reply = dns.message.from_wire(answers[0], keyring=False)
    assert reply.rcode() == rcode
    if tsig_error is not None:
        assert reply.tsig[0].error == tsig_error
        assert (reply.tsig[0].mac != b"") == (tsig_error == dns.rcode.BADTIME)


NAMES = st.sampled_from(["www", "mail", "new", "a.b", "example.com.", "www.example.org."])
RECORDS = st.sampled_from([("A", "192.0.2.7"), ("AAAA", "2001:db8::7"), ("TXT", '"t"'),
                           ("MX", "10 mail"), ("CNAME", "www"), ("NS", "ns9"), ("SRV", "1 2 3 www")])
STEPS = st.lists(st.tuples(st.sampled_from(["add", "delete", "delete rrset", "delete name", "present",
                                            "present rrset", "absent", "absent rrset", "present value"]),
                           NAMES, RECORDS, st.sampled_from([0, 60, 2**31])), max_size=8)


@settings(max_examples=150, deadline=None)
@given(STEPS)
def test_any_mix_of_ordinary_records_reads_as_dnspythons(steps):
    update = new()
    for op, name, (rdtype, rdata), ttl in steps:
        {
            "add": lambda: update.add(name, ttl, rdtype, rdata),
            "delete": lambda: update.delete(name, rdtype, rdata),
            "delete rrset": lambda: update.delete(name, rdtype),
            "delete name": lambda: update.delete(name),
            "present": lambda: update.present(name),
            "present rrset": lambda: update.present(name, rdtype),
            "absent": lambda: update.absent(name),
            "absent rrset": lambda: update.absent(name, rdtype),
            "present value": lambda: update.present(name, rdtype, rdata),
        }[op]()
    wire = signed(update)
    fast = wireparse.parse(wire, KEYRING)
    assert fast is not None and update_summary(fast) == update_summary(full(wire))


def test_names_read_once_keep_their_case_and_the_cache_stays_bounded(monkeypatch):
    monkeypatch.setattr(wireparse, "_NAMES", {})
    monkeypatch.setattr(wireparse, "_NAMES_MAX", 3)
    zones = []
    for origin in ("Example.COM.", "example.com.", "example.com.", "EXAMPLE.com."):
        update = dns.update.UpdateMessage(origin)
        update.add("www", 60, "A", "192.0.2.9")
        zones.append(wireparse.parse(signed(update), KEYRING).question[0].name.to_text())
    assert zones == ["Example.COM.", "example.com.", "example.com.", "EXAMPLE.com."]
    assert len(wireparse._NAMES) <= 3


@pytest.mark.parametrize("rdtype, rdata", [
    ("A", b"\xc0\x00\x02"), ("A", b"\xc0\x00\x02\x01\x05"), ("AAAA", b"\x20\x01" * 7),
    ("TXT", b"\x05abc"), ("TXT", b"\x01a\x03ab"),
])
def test_a_malformed_a_aaaa_or_txt_is_left_to_the_full_parse(rdtype, rdata):
    """A, AAAA and TXT records are kept as wire (WireUpdate.plain), so the
    wire parser checks them as dnspython's parse would: the full parse
    answers FORMERR for these."""
    update = new()
    update.add("www", 60, dns.rdata.GenericRdata(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), rdata))
    wire = signed(update)
    assert wireparse.parse(wire, KEYRING) is None
    with pytest.raises(dns.exception.FormError):
        full(wire)


def test_a_aaaa_and_txt_updates_are_kept_plain_and_read_as_dnspythons():
    """Updates of A, AAAA and TXT alone, without prerequisites, come as
    PlainRecords (``plain``); read as RRsets they are dnspython's. With a
    prerequisite, or another type, there is no plain form."""
    update = new()
    update.add("www", 60, "A", "192.0.2.9")
    update.add("www", 60, "AAAA", "2001:db8::9")
    update.add("_acme-challenge", 0, "TXT", '"a" "b"')
    update.delete("www", "A", "192.0.2.10")
    update.delete("old", "TXT")
    wire = signed(update)
    fast = wireparse.parse(wire, KEYRING)
    assert [(r.rdtype, r.deleting, r.ttl) for r in fast.plain] == [
        (1, None, 60), (28, None, 60), (16, None, 0), (1, dns.rdataclass.NONE, 0), (16, dns.rdataclass.ANY, 0)]
    assert fast.plain[2].rdata == b"\x01a\x01b" and fast.plain[4].rdata is None
    assert update_summary(fast) == update_summary(full(wire))
    with_mx = new()
    with_mx.add("www", 60, "A", "192.0.2.9")
    with_mx.add("x", 60, "MX", "10 www")
    with_prerequisite = new()
    with_prerequisite.present("www")
    with_prerequisite.add("www", 60, "A", "192.0.2.9")
    for other in (with_mx, with_prerequisite):
        wire = signed(other)
        fast = wireparse.parse(wire, KEYRING)
        assert fast.plain is None and update_summary(fast) == update_summary(full(wire))
