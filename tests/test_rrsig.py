"""Unit tests: RRSIGs made from wire data (aliasd.dnssec.rrsig) against dnspython's.

The oracle is ``dns.dnssec.sign(..., deterministic=True).to_wire()``: every
algorithm aliasd signs with is deterministic (RFC 6979 ECDSA, EdDSA, RSA
PKCS#1 v1.5), so the RRSIG rdata must be the same bytes, signature included.
"""

from __future__ import annotations

import dataclasses
import random

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from aliasd.dnssec import keys as dnssec_keys
from aliasd.dnssec import rrsig
from aliasd.dnssec.keys import KSK_FLAGS, ZSK_FLAGS, KeyStore
from aliasd.dnssec.rrsig import PreparedKey, canonical_rdata, sign_wires

T = dns.rdatatype
IN = dns.rdataclass.IN
N = dns.name.from_text
ZONE = N("example.")
INCEPTION = 1_700_000_000
EXPIRATION = INCEPTION + 14 * 86400
NOW = INCEPTION + 3600
ALGORITHMS = sorted(dnssec_keys.SUPPORTED_ALGORITHMS)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """One key per algorithm (a ZSK; and a KSK for the default algorithm)."""
    store = KeyStore(tmp_path_factory.mktemp("keys"))
    made = {alg: store.generate(ZONE, alg, ZSK_FLAGS, existing=[]) for alg in ALGORITHMS}
    made["ksk"] = store.generate(ZONE, dnssec_keys.DEFAULT_ALGORITHM, KSK_FLAGS, existing=[made[dnssec_keys.DEFAULT_ALGORITHM]])
    return made


def rd(rdtype, text):
    return dns.rdata.from_text(IN, rdtype, text, relativize=False).to_wire()


def name_wire(text):
    return N(text).to_wire()


#: (owner, type, TTL, rdata wires): names in mixed case wherever they can be,
#: and fixed fields next to names holding octets that are ASCII capitals
#: (16706 = "AB", 65 = "\0A", serial 1094861636 = "ABCD"), so lowering one
#: octet too many or too few shows.
CASES = [
    ("Example.", T.SOA, 3600, [rd(T.SOA, "NS1.Example. HostMaster.EXAMPLE.net. 1094861636 16706 600 86400 60")]),
    ("example.", T.NS, 3600, [rd(T.NS, "NS1.Example."), rd(T.NS, "ns2.EXAMPLE.net."), rd(T.NS, "a.b.")]),
    ("EXAMPLE.", T.MX, 300, [rd(T.MX, "10 Mail.Example."), rd(T.MX, "65 mx2.example."), rd(T.MX, "19800 MX.Other.ORG.")]),
    ("www.example.", T.A, 300, [rd(T.A, f"192.0.2.{i}") for i in (7, 200, 1, 33, 9)]),
    ("WwW.Example.", T.AAAA, 300, [rd(T.AAAA, "2001:db8::1"), rd(T.AAAA, "2001:db8::ff:1"), rd(T.AAAA, "::1")]),
    ("txt.example.", T.TXT, 60, [rd(T.TXT, '"Hello World" "b"'), rd(T.TXT, '"HELLO world"'), rd(T.TXT, '""')]),
    ("Alias.example.", T.CNAME, 300, [rd(T.CNAME, "Target.Example.NET.")]),
    ("_sip._tcp.Example.", T.SRV, 300, [rd(T.SRV, "0 5 5060 SIP.Example."), rd(T.SRV, "16706 16707 16708 Sip2.EXAMPLE.")]),
    ("1.2.0.192.In-Addr.Arpa.", T.PTR, 300, [rd(T.PTR, "Host.Example.")]),
    ("Enum.example.", T.NAPTR, 300, [
        rd(T.NAPTR, '16706 16707 "U" "E2U+sip" "!^.*$!sip:Info@Example.COM!" .'),
        rd(T.NAPTR, '100 20 "S" "SIP+D2U" "" _Sip._UDP.Example.'),
    ]),
    ("Old.example.", T.DNAME, 300, [rd(T.DNAME, "New.EXAMPLE.org.")]),
    ("Child.example.", T.DS, 300, [
        rd(T.DS, "12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"),
        rd(T.DS, "54321 8 2 FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210"),
    ]),
    ("example.", T.NSEC, 3600, [rd(T.NSEC, "Next.EXAMPLE. A NS SOA MX RRSIG NSEC DNSKEY")]),
    ("2t7b4g4vsa5smi47k61mv5bv1a22bojr.Example.", T.NSEC3, 3600,
     [rd(T.NSEC3, "1 0 0 - 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A RRSIG")]),
    ("Example.", T.NSEC3PARAM, 0, [rd(T.NSEC3PARAM, "1 0 0 -")]),
    ("example.", T.CAA, 300, [rd(T.CAA, '0 issue "LetsEncrypt.org"'), rd(T.CAA, '128 iodef "mailto:Sec@Example."')]),
    ("_443._tcp.example.", T.TLSA, 300, [rd(T.TLSA, "3 1 1 0C72AC70B745AC19998811B131D662C9AC69DBDBE7CB23E5B514B56664C5D3D6")]),
    ("host.example.", T.SSHFP, 300, [rd(T.SSHFP, "4 2 123456789ABCDEF67890123456789ABCDEF67890123456789ABCDEF123456789")]),
    ("host.example.", T.HINFO, 300, [rd(T.HINFO, '"Intel" "Linux"'), rd(T.HINFO, '"INTEL" "linux"')]),
    ("*.Sub.Example.", T.A, 300, [rd(T.A, "192.0.2.50"), rd(T.A, "192.0.2.5")]),
    ("*.Sub.Example.", T.MX, 300, [rd(T.MX, "10 Mail.Sub.EXAMPLE.")]),
    ("*.example.", T.TXT, 300, [rd(T.TXT, '"wild"')]),
    ("a.B.c.D.e.F.g.Deep.Example.", T.TXT, 86400, [rd(T.TXT, '"deep"')]),
    ("svc.example.", T.HTTPS, 300, [rd(T.HTTPS, "1 Svc.Example.COM. alpn=h2"), rd(T.HTTPS, "0 Alias.EXAMPLE.")]),
    ("svc.example.", T.SVCB, 300, [rd(T.SVCB, "1 Pool.Example. port=8443")]),
    ("rp.example.", T.RP, 300, [rd(T.RP, "Mbox.Example. TXT.Example.")]),
    ("afs.example.", T.AFSDB, 300, [rd(T.AFSDB, "65 AFS.Example.")]),
    ("kx.example.", T.KX, 300, [rd(T.KX, "16706 KX.Example.")]),
    ("rt.example.", T.RT, 300, [rd(T.RT, "16706 Relay.Example.")]),
    ("px.example.", T.PX, 300, [rd(T.PX, "16706 Map822.Example. MapX400.EXAMPLE.")]),
    ("gw.example.", T.IPSECKEY, 300, [rd(T.IPSECKEY, "10 3 2 GW.Example. AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==")]),
    ("uri.example.", T.URI, 300, [rd(T.URI, '10 1 "ftp://FTP1.Example.com/public"')]),
    ("loc.example.", T.LOC, 300, [rd(T.LOC, "60 9 0.000 N 24 39 0.000 E 10.00m 20m 2000m 20m")]),
    ("sig.example.", T.RRSIG, 300, [rd(T.RRSIG, "A 13 2 300 20240101000000 20231201000000 16706 Signer.EXAMPLE. "
                                               "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=")]),  # signature "ABC...Z"
    # Types dnspython has no class for are opaque to it: an MB's name is NOT lower-cased.
    ("mb.example.", T.MB, 300, [name_wire("MailBox.Example."), name_wire("mailbox.example.")]),
    ("private.example.", 65280, 300, [b"\x0a\x0b\x0c\x0d", b"\x00", b""]),
]


def rrset_of(owner, rdtype, ttl, wires):
    """What aliasd's Signer hands dns.dnssec.sign: an RRset decoded from the wires."""
    rrset = dns.rrset.RRset(N(owner), IN, rdtype)
    rrset.update_ttl(ttl)
    for wire in wires:
        rrset.add(dns.rdata.from_wire(IN, rdtype, wire, 0, len(wire)))
    return rrset


def oracle(key, rrset, signer=None, inception=INCEPTION, expiration=EXPIRATION):
    return dns.dnssec.sign(rrset, key.private, signer or key.zone, key.dnskey, inception=inception,
                           expiration=expiration, deterministic=True).to_wire()


def validate(key, rrset, wire, now=NOW):
    sig = dns.rdata.from_wire(IN, T.RRSIG, wire, 0, len(wire))
    dns.dnssec.validate_rrsig(rrset, sig, {key.zone: dns.rrset.from_rdata(key.zone, 3600, key.dnskey)}, now=now)


def all_keys():
    return [*ALGORITHMS, "ksk"]


@pytest.mark.parametrize("which", all_keys(), ids=lambda a: a if isinstance(a, str) else a.name)
def test_byte_identical_to_dnspython_and_valid(keys, which):
    key = keys[which]
    prepared = PreparedKey(key)
    rng = random.Random(int(key.tag))
    for owner, rdtype, ttl, wires in CASES:
        shuffled = list(wires)
        rng.shuffle(shuffled)
        rrset = rrset_of(owner, rdtype, ttl, wires)
        ours = sign_wires(prepared, N(owner).to_wire(), rdtype, ttl, shuffled, INCEPTION, EXPIRATION)
        assert ours == oracle(key, rrset), (owner, T.to_text(rdtype))
        validate(key, rrset, ours)


def test_any_order_and_duplicates(keys):
    key = keys[dnssec_keys.DEFAULT_ALGORITHM]
    prepared = PreparedKey(key)
    addresses = [rd(T.A, f"198.51.100.{i}") for i in range(1, 20)]
    owner = N("Many.Example.").to_wire()
    expected = oracle(key, rrset_of("Many.Example.", T.A, 300, addresses))
    for seed in range(5):
        order = list(addresses)
        random.Random(seed).shuffle(order)
        assert sign_wires(prepared, owner, T.A, 300, order, INCEPTION, EXPIRATION) == expected
    # duplicates, and MX rdatas equal but for the case of the exchange: one RR each, as in an RRset
    assert sign_wires(prepared, owner, T.A, 300, addresses + addresses[:3], INCEPTION, EXPIRATION) == expected
    mx = [rd(T.MX, "10 Mail.Example."), rd(T.MX, "10 MAIL.example."), rd(T.MX, "20 b.example.")]
    rrset = rrset_of("Many.Example.", T.MX, 300, mx)
    assert len(rrset) == 2
    ours = sign_wires(prepared, owner, T.MX, 300, mx, INCEPTION, EXPIRATION)
    assert ours == oracle(key, rrset)
    validate(key, rrset, ours)


def test_signer_case_kept_in_rdata_lowered_in_signed_data(keys):
    key = keys[dnssec_keys.DEFAULT_ALGORITHM]
    signer = N("EXample.")
    prepared = PreparedKey(key, signer)
    wires = [rd(T.A, "192.0.2.1")]
    rrset = rrset_of("www.example.", T.A, 300, wires)
    ours = sign_wires(prepared, rrset.name.to_wire(), T.A, 300, wires, INCEPTION, EXPIRATION)
    assert ours == oracle(key, rrset, signer)
    assert b"\x07EXample\x00" in ours
    validate(key, rrset, ours)
    # the signed data has the signer lower-cased, so the signature is the default signer's
    default = sign_wires(PreparedKey(key), rrset.name.to_wire(), T.A, 300, wires, INCEPTION, EXPIRATION)
    assert default.replace(b"\x07example\x00", b"\x07EXample\x00") == ours


def test_wildcard_labels_field(keys):
    prepared = PreparedKey(keys[dnssec_keys.DEFAULT_ALGORITHM])
    wire = sign_wires(prepared, N("*.Sub.Example.").to_wire(), T.A, 300, [rd(T.A, "192.0.2.1")],
                      INCEPTION, EXPIRATION)
    assert wire[3] == 2  # sub.example: the '*' and the root are not counted
    wire = sign_wires(prepared, N("a.Sub.Example.").to_wire(), T.A, 300, [rd(T.A, "192.0.2.1")],
                      INCEPTION, EXPIRATION)
    assert wire[3] == 3
    wire = sign_wires(prepared, N("Example.").to_wire(), T.A, 300, [rd(T.A, "192.0.2.1")],
                      INCEPTION, EXPIRATION)
    assert wire[3] == 1


def test_times_past_2038(keys):
    key = keys[dns.dnssec.Algorithm.ED25519]
    wires = [rd(T.A, "192.0.2.1")]
    rrset = rrset_of("www.example.", T.A, 300, wires)
    inception, expiration = 4_000_000_000, 4_100_000_000
    ours = sign_wires(PreparedKey(key), rrset.name.to_wire(), T.A, 300, wires, inception, expiration)
    assert ours == oracle(key, rrset, inception=inception, expiration=expiration)
    validate(key, rrset, ours, now=inception + 10)


@pytest.mark.parametrize("owner, rdtype, ttl, wires", CASES, ids=[f"{c[0]}/{T.to_text(c[1])}" for c in CASES])
def test_canonical_form_is_dnspythons(owner, rdtype, ttl, wires):
    for wire in wires:
        assert canonical_rdata(rdtype, wire) == dns.rdata.from_wire(IN, rdtype, wire, 0, len(wire)).to_digestable()


def test_lowercasing_types_are_exercised():
    """Every type given a canonical form here has a mixed-case case above
    whose canonical form differs from its wire (else a wrong offset could
    go unnoticed); SIG shares RRSIG's."""
    changed = {rdtype for _, rdtype, _, wires in CASES
               for wire in wires if canonical_rdata(rdtype, wire) != wire}
    assert set(rrsig._CANONICAL) - {T.SIG} == changed


@pytest.mark.parametrize("which", all_keys(), ids=lambda a: a if isinstance(a, str) else a.name)
def test_tampering_fails_validation(keys, which):
    key = keys[which]
    prepared = PreparedKey(key)
    wires = [rd(T.MX, "10 Mail.Example."), rd(T.MX, "20 mx2.example.")]
    rrset = rrset_of("example.", T.MX, 300, wires)
    good = sign_wires(prepared, rrset.name.to_wire(), T.MX, 300, wires, INCEPTION, EXPIRATION)
    validate(key, rrset, good)
    # one octet of one rdata
    tampered = [wires[0][:1] + bytes([wires[0][1] ^ 1]) + wires[0][2:], wires[1]]
    with pytest.raises(dns.dnssec.ValidationFailure):
        validate(key, rrset_of("example.", T.MX, 300, tampered), good)
    # the original TTL in the RRSIG (validation signs rrsig.original_ttl, not the RRset's TTL)
    bad_ttl = good[:4] + (301).to_bytes(4, "big") + good[8:]
    with pytest.raises(dns.dnssec.ValidationFailure):
        validate(key, rrset, bad_ttl)
    # signed with another TTL than the RRset's: another signature, not dnspython's
    other = sign_wires(prepared, rrset.name.to_wire(), T.MX, 301, wires, INCEPTION, EXPIRATION)
    assert other != oracle(key, rrset)
    # the owner
    with pytest.raises(dns.dnssec.ValidationFailure):
        validate(key, rrset_of("mail.example.", T.MX, 300, wires), good)
    # one octet of the signature
    with pytest.raises(dns.dnssec.ValidationFailure):
        validate(key, rrset, good[:-1] + bytes([good[-1] ^ 0x80]))


def test_oracle_catches_a_missing_canonical_form(keys, monkeypatch):
    """Were names not lower-cased, the bytes would differ from dnspython's."""
    key = keys[dnssec_keys.DEFAULT_ALGORITHM]
    wires = [rd(T.MX, "10 Mail.Example.")]
    rrset = rrset_of("example.", T.MX, 300, wires)
    monkeypatch.setattr(rrsig, "_CANONICAL", {})
    ours = sign_wires(PreparedKey(key), rrset.name.to_wire(), T.MX, 300, wires, INCEPTION, EXPIRATION)
    assert ours != oracle(key, rrset)
    with pytest.raises(dns.dnssec.ValidationFailure):
        validate(key, rrset, ours)


def test_every_aliasd_algorithm_is_supported():
    assert dnssec_keys.SUPPORTED_ALGORITHMS <= rrsig.SUPPORTED_ALGORITHMS


def test_unsupported_or_mismatched_keys(keys):
    key = keys[dnssec_keys.DEFAULT_ALGORITHM]
    sha1 = dataclasses.replace(key, dnskey=key.dnskey.replace(algorithm=dns.dnssec.Algorithm.RSASHA1))
    with pytest.raises(ValueError):
        PreparedKey(sha1)
    wrong = dataclasses.replace(key, private=keys[dns.dnssec.Algorithm.ED25519].private)
    with pytest.raises(TypeError):
        PreparedKey(wrong)
    with pytest.raises(ValueError):
        PreparedKey(key, N("example", None))
