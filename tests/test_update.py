"""Unit tests: RFC 2136 prerequisites, updates and policy (aliasd.update.rfc2136)."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from aliasd.base.config import UpdateRule
from aliasd.update import wireparse
from aliasd.update.rfc2136 import next_update_serial, process, restore_ttls
from aliasd.zones.zonefile import ALIAS_TYPE
from tests.helpers import update_summary, zone_source

N = dns.name.from_text
OPS, ACME = N("ops"), N("acme")
RULES = (
    UpdateRule("ops"),
    UpdateRule("ops", None, False, frozenset({dns.rdatatype.SOA})),  # SOA only when named
    UpdateRule("acme", N("_acme-challenge", None), True, frozenset({dns.rdatatype.TXT})),
)
ZONE = """
$ORIGIN example.com.
$TTL 300
@ SOA ns1 hostmaster 10 3600 600 86400 300
@ NS ns1
@ NS ns2
@ ALIAS lb.cdn.example.net.
@ MX 10 mail
ns1 A 192.0.2.1
ns2 A 192.0.2.2
www A 192.0.2.10
www A 192.0.2.11
alias CNAME www
mail A 192.0.2.20
"""


def source():
    return zone_source("example.com.", ZONE)


TSIG_KEY = dns.tsig.Key("ops.", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "hmac-sha256")
KEYRING = {TSIG_KEY.name: TSIG_KEY}


def run(update: dns.update.UpdateMessage, key=OPS, served=10, src=None, rules=RULES, signed=False, **kw):
    """The update as the server parses it: one RR per RRset, in order, with
    the TTLs as sent. Signed, it is read both ways, by dnspython's full
    parse and by aliasd.update.wireparse, which must agree; the decisions
    are also the same (checked where each gets a fresh copy of the zone)."""
    update.use_tsig(KEYRING, TSIG_KEY.name)
    wire = update.to_wire()
    message = dns.message.from_wire(wire, keyring=KEYRING, one_rr_per_rrset=True)
    restore_ttls(message, wire)
    fast = wireparse.parse(wire, KEYRING)
    assert fast is not None, "a shape the wire parser leaves to the full parse"
    assert update_summary(fast) == update_summary(message)
    outcome = process(fast, src or source(), rules, key, served, signed, **kw)
    if src is None:
        full = process(message, source(), rules, key, served, signed, **kw)
        assert (full.rcode, full.why, full.touched, full.names) == (
            outcome.rcode, outcome.why, outcome.touched, outcome.names)
    return outcome


def records(outcome, name, rdtype):
    rrset = outcome.source.rrsets.get((N(name), rdtype))
    return sorted(rd.to_text() for rd in rrset) if rrset is not None else []


def new():
    return dns.update.UpdateMessage("example.com.")


# -- prerequisites (RFC 2136 2.4) --------------------------------------------

@pytest.mark.parametrize("setup, rcode", [
    (lambda u: u.present("www"), dns.rcode.NOERROR),  # name in use
    (lambda u: u.present("nothing"), dns.rcode.NXDOMAIN),
    (lambda u: u.absent("nothing"), dns.rcode.NOERROR),  # name not in use
    (lambda u: u.absent("www"), dns.rcode.YXDOMAIN),
    (lambda u: u.present("www", "A"), dns.rcode.NOERROR),  # RRset exists (value independent)
    (lambda u: u.present("www", "AAAA"), dns.rcode.NXRRSET),
    (lambda u: u.absent("www", "AAAA"), dns.rcode.NOERROR),  # RRset does not exist
    (lambda u: u.absent("www", "A"), dns.rcode.YXRRSET),
    (lambda u: u.present("www", "A", "192.0.2.10", "192.0.2.11"), dns.rcode.NOERROR),  # value dependent
    (lambda u: u.present("www", "A", "192.0.2.10"), dns.rcode.NXRRSET),  # a subset is not the RRset
    (lambda u: u.present("www.example.org.", "A"), dns.rcode.NOTZONE),
    (lambda u: u.present("@", "TYPE65401"), dns.rcode.NOERROR),  # the ALIAS record itself
])
def test_prerequisites(setup, rcode):
    update = new()
    setup(update)
    update.add("added", 60, "A", "192.0.2.99")
    outcome = run(update)
    assert outcome.rcode == rcode, outcome.why
    assert (outcome.source is not None) == (rcode == dns.rcode.NOERROR)


def test_a_failed_prerequisite_applies_nothing():
    update = new()
    update.add("added", 60, "A", "192.0.2.99")
    update.absent("www")
    assert run(update).source is None


# -- updates (RFC 2136 2.5 and 3.4.2) ---------------------------------------

def test_add_delete_rr_delete_rrset_delete_name_in_order():
    update = new()
    update.add("www", 60, "A", "192.0.2.12")  # add to an RRset: the TTL is the new one
    update.delete("www", "A", "192.0.2.10")  # delete one RR
    update.add("txt", 60, "TXT", '"one"')
    update.delete("mail", "A")  # delete an RRset
    update.add("gone", 60, "A", "192.0.2.30")
    update.delete("gone")  # delete every RRset of a name
    outcome = run(update)
    assert outcome.rcode == dns.rcode.NOERROR
    assert records(outcome, "www.example.com.", dns.rdatatype.A) == ["192.0.2.11", "192.0.2.12"]
    assert outcome.source.rrsets[(N("www.example.com."), dns.rdatatype.A)].ttl == 60
    assert records(outcome, "txt.example.com.", dns.rdatatype.TXT) == ['"one"']
    assert records(outcome, "mail.example.com.", dns.rdatatype.A) == []
    assert records(outcome, "gone.example.com.", dns.rdatatype.A) == []
    assert outcome.source.serial == 11
    assert {n.to_text() for n in outcome.names} == {
        "example.com.", "www.example.com.", "txt.example.com.", "mail.example.com."}


def test_serial_moves_past_the_served_one_and_an_update_may_set_a_newer_soa():
    update = new()
    update.add("x", 60, "A", "192.0.2.99")
    assert run(update, served=25).source.serial == 26  # ALIAS changes moved the served serial
    update = new()
    update.add("@", 300, "SOA", "ns1 hostmaster 2026120201 3600 600 86400 300")
    assert run(update).source.serial == 2026120201
    update = new()
    update.add("@", 300, "SOA", "ns1 hostmaster 5 3600 600 86400 300")  # older: ignored
    outcome = run(update)
    assert outcome.source is None and "not newer" in outcome.why
    assert next_update_serial(2**32 - 1, None) == 1  # RFC 1982: wraps past zero


def test_nothing_changed_is_noerror_without_a_new_serial():
    update = new()
    update.add("www", 300, "A", "192.0.2.10")  # already there, same TTL
    update.delete("nothing", "A")
    outcome = run(update)
    assert outcome.rcode == dns.rcode.NOERROR and outcome.source is None


@pytest.mark.parametrize("setup, why", [
    (lambda u: u.add("www", 60, "CNAME", "mail"), "CNAME at www.example.com. beside other data"),
    (lambda u: u.add("alias", 60, "A", "192.0.2.1"), "A at alias.example.com. beside a CNAME"),
    (lambda u: u.add("alias", 60, "TYPE65401", r"\# 1 00"), "ALIAS at alias.example.com. beside a CNAME"),
    (lambda u: u.add("@", 60, "CNAME", "www"), "CNAME at example.com. beside other data"),
    (lambda u: u.delete("@", "SOA"), "deleting the apex SOA"),
    (lambda u: u.delete("@", "NS"), "deleting the apex NS"),
    (lambda u: u.delete("@", "SOA", "ns1 hostmaster 10 3600 600 86400 300"), "deleting the SOA"),
    (lambda u: u.add("www", 300, "SOA", "ns1 hostmaster 99 3600 600 86400 300"), "SOA at www.example.com., not the apex"),
])
def test_updates_that_would_break_the_zone_are_ignored(setup, why):
    update = new()
    setup(update)
    outcome = run(update)
    assert outcome.rcode == dns.rcode.NOERROR and outcome.source is None
    assert why in outcome.why


def test_the_last_apex_ns_stays():
    update = new()
    update.delete("@", "NS", "ns1")
    update.delete("@", "NS", "ns2")
    outcome = run(update)
    assert records(outcome, "example.com.", dns.rdatatype.NS) == ["ns2.example.com."]
    assert "deleting the last apex NS" in outcome.why


def test_deleting_every_rrset_at_the_apex_keeps_soa_and_ns():
    update = new()
    update.delete("@")
    outcome = run(update)
    assert records(outcome, "example.com.", dns.rdatatype.NS) == ["ns1.example.com.", "ns2.example.com."]
    assert outcome.source.rrsets.get((N("example.com."), dns.rdatatype.MX)) is None
    assert N("example.com.") not in outcome.source.aliases  # the ALIAS went with the rest


def test_an_alias_replaces_the_owners_alias_and_can_be_deleted():
    target = dns.name.from_text("other.example.net.").to_wire()
    update = new()
    update.add("@", 120, "TYPE65401", rf"\# {len(target)} {target.hex()}")
    outcome = run(update)
    assert outcome.source.aliases[N("example.com.")].target == N("other.example.net.")
    assert outcome.source.aliases[N("example.com.")].ttl == 120
    update = new()
    update.delete("@", "TYPE65401")
    assert run(update).source.aliases == {}
    update = new()
    update.add("new", 60, "TYPE65401", rf"\# {len(target)} {target.hex()}")
    assert N("new.example.com.") in run(update).source.aliases


# -- TTLs of prerequisites and deletions (RFC 2136 3.2.5, 3.4.1.3) -------------

def with_ttl(section: list, name: str, rdclass, rdtype: str, ttl: int, rdata: str | None = None) -> None:
    """Append to ``section`` one RR at the absolute ``name`` with ``ttl``.
    dnspython writes an RR without rdata (class ANY or NONE) with TTL 0, so
    that one is an empty generic rdata of its class; with ``rdata``, a
    class NONE (deletion) or IN (prerequisite) RR. Also used end to end."""
    owner = dns.name.from_text(name)
    rdtype = dns.rdatatype.from_text(rdtype)
    if rdata is None:
        rrset = dns.rrset.RRset(owner, rdclass, rdtype)
        rrset.add(dns.rdata.GenericRdata(rdclass, rdtype, b""), ttl)
    else:
        deleting = rdclass if rdclass == dns.rdataclass.NONE else None
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, rdtype, deleting=deleting)
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, rdata), ttl)
    section.append(rrset)


ANY_CLASS, NONE_CLASS, IN_CLASS = dns.rdataclass.ANY, dns.rdataclass.NONE, dns.rdataclass.IN


@pytest.mark.parametrize("section, rr", [
    ("prerequisite", ("www.example.com.", ANY_CLASS, "ANY", 300)),  # name is in use
    ("prerequisite", ("www.example.com.", ANY_CLASS, "A", 1)),  # RRset exists
    ("prerequisite", ("nothing.example.com.", NONE_CLASS, "ANY", 60)),  # name is not in use
    ("prerequisite", ("www.example.com.", NONE_CLASS, "AAAA", 60)),  # RRset does not exist
    ("prerequisite", ("mail.example.com.", IN_CLASS, "A", 300, "192.0.2.20")),  # RRset exists with this value
    ("update", ("mail.example.com.", ANY_CLASS, "A", 300)),  # delete an RRset
    ("update", ("mail.example.com.", ANY_CLASS, "ANY", 300)),  # delete a name
    ("update", ("www.example.com.", NONE_CLASS, "A", 300, "192.0.2.10")),  # delete one RR
    ("update", ("www.example.com.", NONE_CLASS, "A", 2**31, "192.0.2.10")),  # dnspython alone would read 0
], ids=lambda v: v if isinstance(v, str) else f"{v[1].name}-{v[2]}-{v[3]}")
def test_a_prerequisite_or_a_deletion_with_a_ttl_is_formerr_and_nothing_is_applied(section, rr):
    update = new()
    update.add("added", 60, "A", "192.0.2.99")
    with_ttl(getattr(update, section), *rr)
    outcome = run(update)
    assert outcome.rcode == dns.rcode.FORMERR, outcome.why
    assert outcome.source is None and "not 0" in outcome.why
    # The same with TTL 0 is taken (the prerequisites above hold).
    update = new()
    with_ttl(update.prerequisite if section == "prerequisite" else update.update, *rr[:3], 0, *rr[4:])
    update.add("added", 60, "A", "192.0.2.99")
    outcome = run(update)
    assert outcome.rcode == dns.rcode.NOERROR and outcome.source is not None, outcome.why


# -- signed zones: the signer's records and DS (RFC 4035 2.4) -------------------

DS = "12345 13 2 " + "ab" * 32
SIGNED_ZONE = ZONE + """sub NS ns.sub
ns.sub A 192.0.2.53
sub DS 12345 13 2 """ + "cd" * 32 + "\n"


def signed_source():
    return zone_source("example.com.", SIGNED_ZONE)


@pytest.mark.parametrize("setup", [
    lambda u: u.add("@", 300, "DNSKEY", "257 3 13 " + "A" * 88),
    lambda u: u.add("@", 300, "CDS", DS),
    lambda u: u.add("@", 300, "CDNSKEY", "257 3 13 " + "A" * 88),
    lambda u: u.add("@", 0, "NSEC3PARAM", "1 0 0 -"),
    lambda u: u.add("www", 300, "NSEC", "mail.example.com. A RRSIG NSEC"),
    lambda u: u.add("0p9mhaveqvm6t7vbl5lop2u3t2rp3tom", 300, "NSEC3", "1 0 0 - 0P9MHAVEQVM6T7VBL5LOP2U3T2RP3TOM A"),
    lambda u: u.add("www", 300, "RRSIG", "A 13 3 300 20300101000000 20200101000000 12345 example.com. AAAA"),
    lambda u: u.delete("@", "DNSKEY"),  # deleting an RRset
    lambda u: u.delete("@", "NSEC3PARAM", "1 0 0 -"),  # deleting one record
    lambda u: (u.add("ok", 60, "A", "192.0.2.1"), u.add("@", 300, "DNSKEY", "256 3 13 " + "A" * 88)),
], ids=["DNSKEY", "CDS", "CDNSKEY", "NSEC3PARAM", "NSEC", "NSEC3", "RRSIG", "delete-DNSKEY",
        "delete-NSEC3PARAM", "with-another-add"])
def test_the_signers_records_are_refused_in_a_signed_zone_and_taken_in_an_unsigned_one(setup):
    update = new()
    setup(update)
    outcome = run(update, src=signed_source(), signed=True)
    assert outcome.rcode == dns.rcode.REFUSED and outcome.source is None
    assert "aliasd makes the DNSSEC records of the signed zone example.com. itself" in outcome.why
    assert run(update, src=signed_source()).rcode == dns.rcode.NOERROR  # not signed: records like others


@pytest.mark.parametrize("setup, why", [
    (lambda u: u.add("@", 300, "DS", DS), "DS record at the zone apex example.com.: it belongs in the parent zone"),
    (lambda u: u.add("www", 300, "DS", DS), "DS record at www.example.com., which is not a delegation"),
    (lambda u: u.add("ns.sub", 300, "DS", DS), "DS record at ns.sub.example.com., which is not a delegation"),
    (lambda u: u.delete("sub", "NS"), "DS record at sub.example.com., which is not a delegation"),  # left alone
    (lambda u: (u.add("new", 300, "DS", DS), u.add("other", 300, "NS", "ns.other")),
     "DS record at new.example.com., which is not a delegation"),
], ids=["apex", "not-a-delegation", "glue", "its-NS-deleted", "NS-elsewhere"])
def test_a_ds_only_at_a_delegation_of_a_signed_zone(setup, why):
    update = new()
    setup(update)
    outcome = run(update, src=signed_source(), signed=True)
    assert outcome.rcode == dns.rcode.REFUSED and outcome.source is None
    assert why in outcome.why


@pytest.mark.parametrize("setup, ds", [
    (lambda u: u.add("sub", 300, "DS", DS), ["12345 13 2 " + "ab" * 32, "12345 13 2 " + "cd" * 32]),
    (lambda u: u.replace("sub", 300, "DS", DS), ["12345 13 2 " + "ab" * 32]),  # a key rollover in the child
    (lambda u: u.delete("sub", "DS"), []),  # the child goes unsigned
    (lambda u: (u.add("new", 300, "DS", DS), u.add("new", 300, "NS", "ns.new.example.net.")),  # NS after DS
     None),
    (lambda u: u.delete("sub"), []),  # the delegation goes, its DS with it
], ids=["add", "replace", "delete", "with-its-NS", "delete-the-delegation"])
def test_a_ds_at_a_delegation_of_a_signed_zone_is_taken(setup, ds):
    update = new()
    setup(update)
    outcome = run(update, src=signed_source(), signed=True)
    assert outcome.rcode == dns.rcode.NOERROR and outcome.source is not None, outcome.why
    if ds is not None:
        assert records(outcome, "sub.example.com.", dns.rdatatype.DS) == ds
    else:
        assert records(outcome, "new.example.com.", dns.rdatatype.DS) == ["12345 13 2 " + "ab" * 32]


# -- the zone, the names, the classes -----------------------------------------

@pytest.mark.parametrize("setup, rcode", [
    (lambda u: u.add("www.example.org.", 60, "A", "192.0.2.1"), dns.rcode.NOTZONE),
    (lambda u: u.delete("example.org.", "A"), dns.rcode.NOTZONE),
    (lambda u: u.add("x", 60, "AXFR", ""), None),  # cannot even be written by dnspython
])
def test_names_outside_the_zone_and_bad_types(setup, rcode):
    update = new()
    try:
        setup(update)
    except Exception:
        assert rcode is None
        return
    assert run(update).rcode == rcode


# -- policy --------------------------------------------------------------------

@pytest.mark.parametrize("setup, allowed", [
    (lambda u: u.add("_acme-challenge", 60, "TXT", '"t"'), True),
    (lambda u: u.add("_acme-challenge.www", 60, "TXT", '"t"'), False),  # not under _acme-challenge
    (lambda u: u.add("x._acme-challenge", 60, "TXT", '"t"'), True),  # subdomains = true
    (lambda u: u.delete("_acme-challenge", "TXT"), True),
    (lambda u: u.add("_acme-challenge", 60, "A", "192.0.2.1"), False),  # not TXT
    (lambda u: u.add("www", 60, "TXT", '"t"'), False),
    (lambda u: u.delete("_acme-challenge"), True),  # nothing there: TXT (its only type) allowed
    (lambda u: (u.add("_acme-challenge", 60, "TXT", '"t"'), u.add("www", 60, "TXT", '"t"')), False),
])
def test_the_acme_key_changes_acme_challenge_txt_and_nothing_else(setup, allowed):
    update = new()
    setup(update)
    outcome = run(update, key=ACME)
    assert (outcome.rcode == dns.rcode.NOERROR) == allowed, outcome.why
    if not allowed:
        assert outcome.rcode == dns.rcode.REFUSED and outcome.source is None


def test_a_rule_without_types_allows_everything_but_the_soa():
    rules = (UpdateRule("ops"),)
    rule = rules[0]
    origin = N("example.com.")
    assert rule.allows(OPS, N("www.example.com."), dns.rdatatype.A, origin)
    assert rule.allows(OPS, origin, ALIAS_TYPE, origin)
    assert not rule.allows(OPS, origin, dns.rdatatype.SOA, origin)
    assert not rule.allows(ACME, N("www.example.com."), dns.rdatatype.A, origin)
    update = new()
    update.add("@", 300, "SOA", "ns1 hostmaster 2026120201 3600 600 86400 300")
    assert run(update, rules=rules).rcode == dns.rcode.REFUSED


@pytest.mark.parametrize("reuse", [False, True])
def test_an_update_derives_aliases_digest_and_names_from_what_it_touched(reuse):
    """ZoneSource.updated and ZoneBase.updated (cost: the touched owners)
    agree with a full recomputation, over random adds and deletes of
    names, wildcards, delegations, empty non-terminals and ALIAS records;
    also when each update changes the records of the one before in place
    (``reuse``, the authority's records_private), whose results are those of
    a chain of copies. Without ``reuse`` no source's records ever change."""
    import random

    from aliasd.zones.zone import ZoneBase
    from aliasd.zones.zonefile import ZoneSource

    rng = random.Random(2136)
    src, copied = source(), source()
    src.record_count()  # counted once, then carried by each update
    base = ZoneBase.of(src)
    labels = ["a", "b", "*", "x.y", "deep.er.name", "sub", "ns.sub", "_acme-challenge", "q._acme-challenge"]
    target = dns.name.from_text("t.example.net.").to_wire()
    for step in range(300):
        update = new()
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(labels)
            kind = rng.random()
            if kind < 0.35:
                update.add(name, 60, "A", f"192.0.2.{rng.randint(1, 250)}")
            elif kind < 0.45:
                update.add(name, 60, "NS", "ns.sub")
            elif kind < 0.55:
                update.add(name, 60, "TYPE65401", rf"\# {len(target)} {target.hex()}")
            elif kind < 0.8:
                update.delete(name)
            else:
                update.delete(name, "A")
        if reuse:
            outcome = run(update, src=src, served=src.serial, reuse=True)
            twin = run(update, src=copied, served=copied.serial)
            assert (twin.rcode, twin.touched, twin.previous) == (outcome.rcode, outcome.touched, outcome.previous)
            if outcome.source is None:
                continue
            assert outcome.source.records is src.records  # changed in place ...
            assert dict(outcome.source.records) == dict(twin.source.records), step  # ... to the same records
            copied = twin.source
        else:
            before = dict(src.records)
            outcome = run(update, src=src, served=src.serial)
            assert dict(src.records) == before, step
            if outcome.source is None:
                continue
        full = ZoneSource.of(src.origin, src.path, dict(outcome.source.records))
        assert outcome.source.digest == full.digest, step
        assert outcome.source.aliases == full.aliases, step
        assert outcome.source.record_count() == full.record_count(), step  # carried, not recounted
        base = base.updated(outcome.source.records, outcome.touched, outcome.previous if reuse else None)
        expected = ZoneBase.of(outcome.source)
        assert (base.empty_non_terminals, base.cuts, base.has_wildcards, base.dnames) == (
            expected.empty_non_terminals, expected.cuts, expected.has_wildcards, expected.dnames), step
        assert base._below() == expected._below(), step
        src = outcome.source


@pytest.mark.parametrize("reuse", [False, True])
def test_an_update_past_max_records_is_refused_and_changes_nothing(reuse):
    """max-records (as BIND's) is checked before any record changes: also
    when the update would change the records in place."""
    src = source()
    before = dict(src.records)
    count = src.record_count()
    update = new()
    update.add("new1", 60, "A", "192.0.2.99")
    update.add("new2", 60, "A", "192.0.2.98")
    refused = run(update, src=src, max_records=count + 1, reuse=reuse)
    assert refused.rcode == dns.rcode.REFUSED and refused.source is None
    assert f"would hold {count + 2} records, more than its max-records ({count + 1})" in refused.why
    assert dict(src.records) == before
    taken = run(update, src=src, max_records=count + 2, reuse=reuse)
    assert taken.rcode == dns.rcode.NOERROR and taken.source.record_count() == count + 2


def test_updates_of_a_aaaa_and_txt_applied_to_packed_records_decide_as_the_full_path(monkeypatch):
    """An UPDATE of A, AAAA and TXT records alone (no prerequisites) is
    applied to the packed nodes (rfc2136._plain); over random adds and
    deletions, at new names, existing ones, the apex, beside a CNAME and
    outside the zone, by keys that may and may not, its outcome is that of
    the dnspython path on the full parse: rcode, why, the touched nodes,
    their names and nodes before, the new records and serial."""
    import random

    from aliasd.update import rfc2136

    taken = []
    plain = rfc2136._plain

    def counting(*args, **kw):
        outcome = plain(*args, **kw)
        taken.append(outcome is not None)
        return outcome

    monkeypatch.setattr(rfc2136, "_plain", counting)
    rng = random.Random(1982)
    names = ["www", "mail", "new", "@", "alias", "_acme-challenge.new", "Www", "out.example.org."]
    values = {"A": ["192.0.2.10", "192.0.2.11", "192.0.2.77"], "AAAA": ["2001:db8::1", "2001:db8::2"],
              "TXT": ['"a"', '"b" "c"', '"A"']}
    src = source()
    for step in range(400):
        update = new()
        for _ in range(rng.randint(1, 3)):
            name, rdtype = rng.choice(names), rng.choice(sorted(values))
            value, kind = rng.choice(values[rdtype]), rng.random()
            if kind < 0.5:
                update.add(name, rng.choice([60, 300]), rdtype, value)
            elif kind < 0.8:
                update.delete(name, rdtype, value)
            else:
                update.delete(name, rdtype)
        key = rng.choice([OPS, OPS, ACME])
        update.use_tsig(KEYRING, TSIG_KEY.name)
        wire = update.to_wire()
        fast = wireparse.parse(wire, KEYRING)
        assert fast.plain is not None, step
        message = dns.message.from_wire(wire, keyring=KEYRING, one_rr_per_rrset=True)
        restore_ttls(message, wire)
        served = src.serial + rng.choice([0, 5])
        mine = process(fast, src, RULES, key, served)
        full = process(message, src, RULES, key, served)
        assert (mine.rcode, mine.why, mine.touched, mine.names, mine.previous) == (
            full.rcode, full.why, full.touched, full.names, full.previous), step
        if mine.source is not None:
            assert dict(mine.source.records) == dict(full.source.records), step
            assert (mine.source.serial, mine.source.digest) == (full.source.serial, full.source.digest), step
            if rng.random() < 0.7:
                src = mine.source
    assert sum(taken) > 100 and not all(taken)  # both ways were taken
