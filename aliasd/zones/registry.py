"""The zone registry: which zones are configured, which version each serves.

Why a unit of its own: this is what every query reads, and the only state
queries read. The authority (aliasd.service.authority) decides what to serve and
when; the registry holds the outcome in the form the query paths want it:
the served version per origin, and the indexes of the fast path
(aliasd.base.fastpath) on wire keys, kept in step with every version served.

All of it is changed in place, on the reactor thread only: a query sees
each zone's old version or its new one, never a mix within a zone. The
dicts are never replaced (the authority and the query handler hold them),
except ``sources``, which is the configured set as one dict.
"""

from __future__ import annotations

from typing import Mapping

import dns.name

from aliasd.base import store
from aliasd.zones.zone import ZoneBase, ZoneVersion
from aliasd.zones.zonefile import ZoneSource


class _NotLoaded:
    """Stands in ``zones_by_wire`` for a zone whose first version is not
    served yet, so that the negative fast path (aliasd.base.fastpath.missing_name)
    leaves its names to the full path, which answers SERVFAIL, instead of
    taking them for missing names of an enclosing zone."""

    base = ZoneBase(b"", {}, frozenset(), frozenset(), has_wildcards=True)


NOT_LOADED = _NotLoaded()


class ZoneRegistry:
    """The configured zone files and the version each zone serves now.

    ``versions`` holds only configured zones (a subset of ``sources``): a
    zone is configured before its first version is served, and stops being
    served when it stops being configured.
    """

    def __init__(self):
        self.sources: dict[dns.name.Name, ZoneSource] = {}
        self.versions: dict[dns.name.Name, ZoneVersion] = {}
        self.held: frozenset[dns.name.Name] = frozenset()  # configured, nothing to serve: see ``hold``
        # The fast path's view, on lower-case wire keys: origin -> version
        # (NOT_LOADED until the first is served), and the suffixes of each
        # zone's SOA names, which the negative fast path must avoid.
        self.zones_by_wire: dict[bytes, ZoneVersion | _NotLoaded] = {}
        self.soa_suffixes: dict[bytes, frozenset] = {}
        self._soa_suffix_sets: dict[bytes, frozenset] = {}  # shared by zones with equal SOA names
        # Moves whenever the set of zones changes: answers cached for the old
        # set (aliasd.base.fastpath) are not reused even where versions match.
        self.generation = 0
        self.name_count = 0  # names in every served version (sizes the answer cache)
        # Name -> closest enclosing configured origin, for ALIAS targets
        # only (bounded by the zone data): see ``origin_of``.
        self._origin_of: dict[dns.name.Name, dns.name.Name | None] = {}
        # Called as listener(method name, args) after every change below:
        # worker processes (aliasd.service.workers) replay each change by
        # the same call on their copy of the registry.
        self.listeners: list = []

    def _changed(self, method: str, *args) -> None:
        for listener in self.listeners:
            listener(method, args)

    # -- which zone ------------------------------------------------------

    def closest_source(self, name: dns.name.Name) -> ZoneSource | None:
        """The file of the closest enclosing configured zone, or None.

        The one closest-enclosing-zone search on names (``zone_for``,
        ``is_loading`` and ``origin_of`` use it); the negative fast path
        walks wire keys instead (aliasd.base.fastpath.missing_name). One lookup
        per label; what follows uses the file's own origin, whose hash is
        kept (aliasd.base.store.CachedName), not the name walked to.
        """
        return self._closest(name)[1]

    def _closest(self, name: dns.name.Name) -> tuple[dns.name.Name | None, ZoneSource | None]:
        """(origin, file) of the closest enclosing configured zone; a held
        zone (``hold``) has no file; (None, None) outside every zone."""
        sources, held = self.sources, self.held
        while True:
            source = sources.get(name)
            if source is not None:
                return source.origin, source
            if held and name in held:
                return name, None
            if len(name) <= 1:
                return None, None
            name = name.parent()

    def origin_of(self, name: dns.name.Name) -> dns.name.Name | None:
        """The origin of ``closest_source``, remembered until the set of
        zones changes.

        For ALIAS targets, which come from the zone files; never for the
        names of queries, which anyone can make up (the cache would grow
        without bound)."""
        try:
            return self._origin_of[name]
        except KeyError:
            source = self.closest_source(name)
            origin = self._origin_of[name] = source.origin if source is not None else None
            return origin

    def zone_for(self, name: dns.name.Name) -> ZoneVersion | None:
        """The version of the closest enclosing served zone, or None (also
        when that zone is configured but not loaded yet: its parent must
        not answer for it meanwhile)."""
        source = self.closest_source(name)
        return self.versions.get(source.origin) if source is not None else None

    def is_loading(self, name: dns.name.Name) -> bool:
        """Is ``name`` in a zone that is configured but not served yet?"""
        origin = self._closest(name)[0]
        return origin is not None and origin not in self.versions

    # -- changing what is served -----------------------------------------

    def configure(self, sources: Mapping[dns.name.Name, ZoneSource], zone_set_changed: bool) -> None:
        """From now on these zone files are configured (versions of removed
        zones are unpublished, new ones are ``expect``-ed, by the caller)."""
        if zone_set_changed:
            self.generation += 1
            self._origin_of = {}
        self.sources = sources
        self._changed("configure", sources, zone_set_changed)

    def set_source(self, source: ZoneSource, previous: ZoneSource | None = None, touched=()) -> None:
        """The zone's configured file is now ``source`` (a dynamic update's):
        ``previous`` with the owners whose keys are in ``touched`` changed
        (for the listeners: a worker derives it from its copy of ``previous``)."""
        self.sources[source.origin] = source
        self._changed("set_source", source, previous, touched)

    def hold(self, origins) -> None:
        """These configured zones have nothing to serve (their file is
        broken, and the store has no last good data): they answer SERVFAIL,
        as while loading, never REFUSED nor their parent zone's answer."""
        origins = frozenset(origins)
        if origins == self.held:
            return
        for origin in self.held - origins:
            if origin not in self.sources:  # (mended: its first version is on its way)
                self.zones_by_wire.pop(store.key_of(origin), None)
        for origin in origins:
            self.zones_by_wire.setdefault(store.key_of(origin), NOT_LOADED)
        self.held = origins
        self.generation += 1  # a parent zone's cached answers stop covering them
        self._origin_of = {}
        self._changed("hold", origins)

    def expect(self, origin_key: bytes) -> None:
        """A configured zone whose first version is not served yet."""
        self.zones_by_wire.setdefault(origin_key, NOT_LOADED)
        self._changed("expect", origin_key)

    def serve(self, version: ZoneVersion) -> None:
        """Serve ``version`` for its zone from now on (already recorded)."""
        origin = version.origin
        old = self.versions.get(origin)
        self.versions[origin] = version
        self.name_count += version.name_count - (old.name_count if old is not None else 0)
        wire = version.source.key
        self.zones_by_wire[wire] = version  # answers cached from ``old`` stop matching
        names = version.source.soa_wire[1][:-20].lower()  # MNAME and RNAME
        if old is None or old.source.soa_wire[1][:-20].lower() != names:
            suffixes = self._soa_suffix_sets.get(names)
            if suffixes is None:
                split = store.name_end(names)
                suffixes = frozenset(
                    suffix for name in (names[:split], names[split:])
                    for suffix in store.suffixes(name) if suffix != b"\0"
                )
                self._soa_suffix_sets[names] = suffixes
            self.soa_suffixes[wire] = suffixes
        self._changed("serve", version)

    def unpublish(self, origin: dns.name.Name) -> None:
        """Stop serving ``origin`` at once (its zone is no longer configured)."""
        old = self.versions.pop(origin, None)
        if old is not None:
            self.name_count -= old.name_count
        wire = store.key_of(origin)
        self.zones_by_wire.pop(wire, None)
        self.soa_suffixes.pop(wire, None)
        self._changed("unpublish", origin)
