"""Unit tests: signing zone versions (aliasd.dnssec.signer) and where it happens (aliasd.service.authority)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import dns.dnssec
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from twisted.internet.task import Clock

from aliasd.base import store
from aliasd.base.config import DnssecSettings
from aliasd.dnssec.keys import KSK_FLAGS, ZSK_FLAGS, KeyStore
from aliasd.dnssec.signer import KeyEvents, Signer, window
from aliasd.service.authority import ZoneAuthority
from aliasd.zones.zone import Flattened, ZoneVersion
from tests.helpers import zone_source
from tests.validators import covers

T = dns.rdatatype
N = dns.name.from_text
ORIGIN = N("example.com.")
TEXT = """
$ORIGIN example.com.
$TTL 300
@ SOA ns1 hostmaster 10 3600 600 86400 60
@ NS ns1
@ ALIAS lb.example.net.
ns1 A 192.0.2.1
www A 192.0.2.10
*.wild TXT "w"
sub NS ns.sub
ns.sub A 192.0.2.40
deep.a.b TXT "x"
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    # Published and active since 1970: they sign at the fixed moments these tests sign at.
    return KeyStore(tmp_path_factory.mktemp("keys")).ensure(ORIGIN, now=0)


def version(addresses, serial=10):
    source = zone_source("example.com.", TEXT)
    rrset = dns.rrset.from_text_list(ORIGIN, 60, "IN", "A", addresses)
    return ZoneVersion.build(source, {ORIGIN: Flattened({T.A: rrset, T.AAAA: None})}, serial=serial)


def check_all_signatures(signed_version, keys, now=1_000_000_000):
    """Every RRSIG validates, and every authoritative RRset has one."""
    dnskeys = {ORIGIN: dns.rrset.from_rdata_list(ORIGIN, 300, [k.dnskey for k in keys])}
    by_key = {}
    for rrset in signed_version.transfer_rrsets():
        if rrset.rdtype == T.RRSIG:
            by_key[(rrset.name, rrset.covers)] = rrset
    checked = 0
    for rrset in signed_version.transfer_rrsets():
        if rrset.rdtype == T.RRSIG:
            continue
        below_cut = any(
            rrset.name.is_subdomain(cut) and not (rrset.name == cut and rrset.rdtype in (T.NSEC, T.DS))
            for cut in signed_version.base.cuts
        )
        sig = by_key.get((rrset.name, rrset.rdtype))
        if below_cut:
            assert sig is None, rrset  # the child's NS and glue are not signed
            continue
        assert sig is not None, rrset
        dns.dnssec.validate(rrset, sig, dnskeys, now=now)
        checked += 1
    return checked


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_a_signed_version_validates_and_signing_again_changes_only_what_changed(keys, denial):
    signer = Signer(ORIGIN, keys, DnssecSettings(denial=denial))
    v1 = version(["192.0.2.1"])
    s1 = v1.with_signatures(signer.sign(v1, now=1_000_000_000))
    assert check_all_signatures(s1, keys) > 10
    again = v1.with_signatures(signer.sign(v1, now=1_000_000_000))
    assert again.signed.signatures == s1.signed.signatures  # deterministic
    v2 = version(["192.0.2.2"], serial=11)
    s2 = v2.with_signatures(signer.sign(v2, s1, now=1_000_000_000))
    check_all_signatures(s2, keys)
    same = [k for k in s1.signed.signatures if s2.signed.signatures.get(k) is s1.signed.signatures[k]]
    changed = set(s1.signed.signatures) - set(same)
    assert store.key_of(N("www.example.com.")) in same
    assert store.key_of(ORIGIN) in changed  # its A and the SOA's serial
    assert len(changed) <= 2, changed  # the apex, and for NSEC3 nothing else: the bitmaps did not change


def test_a_new_epoch_signs_everything_again(keys):
    settings = DnssecSettings(denial="nsec", signature_validity=1000, refresh_before=400)
    signer = Signer(ORIGIN, keys, settings)
    epoch, inception, expiration = window(ORIGIN, settings, 10_000)
    assert expiration - inception == 1000 + 3600 and inception <= 10_000 - 3600
    v1 = version(["192.0.2.1"])
    s1 = v1.with_signatures(signer.sign(v1, now=10_000))
    later = 10_000 + 600  # one period (validity - refresh-before) on
    assert signer.state(later) != signer.state(10_000)
    s2 = v1.with_signatures(signer.sign(v1, s1, now=later))
    assert not any(s2.signed.signatures[k] == s1.signed.signatures[k] for k in s1.signed.signatures)


def test_a_big_signed_zone_is_signed_in_a_batch_of_its_own_after_the_others(keys):
    small = zone_source("example.org.", "$ORIGIN example.org.\n@ 300 SOA ns1 h 1 1 1 1 1\n@ 300 NS ns1\nns1 300 A 192.0.2.1\n")
    big = zone_source("example.com.", TEXT)
    authority = ZoneAuthority(signers={ORIGIN: Signer(ORIGIN, keys, DnssecSettings())})
    authority.heavy_from = 5
    served_order = []
    authority.on_new_serial = lambda v: served_order.append(v.origin)
    authority.set_sources([big, small])
    assert served_order == [N("example.org."), ORIGIN]
    assert authority.batches == 2
    assert authority.versions[ORIGIN].signed is not None and authority.versions[N("example.org.")].signed is None


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_signing_after_updates_equals_signing_from_scratch(keys, denial):
    """Names appear and go (with empty non-terminals, wildcards and a
    delegation), addresses change: the incremental signature set is exactly
    the one a full signing of the same version makes (signing is deterministic)."""
    import random

    import dns.message
    import dns.update

    from aliasd.base.config import UpdateRule
    from aliasd.update.rfc2136 import process

    rng = random.Random(4035)
    signer = Signer(ORIGIN, keys, DnssecSettings(denial=denial))
    # 300 more names, so that a few names coming and going are inserted
    # into the chain, and the bulk updates (every 10th step) sort it again.
    source = zone_source("example.com.", TEXT + "".join(f"f{i} TXT \"{i}\"\n" for i in range(300)))
    rrset = dns.rrset.from_text_list(ORIGIN, 60, "IN", "A", ["192.0.2.1"])
    current = ZoneVersion.build(source, {ORIGIN: Flattened({T.A: rrset, T.AAAA: None})}, serial=10)
    current = current.with_signatures(signer.sign(current, now=1_000_000_000))
    labels = ["a", "b.c", "x.y.z", "*.w", "new", "sub2", "ns.sub2", "deep.a.b"]
    for step in range(150):
        update = dns.update.UpdateMessage("example.com.")
        if step % 10 == 9:
            for i in range(rng.randint(20, 40)):
                update.add(f"bulk{step}-{i}" if rng.random() < 0.7 else f"f{rng.randint(0, 299)}", 60, "TXT", "x")
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(labels)
            if rng.random() < 0.6:
                update.add(name, 60, "NS" if name == "sub2" else "A",
                           "ns.sub2" if name == "sub2" else f"192.0.2.{rng.randint(1, 250)}")
            else:
                update.delete(name)
        message = dns.message.from_wire(update.to_wire(), one_rr_per_rrset=True)
        outcome = process(message, current.source, (UpdateRule("ops"),), N("ops."), current.serial)
        if outcome.source is None:
            continue
        base = current.base.updated(outcome.source.records, outcome.touched)
        addresses = [f"192.0.2.{rng.randint(1, 250)}"]
        rrset = dns.rrset.from_text_list(ORIGIN, 60, "IN", "A", addresses)
        new = ZoneVersion.build(outcome.source, {ORIGIN: Flattened({T.A: rrset, T.AAAA: None})}, base,
                                serial=outcome.source.serial)
        incremental = signer.sign(new, current, now=1_000_000_000)
        scratch = signer.sign(new, now=1_000_000_000)
        assert incremental.records == scratch.records, step
        assert incremental.signatures == scratch.signatures, step
        assert incremental.chain == scratch.chain and incremental.hashed == scratch.hashed, step
        current = new.with_signatures(incremental)
    check_all_signatures(current, keys)


def test_a_heavy_signed_zone_still_has_its_alias_targets_resolved(keys):
    """Building a big signed zone ends its batch early: the resolver must
    still be told its ALIAS targets (it once never was)."""
    told = []

    class Resolver:
        any_stale = False

        def set_targets(self, dependents):
            told.append(set(dependents))

        def state(self, *key):
            return None

        def take_unsaved(self):
            return None

    big = zone_source("example.com.", TEXT)
    authority = ZoneAuthority(Resolver(), signers={ORIGIN: Signer(ORIGIN, keys, DnssecSettings())})
    authority.heavy_from = 5
    authority.set_sources([big])
    assert any(any(key[0] == N("lb.example.net.") for key in targets) for targets in told), told


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_an_alias_owner_serving_nothing_is_not_in_the_view_nor_its_chain(keys, denial):
    """``gone`` (and ``shop``, an empty non-terminal only above a vacant
    ALIAS owner) have no record in the transfer view: they are not in the
    chain and do not exist (NXDOMAIN, proven); ``kept`` has a name below it,
    so it stays, as an empty non-terminal would. When ``gone`` gets an
    address again it comes back, and signing incrementally equals signing
    from scratch either way."""
    signer = Signer(ORIGIN, keys, DnssecSettings(denial=denial))
    text = TEXT + "gone ALIAS nowhere.example.net.\nw.shop ALIAS nowhere.example.net.\nkept ALIAS nowhere.example.net.\nx.kept TXT \"x\"\n"
    source = zone_source("example.com.", text)
    nothing = Flattened({T.A: None, T.AAAA: None})
    owners = [N("gone.example.com."), N("w.shop.example.com."), N("kept.example.com.")]
    v1 = ZoneVersion.build(source, dict.fromkeys(owners, nothing), serial=10)
    key = store.key_of
    assert v1.vacant == {key(N("gone.example.com.")), key(N("w.shop.example.com.")), key(N("shop.example.com."))}
    s1 = v1.with_signatures(signer.sign(v1, now=1_000_000_000))
    chain_names = set(s1.signed.hashed) if denial == "nsec3" else set(s1.signed.chain)
    assert not chain_names & v1.vacant
    assert key(N("kept.example.com.")) in chain_names
    check_all_signatures(s1, keys)
    for name, rcode in [("gone", dns.rcode.NXDOMAIN), ("w.shop", dns.rcode.NXDOMAIN), ("shop", dns.rcode.NXDOMAIN),
                        ("x.gone", dns.rcode.NXDOMAIN), ("kept", dns.rcode.NOERROR)]:
        answer = s1.lookup(N(f"{name}.example.com."), T.A, dnssec=True)
        assert answer.rcode == rcode, name
        assert any(r.rdtype in (T.NSEC, T.NSEC3) for r in answer.authority), name
    address = dns.rrset.from_text_list(N("gone.example.com."), 60, "IN", "A", ["192.0.2.99"])
    v2 = ZoneVersion.build(source, {N("gone.example.com."): Flattened({T.A: address})}, serial=11, previous=v1)
    assert key(N("gone.example.com.")) not in v2.vacant
    incremental = signer.sign(v2, s1, now=1_000_000_000)
    assert incremental.records == signer.sign(v2, now=1_000_000_000).records
    s2 = v2.with_signatures(incremental)
    assert s2.lookup(N("gone.example.com."), T.A, dnssec=True).rcode == dns.rcode.NOERROR
    v3 = ZoneVersion.build(source, {N("gone.example.com."): nothing}, serial=12, previous=v2)
    again = signer.sign(v3, s2, now=1_000_000_000)
    assert again.records == signer.sign(v3, now=1_000_000_000).records
    assert again.signatures == signer.sign(v3, now=1_000_000_000).signatures


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_each_cname_a_wildcard_answers_brings_its_proof_once(keys, denial):
    """A chain of wildcard CNAMEs (here ending in a loop) carries, for each
    name a wildcard answered, the signed proof that no closer name exists
    (RFC 4035 3.1.3.3, RFC 5155 7.2.6); with NSEC, a.loop and b.loop are
    covered by the same record, which is given once."""
    signer = Signer(ORIGIN, keys, DnssecSettings(denial=denial))
    v1 = ZoneVersion.build(zone_source("example.com.", TEXT + "*.wc CNAME a.loop\n*.loop CNAME b.loop\n"), {})
    s1 = v1.with_signatures(signer.sign(v1, now=1_000_000_000))
    answer = s1.lookup(N("x.wc.example.com."), T.A, dnssec=True)
    assert [r.name for r in answer.answer if r.rdtype == T.CNAME] == [
        N("x.wc.example.com."), N("a.loop.example.com."), N("b.loop.example.com.")]
    for name in ("x.wc", "a.loop", "b.loop"):
        assert any(covers(r, N(f"{name}.example.com.")) for r in answer.authority), name
    assert len({(r.name, r.rdtype, r.covers) for r in answer.authority}) == len(answer.authority)
    dnskeys = {ORIGIN: dns.rrset.from_rdata_list(ORIGIN, 300, [k.dnskey for k in keys])}
    for sig in (r for r in answer.authority if r.rdtype == T.RRSIG):
        covered = next(r for r in answer.authority if r.name == sig.name and r.rdtype == sig.covers)
        dns.dnssec.validate(covered, sig, dnskeys, now=1_000_000_000)
    assert s1.lookup(N("x.wc.example.com."), T.A).authority == ()  # without DO: no proof


def test_many_small_signed_zones_are_served_a_batch_at_a_time(tmp_path):
    """Signing is bounded per batch: the first zones are served while the
    rest are still to be signed, not all at the end."""
    store_ = KeyStore(tmp_path)
    zones = [zone_source(f"z{i}.test.", f"$ORIGIN z{i}.test.\n@ 300 SOA ns1 h 1 1 1 1 1\n@ 300 NS ns1\n"
                                         f"ns1 300 A 192.0.2.1\nwww 300 A 192.0.2.2\n") for i in range(30)]
    signers = {z.origin: Signer(z.origin, store_.ensure(z.origin), DnssecSettings()) for z in zones}
    authority = ZoneAuthority(signers=signers)
    authority.signing_batch_owners = 20  # 3 owners a zone: 7 zones a batch
    served = []
    authority.on_new_serial = lambda v: served.append((authority.batches, v.origin))
    authority.set_sources(zones)
    assert len(served) == 30 and authority.batches == 5
    assert [batch for batch, _ in served] == sorted(batch for batch, _ in served)
    assert all(authority.versions[z.origin].signed is not None for z in zones)


def test_type_bitmaps_are_dnspythons():
    """NSEC and NSEC3 rdatas are written by hand: their type bit maps must
    be the encoding dnspython (and every validator) reads."""
    import random

    import dns.rdtypes.ANY.NSEC

    from aliasd.dnssec.signer import type_bitmap

    rng = random.Random(4034)
    cases = [[], [T.A], [T.A, T.RRSIG, T.NSEC], [T.CAA, T.A], [65401, 1, 46, 257, 32768, 65534]]
    cases += [rng.sample(range(1, 65535), rng.randint(1, 12)) for _ in range(200)]
    for types in cases:
        expected = dns.rdtypes.ANY.NSEC.NSEC(1, T.NSEC, dns.name.root, dns.rdtypes.ANY.NSEC.Bitmap.from_rdtypes(types))
        assert b"\0" + type_bitmap(types) == expected.to_wire(), types


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_a_big_zone_is_refreshed_a_bucket_at_a_time(keys, denial):
    """4,000 owners: four refresh buckets, whose epochs start a quarter
    period apart, so a quarter period later one bucket's owners (and
    NSEC3 records) are signed again and the rest kept; every signature
    still has at least refresh-before to run, and the incremental result is
    the one signing from scratch gives."""
    from aliasd.dnssec.signer import buckets_for

    settings = DnssecSettings(denial=denial, signature_validity=1000, refresh_before=400)
    signer = Signer(ORIGIN, keys, settings)
    text = TEXT + "".join(f"h{i} A 192.0.2.{i % 250 + 1}\n" for i in range(4000))
    source = zone_source("example.com.", text)
    assert buckets_for(len(source.records)) == 4
    v = ZoneVersion.build(source, {}, serial=10)
    s1 = signer.sign(v, now=10_000)
    later = 10_000 + 150  # a quarter of the period (validity - refresh-before)
    assert signer.state(later, len(source.records)) != signer.state(10_000, len(source.records))
    s2 = signer.sign(v, v.with_signatures(s1), now=later)
    assert s2.state == signer.state(later, len(source.records))
    kept = [k for k in s1.signatures if s2.signatures.get(k) == s1.signatures[k]]
    share = 1 - len(kept) / len(s1.signatures)
    assert 0.15 < share < 0.35, share
    scratch = signer.sign(v, now=later)
    assert s2.records == scratch.records and s2.signatures == scratch.signatures
    signed = v.with_signatures(s2)
    check_all_signatures(signed, keys, now=later)
    for rrset in signed.transfer_rrsets():
        if rrset.rdtype == T.RRSIG:
            assert all(rd.expiration >= later + settings.refresh_before for rd in rrset)


# ---------------------------------------------------------------- key timing


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _apex_view(signed_version) -> tuple[set, set, set]:
    """(DNSKEY tags, CDS tags, tags of the keys that sign www's A) as transferred."""
    rrsets = {(r.name, r.rdtype, r.covers): r for r in signed_version.transfer_rrsets()}
    dnskeys = {dns.dnssec.key_id(rd) for rd in rrsets[(ORIGIN, T.DNSKEY, T.NONE)]}
    cds = {rd.key_tag for rd in rrsets.get((ORIGIN, T.CDS, T.NONE), ())}
    signers = {rd.key_tag for rd in rrsets[(N("www.example.com."), T.RRSIG, T.A)]}
    return dnskeys, cds, signers


def test_only_published_keys_are_in_the_dnskey_rrset_and_only_active_keys_sign(tmp_path):
    """Issue 20.8: every key file used to be published, so a retired (and
    maybe compromised) key stayed in the KSK-signed DNSKEY RRset and
    signatures forged with it validated."""
    now = 1_000_000_000
    store_ = KeyStore(tmp_path)
    zsk, ksk = store_.ensure(ORIGIN, now=0)
    timings = {
        "retired": {"Publish": _at(0), "Activate": _at(0), "Inactive": _at(now - 200), "Delete": _at(now - 100)},
        "future": {"Publish": _at(now + 100), "Activate": _at(now + 200)},
        "standby": {"Publish": _at(0), "Activate": _at(now + 200)},
    }
    made = {}
    for name, flags in (("retired", KSK_FLAGS), ("future", ZSK_FLAGS), ("standby", ZSK_FLAGS)):
        key = store_.generate(ORIGIN, flags=flags, now=0, existing=[zsk, ksk, *made.values()])
        made[name] = dataclasses.replace(key, timing=timings[name])
    keys = [zsk, ksk, *made.values()]
    signer = Signer(ORIGIN, keys, DnssecSettings())
    v = version(["192.0.2.1"])
    signed = v.with_signatures(signer.sign(v, now=now))
    assert _apex_view(signed) == ({zsk.tag, ksk.tag, made["standby"].tag}, {ksk.tag}, {zsk.tag})
    check_all_signatures(signed, [zsk, ksk], now=now)
    served = next(r for r in signed.transfer_rrsets() if r.rdtype == T.DNSKEY)
    forged = dns.rrset.from_text(N("www.example.com."), 300, "IN", "A", "203.0.113.66")
    signature = dns.dnssec.sign(forged, made["retired"].private, ORIGIN, made["retired"].dnskey,
                                inception=now - 10, expiration=now + 10)
    with pytest.raises(dns.dnssec.ValidationFailure):
        dns.dnssec.validate(forged, dns.rrset.from_rdata(forged.name, 300, signature), {ORIGIN: served}, now=now)
    # The published set is part of the signing state: when it moves, the serial moves.
    assert signer.state(now) != signer.state(now + 100) != signer.state(now + 200)
    assert signer.next_key_event(now) == now + 100


def settle(clock: Clock) -> None:
    """Run what is due now (the authority's work, commit and publication)."""
    for _ in range(20):
        clock.advance(0)


def test_a_key_timing_event_signs_the_zone_again_at_that_moment(tmp_path):
    """A ZSK rollover by key timing alone: the new ZSK is published, then
    signs instead of the old one, then the old one is deleted. Each step is
    a new version (new serial, so NOTIFY) at its very moment, with no
    reload and no signature epoch moving on meanwhile."""
    start = 1_000_000_000
    clock = Clock()
    clock.advance(start)
    store_ = KeyStore(tmp_path)
    zsk, ksk = store_.ensure(ORIGIN, now=0)
    new = store_.generate(ORIGIN, flags=ZSK_FLAGS, now=0, existing=[zsk, ksk])
    new = dataclasses.replace(new, timing={"Created": _at(0), "Publish": _at(start + 30), "Activate": _at(start + 60)})
    zsk = dataclasses.replace(zsk, timing={**zsk.timing, "Inactive": _at(start + 60), "Delete": _at(start + 90)})
    settings = DnssecSettings()
    assert window(ORIGIN, settings, start)[0] == window(ORIGIN, settings, start + 90)[0]
    announced = []
    authority = ZoneAuthority(clock=clock, signers={ORIGIN: Signer(ORIGIN, [zsk, ksk, new], settings)},
                              on_new_serial=lambda v: announced.append((clock.seconds(), v.serial)))
    authority.set_sources([zone_source("example.com.", TEXT)], wait=True)

    def served():
        version = authority.versions[ORIGIN]
        view = _apex_view(version)
        check_all_signatures(version, [k for k in (zsk, ksk, new) if dns.dnssec.key_id(k.dnskey) in view[0]],
                             now=clock.seconds())
        return view

    assert served() == ({zsk.tag, ksk.tag}, {ksk.tag}, {zsk.tag})
    clock.advance(29.9)
    settle(clock)
    assert len(announced) == 1
    for at, view in ((30, ({zsk.tag, ksk.tag, new.tag}, {ksk.tag}, {zsk.tag})),
                     (60, ({zsk.tag, ksk.tag, new.tag}, {ksk.tag}, {new.tag})),
                     (90, ({ksk.tag, new.tag}, {ksk.tag}, {new.tag}))):
        clock.advance(start + at - clock.seconds())
        settle(clock)
        assert served() == view, at
        assert announced[-1][0] == start + at and announced[-1][1] > announced[-2][1]
    assert len(announced) == 4
    assert clock.getDelayedCalls() == []  # no key event to come, nothing else pending


class _TimedSigner:
    """A signer whose keys change at the given moments."""

    def __init__(self, *moments):
        self.moments = moments

    def next_key_event(self, now):
        return min((m for m in self.moments if m > now), default=None)

    def key_events(self, start, end):
        return [f"{m}" for m in self.moments if start <= m <= end]

    def signs(self, now):
        return True


def test_key_events_keep_one_timer_for_the_earliest_event_of_all_zones():
    """One DelayedCall whatever the number of zones; zones without an event
    to come cost nothing; a reload's new signer replaces the old one's
    events, a zone no longer signed has none."""
    clock = Clock()
    due = []
    events = KeyEvents(clock, due.append)
    signers = {N(f"z{i}.test."): _TimedSigner() for i in range(1000)}
    a, b, c = N("a.test."), N("b.test."), N("c.test.")
    signers.update({a: _TimedSigner(50), b: _TimedSigner(10, 40), c: _TimedSigner(30)})
    events.track(signers)
    assert [call.getTime() for call in clock.getDelayedCalls()] == [10]
    clock.advance(10)
    assert due == [b]
    assert [call.getTime() for call in clock.getDelayedCalls()] == [30]
    signers = {**signers, c: _TimedSigner(20)}  # a reload: c's keys read again
    del signers[a]  # a is not signed any more
    events.track(signers)
    assert [call.getTime() for call in clock.getDelayedCalls()] == [20]
    clock.advance(40)
    assert due == [b, c, b]
    assert clock.getDelayedCalls() == []


def test_keys_all_retired_by_their_timing_are_an_error_and_no_empty_dnskey(tmp_path, log_events):
    """Key timing can leave a zone without any key: said loudly (the zone
    is bogus to validators), and no empty DNSKEY RRset is made up."""
    keys = [dataclasses.replace(k, timing={**k.timing, "Delete": _at(100)})
            for k in KeyStore(tmp_path).ensure(ORIGIN, now=0)]
    signer = Signer(ORIGIN, keys, DnssecSettings())
    v = version(["192.0.2.1"])
    signed = v.with_signatures(signer.sign(v, now=1000))
    assert not [r for r in signed.transfer_rrsets() if r.rdtype in (T.DNSKEY, T.CDS, T.CDNSKEY)]
    clock = Clock()
    clock.advance(1000)
    KeyEvents(clock, lambda origin: None).track({ORIGIN: signer})
    assert any("none of its DNSSEC keys is active" in e.get("log_format", "") for e in log_events)
