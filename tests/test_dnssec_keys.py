"""DNSSEC key files: generated, read back, and exchanged with BIND's own tools."""

from __future__ import annotations

import base64
import dataclasses
import os
import random
import re
import stat
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
import dns.zonefile
import pytest

from aliasd.dnssec.keys import (
    KSK_FLAGS,
    ZSK_FLAGS,
    KeyFileError,
    KeyStore,
    ZoneKey,
    cdnskey_rrset,
    cds_rrset,
    dnskey_rrset,
    ds_rrset,
    key_events,
    key_roles,
    key_tag,
    next_key_event,
    zone_file_text,
)
from tests.conftest import need

Algorithm = dns.dnssec.Algorithm
ZONE = dns.name.from_text("example.com")
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)

#: The algorithms aliasd offers; the last three are only read and written
#: so that an operator's existing keys of those algorithms keep working.
ALGORITHMS = [Algorithm.ECDSAP256SHA256, Algorithm.ED25519, Algorithm.RSASHA256,
              Algorithm.ECDSAP384SHA384, Algorithm.ED448, Algorithm.RSASHA512]
MAIN = ALGORITHMS[:3]

ZONE_TEXT = """\
$TTL 300
@    IN SOA ns1 hostmaster 1 3600 600 86400 300
@    IN NS  ns1
ns1  IN A   192.0.2.1
www  IN A   192.0.2.2
www  IN AAAA 2001:db8::2
mail IN MX  10 www
"""


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)


def run(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run([need(args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def bind_keygen(directory: Path, zone: str, algorithm: str, *options: str) -> str:
    """dnssec-keygen's key, by its file stem (K<zone>+<alg>+<tag>)."""
    directory.mkdir(parents=True, exist_ok=True)
    size = ["-b", "2048"] if algorithm.startswith("RSA") else []
    return run("dnssec-keygen", "-q", "-a", algorithm, *size, "-K", str(directory), *options, zone).strip()


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def assert_signs(key: ZoneKey, keys: list[ZoneKey]) -> None:
    """A signature made with ``key`` validates against the zone's DNSKEY RRset."""
    rrset = dns.rrset.from_text(f"www.{key.zone}", 300, "IN", "A", "192.0.2.2", "192.0.2.3")
    rrsig = dns.dnssec.sign(rrset, key.private, key.zone, key.dnskey, lifetime=3600)
    assert rrsig.key_tag == key.tag and rrsig.algorithm == key.algorithm
    dns.dnssec.validate_rrsig(rrset, rrsig, {key.zone: dnskey_rrset(key.zone, keys, 300)})
    tampered = dns.rrset.from_text(f"www.{key.zone}", 300, "IN", "A", "192.0.2.9")
    with pytest.raises(dns.dnssec.ValidationFailure):
        dns.dnssec.validate_rrsig(tampered, rrsig, {key.zone: dnskey_rrset(key.zone, keys, 300)})


# ---------------------------------------------------------------- our keys


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.name)
def test_generated_keys_load_back_the_same_and_sign(tmp_path, algorithm):
    directory = tmp_path / "state" / "keys"
    keys = KeyStore(directory).ensure(ZONE, algorithm, now=NOW)
    assert [k.flags for k in keys] == [ZSK_FLAGS, KSK_FLAGS]
    zsk, ksk = keys
    assert zsk.is_zsk and not zsk.is_ksk and ksk.is_ksk and not ksk.is_zsk
    for key in keys:
        assert key.algorithm == algorithm and key.zone == ZONE
        assert key.tag == dns.dnssec.key_id(key.dnskey)
        assert key.timing == {"Created": NOW, "Publish": NOW, "Activate": NOW}
        assert f"{key.stem}.key" in files(directory)

    loaded = KeyStore(directory).load(ZONE)
    assert loaded == keys
    assert [k.tag for k in loaded] == [k.tag for k in keys]
    assert dnskey_rrset(ZONE, loaded, 3600) == dnskey_rrset(ZONE, keys, 3600)
    for key in loaded:
        assert_signs(key, loaded)

    # A second ensure (a restart) keeps the keys it finds.
    assert KeyStore(directory).ensure(ZONE, algorithm) == keys
    assert len(files(directory)) == 4


def test_the_default_is_ecdsa_p256_and_split_false_makes_one_csk(tmp_path):
    store = KeyStore(tmp_path / "keys")
    (csk,) = store.ensure("csk.example.", split=False)
    assert csk.algorithm == Algorithm.ECDSAP256SHA256 and csk.flags == KSK_FLAGS and csk.is_ksk
    assert KeyStore(tmp_path / "keys").load("csk.example.") == [csk]
    assert_signs(csk, [csk])


def test_several_keys_per_zone_are_loaded_sorted_by_flags_and_tag(tmp_path):
    store = KeyStore(tmp_path / "keys")
    keys = store.ensure(ZONE, now=NOW)
    later = NOW + timedelta(days=30)
    keys.append(store.generate(ZONE, Algorithm.ECDSAP256SHA256, ZSK_FLAGS, now=later))
    keys.append(store.generate(ZONE, Algorithm.ED25519, KSK_FLAGS, now=later))
    store.ensure("other.example.")  # another zone's keys stay out
    loaded = KeyStore(tmp_path / "keys").load(ZONE)
    assert loaded == sorted(keys, key=lambda k: (k.flags, k.tag))
    assert store.load(ZONE) == loaded
    assert len({k.tag for k in loaded}) == 4


def test_a_key_directory_that_does_not_exist_holds_no_keys(tmp_path):
    store = KeyStore(tmp_path / "keys")
    assert store.load(ZONE) == []
    assert not (tmp_path / "keys").exists()  # reading creates nothing


def test_keys_an_operator_adds_later_are_seen_by_the_same_store(tmp_path):
    store = KeyStore(tmp_path / "keys")
    store.ensure(ZONE)
    assert len(store.load(ZONE)) == 2
    stem = bind_keygen(tmp_path / "keys", "example.com", "ECDSAP256SHA256")
    assert stem in {k.stem for k in store.load(ZONE)}
    assert len(store.load(ZONE)) == 3


# ---------------------------------------------------------------- files on disk


def test_file_modes_and_no_temporary_files(tmp_path):
    directory = tmp_path / "keys"
    keys = KeyStore(directory).ensure(ZONE)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for key in keys:
        assert stat.S_IMODE((directory / f"{key.stem}.private").stat().st_mode) == 0o600
        assert stat.S_IMODE((directory / f"{key.stem}.key").stat().st_mode) == 0o644
    assert files(directory) == sorted(f"{k.stem}.{ext}" for k in keys for ext in ("key", "private"))


def test_a_looser_directory_is_tightened_to_0700(tmp_path):
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    KeyStore(directory).ensure(ZONE)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_failed_write_leaves_neither_a_temporary_nor_a_partial_file(tmp_path, monkeypatch):
    directory = tmp_path / "keys"
    store = KeyStore(directory)
    key = store.ensure(ZONE)[1]
    before = {name: (directory / name).read_bytes() for name in files(directory)}

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    changed = dataclasses.replace(key, timing={**key.timing, "Inactive": NOW})
    with pytest.raises(OSError):
        store.save(changed)
    monkeypatch.undo()
    assert {name: (directory / name).read_bytes() for name in files(directory)} == before
    assert KeyStore(directory).load(ZONE)[1] == key


def test_the_files_look_like_bind_writes_them(tmp_path):
    (zsk, ksk) = KeyStore(tmp_path).ensure(ZONE, now=NOW)
    key_text = (tmp_path / f"{ksk.stem}.key").read_text().splitlines()
    assert key_text[0] == f"; This is a key-signing key, keyid {ksk.tag}, for example.com."
    assert key_text[1].startswith("; Created: 20260301120000 (")
    assert key_text[-1].startswith("example.com. IN DNSKEY 257 3 13 ")
    assert (tmp_path / f"{zsk.stem}.key").read_text().startswith("; This is a zone-signing key")
    private = (tmp_path / f"{ksk.stem}.private").read_text().splitlines()
    assert private[:2] == ["Private-key-format: v1.3", "Algorithm: 13 (ECDSAP256SHA256)"]
    assert private[2].startswith("PrivateKey: ")
    assert private[3:] == ["Created: 20260301120000", "Publish: 20260301120000", "Activate: 20260301120000"]
    assert ksk.stem == f"Kexample.com.+013+{ksk.tag:05d}"


def test_rsa_private_files_carry_the_crt_fields(tmp_path):
    (_, ksk) = KeyStore(tmp_path).ensure(ZONE, Algorithm.RSASHA256)
    private = (tmp_path / f"{ksk.stem}.private").read_text()
    names = [line.split(":")[0] for line in private.splitlines()]
    assert names[:10] == ["Private-key-format", "Algorithm", "Modulus", "PublicExponent", "PrivateExponent",
                          "Prime1", "Prime2", "Exponent1", "Exponent2", "Coefficient"]
    assert "Algorithm: 8 (RSASHA256)" in private
    assert ksk.private.key_size == 2048


@pytest.mark.parametrize("zone", ["Ex-Am_Ple.COM.", r"we\/ird.example.", r"a\032b.example.",
                                  r"x\$y*.example.", r"\195\169.example.", "."])
def test_file_names_escape_zone_names_as_bind_does(tmp_path, zone):
    name = dns.name.from_text(zone)
    theirs = bind_keygen(tmp_path / "bind", zone, "ED25519")
    ours = KeyStore(tmp_path / "ours").ensure(name, Algorithm.ED25519, split=False)[0]
    assert theirs.rsplit("+", 2)[0] == ours.stem.rsplit("+", 2)[0] == f"K{zone_file_text(name)}"
    (loaded,) = KeyStore(tmp_path / "bind").load(name)
    assert loaded.stem == theirs and loaded.zone == name


# ---------------------------------------------------------------- damage


def damage_private(text: str, how: str) -> str:
    lines = text.splitlines()
    if how == "truncated":
        return "\n".join(lines[:2]) + "\nPrivateKey: AAAA\n"
    if how == "not base64":
        return text.replace("PrivateKey: ", "PrivateKey: *not*base64*")
    if how == "no key material":
        return "\n".join(line for line in lines if not line.startswith("PrivateKey"))
    if how == "wrong algorithm":
        return text.replace("Algorithm: 13 (ECDSAP256SHA256)", "Algorithm: 15 (ED25519)")
    if how == "unknown format":
        return text.replace("v1.3", "v2.0")
    if how == "bad time":
        return text.replace("Publish: ", "Publish: tomorrow")
    if how == "binary junk":
        return "\x00\x01garbage"
    if how == "empty":
        return ""
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated", "not base64", "no key material", "wrong algorithm",
                                 "unknown format", "bad time", "binary junk", "empty"])
def test_a_damaged_private_file_gives_an_error_naming_the_file(tmp_path, how):
    (_, ksk) = KeyStore(tmp_path).ensure(ZONE)
    path = tmp_path / f"{ksk.stem}.private"
    path.write_text(damage_private(path.read_text(), how))
    with pytest.raises(KeyFileError) as caught:
        KeyStore(tmp_path).load(ZONE)
    assert str(path) in str(caught.value)
    assert caught.value.path == path


def test_a_private_key_that_is_not_the_public_keys_is_refused(tmp_path):
    (zsk, ksk) = KeyStore(tmp_path).ensure(ZONE)
    zsk_private = (tmp_path / f"{zsk.stem}.private").read_text()
    (tmp_path / f"{ksk.stem}.private").write_text(zsk_private)
    with pytest.raises(KeyFileError, match=re.escape(f"{ksk.stem}.private: the private key does not belong")):
        KeyStore(tmp_path).load(ZONE)


def test_a_key_file_without_its_private_file_is_an_error(tmp_path):
    (_, ksk) = KeyStore(tmp_path).ensure(ZONE)
    (tmp_path / f"{ksk.stem}.private").unlink()
    with pytest.raises(KeyFileError, match=re.escape(f"{ksk.stem}.key: no private key")):
        KeyStore(tmp_path).load(ZONE)


def test_a_private_file_without_its_key_file_is_skipped_with_a_warning(tmp_path, log_events):
    (zsk, ksk) = KeyStore(tmp_path).ensure(ZONE)
    (tmp_path / f"{zsk.stem}.key").unlink()  # a crash between the two renames
    assert KeyStore(tmp_path).load(ZONE) == [ksk]
    assert any(e.get("path") == str(tmp_path / f"{zsk.stem}.private") for e in log_events)


@pytest.mark.parametrize("text", ["garbage\n", "example.com. IN TXT \"x\"\n",
                                  "other.example. IN DNSKEY 257 3 13 AAAA\n"])
def test_a_damaged_key_file_gives_an_error_naming_the_file(tmp_path, text):
    (_, ksk) = KeyStore(tmp_path).ensure(ZONE)
    path = tmp_path / f"{ksk.stem}.key"
    path.write_text(text)
    with pytest.raises(KeyFileError) as caught:
        KeyStore(tmp_path).load(ZONE)
    assert str(path) in str(caught.value)


def test_a_key_file_renamed_to_another_tag_is_refused(tmp_path):
    (_, ksk) = KeyStore(tmp_path).ensure(ZONE)
    other = f"Kexample.com.+013+{(ksk.tag + 1) % 65536:05d}"
    for ext in ("key", "private"):
        (tmp_path / f"{ksk.stem}.{ext}").rename(tmp_path / f"{other}.{ext}")
    with pytest.raises(KeyFileError, match="not what its name says"):
        KeyStore(tmp_path).load(ZONE)


# ---------------------------------------------------------------- timing


def test_published_and_active_follow_the_timing_metadata(tmp_path):
    key = KeyStore(tmp_path).ensure(ZONE, split=False, now=NOW)[0]
    day = timedelta(days=1)
    assert not key.published(NOW - day) and not key.active(NOW - day)
    assert key.published(NOW) and key.active(NOW) and key.active(NOW.timestamp())
    assert key.active()  # now, by the clock

    prepublished = dataclasses.replace(key, timing={"Publish": NOW, "Activate": NOW + day})
    assert prepublished.published(NOW) and not prepublished.active(NOW)
    assert prepublished.active(NOW + day)

    only_activated = dataclasses.replace(key, timing={"Activate": NOW})
    assert only_activated.published(NOW) and only_activated.active(NOW)  # activation implies publication

    retiring = dataclasses.replace(key, timing={**key.timing, "Inactive": NOW + day, "Delete": NOW + 2 * day})
    assert retiring.active(NOW) and not retiring.active(NOW + day) and retiring.published(NOW + day)
    assert not retiring.published(NOW + 2 * day)

    unscheduled = dataclasses.replace(key, timing={"Created": NOW})  # dnssec-keygen -G
    assert not unscheduled.published(NOW) and not unscheduled.active(NOW)


def test_publish_and_activate_combine_as_in_bind(tmp_path):
    """BIND's dst_key_is_published and dns_dnssec_get_hints: a Publish time
    still to come keeps a key out of the DNSKEY RRset even when its
    Activate time has passed; a key with no Publish time is published only
    while it signs; Delete ends both."""
    key = KeyStore(tmp_path).ensure(ZONE, split=False, now=NOW)[0]
    day = timedelta(days=1)
    early_activate = dataclasses.replace(key, timing={"Publish": NOW + day, "Activate": NOW - day})
    assert not early_activate.published(NOW) and not early_activate.active(NOW)
    assert early_activate.published(NOW + day) and early_activate.active(NOW + day)
    unpublished_retired = dataclasses.replace(key, timing={"Activate": NOW - 2 * day, "Inactive": NOW - day})
    assert unpublished_retired.published(NOW - 2 * day) and not unpublished_retired.published(NOW)
    deleted_while_active = dataclasses.replace(key, timing={"Publish": NOW - day, "Activate": NOW - day,
                                                            "Delete": NOW})
    assert not deleted_while_active.published(NOW) and not deleted_while_active.active(NOW)


def test_key_roles_and_the_next_key_event(tmp_path):
    store = KeyStore(tmp_path)
    zsk, ksk = store.ensure(ZONE, now=NOW)
    day = timedelta(days=1)
    successor = dataclasses.replace(store.generate(ZONE, flags=ZSK_FLAGS, now=NOW),
                                    timing={"Publish": NOW + day, "Activate": NOW + 2 * day})
    retiring = dataclasses.replace(zsk, timing={**zsk.timing, "Inactive": NOW + 2 * day, "Delete": NOW + 3 * day})
    keys = [retiring, ksk, successor]
    assert key_roles(keys, NOW) == ([retiring, ksk], [retiring, ksk], [ksk])
    assert key_roles(keys, NOW + day) == ([retiring, ksk, successor], [retiring, ksk], [ksk])
    assert key_roles(keys, NOW + 2 * day) == ([retiring, ksk, successor], [ksk, successor], [ksk])
    assert key_roles(keys, NOW + 3 * day) == ([ksk, successor], [ksk, successor], [ksk])
    assert next_key_event(keys, NOW) == NOW + day
    assert next_key_event(keys, NOW + day) == NOW + 2 * day  # strictly after
    assert next_key_event(keys, (NOW + 2 * day).timestamp()) == NOW + 3 * day
    assert next_key_event(keys, NOW + 3 * day) is None
    same_moment = sorted([(retiring.tag, "Inactive"), (successor.tag, "Activate")])  # by key tag, as numbers
    assert key_events(keys, NOW + day, NOW + 2 * day) == [
        f"{successor.tag} Publish", *(f"{tag} {event}" for tag, event in same_moment)]


def test_published_and_active_agree_with_dnssec_signzone(tmp_path):
    """BIND's smart signing (dnssec-signzone -S) as the oracle: for keys
    with every kind of timing, the DNSKEY RRset it writes holds the keys
    ZoneKey.published says, and it signs with those ZoneKey.active says,
    but for one: it signs with an activated key whose Publish time is still
    to come, whose signatures nobody could validate; aliasd does not."""
    keydir = tmp_path / "keys"
    cases = {
        "ksk": ("-f", "KSK", "-P", "-5d", "-A", "-5d"),
        "zsk": ("-P", "-5d", "-A", "-5d"),
        "prepublished later": ("-P", "+1d", "-A", "+2d"),
        "published, not active yet": ("-P", "-2d", "-A", "+1d"),
        "activated, published later": ("-P", "+1d", "-A", "-1d"),
        "inactive, not deleted yet": ("-P", "-3d", "-A", "-2d", "-I", "-1d", "-D", "+1d"),
        "deleted": ("-P", "-3d", "-A", "-2d", "-I", "-1d", "-D", "-1h"),
        "ksk deleted while active": ("-f", "KSK", "-P", "-3d", "-A", "-2d", "-D", "-1h"),
        "no publish, active": ("-P", "-2d", "-A", "-1d"),
        "no publish, inactive": ("-P", "-3d", "-A", "-2d", "-I", "-1d"),
        "no times": ("-G",),
    }
    stems = {case: bind_keygen(keydir, "example.com", "ECDSAP256SHA256", *options) for case, options in cases.items()}
    for case in ("no publish, active", "no publish, inactive"):
        run("dnssec-settime", "-P", "none", "-K", str(keydir), stems[case])
    (tmp_path / "example.com.zone").write_text(ZONE_TEXT)
    signed = tmp_path / "example.com.signed"
    run("dnssec-signzone", "-q", "-K", str(keydir), "-o", "example.com.", "-S", "-f", str(signed),
        str(tmp_path / "example.com.zone"), cwd=tmp_path)
    zone = dns.zone.from_file(str(signed), origin=ZONE, relativize=False)
    bind_published = {dns.dnssec.key_id(rd) for rd in zone.find_rdataset(ZONE, dns.rdatatype.DNSKEY)}
    bind_signing = {rd.key_tag for node in zone.values() for rdataset in node
                    if rdataset.rdtype == dns.rdatatype.RRSIG for rd in rdataset}

    keys = {k.stem: k for k in KeyStore(keydir).load(ZONE)}
    tag = {case: keys[stem].tag for case, stem in stems.items()}
    published, active, _ = key_roles(keys.values())
    assert {k.tag for k in published} == bind_published
    assert bind_published == {tag[c] for c in ("ksk", "zsk", "published, not active yet",
                                               "inactive, not deleted yet", "no publish, active")}
    assert {k.tag for k in active} == bind_signing - {tag["activated, published later"]}
    assert bind_signing == {tag[c] for c in ("ksk", "zsk", "no publish, active", "activated, published later")}


def test_bind_timing_metadata_is_read_and_written_back(tmp_path):
    stem = bind_keygen(tmp_path, "example.com", "ED25519", "-P", "20260301120000", "-A", "20260302120000",
                       "-I", "20260401120000", "-D", "20260501120000", "-P", "sync", "20260303120000")
    (key,) = KeyStore(tmp_path).load(ZONE)
    assert {tag: key.timing[tag] for tag in ("Publish", "Activate", "Inactive", "Delete", "SyncPublish")} == {
        "Publish": utc("20260301120000"), "Activate": utc("20260302120000"),
        "Inactive": utc("20260401120000"), "Delete": utc("20260501120000"),
        "SyncPublish": utc("20260303120000")}
    assert key.published(NOW) and not key.active(NOW)

    # Ours written back: BIND reads the same times, and a new one.
    store = KeyStore(tmp_path)
    store.save(dataclasses.replace(key, timing={**key.timing, "Revoke": utc("20260415120000")}))
    printed = run("dnssec-settime", "-u", "-p", "all", "-K", str(tmp_path), stem)
    times = dict(line.split(": ", 1) for line in printed.splitlines())
    assert times["Activate"] == str(int(utc("20260302120000").timestamp()))
    assert times["Revoke"] == str(int(utc("20260415120000").timestamp()))
    assert times["SYNC Publish"] == str(int(utc("20260303120000").timestamp()))


def test_bind_successor_metadata_survives_a_rewrite(tmp_path):
    (key,) = KeyStore(tmp_path).ensure(ZONE, Algorithm.ED25519, split=False, now=NOW)
    run("dnssec-settime", "-I", "+30d", "-D", "+60d", "-K", str(tmp_path), key.stem)
    successor = run("dnssec-keygen", "-q", "-K", str(tmp_path), "-S", key.stem, "-i", "1d").strip()
    keys = KeyStore(tmp_path).load(ZONE)
    assert {k.stem for k in keys} == {key.stem, successor}
    old = next(k for k in keys if k.stem == key.stem)
    new = next(k for k in keys if k.stem == successor)
    assert ("Successor", str(new.tag)) in old.extra and ("Predecessor", str(old.tag)) in new.extra
    assert "Inactive" in old.timing and new.timing["Activate"] == old.timing["Inactive"]
    KeyStore(tmp_path).save(old)
    assert f"Successor: {new.tag}" in (tmp_path / f"{old.stem}.private").read_text()
    assert KeyStore(tmp_path).load(ZONE) == keys


# ---------------------------------------------------------------- RRsets


def test_ds_cds_and_cdnskey_cover_the_right_keys(tmp_path):
    store = KeyStore(tmp_path)
    zsk, ksk = store.ensure(ZONE, now=NOW)
    day = timedelta(days=1)
    standby = store.generate(ZONE, Algorithm.ECDSAP256SHA256, KSK_FLAGS, now=NOW)
    standby = dataclasses.replace(standby, timing={"Created": NOW, "Publish": NOW, "Activate": NOW + day})
    unsynced = store.generate(ZONE, Algorithm.ECDSAP256SHA256, KSK_FLAGS, now=NOW)
    unsynced = dataclasses.replace(unsynced, timing={**unsynced.timing, "SyncPublish": NOW + day})
    keys = [zsk, ksk, standby, unsynced]

    assert {rd.key for rd in dnskey_rrset(ZONE, keys, 3600)} == {k.dnskey.key for k in keys}
    ds = ds_rrset(ZONE, keys, 86400)
    assert ds.name == ZONE and ds.ttl == 86400 and ds.rdtype == dns.rdatatype.DS
    assert {rd.key_tag for rd in ds} == {ksk.tag, standby.tag, unsynced.tag}
    assert {rd.digest_type for rd in ds} == {2}
    assert {rd.digest_type for rd in ds_rrset(ZONE, keys, 86400, digest="SHA384")} == {4}

    assert {rd.key_tag for rd in cds_rrset(ZONE, keys, 3600, now=NOW)} == {ksk.tag}
    assert {rd.key for rd in cdnskey_rrset(ZONE, keys, 3600, now=NOW)} == {ksk.dnskey.key}
    later = {standby.tag, ksk.tag, unsynced.tag}
    assert {rd.key_tag for rd in cds_rrset(ZONE, keys, 3600, now=NOW + day)} == later
    assert {dns.dnssec.key_id(rd) for rd in cdnskey_rrset(ZONE, keys, 3600, now=NOW + day)} == later
    cds = cds_rrset(ZONE, [ksk], 3600, now=NOW)
    assert cds[0].digest == ds_rrset(ZONE, [ksk], 3600)[0].digest
    assert cds_rrset(ZONE, [zsk], 3600, now=NOW).rdtype == dns.rdatatype.CDS
    assert len(cds_rrset(ZONE, [zsk], 3600, now=NOW)) == 0


# ---------------------------------------------------------------- BIND interop


@pytest.mark.parametrize("algorithm", ["ECDSAP256SHA256", "ED25519", "RSASHA256"])
def test_keys_made_by_dnssec_keygen_load_and_sign(tmp_path, algorithm):
    ksk_stem = bind_keygen(tmp_path, "example.com", algorithm, "-f", "KSK")
    zsk_stem = bind_keygen(tmp_path, "example.com", algorithm)
    store = KeyStore(tmp_path)
    keys = store.load(ZONE)
    assert {k.stem: k.flags for k in keys} == {ksk_stem: KSK_FLAGS, zsk_stem: ZSK_FLAGS}
    for key in keys:
        assert key.algorithm == Algorithm[algorithm]
        assert set(key.timing) == {"Created", "Publish", "Activate"}
        assert key.active()
        assert_signs(key, keys)
    assert store.ensure(ZONE) == keys  # BIND's keys are the zone's keys: nothing generated
    assert len(files(tmp_path)) == 4


@pytest.mark.parametrize("digest, option", [("SHA256", "-2"), ("SHA384", "-a SHA-384")])
@pytest.mark.parametrize("algorithm", MAIN, ids=lambda a: a.name)
def test_dnssec_dsfromkey_prints_the_same_ds(tmp_path, algorithm, digest, option):
    keys = KeyStore(tmp_path).ensure(ZONE, algorithm)
    ksk = keys[1]
    printed = run("dnssec-dsfromkey", *option.split(), str(tmp_path / f"{ksk.stem}.key"))
    owner, rdclass, rdtype, rdata = printed.split(None, 3)
    assert (owner, rdclass, rdtype) == ("example.com.", "IN", "DS")
    theirs = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DS, rdata)
    assert list(ds_rrset(ZONE, keys, 3600, digest=digest)) == [theirs]


@pytest.mark.parametrize("split", [True, False], ids=["ksk+zsk", "csk"])
@pytest.mark.parametrize("algorithm", MAIN, ids=lambda a: a.name)
def test_dnssec_signzone_signs_with_our_private_files_and_dnssec_verify_accepts(tmp_path, algorithm, split):
    keydir = tmp_path / "keys"
    keys = KeyStore(keydir).ensure(ZONE, algorithm, split=split)
    (tmp_path / "example.com.zone").write_text(ZONE_TEXT)
    signed = tmp_path / "example.com.signed"
    # BIND wants -z ("ignore the KSK flag") to sign with a CSK alone.
    csk = [] if split else ["-z"]
    run("dnssec-signzone", "-q", *csk, "-K", str(keydir), "-o", "example.com.", "-S", "-f", str(signed),
        str(tmp_path / "example.com.zone"), cwd=tmp_path)
    run("dnssec-verify", "-q", *csk, "-o", "example.com.", str(signed))

    # Every signature BIND made is by one of our keys and validates here too.
    zone = dns.zone.from_file(str(signed), origin=ZONE, relativize=False)
    apex_keys = zone.find_rdataset(ZONE, dns.rdatatype.DNSKEY)
    assert {rd.key for rd in apex_keys} == {k.dnskey.key for k in keys}
    signers: dict[int, set[int]] = {}
    for name, node in zone.nodes.items():
        for rdataset in node:
            if rdataset.rdtype != dns.rdatatype.RRSIG:
                continue
            covered = node.find_rdataset(dns.rdataclass.IN, rdataset.covers)
            for rrsig in rdataset:
                signers.setdefault(rrsig.type_covered, set()).add(rrsig.key_tag)
            dns.dnssec.validate((name, covered), (name, rdataset), {ZONE: apex_keys},
                                now=datetime.now(timezone.utc).timestamp())
    ksk = keys[-1]
    zsk = keys[0]
    assert ksk.tag in signers[dns.rdatatype.DNSKEY]
    assert signers[dns.rdatatype.A] == {zsk.tag}  # the CSK when there is no ZSK


# ---------------------------------------------------------------- many zones


def test_ensure_many_makes_the_missing_keys_and_keeps_the_others(tmp_path):
    directory = tmp_path / "keys"
    theirs = bind_keygen(directory, "bind.example", "ECDSAP256SHA256", "-f", "KSK")
    ours = KeyStore(directory).ensure("ours.example.", now=NOW)
    zones = ["ours.example.", "bind.example.", *(f"z{i}.example." for i in range(20))]
    store = KeyStore(directory)
    got = store.ensure_many(zones, now=NOW)
    assert list(got) == [dns.name.from_text(z) for z in zones]
    assert got[dns.name.from_text("ours.example.")] == ours
    assert [k.stem for k in got[dns.name.from_text("bind.example.")]] == [theirs]
    for zone, keys in got.items():
        if zone.labels[0].startswith(b"z"):
            assert [k.flags for k in keys] == [ZSK_FLAGS, KSK_FLAGS]
            assert all(k.zone == zone and k.timing["Activate"] == NOW for k in keys)
        # What was made is what a fresh store reads back, and the same store too.
        assert KeyStore(directory).load(zone) == keys == store.load(zone)
    assert len(files(directory)) == 2 + 4 + 20 * 4
    assert all(stat.S_IMODE((directory / name).stat().st_mode) == (0o600 if name.endswith(".private") else 0o644)
               for name in files(directory))
    assert store.ensure_many(zones) == got  # nothing more made


def test_ensure_many_takes_each_zone_once_whatever_its_case(tmp_path):
    got = KeyStore(tmp_path).ensure_many(["a.test.", "A.TEST", dns.name.from_text("a.Test.")], split=False)
    assert list(got) == [dns.name.from_text("a.test.")] and len(got[dns.name.from_text("a.test")]) == 1
    assert len(files(tmp_path)) == 2


def test_one_listing_serves_the_loads_of_every_zone(tmp_path, monkeypatch):
    zones = [f"z{i}.example." for i in range(30)]
    KeyStore(tmp_path).ensure_many(zones, Algorithm.ED25519)
    listings = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: listings.append(path) or real_scandir(path))
    store = KeyStore(tmp_path)
    assert all(len(store.load(z)) == 2 for z in zones)
    assert len(listings) == 1


def test_zones_whose_names_prefix_each_other_get_only_their_own_keys(tmp_path):
    names = ["a.test.", "aa.test.", "b.a.test.", "test.", "a.test.a.", "a-.test.", "a_.test."]
    made = KeyStore(tmp_path).ensure_many(names, split=False)
    bind = {name: bind_keygen(tmp_path, name, "ED25519") for name in names}
    store = KeyStore(tmp_path)
    for name in names:
        zone = dns.name.from_text(name)
        keys = store.load(zone)
        assert {k.stem for k in keys} == {made[zone][0].stem, bind[name]}
        assert all(k.zone == zone for k in keys)


def test_zone_names_match_bind_file_names_whatever_their_case(tmp_path):
    stem = bind_keygen(tmp_path, "Sub.EXAMPLE.com", "ECDSAP256SHA256")
    assert stem.startswith("Ksub.example.com.+013+")  # BIND writes the name in lower case
    assert "Sub.EXAMPLE.com. IN DNSKEY" in (tmp_path / f"{stem}.key").read_text()  # and the owner as given
    for spelling in ("sub.example.com", "SUB.EXAMPLE.COM.", "sUb.ExAmPlE.cOm."):
        (key,) = KeyStore(tmp_path).load(spelling)
        assert key.stem == stem and key.zone == dns.name.from_text(spelling)
    assert [k.stem for k in KeyStore(tmp_path).ensure("SUB.example.COM")] == [stem]  # nothing made


def test_an_operators_new_key_among_many_is_read_by_a_fresh_store(tmp_path):
    KeyStore(tmp_path).ensure_many([f"z{i}.example." for i in range(40)], Algorithm.ED25519)
    stem = bind_keygen(tmp_path, "z7.example", "ECDSAP256SHA256", "-f", "KSK")
    new_zone = bind_keygen(tmp_path, "new.example", "ECDSAP256SHA256")
    store = KeyStore(tmp_path)
    assert stem in {k.stem for k in store.load("z7.example.")} and len(store.load("z7.example.")) == 3
    assert [k.stem for k in store.ensure_many(["new.example."])[dns.name.from_text("new.example.")]] == [new_zone]


@pytest.mark.parametrize("step", ["private", "KSK key", "ZSK key"])
def test_ensure_many_that_fails_leaves_no_private_file_without_its_key_file(tmp_path, monkeypatch, step):
    zones = [f"z{i}.example." for i in range(6)]
    real_replace = os.replace

    def replace(src, dst):
        name = os.path.basename(dst)
        ext = name.rsplit(".", 1)[1]
        is_ksk = ext == "key" and "key-signing" in Path(src).read_text()
        if name.startswith("Kz3.") and (step == "private" and ext == "private"
                                        or step == "KSK key" and is_ksk
                                        or step == "ZSK key" and ext == "key" and not is_ksk):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    store = KeyStore(tmp_path)
    with pytest.raises(OSError):
        store.ensure_many(zones)
    monkeypatch.undo()
    names = files(tmp_path)
    assert not [n for n in names if n.startswith(".")]  # no temporary files
    assert {n[:-len(".private")] for n in names if n.endswith(".private")} == \
        {n[:-len(".key")] for n in names if n.endswith(".key")}
    # The step that failed for z3 went through for the other zones (written
    # at the same time): keys whose .key file is in place stay.
    flags = {z: [k.flags for k in KeyStore(tmp_path).load(z)] for z in zones}
    both = [ZSK_FLAGS, KSK_FLAGS]
    assert flags == {z: {"private": [], "KSK key": [] if z == "z3.example." else [KSK_FLAGS],
                         "ZSK key": [KSK_FLAGS] if z == "z3.example." else both}[step] for z in zones}
    again = KeyStore(tmp_path).ensure_many(zones)
    assert {z.to_text(): [k.flags for k in keys] for z, keys in again.items()} == \
        {z: f or both for z, f in flags.items()}


# ---------------------------------------------------------------- how the files are read


def test_key_tags_are_computed_as_dnspython_does():
    rng = random.Random(7)
    for _ in range(500):
        key = rng.randbytes(rng.choice([0, 1, 2, 3, 31, 32, 64, 65, 130, 260]))
        flags, algorithm = rng.choice([256, 257, 385, 0, 65535]), rng.choice([1, 5, 8, 13, 15, 253, 255])
        rdata = dns.rdata.from_text("IN", "DNSKEY", f"{flags} 3 {algorithm} " + (
            base64.b64encode(key).decode() or "AA=="))
        assert key_tag(rdata.flags, rdata.protocol, rdata.algorithm, rdata.key) == dns.dnssec.key_id(rdata)


@pytest.mark.parametrize("form", ["bind", "ttl", "no class", "class then ttl", "upper case", "owner case",
                                  "parentheses", "mnemonic", "blank lines", "tabs"])
def test_every_way_of_writing_the_dnskey_record_reads_the_same(tmp_path, monkeypatch, form):
    (_, ksk) = KeyStore(tmp_path).ensure(ZONE)
    path = tmp_path / f"{ksk.stem}.key"
    lines = path.read_text().splitlines()
    owner, _, rdtype, flags, protocol, algorithm, *material = lines[-1].split()
    material = " ".join(material)
    record = {
        "bind": lines[-1],
        "ttl": f"{owner} 3600 IN DNSKEY {flags} {protocol} {algorithm} {material}",
        "no class": f"{owner} DNSKEY {flags} {protocol} {algorithm} {material}",
        "class then ttl": f"{owner} IN 86400 DNSKEY {flags} {protocol} {algorithm} {material}",
        "upper case": f"{owner.upper()} in dnskey {flags} {protocol} {algorithm} {material}",
        "owner case": f"EXAMPLE.com. IN DNSKEY {flags} {protocol} {algorithm} {material}",
        "parentheses": f"{owner} IN DNSKEY {flags} {protocol} {algorithm} (\n  {material[:20]}\n  {material[20:]} )",
        "mnemonic": f"{owner} IN DNSKEY {flags} {protocol} ECDSAP256SHA256 {material}",
        "blank lines": f"\n{lines[-1]}\n\n",
        "tabs": f"{owner}\tIN\tDNSKEY\t{flags} {protocol} {algorithm}\t{material}",
    }[form]
    path.write_text("\n".join(lines[:-1]) + "\n" + record + "\n")
    # The plain forms are read directly, the others by dnspython's zone file reader.
    calls = []
    real = dns.zonefile.read_rrsets
    monkeypatch.setattr(dns.zonefile, "read_rrsets", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert KeyStore(tmp_path).load(ZONE)[1] == ksk
    assert len(calls) == (form in ("parentheses", "mnemonic"))


def test_bind_key_files_with_a_ttl_are_read_directly(tmp_path, monkeypatch):
    stem = bind_keygen(tmp_path, "example.com", "ECDSAP256SHA256", "-L", "3600")
    assert "example.com. 3600 IN DNSKEY 256 3 13 " in (tmp_path / f"{stem}.key").read_text()
    monkeypatch.setattr(dns.zonefile, "read_rrsets", None)
    (key,) = KeyStore(tmp_path).load(ZONE)
    assert key.stem == stem and key.flags == ZSK_FLAGS


@pytest.mark.parametrize("record", [
    "example.com. IN DNSKEY 257 3 13 not*base64",
    "example.com. IN DNSKEY 257 3",
    "example.com. IN DNSKEY 99999 3 13 AAAA",
    "example.com. CH DNSKEY 257 3 13 AAAA",
    "example.com IN DNSKEY 257 3 13 AAAA",
    "example.com. IN DNSKEY 257 3 13 AAAA\nexample.com. IN DNSKEY 256 3 13 AAAA",
    "example.com. IN DNSKEY 1 3 13 AAAA",
])
def test_odd_key_files_are_refused_naming_the_file(tmp_path, record):
    (_, ksk) = KeyStore(tmp_path).ensure(ZONE)
    path = tmp_path / f"{ksk.stem}.key"
    path.write_text(record + "\n")
    with pytest.raises(KeyFileError) as caught:
        KeyStore(tmp_path).load(ZONE)
    assert str(path) in str(caught.value) and caught.value.path == path


@pytest.mark.parametrize("algorithm", MAIN, ids=lambda a: a.name)
def test_another_keys_private_half_is_refused_for_every_algorithm(tmp_path, algorithm):
    (zsk, ksk) = KeyStore(tmp_path).ensure(ZONE, algorithm)
    (tmp_path / f"{ksk.stem}.private").write_text((tmp_path / f"{zsk.stem}.private").read_text())
    with pytest.raises(KeyFileError, match=re.escape(f"{ksk.stem}.private: the private key does not belong")):
        KeyStore(tmp_path).load(ZONE)


@pytest.mark.parametrize("field", ["Prime1", "Prime2", "PrivateExponent", "Exponent1", "Exponent2", "Coefficient"])
def test_rsa_numbers_that_do_not_agree_are_a_damaged_key(tmp_path, field):
    (ksk,) = KeyStore(tmp_path).ensure(ZONE, Algorithm.RSASHA256, split=False)
    path = tmp_path / f"{ksk.stem}.private"
    text = path.read_text()
    value = re.search(rf"^{field}: (\S+)$", text, re.M)[1]
    number = int.from_bytes(base64.b64decode(value), "big") + 2
    changed = base64.b64encode(number.to_bytes((number.bit_length() + 7) // 8, "big")).decode()
    path.write_text(text.replace(f"{field}: {value}", f"{field}: {changed}"))
    with pytest.raises(KeyFileError, match=re.escape(f"{path}: damaged private key")) as caught:
        KeyStore(tmp_path).load(ZONE)
    assert caught.value.path == path


def test_rsa_keys_without_the_crt_fields_are_completed(tmp_path):
    (ksk,) = KeyStore(tmp_path).ensure(ZONE, Algorithm.RSASHA256, split=False)
    path = tmp_path / f"{ksk.stem}.private"
    path.write_text("\n".join(line for line in path.read_text().splitlines()
                              if not line.startswith(("Prime", "Exponent", "Coefficient"))) + "\n")
    (loaded,) = KeyStore(tmp_path).load(ZONE)
    assert loaded.private.private_numbers() == ksk.private.private_numbers()
    assert_signs(loaded, [loaded])


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.name)
def test_loaded_keys_sign_what_the_public_key_validates(tmp_path, algorithm):
    KeyStore(tmp_path).ensure_many(["one.example.", "two.example."], algorithm)
    for zone in ("one.example.", "two.example."):
        keys = KeyStore(tmp_path).load(zone)
        for key in keys:
            assert_signs(key, keys)
