"""The fast master-file reader against the dnspython-based reader.

Every expected value comes from ``reference``, the slow path that the fast
reader must match byte for byte whenever it does not give up.
"""

from __future__ import annotations

import random
from pathlib import Path

import dns.name
import dns.rdataclass
import dns.rrset
import dns.tokenizer
import dns.zone
import pytest

from aliasd.zones.masterfile import NotSimple, read_records
from aliasd.zones.zonefile import read_with_dnspython


def reference(text, origin, path="t.zone"):
    """The zone's records as the dnspython-based reader produces them."""
    return dict(read_with_dnspython(origin, Path(path), text).records)


def same_as_reference(text: str, origin: str, must_be_fast: bool = False) -> bool:
    """Check the fast reader against the reference; True if it did not give up."""
    name = dns.name.from_text(origin)
    try:
        expected = reference(text, name)
    except Exception:
        expected = None
    try:
        got = read_records(text, name)
    except NotSimple:
        assert not must_be_fast, "the fast reader gave up"
        return False
    assert expected is not None, "the fast reader accepted what the reference rejects"
    assert list(got.items()) == list(expected.items())
    return True


def bench_zone(i: int) -> str:
    t = i % 10
    return f"""$ORIGIN c{i}.example.
$TTL 300
@ SOA ns1.dns-host.test. hostmaster.dns-host.test. 1 86400 600 864000 60
@ NS ns1.dns-host.test.
@ NS ns2.dns-host.test.
@ ALIAS t{t}.cdn.test.
@ MX 10 mail
@ TXT "v=spf1 mx -all"
www CNAME @
mail A 10.{i >> 8 & 255}.{i & 255}.25
api A 10.{i >> 8 & 255}.{i & 255}.80
api AAAA 2001:db8:{i:x}::80
_dmarc TXT "v=DMARC1; p=none"
shop CNAME c{i}.shops.saas.test.
"""


HAND_ZONE = """\
; a hand-written zone
$TTL 1h
@   IN  SOA ns1.Example.com. HostMaster.Example.COM. (
        2024010101 ; serial
        7200       ; refresh
        3600       ; retry
        1209600    ; expire
        300 )      ; minimum
    IN  NS  ns1.example.com.
    NS  ns2

@ 600 IN MX 10 mail
@ IN 900 MX 20 mail2.example.com.
ns2 A 192.0.2.2
WWW 120 CNAME @
mail A 192.0.2.10
Mail A 192.0.2.11
MAIL a 192.0.2.10
mail 60 in A 192.0.2.12
txt TXT "hello world" unquoted words "" "a;b(c)" ; a comment
txt txt ( "second"
          "record" )
v6 AAAA 2001:db8::1
v6 AAAA ::ffff:192.0.2.1
v6 AAAA 2001:DB8:0:0:0:0:0:1
_sip._tcp SRV 10 60 5060 sip
@ CAA 0 issue "letsencrypt.org"
sub DS 12345 8 1 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE
_443._tcp.www TLSA 3 1 1 (
    0C72AC70B745AC19998811B131D662C9AC69DBDBE7CB23E5B514B56664C5D3D6 )
svc HTTPS 1 . alpn="h2,h3" port=443
svc HTTPS 2 svc2 alpn=h2
x.example.com. 1d PTR host.elsewhere.test.
$ORIGIN sub.example.com.
host A 198.51.100.1
@ NS ns.elsewhere.test.
$ORIGIN deeper
x PTR host
$ORIGIN example.com.
alias ALIAS target.cdn.test.
    TXT "blank owner after an origin change"
dn DNAME other.test.
spf SPF "v=spf1 -all"
"""

# Zones the fast reader must read itself (and match the reference).
FAST_ZONES = [
    (HAND_ZONE, "example.com."),
    (HAND_ZONE, "EXAMPLE.com."),  # the zone name's case is kept for @
    # No $TTL: the SOA MINIMUM is the default.
    ("@ SOA ns hm 1 2 3 4 55\n@ NS ns\nns A 192.0.2.1\n", "z.test."),
    # An explicit TTL before the SOA wins over its MINIMUM (RFC 2308).
    ("ns 100 A 192.0.2.1\n@ SOA ns hm 1 2 3 4 55\n@ NS ns\nx A 192.0.2.3\n", "z.test."),
    ("@ 30 SOA ns hm 1 2 3 4 55\n@ NS ns\n$TTL 99\nx A 192.0.2.3\ny 7 A 192.0.2.4\n"
     "z A 192.0.2.5\n", "z.test."),
    # SOA timers with units are built by dnspython.
    ("$TTL 2m30s\n@ SOA ns hm 1 1h 30m 1w 1d\n@ NS ns\n", "z.test."),
    # An RRset updated after another type moves to the end of its node.
    ("$TTL 5\n@ SOA ns hm 1 2 3 4 5\n@ NS a\n@ MX 1 a\n@ NS b\n@ 3 NS a\n", "z.test."),
    # Duplicates, TTL minimum, blank owner first (the zone apex).
    ("$TTL 5\n  SOA ns hm 1 2 3 4 5\n NS a\n NS a.z.test.\nw 9 A 192.0.2.1\n"
     "w 4 A 192.0.2.1\nw A 192.0.2.2\nc CNAME x\nc 1 CNAME x\n", "z.test."),
    # CRLF line ends, class before TTL, absolute owners, wildcard.
    ("$TTL 5\r\nz.test. IN 60 SOA ns hm 1 2 3 4 5\r\nZ.Test. NS ns\r\n*.w A 192.0.2.9\r\n",
     "z.test."),
    ("$ttl 5\n$origin z.test.\n@ soa ns hm 1 2 3 4 5\n@ ns ns\nx mx 0 .\nx 0 ns @\n", "z.test."),
]


@pytest.mark.parametrize("i", [0, 1, 7, 255, 256, 4097])
def test_bench_zone_is_read_fast(i):
    assert same_as_reference(bench_zone(i), f"c{i}.example.", must_be_fast=True)


@pytest.mark.parametrize("text,origin", FAST_ZONES)
def test_fast_zones(text, origin):
    assert same_as_reference(text, origin, must_be_fast=True)


HEAD = "$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\n"

GIVE_UP = {
    "cname beside A": HEAD + "w CNAME x\nw A 192.0.2.1\n",
    "A beside cname": HEAD + "w A 192.0.2.1\nw CNAME x\n",
    "two ALIAS": HEAD + "@ ALIAS a.test.\n@ ALIAS b.test.\n",
    "ALIAS beside CNAME": HEAD + "w CNAME x\nw ALIAS a.test.\n",
    "SOA off apex": HEAD + "w SOA ns hm 1 2 3 4 5\n",
    "second SOA": HEAD + "@ SOA ns hm 2 2 3 4 5\n",
    "two CNAMEs": HEAD + "w CNAME x\nw CNAME y\n",
    "owner outside": HEAD + "other.test. A 192.0.2.1\n",
    "origin outside": HEAD + "$ORIGIN other.test.\nw A 192.0.2.1\n",
    "include": HEAD + "$INCLUDE other.zone\n",
    "generate": HEAD + "$GENERATE 1-3 h$ A 192.0.2.$\n",
    "escape": HEAD + "w TXT \"a\\\"b\"\n",
    "escaped name": HEAD + "w\\.x A 192.0.2.1\n",
    "generic syntax": HEAD + "w TYPE65534 \\# 1 00\n",
    "missing NS": "$TTL 300\n@ SOA ns hm 1 2 3 4 5\n",
    "missing SOA": "$TTL 300\n@ NS ns\n",
    "bad A": HEAD + "w A 1.2.3\n",
    "leading zero A": HEAD + "w A 01.2.3.4\n",
    "bad AAAA": HEAD + "w AAAA 1::2::3\n",
    "class CH": HEAD + "w CH A 192.0.2.1\n",
    "missing TTL": "@ NS ns\n@ SOA ns hm 1 2 3 4 5\n",
    "unbalanced (": HEAD + "w A ( 192.0.2.1\n",
    "unbalanced )": HEAD + "w A 192.0.2.1 )\n",
    "unterminated quote": HEAD + "w TXT \"abc\n",
    "non-ASCII": HEAD + "w TXT \"caf\u00e9\"\n",
    "unknown type": HEAD + "w FOO bar\n",
    "case-only duplicate": HEAD + "@ NS ns2.test.\n@ NS NS2.test.\n",
    "empty label": HEAD + "a..b A 192.0.2.1\n",
    "long label": HEAD + ("x" * 64) + " A 192.0.2.1\n",
    "long TXT": HEAD + "w TXT " + "x" * 256 + "\n",
}


@pytest.mark.parametrize("case", sorted(GIVE_UP))
def test_gives_up(case):
    text = GIVE_UP[case]
    with pytest.raises(NotSimple):
        read_records(text, dns.name.from_text("z.test."))
    # The differential rule holds too (the reference accepts "missing NS").
    same_as_reference(text, "z.test.")


# Pieces for generated zones: mostly valid; the _BAD_ ones are invalid or
# outside the fast subset (the reference accepts $GENERATE, for one).
_OWNERS = ["@", "www", "WWW", "a.b", "x.z.test.", "X.Z.TEST.", "*.w", "_srv._tcp", "", "", "sub"]
_BAD_OWNERS = ["out.side.", "a..b", '"q"', "(x"]
_TTLS = ["", "", "", "", "60", "0", "1h", "2m30s", "4294967295"]
_BAD_TTLS = ["4294967296", "1x", "-1"]
_CLASSES = ["", "", "", "IN", "in", "CLASS1"]
_BAD_CLASSES = ["CH", "ANY", "CLASS99999"]
_RDATA = [
    "A 192.0.2.1", "A 192.0.2.2", "a 10.0.0.1", "A ( 192.0.2.7 ) ; comment",
    "AAAA 2001:db8::1", "AAAA ::ffff:192.0.2.1", "AAAA 2001:DB8::1", "AAAA ::",
    "NS ns", "NS NS", "NS ns.other.test.", "NS @", "PTR host.z.test.",
    "ALIAS a.cdn.test.", "MX 10 mail", "MX 0 .", "MX ( 5\n  mail ) ; wrapped",
    "SRV 1 2 3 t", 'TXT "hello"', 'TXT one two "three"', 'TXT ""', 'TXT a"b"',
    'TXT "semi;colon" (x)', 'txt "Hello"', 'SPF "v=spf1 -all"', 'CAA 0 issue "ca.test"',
    "CAA 0 issue ca.test", "DS 1 8 1 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE",
    "TLSA 3 1 1 0C72AC70", 'HTTPS 1 . alpn="h2"', "SVCB 0 target", "NSEC next A",
    "SSHFP 1 1 ABCD", "TYPE1 192.0.2.9",
]
# Types that clash with other data or come once: given to a few owners only.
_SPECIAL_RDATA = ["CNAME target", "CNAME target.test.", "cname @", "DNAME d.test.",
                  "ALIAS b.cdn.test.", "SOA ns hm 1 2 3 4 5"]
_SPECIAL_OWNERS = ["c", "C", "c.sub", "d", "@"]
_BAD_RDATA = [
    "A 1.2.3", "A 01.2.3.4", "A 256.1.1.1", "AAAA 1::2::3", "AAAA ::ffff:1.2.3.04",
    "MX x mail", "MX 65536 mail", "SRV 1 2 t", "TXT", 'TXT "open', "TXT a\\b",
    'HTTPS 1 . alpn= "h2"', "DS 1 8 2 ABCDEF0123", "FOO bar",
    "RRSIG A 8 2 300 1 1 1 z.test. AAAA", "A 192.0.2.1 )", "A ( 192.0.2.1",
]
_DIRECTIVES = ["$TTL 120", "$TTL 1d", "$ORIGIN sub", "$ORIGIN z.test.", "$ORIGIN @",
               "; just a comment", "", "   ", "$ttl 7", "\t; indented comment"]
_BAD_DIRECTIVES = ["$TTL x", "$ORIGIN other.test.", "$INCLUDE x", "$GENERATE 1-2 a$ A 1.2.3.$",
                   "$TTL", "$UNICODE 2008"]
_SOAS = [
    "@ SOA ns hm 1 2 3 4 5",
    "@ IN SOA ns hm ( 1 ; serial\n 2 3 4\n 77 ) ; soa",
    "@ 50 SOA ns hm 1 2 3 4 5",
    "z.test. IN 40 SOA ns.z.test. hm.z.test. 1 2 3 4 1h",
]


def _pick(rng: random.Random, good: list[str], bad: list[str], p_bad: float = 0.02) -> str:
    return rng.choice(bad if rng.random() < p_bad else good)


def _random_zone(rng: random.Random) -> str:
    lines = []
    if rng.random() < 0.7:
        lines.append(rng.choice(["$TTL 300", "$TTL 1h", "$TTL 0"]))
    elif rng.random() < 0.3:
        lines.append("www 77 A 192.0.2.77")  # an explicit TTL before the SOA
    lines.append(rng.choice(_SOAS))
    if rng.random() < 0.95:
        lines.append(rng.choice(["@ NS ns", "  NS ns", "z.test. NS ns"]))
    for _ in range(rng.randint(0, 12)):
        if rng.random() < 0.15:
            lines.append(_pick(rng, _DIRECTIVES, _BAD_DIRECTIVES, 0.1))
            continue
        if rng.random() < 0.15:
            owner, rdata = rng.choice(_SPECIAL_OWNERS), rng.choice(_SPECIAL_RDATA)
        else:
            owner, rdata = _pick(rng, _OWNERS, _BAD_OWNERS), _pick(rng, _RDATA, _BAD_RDATA, 0.04)
        ttl = _pick(rng, _TTLS, _BAD_TTLS)
        rdclass = _pick(rng, _CLASSES, _BAD_CLASSES)
        fields = [ttl, rdclass] if rng.random() < 0.5 else [rdclass, ttl]
        line = " ".join(f for f in [owner, *fields, rdata] if f)
        if not owner:
            line = rng.choice(["  ", "\t"]) + line
        lines.append(line)
    return "\n".join(lines) + rng.choice(["\n", "", "\n\n", " ; end\n"])


def test_random_zones_match_reference():
    rng = random.Random(20240611)
    fast = accepted = 0
    for _ in range(500):
        text = _random_zone(rng)
        try:
            reference(text, dns.name.from_text("z.test."))
            accepted += 1
        except Exception:
            pass
        fast += same_as_reference(text, "z.test.")  # raises on any disagreement
    # The generator must exercise both outcomes and the fast path itself.
    assert accepted >= 200 and fast >= accepted // 2, (accepted, fast)


def test_the_fast_reader_takes_no_broken_line_so_the_error_is_explained():
    """Every broken line of tests.test_zonefile.EXPLAINED makes the fast
    reader give up: the error path (dnspython, then aliasd.zones.explain)
    names the field; the fast reader never reports errors itself."""
    from tests.test_zonefile import EXPLAINED, HEAD

    origin = dns.name.from_text("example.com")
    for line, _ in EXPLAINED:
        with pytest.raises(NotSimple):
            read_records(HEAD + "@ 300 NS ns1\n" + line + "\n", origin)
