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
