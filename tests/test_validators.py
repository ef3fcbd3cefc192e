"""Self-test of the DNSSEC validation harness (tests/validators.py), without
aliasd: a small zone signed by BIND's own tools (NSEC, and NSEC3 with no
salt and 0 extra iterations) is served by BIND named on loopback;
dnssec-verify and ldns-verify-zone accept it and reject it with one RRSIG
corrupted; Unbound and BIND named, anchored at the zone's DS (or KSK),
validate a positive, a NODATA, an NXDOMAIN and a wildcard answer (AD bit)
and return SERVFAIL when the trust anchor does not match the zone's keys.
"""

from __future__ import annotations

import dns.flags
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest

from tests.validators import (
    RESOLVERS,
    NamedAuthority,
    anchors_from_server,
    axfr_text,
    bind_sign,
    dnssec_verify,
    ds_anchors,
    ldns_verify,
    make_keys,
    parse_anchors,
)

pytestmark = pytest.mark.e2e

ZONE = "example.test"
ZONE_TEXT = """\
$ORIGIN example.test.
$TTL 300
@       SOA ns1 hostmaster 2026010101 3600 600 86400 60
        NS  ns1
        A   192.0.2.1
ns1     A   192.0.2.53
www     A   192.0.2.80
*.wild  A   192.0.2.99
"""
VARIANTS = ["nsec", "nsec3"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return make_keys(tmp_path_factory.mktemp("keys"), ZONE)


@pytest.fixture(scope="module", params=VARIANTS)
def signed(request, keys, tmp_path_factory):
    """The zone signed by dnssec-signzone (one key pair for both variants)."""
    return bind_sign(tmp_path_factory.mktemp(request.param), ZONE, ZONE_TEXT, nsec3=request.param == "nsec3", keys=keys)


@pytest.fixture(scope="module")
def authority(signed, tmp_path_factory):
    server = NamedAuthority(tmp_path_factory.mktemp("authority")).start(ZONE, signed.text)
    yield server
    server.stop()


def corrupt_rrsig(text: str, owner: str, covered: str) -> str:
    """``text`` with one octet of the RRSIG of ``owner``/``covered`` flipped."""
    zone = dns.zone.from_text(text, ZONE + ".", relativize=False)
    rdataset = zone.find_node(owner).find_rdataset(
        dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.from_text(covered)
    )
    (rrsig,) = list(rdataset)
    signature = bytearray(rrsig.signature)
    signature[7] ^= 0xFF
    rdataset.remove(rrsig)
    rdataset.add(rrsig.replace(signature=bytes(signature)))
    return zone.to_text(relativize=False)


def wrong(anchor: str) -> str:
    """The DS line with the last digit of its digest changed."""
    anchor = anchor.rstrip()
    return anchor[:-1] + ("0" if anchor[-1] != "0" else "1")


# -- offline verifiers --------------------------------------------------------


def test_verifiers_accept_the_signed_zone(signed):
    zone = dns.zone.from_text(signed.text, ZONE + ".", relativize=False)
    nsec3param = zone.get_rdataset(ZONE + ".", "NSEC3PARAM")
    if signed.nsec3:
        assert [(p.algorithm, p.iterations, p.salt) for p in nsec3param] == [(1, 0, b"")]
    else:
        assert nsec3param is None
    for ok, output in (dnssec_verify(ZONE, signed.text), ldns_verify(signed.text)):
        assert ok, output


def test_verifiers_reject_one_corrupted_rrsig(signed):
    broken = corrupt_rrsig(signed.text, "www.example.test.", "A")
    ok, output = dnssec_verify(ZONE, broken)
    assert not ok, output
    ok, output = ldns_verify(broken)
    assert not ok, output
    assert "www.example.test" in output, output


def test_verifiers_reject_an_unsigned_zone():
    ok, output = dnssec_verify(ZONE, ZONE_TEXT)
    assert not ok, output
    ok, output = ldns_verify(ZONE_TEXT)
    assert not ok, output


def test_verifiers_read_the_zone_as_served(authority, signed):
    served = axfr_text(ZONE, authority.port)
    for ok, output in (dnssec_verify(ZONE, served), ldns_verify(served)):
        assert ok, output


def test_anchors_from_the_served_keys_are_the_signers_ds(authority, signed):
    assert parse_anchors(anchors_from_server(ZONE, authority.port)) == parse_anchors(signed.ds)
    assert parse_anchors(ds_anchors(ZONE, signed.dnskey)) == parse_anchors(signed.ds)


# -- validating resolvers -----------------------------------------------------


@pytest.fixture(params=RESOLVERS, ids=lambda kind: kind.name)
def resolver(request, tmp_path):
    server = request.param(tmp_path / request.param.name)
    yield server
    server.stop()


def test_resolver_validates_answers(resolver, authority, signed):
    # The NSEC variant is anchored at the DS, the NSEC3 one at the KSK itself.
    anchors = signed.dnskey if signed.nsec3 else signed.ds
    resolver.start(ZONE, authority.port, anchors)
    log = resolver.log

    rcode, ad, answer = resolver.ad("example.test", "A")
    assert (rcode, ad) == (dns.rcode.NOERROR, True), log()
    assert [rd.to_text() for rrset in answer if rrset.rdtype == dns.rdatatype.A for rd in rrset] == ["192.0.2.1"]

    rcode, ad, answer = resolver.ad("missing.example.test", "A")
    assert (rcode, ad, answer) == (dns.rcode.NXDOMAIN, True, []), log()

    rcode, ad, answer = resolver.ad("www.example.test", "AAAA")
    assert (rcode, ad, answer) == (dns.rcode.NOERROR, True, []), log()

    rcode, ad, answer = resolver.ad("host.wild.example.test", "A")
    assert (rcode, ad) == (dns.rcode.NOERROR, True), log()
    (a,) = [rrset for rrset in answer if rrset.rdtype == dns.rdatatype.A]
    assert a.name.to_text() == "host.wild.example.test." and a[0].to_text() == "192.0.2.99"
    (rrsig,) = [rrset for rrset in answer if rrset.rdtype == dns.rdatatype.RRSIG]
    assert rrsig[0].labels == 3  # signed as *.wild.example.test: a wildcard expansion

    # Names outside the test zone never leave the machine.
    assert resolver.query("example.com", "A").rcode() in (dns.rcode.REFUSED, dns.rcode.SERVFAIL)

    resolver.flush()
    rcode, ad, _ = resolver.ad("www.example.test", "A")
    assert (rcode, ad) == (dns.rcode.NOERROR, True), log()


def test_resolver_fails_with_a_wrong_trust_anchor(resolver, authority, signed):
    resolver.start(ZONE, authority.port, [wrong(signed.ds[0])])
    rcode, ad, answer = resolver.ad("www.example.test", "A")
    assert (rcode, ad, answer) == (dns.rcode.SERVFAIL, False, []), resolver.log()
    # Checking disabled: the data is there, only its validation fails.
    r = resolver.query("www.example.test", "A", cd=True)
    assert r.rcode() == dns.rcode.NOERROR and not r.flags & dns.flags.AD, resolver.log()
    # And with the right anchor the same resolver validates again.
    resolver.restart(signed.ds)
    rcode, ad, _ = resolver.ad("www.example.test", "A")
    assert (rcode, ad) == (dns.rcode.NOERROR, True), resolver.log()
