"""Unit tests: master files with ALIAS, and the zone rules checked at load."""

from __future__ import annotations

import dns.name
import dns.rdatatype
import pytest

from aliasd.base import store
from aliasd.zones.zonefile import (
    ALIAS_RDTYPE,
    ALIAS_TYPE,
    ZoneFileError,
    load_zone_file,
)
from tests.helpers import zone_source

HEAD = "$ORIGIN example.com.\n@ 300 SOA ns1 h 5 3600 600 86400 60\n"


def write(tmp_path, text, name="z.zone"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path, text) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ZoneFileError) as info:
        load_zone_file("example.com", path)
    return str(info.value)


def test_alias_is_type_65401_and_parsed_with_absolute_target(tmp_path):
    zone = load_zone_file(
        "example.com",
        write(tmp_path, HEAD + "@ 60 IN ALIAS lb.example.net.\nwww ALIAS @\n"),
    )
    assert ALIAS_TYPE == 65401 and dns.rdatatype.from_text("ALIAS") == 65401
    apex = dns.name.from_text("example.com")
    assert zone.aliases[apex].target == dns.name.from_text("lb.example.net")
    assert zone.aliases[apex].ttl == 60
    www = dns.name.from_text("www.example.com")
    assert zone.aliases[www].target == apex  # relative target, made absolute
    assert zone.serial == 5
    assert (apex, ALIAS_RDTYPE) in zone.rrsets


def test_alias_allowed_beside_soa_ns_mx_txt_and_fallback_addresses(tmp_path):
    text = HEAD + "@ 300 NS ns1\n@ 300 MX 10 mx\n@ 300 TXT x\n@ 300 ALIAS t.example.net.\n@ 300 A 192.0.2.1\n"
    zone = load_zone_file("example.com", write(tmp_path, text))
    assert len(zone.aliases) == 1


@pytest.mark.parametrize(
    "body, line, reason",
    [
        ("@ 300 ALIAS a.example.net.\n@ 300 ALIAS b.example.net.\n", 4, "more than one ALIAS at example.com."),
        ("w 300 CNAME x\nw 300 ALIAS b.example.net.\n", 4, "ALIAS at w.example.com. beside a CNAME"),
        ("w 300 ALIAS b.example.net.\nw 300 CNAME x\n", 4, "CNAME at w.example.com. beside other data (ALIAS)"),
        ("w 300 A 192.0.2.1\nw 300 CNAME x\n", 4, "CNAME at w.example.com. beside other data (A)"),
        ("x.example.org. 300 A 192.0.2.1\n", 3, "x.example.org. is outside the zone example.com."),
        ("sub 300 SOA ns1 h 5 3600 600 86400 60\n", 3, "SOA record away from the zone apex"),
        ("@ 300 SOA ns2 h 6 3600 600 86400 60\n", 3, "a second SOA record at example.com."),
        ("x 300 A 192.0.2.256\n", 3, "A record: '192.0.2.256' is not an IPv4 address"),
        ("x 300 BOGUS 1\n", 3, "unknown record type 'BOGUS'"),
        ("x 300 ALIAS\n", 3, "ALIAS record: 0 fields where ALIAS needs 1 (target)"),
    ],
)
def test_bad_records_name_file_line_and_reason(tmp_path, body, line, reason):
    message = error_of(tmp_path, HEAD + body)
    assert message.startswith(f"{tmp_path / 'z.zone'}:{line}: "), message
    assert reason in message


#: Broken lines (added as line 4 after HEAD and an NS) and what the error
#: says: the record, the field and the reason, never dnspython's bare words.
EXPLAINED = [
    ("www 300 A 192.0.2.300", "A record: '192.0.2.300' is not an IPv4 address"),
    ("www 300 A 192.0.2.01", "A record: '192.0.2.01' is not an IPv4 address (a number with a leading zero is refused"),
    ("www 300 A hello", "A record: 'hello' is not an IPv4 address"),
    ("www 300 A 192.0.2.1 192.0.2.2", "A record: 2 fields where A needs 1 (address)"),
    ("www 300 A", "A record: 0 fields where A needs 1 (address)"),
    ("www 300 AAAA 2001:db8::g", "AAAA record: '2001:db8::g' is not an IPv6 address"),
    ("www 3x00 A 192.0.2.1", "TTL '3x00' is not a TTL: a number of seconds up to 4294967295, or a time such as 1h30m"),
    ("www 9999999999 A 192.0.2.1", "TTL '9999999999' is not a TTL"),
    ("www 300 BOGUS hello", "unknown record type 'BOGUS'"),
    ("www 300 ANY 192.0.2.1", "'ANY' is a query type, not a record type"),
    ("www 300 CH A 192.0.2.1", "class CH: aliasd serves class IN only"),
    ("www 300", "no record type"),
    ("@ 300 MX mail", "MX record: 1 field where MX needs 2 (preference, exchange)"),
    ("@ 300 MX 10 mail extra", "MX record: 3 fields where MX needs 2 (preference, exchange)"),
    ("@ 300 MX ten mail", "MX record: preference 'ten' is not a number from 0 to 65535"),
    ("@ 300 MX 10 a..b", "MX record: exchange 'a..b': an empty label"),
    ("_sip._tcp 300 SRV 10 20 sip", "SRV record: 3 fields where SRV needs 4 (priority, weight, port, target)"),
    ("_sip._tcp 300 SRV 10 20 99999 sip", "SRV record: port '99999' is not a number from 0 to 65535"),
    ("@ 300 SOA ns1 h 1 3600", ("SOA record: 4 fields where SOA needs 7 (primary name server, responsible mailbox, "
                                "serial, refresh, retry, expire, minimum)")),
    ("@ 300 CAA 0 issue", "CAA record: 2 fields where CAA needs 3 (flags, tag, value)"),
    ("a" * 64 + " 300 A 192.0.2.1", f"owner name '{'a' * 64}': a label is longer than 63 octets"),
    (".".join(["a" * 60] * 5) + " 300 A 192.0.2.1", f"owner name '{'a' * 60}.{'a' * 6}...': the name is longer than 255 octets"),
    ("w\\999 300 A 192.0.2.1", "owner name 'w\\999': a bad escape"),
    ("t 300 TXT " + "x" * 300, "TXT record: field 1 '" + "x" * 67 + "...': string too long"),
    ("d 300 DS 1 2 3 zz", "DS record: field 4 'zz': Non-hexadecimal digit found"),
    ("txt 300 TXT ( \"first\"", "unterminated parenthesis: a '(' is never closed"),
    ("txt 300 TXT \"first\" )", "')' without an opening '('"),
    ("txt 300 TXT \"first", "unterminated quoted string: a '\"' has no closing quote on its line"),
    ("a 300 ALIAS", "ALIAS record: 0 fields where ALIAS needs 1 (target)"),
    ("a 300 ALIAS x..example.net.", "ALIAS record: target 'x..example.net.': an empty label"),
    ("$TTL abc", "$TTL 'abc' is not a TTL"),
    ("$TTL", "$TTL needs a value"),
    ("$ORIGIN", "$ORIGIN needs a domain name"),
    ("$ORIGIN a..b.", "$ORIGIN 'a..b.': an empty label"),
    ("$FOO bar", "unknown directive '$FOO' (aliasd reads $GENERATE, $INCLUDE, $ORIGIN, $TTL)"),
    ("$INCLUDE nothing.zone", "$INCLUDE nothing.zone: cannot read it: No such file or directory"),
    ("$GENERATE 1-2 host$", "$GENERATE: 2 fields where it needs a range, an owner, an optional TTL and class"),
    ("$GENERATE 1..9 host$ A 192.0.2.$", "$GENERATE: range '1..9' is not START-STOP or START-STOP/STEP"),
    ("$TTL )", "$TTL: ')' without an opening '('"),
    (") www 300 A 192.0.2.1", "')' without an opening '('"),
    ("www 300 \"A\" 192.0.2.1", "no record type"),
]


@pytest.mark.parametrize("line, reason", EXPLAINED, ids=[reason[:40] for _, reason in EXPLAINED])
def test_errors_name_the_record_the_field_and_the_reason(tmp_path, line, reason):
    """Through parse_zone, as the server reads: the fast reader first."""
    from aliasd.zones.zonefile import parse_zone

    path = tmp_path / "z.zone"
    with pytest.raises(ZoneFileError) as info:
        parse_zone("example.com", path, (HEAD + "@ 300 NS ns1\n" + line + "\n").encode())
    message = str(info.value)
    assert message.startswith(f"{path}:4: {reason}"), message
    assert "malformed" not in message


def test_a_line_with_only_a_name_is_named_not_the_line_after_it(tmp_path):
    message = error_of(tmp_path, HEAD + "@ 300 NS ns1\nwww\nmail 300 A 192.0.2.25\n")
    assert message.startswith(f"{tmp_path / 'z.zone'}:4: no record type"), message


def test_an_error_in_an_included_file_names_that_file_its_line_and_the_field(tmp_path):
    write(tmp_path, "ok 300 A 192.0.2.1\nbad 300 MX 10\n", "inc.zone")
    message = error_of(tmp_path, HEAD + "@ 300 NS ns1\n$INCLUDE inc.zone\n")
    assert message == f"{tmp_path / 'inc.zone'}:2: MX record: 1 field where MX needs 2 (preference, exchange)"


def test_an_error_after_an_origin_change_reads_names_under_it(tmp_path):
    message = error_of(tmp_path, HEAD + "@ 300 NS ns1\n$ORIGIN sub.example.com.\nw 300 CNAME x\nw 300 MX 10\n")
    assert message == f"{tmp_path / 'z.zone'}:6: MX record: 1 field where MX needs 2 (preference, exchange)"


def test_multi_line_record_error_names_its_first_line(tmp_path):
    message = error_of(tmp_path, HEAD + "\n\nx 300 MX (\n  10\n  )\n")
    assert "z.zone:5:" in message


def test_missing_soa(tmp_path):
    assert "no SOA record at the zone apex example.com." in error_of(
        tmp_path, "$ORIGIN example.com.\n@ 300 A 192.0.2.1\n"
    )


def test_unreadable_and_binary_files(tmp_path):
    with pytest.raises(ZoneFileError, match="cannot read zone file"):
        load_zone_file("example.com", tmp_path / "absent.zone")
    path = tmp_path / "bin.zone"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ZoneFileError, match="not a text file"):
        load_zone_file("example.com", path)


def test_errors_in_included_files_name_the_included_file(tmp_path):
    write(tmp_path, "x 300 ALIAS a.example.net.\nx 300 ALIAS b.example.net.\n", "inc.zone")
    message = error_of(tmp_path, HEAD + f"$INCLUDE {tmp_path / 'inc.zone'}\n")
    assert message.startswith(f"{tmp_path / 'inc.zone'}:2: more than one ALIAS")


# -- $INCLUDE stays in the zone file's directory -------------------------------

OUTSIDE = "the zone's directory"
HOW = "set [server] allow-include-anywhere = true to allow it"


@pytest.fixture
def zone_dir(tmp_path, monkeypatch):
    """zones/ for the zone file, secret.zone beside it (outside), and a
    working directory elsewhere: relative names must not depend on it."""
    zones = tmp_path / "zones"
    zones.mkdir()
    (tmp_path / "secret.zone").write_text("secret 300 TXT hidden\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return zones


def load_with(zones, text, **options):
    return load_zone_file("example.com", write(zones, HEAD + text), **options)


def include_error(zones, text, **options) -> str:
    with pytest.raises(ZoneFileError) as info:
        load_with(zones, text, **options)
    return str(info.value)


def names(zone):
    return {name.to_text() for name, _ in zone.rrsets}


def test_include_names_a_file_relative_to_the_zone_directory(zone_dir):
    (zone_dir / "www.inc").write_text("www 300 A 192.0.2.80\n")
    (zone_dir / "sub").mkdir()
    (zone_dir / "sub" / "mail.inc").write_text("mail 300 A 192.0.2.25\n")
    zone = load_with(zone_dir, f"$INCLUDE www.inc\n$INCLUDE sub/mail.inc\n$INCLUDE {zone_dir / 'www.inc'}\n")
    assert {"www.example.com.", "mail.example.com."} <= names(zone)


@pytest.mark.parametrize("include", ["/etc/passwd", "../secret.zone", "sub/../../secret.zone", "link.zone"])
def test_include_outside_the_zone_directory_is_refused(zone_dir, include):
    (zone_dir / "link.zone").symlink_to(zone_dir.parent / "secret.zone")
    message = include_error(zone_dir, f"$INCLUDE {include}\n")
    assert message.startswith(f"{zone_dir / 'z.zone'}:3: $INCLUDE {include} is outside {OUTSIDE} {zone_dir}")
    assert message.endswith(HOW)
    assert "root:" not in message and "hidden" not in message


def test_include_inside_an_included_file_is_checked_too(zone_dir):
    (zone_dir / "a.inc").write_text("a 300 A 192.0.2.1\n$INCLUDE ../secret.zone\n")
    message = include_error(zone_dir, "$INCLUDE a.inc\n")
    assert message.startswith(f"{zone_dir / 'a.inc'}:2: $INCLUDE ../secret.zone is outside {OUTSIDE}")


def test_allow_include_anywhere_reads_other_directories(zone_dir):
    zone = load_with(zone_dir, "$INCLUDE ../secret.zone\n", include_anywhere=True)
    assert "secret.example.com." in names(zone)


def test_a_symlink_swapped_in_after_the_check_is_caught(zone_dir, monkeypatch):
    """The file dnspython actually opened is checked again (/proc/self/fd):
    a symbolic link put in place between the check and the open is caught."""
    from aliasd.zones import zonefile

    included = zone_dir / "ok.inc"
    included.write_text("ok 300 A 192.0.2.1\n")
    approve = zonefile._CheckingReader._approve_include

    def approve_then_swap(self, token, where):
        checked = approve(self, token, where)
        included.unlink()
        included.symlink_to(zone_dir.parent / "secret.zone")
        return checked

    monkeypatch.setattr(zonefile._CheckingReader, "_approve_include", approve_then_swap)
    message = include_error(zone_dir, "$INCLUDE ok.inc\n")
    assert message.startswith(f"{zone_dir / 'z.zone'}:3: $INCLUDE {included} is outside {OUTSIDE}")


def test_include_problems_name_file_and_line(zone_dir):
    (zone_dir / "self.inc").write_text("$INCLUDE self.inc\n")
    (zone_dir / "dir.inc").mkdir()
    cases = {
        "$INCLUDE absent.inc\n": "z.zone:3: $INCLUDE absent.inc: cannot read it: No such file or directory",
        "$INCLUDE dir.inc\n": "z.zone:3: $INCLUDE dir.inc: not a regular file",
        "$INCLUDE self.inc\n": "self.inc:1: $INCLUDE nested more than 16 deep",
    }
    for text, expected in cases.items():
        assert expected in include_error(zone_dir, text)


# -- signed zones: the signer's records are not taken from the file ---------------

DS = "12345 13 2 " + "ab" * 32


@pytest.mark.parametrize(
    "body, line, reason",
    [
        ("@ 300 NS ns1\n@ 0 NSEC3PARAM 1 0 0 -\n", 4,
         "NSEC3PARAM record at example.com.: aliasd makes the DNSSEC records of a signed zone (dnssec = true) itself"),
        ("@ 300 DNSKEY 257 3 13 " + "A" * 88 + "\n", 3, "DNSKEY record at example.com.: aliasd makes"),
        ("www 300 A 192.0.2.1\nwww 300 RRSIG A 13 3 300 20300101000000 20200101000000 1 example.com. AAAA\n", 4,
         "RRSIG record at www.example.com.: aliasd makes"),  # (RRSIG: read by dnspython's reader only)
        ("www 300 NSEC example.com. A NSEC RRSIG\n", 3, "NSEC record at www.example.com."),
        ("@ 300 CDS " + DS + "\n@ 300 CDNSKEY 257 3 13 " + "A" * 88 + "\n", 3, "CDS record at example.com."),
        ("@ 300 DS " + DS + "\n", 3, "DS record at the zone apex example.com.: it belongs in the parent zone"),
        ("www 300 A 192.0.2.1\nwww 300 DS " + DS + "\n", 4,
         "DS record at www.example.com., which is not a delegation (no NS records there)"),
        ("sub 300 DS " + DS + "\nx 300 A 192.0.2.9\nsub 300 NS ns.sub\nx 300 DS " + DS + "\n", 6,
         "DS record at x.example.com., which is not a delegation"),  # the first wrong one by line
    ],
    ids=["NSEC3PARAM", "DNSKEY", "RRSIG", "NSEC", "CDS", "DS-at-apex", "DS-not-at-a-delegation", "DS-later"],
)
def test_a_signed_zones_file_may_not_hold_what_the_signer_makes(tmp_path, body, line, reason):
    path = write(tmp_path, HEAD + body)
    with pytest.raises(ZoneFileError) as info:
        load_zone_file("example.com", path, signed=True)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert reason in message
    load_zone_file("example.com", path)  # an unsigned zone's file may hold them


def test_a_ds_at_a_delegation_of_a_signed_zone_is_taken_before_or_after_its_ns(tmp_path):
    body = "a 300 DS " + DS + "\na 300 NS ns.a.example.net.\nb 300 NS ns.b.example.net.\nb 300 DS " + DS + "\n"
    zone = load_zone_file("example.com", write(tmp_path, HEAD + "@ 300 NS ns1\n" + body), signed=True)
    assert (dns.name.from_text("a.example.com"), dns.rdatatype.DS) in zone.rrsets


def test_the_signers_records_in_an_included_file_name_that_file(zone_dir):
    (zone_dir / "keys.inc").write_text("; keys\n@ 300 DNSKEY 257 3 13 " + "A" * 88 + "\n")
    with pytest.raises(ZoneFileError) as info:
        load_with(zone_dir, "$INCLUDE keys.inc\n", signed=True)
    assert str(info.value).startswith(f"{zone_dir / 'keys.inc'}:2: DNSKEY record at example.com.")


def test_zone_files_read_unsigned_are_checked_again_once_the_zone_is_signed(tmp_path):
    """Neither the file cache of a reload nor the start-up snapshot hand a
    signed zone the source read while it was unsigned."""
    from aliasd.base.config import ZoneSettings
    from aliasd.service.reload import ZoneFiles
    from aliasd.zones.snapshot import Snapshot

    path = write(tmp_path, HEAD + "@ 300 NS ns1\n@ 0 NSEC3PARAM 1 0 0 -\n", "example.com.zone")
    unsigned = ZoneSettings(dns.name.from_text("example.com"), path)
    signed = ZoneSettings(unsigned.name, path, dnssec=True)
    files = ZoneFiles(Snapshot(tmp_path))
    results, _ = files.read_all([unsigned])
    assert not isinstance(results[unsigned.name], ZoneFileError)
    files.snapshot.save()
    for reader in (files, ZoneFiles(Snapshot(tmp_path))):  # the same reader (reload), a new one (start)
        results, _ = reader.read_all([signed])
        assert str(results[signed.name]) == f"{path}:4: NSEC3PARAM record at example.com.: " \
                                            "aliasd makes the DNSSEC records of a signed zone (dnssec = true) itself"
    results, _ = ZoneFiles(Snapshot(tmp_path)).read_all([unsigned])
    assert not isinstance(results[unsigned.name], ZoneFileError)


def test_with_owners_changes_a_copy_of_records_an_update_deleted_from():
    """A worker derives each updated source with ``with_owners`` from its
    copy of the one before: the new source holds the change (an owner
    added, one replaced, one removed) with the digest and ALIAS rules of
    the same records loaded whole, and the source it came from, whose
    dict had keys deleted (the case ``copy()`` clones), is left as it was."""
    head = "$ORIGIN example.test.\n@ 300 IN SOA ns hostmaster 1 3600 600 86400 300\n@ 300 IN NS ns\n"
    body = "".join(f"h{i} 300 IN A 192.0.2.{i}\n" for i in range(1, 9))
    before = zone_source("example.test.", head + body)
    after = zone_source("example.test.", head + body.replace("h2 300 IN A 192.0.2.2\n", "")
                        .replace("192.0.2.3\n", "198.51.100.3\n") + "new 300 IN ALIAS target.example.\n")
    keys = {name: store.key_of(dns.name.from_text(name, before.origin)) for name in ("h1", "h2", "h3", "new")}
    before.records.pop(keys["h1"])  # a dict with a deleted slot, as after an update's delete
    before.records[keys["h1"]] = after.records[keys["h1"]]
    snapshot = dict(before.records)
    touched = {keys["h2"]: None, keys["h3"]: after.records[keys["h3"]], keys["new"]: after.records[keys["new"]]}
    derived = before.with_owners(touched)
    assert derived.records == after.records
    assert derived.digest == after.digest
    assert derived.aliases.keys() == after.aliases.keys() and derived.aliases
    assert before.records == snapshot and keys["new"] not in before.records
