"""Unit tests: the TOML configuration and its error messages."""

from __future__ import annotations

import base64
import ipaddress
import os
import time
from pathlib import Path

import dns.exception
import dns.name
import dns.rdatatype
import pytest

from aliasd.base.config import ConfigError, Endpoint, load_settings, parse_endpoint

REPO = Path(__file__).resolve().parent.parent


def load(tmp_path, text):
    path = tmp_path / "aliasd.toml"
    path.write_text(text)
    return load_settings(path)


def test_bundled_example_loads_with_paths_relative_to_the_file():
    settings = load_settings(REPO / "etc" / "aliasd.toml")
    assert settings.server.listen == ("127.0.0.1", "::1")
    assert settings.server.port == 5353
    names = [z.name for z in settings.zones]
    assert dns.name.from_text("example.com") in names
    for zone in settings.zones:
        assert zone.file.is_absolute() and zone.file.exists()


def test_statistics_are_off_unless_configured(tmp_path):
    assert load(tmp_path, "").statistics.listen is None
    assert load(tmp_path, "[statistics]\nlisten = '[::1]:9353'\n").statistics.listen == Endpoint("::1", 9353)


def test_full_shape_of_the_design(tmp_path):
    (tmp_path / "k.key").write_text(base64.b64encode(b"secret2").decode())
    settings = load(
        tmp_path,
        """
        [server]
        listen = ["127.0.0.1", "::1", "127.0.0.2"]
        port = 5300
        state-dir = "state"
        [resolver]
        upstreams = ["127.0.0.1", "127.0.0.1:5301", "[::1]:5302", "::1"]
        min-refresh = 5
        max-refresh = 60
        serve-stale = 120
        [keys.transfer]
        algorithm = "hmac-sha256"
        secret = "c2VjcmV0"
        [keys.other]
        secret-file = "k.key"
        [zones."example.com"]
        file = "zones/example.com.zone"
        notify = ["192.0.2.53", "[2001:db8::53]:5300"]
        allow-transfer = ["192.0.2.0/24", "2001:db8::/32"]
        transfer-key = "transfer"
        """,
    )
    assert settings.server.state_dir == tmp_path / "state"
    assert settings.resolver.upstreams == (
        Endpoint("127.0.0.1", 53),
        Endpoint("127.0.0.1", 5301),
        Endpoint("::1", 5302),
        Endpoint("::1", 53),
    )
    keys = {k.name: k for k in settings.keys}
    assert keys["transfer"].secret == b"secret" and keys["other"].secret == b"secret2"
    (zone,) = settings.zones
    assert zone.file == tmp_path / "zones/example.com.zone"
    assert zone.notify == (Endpoint("192.0.2.53", 53), Endpoint("2001:db8::53", 5300))
    assert zone.allow_transfer[1] == ipaddress.ip_network("2001:db8::/32")
    assert zone.transfer_key == "transfer"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[server]\nport = 70000\n", "[server] port: must be between 0 and 65535"),
        ("[server]\nport = true\n", "[server] port: expected an integer"),
        ("[server]\nlisten = '127.0.0.1'\n", "[server] listen: expected a list of strings"),
        ("[server]\nlisten = []\n", "[server] listen: needs at least one address"),
        ("[server]\nmax-udp-size = 100\n", "[server] max-udp-size: must be between 512"),
        ("[server]\ncolour = 1\n", "[server]: unknown key(s): colour"),
        ("[resolver]\nupstreams = ['[::1']\n", "[resolver] upstreams: missing ']'"),
        ("[resolver]\nupstreams = ['dns.example']\n", "[resolver] upstreams"),
        ("[resolver]\nmin-refresh = 0\n", "[resolver] min-refresh: must be at least 1"),
        ("[resolver]\nserve-stale = 'long'\n", "[resolver] serve-stale: expected a number"),
        ("[resolver]\nmax-in-flight = 0\n", "[resolver] max-in-flight: must be at least 1"),
        ("[resolver]\nmin-ttl = -1\n", "[resolver] min-ttl: must be between 0 and 2147483647"),
        ("[resolver]\nmin-ttl = 1.5\n", "[resolver] min-ttl: expected an integer"),
        ("[server]\nallow-include-anywhere = 'yes'\n", "[server] allow-include-anywhere: expected true or false"),
        ("[server]\nserial-burst = 0\n", "[server] serial-burst: must be at least 1"),
        ("[server]\nserial-interval = -1\n", "[server] serial-interval: must be at least 0"),
        ("[server]\ntcp-max-per-client = 0\n", "[server] tcp-max-per-client: must be at least 1"),
        ("[keys.k]\nalgorithm = 'hmac-foo'\nsecret = 'eA=='\n", "[keys.k] algorithm: unsupported"),
        ("[keys.k]\nsecret = 'not base64!'\n", "[keys.k] secret: not valid base64"),
        ("[keys.k]\n", "[keys.k] secret: give exactly one"),
        ("[keys.k]\nsecret-file = 'absent'\n", "[keys.k] secret-file: cannot read"),
        ('[zones."a."]\nfile = "a"\ntransfer-key = "nokey"\n', "transfer-key: no key named 'nokey'"),
        ('[zones."a."]\nfile = "a"\nallow-transfer = ["10.0.0.0/33"]\n', "allow-transfer: not an address"),
        ('[zones."a."]\nfile = "a"\nnotify = ["192.0.2.1:0"]\n', "notify: bad port"),
        ('[zones."a."]\nfile = "a"\n[zones."A"]\nfile = "b"\n', "zone A. is configured twice"),
        ("zones = 3\n", "[zones]: expected a table"),
        ("extra = 1\n", "top level: unknown key(s): extra"),
        ("[server\n", "invalid TOML"),
        ("[statistics]\nlisten = '127.0.0.1'\n", "[statistics] listen: needs a port"),
        ("[statistics]\nlisten = 9353\n", "[statistics] listen: expected"),
    ],
)
def test_errors_name_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert str(info.value).startswith(str(tmp_path / "aliasd.toml") + ":")
    assert message in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("192.0.2.1", Endpoint("192.0.2.1", 53)),
        ("192.0.2.1:5353", Endpoint("192.0.2.1", 5353)),
        ("2001:db8::1", Endpoint("2001:db8::1", 53)),
        ("[2001:db8::1]", Endpoint("2001:db8::1", 53)),
        ("[2001:DB8::1]:54", Endpoint("2001:db8::1", 54)),
    ],
)
def test_endpoints(text, expected):
    assert parse_endpoint(text, 53) == expected


def test_zone_defaults_apply_to_every_zone_and_a_zone_table_overrides_them(tmp_path):
    (tmp_path / "zones.d").mkdir()
    for name in ("b.example", "a.example", "explicit.example"):
        (tmp_path / "zones.d" / f"{name}.zone").write_text("")
    (tmp_path / "zones.d" / ".hidden.zone").write_text("")
    (tmp_path / "zones.d" / "a.example.zone~").write_text("")
    settings = load(tmp_path, """
[keys.xfr]
secret = "c2VjcmV0"
[zone-defaults]
notify = ["192.0.2.53"]
allow-transfer = ["192.0.2.0/24"]
transfer-key = "xfr"
[zone-directory]
path = "zones.d"
[zones."explicit.example"]
file = "other.zone"
notify = []
[zones."plain.example"]
file = "plain.zone"
allow-transfer = ["198.51.100.0/24"]
""")
    zones = {z.name.to_text(): z for z in settings.zones}
    assert sorted(zones) == ["a.example.", "b.example.", "explicit.example.", "plain.example."]
    assert zones["a.example."].file == tmp_path / "zones.d" / "a.example.zone"
    assert zones["a.example."].notify == (Endpoint("192.0.2.53", 53),)
    assert zones["a.example."].transfer_key == "xfr"
    # The explicit table wins over the directory file and over the defaults.
    assert zones["explicit.example."].file == tmp_path / "other.zone"
    assert zones["explicit.example."].notify == ()
    assert zones["explicit.example."].allow_transfer == (ipaddress.ip_network("192.0.2.0/24"),)
    assert zones["plain.example."].allow_transfer == (ipaddress.ip_network("198.51.100.0/24"),)
    assert zones["plain.example."].notify == (Endpoint("192.0.2.53", 53),)
    assert settings.zone_directory == tmp_path / "zones.d"


@pytest.mark.parametrize("text, message", [
    ('[zone-defaults]\nfile = "x.zone"\n', "[zone-defaults] file: belongs in a zone's own table"),
    ('[zone-defaults]\nnotify = ["nope"]\n', "[zone-defaults] notify:"),
    ('[zone-defaults]\ncolour = 1\n', "[zone-defaults]: unknown key(s): colour"),
    ('[zone-directory]\npath = "missing.d"\n', "missing.d is not a directory"),
    ('[zone-directory]\n', "[zone-directory] path: is required"),
    ('[catalog]\nnotify = []\n', "[catalog] zone: is required"),
    ('[catalog]\nzone = "c.example"\n[zones."c.example"]\nfile = "c.zone"\n', "is also a served zone"),
    ('[server]\nnotify-source = "127.0.0.1.5"\n', "notify-source: not an IP address"),
    ('[server]\nnotify-source = ["127.0.0.1", "127.0.0.2"]\n', "at most one IPv4 and one IPv6"),
    ('[server]\nnotify-rate = 0\n', "notify-rate: must be at least 1"),
])
def test_many_zone_settings_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text)
    assert message in str(e.value)


def test_a_bad_file_name_in_the_zone_directory_is_named(tmp_path):
    (tmp_path / "zones.d").mkdir()
    (tmp_path / "zones.d" / "bad..name.zone").write_text("")
    with pytest.raises(ConfigError, match=r"zones.d/bad..name.zone"):
        load(tmp_path, '[zone-directory]\npath = "zones.d"\n')


def test_catalog_and_notify_settings(tmp_path):
    settings = load(tmp_path, """
[server]
notify-rate = 50
notify-source = ["127.0.0.9", "::1"]
[catalog]
zone = "catalog.example"
notify = ["127.0.0.1:5300"]
allow-transfer = ["127.0.0.1"]
""")
    assert settings.server.notify_rate == 50
    assert settings.server.notify_source == ("127.0.0.9", "::1")
    assert settings.catalog.name == dns.name.from_text("catalog.example")
    assert settings.catalog.file is None
    assert settings.transferable_zones[-1] is settings.catalog
    assert load(tmp_path, "").server.notify_rate == 500


def test_min_ttl_defaults_to_zero_and_is_read(tmp_path):
    assert load(tmp_path, "").resolver.min_ttl == 0
    assert load(tmp_path, "[resolver]\nmin-ttl = 300\n").resolver.min_ttl == 300


def test_allow_include_anywhere_is_off_by_default_and_reaches_every_zone(tmp_path):
    (tmp_path / "zones.d").mkdir()
    (tmp_path / "zones.d" / "d.example.zone").write_text("")
    text = '[zones."a.example"]\nfile = "a"\n[zone-directory]\npath = "zones.d"\n'
    settings = load(tmp_path, text)
    assert not settings.server.allow_include_anywhere
    assert [z.include_anywhere for z in settings.zones] == [False, False]
    settings = load(tmp_path, "[server]\nallow-include-anywhere = true\n" + text)
    assert settings.server.allow_include_anywhere
    assert [z.include_anywhere for z in settings.zones] == [True, True]


# -- update rules: names with * labels (ACME) ---------------------------------

ACME_KEY = '[keys.acme]\nsecret = "c2VjcmV0"\n'


def _rules(tmp_path, rules: str):
    (tmp_path / "z.zone").write_text("")
    settings = load(tmp_path, ACME_KEY + f'[zones."example.com"]\nfile = "z.zone"\nupdate = [ {rules} ]\n')
    return settings.zones[0].update


def _allowed(rules, name: str, rdtype=dns.rdatatype.TXT) -> bool:
    origin = dns.name.from_text("example.com.")
    key = dns.name.from_text("acme.")
    return any(rule.allows(key, dns.name.from_text(name), rdtype, origin) for rule in rules)


def test_a_star_label_stands_for_exactly_one_label(tmp_path):
    rules = _rules(tmp_path, '{ key = "acme", name = "_acme-challenge.*.example.com.", types = ["TXT"] }')
    assert _allowed(rules, "_acme-challenge.www.example.com.")
    assert _allowed(rules, "_ACME-Challenge.Shop.Example.COM.")  # names compare without case
    assert not _allowed(rules, "_acme-challenge.example.com.")  # * is one label, not none
    assert not _allowed(rules, "_acme-challenge.a.b.example.com.")  # ... nor two
    assert not _allowed(rules, "www.example.com.")
    assert not _allowed(rules, "x._acme-challenge.www.example.com.")  # not below it without subdomains
    assert not _allowed(rules, "_acme-challenge.www.example.com.", dns.rdatatype.A)


def test_a_relative_pattern_and_subdomains(tmp_path):
    rules = _rules(tmp_path, '{ key = "acme", name = "_acme-challenge.*", subdomains = true }')
    assert _allowed(rules, "_acme-challenge.www.example.com.")
    assert _allowed(rules, "x.y._acme-challenge.www.example.com.")
    assert not _allowed(rules, "_acme-challenge.example.com.")
    assert not _allowed(rules, "_acme-challenge.www.other.com.")


def test_the_readme_pair_of_rules_covers_www_and_the_apex(tmp_path):
    rules = _rules(
        tmp_path,
        '{ key = "acme", name = "_acme-challenge.example.com.", types = ["TXT"] }, '
        '{ key = "acme", name = "_acme-challenge.*.example.com.", types = ["TXT"] }',
    )
    assert _allowed(rules, "_acme-challenge.example.com.")
    assert _allowed(rules, "_acme-challenge.www.example.com.")
    assert not _allowed(rules, "_acme-challenge.a.www.example.com.")


@pytest.mark.parametrize("name", ["_acme-challenge.w*.example.com.", "*x.example.com.", "a.**.example.com."])
def test_a_star_inside_a_label_is_an_error(tmp_path, name):
    with pytest.raises(ConfigError, match=r"update entry 1: name: .*a \* stands for a whole label only"):
        _rules(tmp_path, f'{{ key = "acme", name = "{name}" }}')


def test_a_reload_gets_the_very_zone_settings_of_unchanged_zones(tmp_path):
    """The reloader finds unchanged zones by identity (aliasd.service.reload):
    the same objects while their inputs are equal, new ones where not."""
    (tmp_path / "zones.d").mkdir()
    for name in ("a.example", "b.example"):
        (tmp_path / "zones.d" / f"{name}.zone").write_text("")
    text = '[zones."x.example"]\nfile = "x"\n[zones."y.example"]\nfile = "y"\n' \
           '[zone-defaults]\nnotify = ["192.0.2.53"]\n[zone-directory]\npath = "zones.d"\n'
    first = load(tmp_path, text).zones
    again = load(tmp_path, text).zones
    assert [z.name.to_text() for z in again] == ["x.example.", "y.example.", "a.example.", "b.example."]
    assert all(a is b for a, b in zip(first, again, strict=True))
    # A file added: the others keep their objects; one table changed: only it is new.
    (tmp_path / "zones.d" / "c.example.zone").write_text("")
    changed = load(tmp_path, text.replace('file = "y"', 'file = "y"\nnotify = []')).zones
    by_name = {z.name.to_text(): z for z in changed}
    assert by_name["x.example."] is first[0] and by_name["a.example."] is first[2]
    assert by_name["y.example."] is not first[1] and by_name["y.example."].notify == ()
    assert by_name["c.example."].file == tmp_path / "zones.d" / "c.example.zone"
    # [zone-defaults] changed: every directory zone is made again, with it.
    moved = load(tmp_path, text.replace("192.0.2.53", "192.0.2.54")).zones
    assert all(z is not old for z, old in zip(moved[2:], first[2:]))
    assert {z.notify for z in moved[2:]} == {(Endpoint("192.0.2.54", 53),)}
    # A zone name whose letter case changed is another object (the case shows in answers).
    cased = load(tmp_path, text.replace('"x.example"', '"X.example"')).zones
    assert cased[0].name.labels[0] == b"X" and cased[0] is not first[0]


@pytest.mark.parametrize("text", ["example.com", "Example.COM.", "c1.example", "_tcp.a-b.example", "x" * 63 + ".test",
                                  ".".join(["a" * 60] * 4), "a..b", "-.example", "é.example", ".", "a" * 64 + ".test",
                                  "a\\.b.example"])
def test_a_plain_zone_name_is_read_as_dnspython_reads_it(text):
    """parse_zone_name splits plain names itself (fast at ten thousand
    zones): the same labels, letter case kept, as dns.name.from_text, or
    the same refusal."""
    from aliasd.base.config import parse_zone_name
    try:
        expected = dns.name.from_text(text)
    except dns.exception.DNSException:
        with pytest.raises(ValueError):
            parse_zone_name(text)
        return
    assert parse_zone_name(text).labels == expected.labels


def test_an_unchanged_file_gives_the_very_settings_of_the_last_load(tmp_path):
    """A SIGHUP with the configuration as it was is not parsed again (ten
    thousand [zones] tables took a second): the same Settings object."""
    (tmp_path / "z.zone").write_text("")
    text = '[zones."example.com"]\nfile = "z.zone"\nnotify = ["192.0.2.53"]\n'
    first = load(tmp_path, text)
    assert load_settings(tmp_path / "aliasd.toml") is first
    edited = load(tmp_path, text.replace("192.0.2.53", "192.0.2.54"))
    assert edited is not first and edited.zones[0].notify == (Endpoint("192.0.2.54", 53),)


def test_an_unchanged_file_still_reads_its_secret_files_and_zone_directory_again(tmp_path):
    """What the file names outside itself is read again: a rotated TSIG
    secret, zone files added to or removed from the zone directory, a TLS
    key that cannot be read any more."""
    (tmp_path / "zones.d").mkdir()
    (tmp_path / "zones.d" / "a.example.zone").write_text("")
    (tmp_path / "transfer.key").write_text(base64.b64encode(b"old secret").decode())
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("")
    text = ('[server]\nlisten = ["127.0.0.1"]\n[tls]\ncertificate = "cert.pem"\nkey = "key.pem"\n'
            '[keys.transfer]\nsecret-file = "transfer.key"\n[zone-directory]\npath = "zones.d"\n')
    first = load(tmp_path, text)
    assert first.keys[0].secret == b"old secret"
    (tmp_path / "transfer.key").write_text(base64.b64encode(b"new secret").decode())
    rotated = load_settings(tmp_path / "aliasd.toml")
    assert rotated.keys[0].secret == b"new secret"
    assert load_settings(tmp_path / "aliasd.toml") is rotated
    (tmp_path / "zones.d" / "b.example.zone").write_text("")
    added = load_settings(tmp_path / "aliasd.toml")
    assert [z.name.to_text() for z in added.zones] == ["a.example.", "b.example."]
    assert added.zones[0] is first.zones[0]  # (the zone kept: the reloader finds it by identity)
    (tmp_path / "zones.d" / "a.example.zone").unlink()
    assert [z.name.to_text() for z in load_settings(tmp_path / "aliasd.toml").zones] == ["b.example."]
    (tmp_path / "key.pem").unlink()
    with pytest.raises(ConfigError, match=r"\[tls\] key: cannot read .*key.pem"):
        load_settings(tmp_path / "aliasd.toml")


def test_zone_tables_of_the_same_options_are_each_their_own_zone(tmp_path):
    """Tables with the same options (checked once) still give each zone its
    name and file, and what depends on the zone is checked for each: an
    update rule's absolute name must be in that zone."""
    rule = 'update = [ { key = "acme", name = "_acme-challenge.a.example." } ]\n'
    tables = "".join(f'[zones."{n}.example"]\nfile = "{n}.zone"\nnotify = ["192.0.2.53"]\n' for n in "abc")
    zones = load(tmp_path, ACME_KEY + tables).zones
    assert [(z.name.to_text(), z.file) for z in zones] == [
        (f"{n}.example.", tmp_path / f"{n}.zone") for n in "abc"]
    assert all(z.notify == (Endpoint("192.0.2.53", 53),) for z in zones)
    text = ACME_KEY + "".join(f'[zones."{n}.example"]\nfile = "{n}.zone"\n{rule}' for n in "ab")
    with pytest.raises(ConfigError, match=r'\[zones."b.example"\] update: rule name .* is not in zone b.example'):
        load(tmp_path, text)


def test_signed_zones_are_those_with_dnssec_on_for_each_zones_tuple(tmp_path):
    """Settings.signed_zones (what a reload's signing steps pass over) is
    kept per zones tuple: another tuple, as with_runtime_zones makes, is
    looked at anew."""
    import dataclasses

    text = "".join(f'[zones."{n}.example"]\nfile = "{n}.zone"\n' + ("dnssec = true\n" if n in "bd" else "")
                   for n in "abcd")
    settings = load(tmp_path, text)
    assert [z.name.to_text() for z in settings.signed_zones] == ["b.example.", "d.example."]
    assert settings.signed_zones is settings.signed_zones
    more = dataclasses.replace(settings, zones=settings.zones + (dataclasses.replace(settings.zones[0],
                               name=dns.name.from_text("e.example."), dnssec=True),))
    assert [z.name.to_text() for z in more.signed_zones] == ["b.example.", "d.example.", "e.example."]
    assert [z.name.to_text() for z in settings.signed_zones] == ["b.example.", "d.example."]


def test_a_settled_zone_directory_is_listed_again_once_its_times_change(tmp_path, monkeypatch):
    """An unchanged configuration's zone directory is stat-ed, not listed,
    while its times are those of the last listing; an entry added, removed
    or renamed moves them, and the next load lists it again. (Modified just
    before a listing, within RACY_NS, it is listed every time: the test
    above.)"""
    from aliasd.base import config

    monkeypatch.setattr(config, "RACY_NS", 0)
    d = tmp_path / "zones.d"
    d.mkdir()
    (d / "a.example.zone").write_text("")
    time.sleep(0.05)  # (past the file system's tick: the listing is settled)
    first = load(tmp_path, '[zone-directory]\npath = "zones.d"\n')
    listed, listdir = [], os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: listed.append(path) or listdir(path))
    assert load_settings(tmp_path / "aliasd.toml") is first and listed == []
    time.sleep(0.05)
    (d / "b.example.zone").write_text("")
    assert [z.name.to_text() for z in load_settings(tmp_path / "aliasd.toml").zones] == ["a.example.", "b.example."]
    time.sleep(0.05)
    (d / "a.example.zone").rename(d / "c.example.zone")
    assert [z.name.to_text() for z in load_settings(tmp_path / "aliasd.toml").zones] == ["b.example.", "c.example."]
    assert len(listed) == 2
