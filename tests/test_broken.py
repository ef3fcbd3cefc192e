"""Unit tests beside tests/test_e2e_broken_zones.py: what a broken zone
leaves behind in the registry, the catalog, the bookkeeping and the
reload summary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dns.name

from aliasd.base.config import Settings, ZoneSettings
from aliasd.service.broken import BrokenZones
from aliasd.service.reload import CatalogMaker, _named
from aliasd.zones.registry import NOT_LOADED, ZoneRegistry
from aliasd.zones.zonefile import ZoneFileError
from tests.helpers import zone_source

N = dns.name.from_text
PARENT = "$ORIGIN example.test.\n@ 300 SOA ns1 h 1 3600 600 86400 60\n@ 300 NS ns1\n"


def test_a_held_zone_is_loading_and_never_its_parents_until_released():
    registry = ZoneRegistry()
    parent = zone_source("example.test", PARENT)
    registry.configure({parent.origin: parent}, zone_set_changed=True)
    generation = registry.generation
    registry.hold([N("sub.example.test")])
    assert registry.is_loading(N("www.sub.example.test"))  # SERVFAIL, not the parent's NXDOMAIN
    assert registry.zone_for(N("www.sub.example.test")) is None
    assert registry.closest_source(N("other.example.test")) is parent
    assert registry.zones_by_wire[b"\3sub\7example\4test\0"] is NOT_LOADED  # the fast path leaves it alone
    assert registry.generation > generation  # cached parent answers stop covering it
    registry.hold([])
    assert registry.closest_source(N("www.sub.example.test")) is parent
    assert b"\3sub\7example\4test\0" not in registry.zones_by_wire


def test_held_zones_stay_in_the_catalog():
    settings = dataclasses.replace(Settings(), catalog=ZoneSettings(N("catalog.test"), None))
    parent = zone_source("example.test", PARENT)
    maker = CatalogMaker()
    with_held = maker.add_to(settings, [parent], [N("broken.test")])[-1]
    assert len(with_held.records) > len(CatalogMaker().add_to(settings, [parent])[-1].records)
    assert maker.add_to(settings, [parent], [N("broken.test")])[-1] is with_held  # unchanged members


def test_errors_are_kept_until_the_zone_loads_and_forgotten_with_the_zone(tmp_path):
    class NoStore:
        def last_good(self, zone):
            return None

    broken = BrokenZones()
    zone = ZoneSettings(N("cust.test"), Path(tmp_path / "cust.test.zone"))
    error = ZoneFileError("cust.test.zone:7: A record: '192.0.2.300' is not an IPv4 address")
    assert broken.failed(zone, error, NoStore()) is None
    assert broken.errors == {zone.name: str(error)} and not broken.stale
    current = zone_source("example.test", PARENT)
    assert broken.failed(zone, error, NoStore(), current=current, at="reload") is current
    assert broken.stale == {zone.name}
    assert broken.loaded(zone.name) and not broken.errors and not broken.stale
    assert not broken.loaded(zone.name)  # it was not broken any more
    broken.failed(zone, error, NoStore())
    broken.keep_only([N("other.test")])
    assert not broken.errors


def test_the_summary_names_ten_zones_then_how_many_more():
    assert _named([]) == ""
    assert _named([N("b.test"), N("a.test")]) == " [a.test., b.test.]"
    names = [N(f"z{i:02d}.test") for i in range(12)]
    assert _named(names) == " [" + ", ".join(f"z{i:02d}.test." for i in range(10)) + " and 2 more]"


def test_the_reloader_keeps_each_zones_last_error_until_it_loads(clock, tmp_path):
    """``Reloader.errors`` (zone -> "file:line: reason") is what the control
    tool reads: filled at start (the options' BrokenZones), kept while the
    file is broken, gone once it loads."""
    import types

    from aliasd.resolve.resolution import AliasResolver
    from aliasd.service.authority import ZoneAuthority
    from aliasd.service.reload import Reloader
    from tests.helpers import ManualUpstream

    good = zone_source("cust.test", PARENT.replace("example.test.", "cust.test."))
    zone = ZoneSettings(good.origin, Path(tmp_path / "cust.test.zone"))
    settings = dataclasses.replace(Settings(), zones=(zone,))
    error = ZoneFileError(f"{zone.file}:7: A record: '192.0.2.300' is not an IPv4 address")
    options = types.SimpleNamespace(settings=settings, broken=BrokenZones(),
                                    files=types.SimpleNamespace(last_good=lambda zone: None, digest_of=lambda n: None))
    options.broken.failed(zone, error, options.files)  # at start
    handler = types.SimpleNamespace(access=None, keyring=None, updates=types.SimpleNamespace(rules=None))
    notifier = types.SimpleNamespace(targets=None, keys=None)
    authority = ZoneAuthority(clock=clock)
    reloader = Reloader(options, authority, handler, notifier, AliasResolver(ManualUpstream(), clock),
                        lambda u: None, reactor=clock)
    assert reloader.errors == {zone.name: str(error)}
    reloader._apply(({zone.name: error}, {}, 0), settings)
    assert reloader.errors.get(zone.name) == str(error)
    assert authority.is_loading(N("www.cust.test"))  # SERVFAIL meanwhile
    done = reloader._apply(({zone.name: good}, {}, 1), settings)
    while not done.called:
        clock.advance(0.1)
    assert reloader.errors.get(zone.name) is None and zone.name in authority.versions
