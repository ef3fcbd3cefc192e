"""Zones created at runtime (the HTTP API): which they are, in the state store.

Why a module of its own: such a zone has no file and no configuration
entry; the store alone says it exists. Its records are a dynamic zone's
journal (aliasd.update.dynamic: a snapshot, then each change), written
with its serials by the authority. This module keeps the rest in the
store's ``meta`` sub-database:

- ``runtime-zone:<zone>``: the zone exists, with its kind ("Native" or
  "Master") and its catalog generation;
- ``runtime-generation:<zone>``: the last generation given to that name,
  kept after a delete, so a zone created again gets a new catalog member
  label (RFC 9432 5.6, member reset) and secondaries drop the old copy.

A delete removes the zone's note, its journal and the digest of its view
in one transaction; its served serial stays (aliasd.base.state), so the
zone created again starts above it.
"""

from __future__ import annotations

import dataclasses
import json

import dns.name

from aliasd.base import store
from aliasd.base.state import ZoneState

_ZONE = b"runtime-zone:"
_GENERATION = b"runtime-generation:"


@dataclasses.dataclass(frozen=True)
class RuntimeZone:
    name: dns.name.Name
    kind: str
    generation: int


class RuntimeZones:
    """The zones created at runtime, as the store has them (read at start,
    then kept in memory; every change written first)."""

    def __init__(self, db):
        self.db = db
        # Read from the API's threads while the reactor changes them: the
        # zones are replaced whole with a new version (``served``,
        # ``unserved``), never changed in place, so a reader iterates a
        # consistent mapping; copying a dict keeps its keys' hashes (a
        # Name's hash is computed label by label in Python each time).
        zones = {}
        with db.reading() as txn:
            for key, value in db.items_under(txn, db.meta, _ZONE):
                entry = json.loads(value)
                name = store.name_of(key[len(_ZONE):])
                zones[name] = RuntimeZone(name, entry["kind"], entry["generation"])
        self._state: tuple[int, dict[dns.name.Name, RuntimeZone]] = (0, zones)
        self._made: tuple = (None, -1, {})  # ([zone-defaults], version of the zones, zone -> settings)

    @property
    def zones(self) -> dict[dns.name.Name, RuntimeZone]:
        return self._state[1]

    def served(self, entry: RuntimeZone) -> None:
        """The zone is served now (reactor thread)."""
        version, zones = self._state
        defaults, made_version, made = self._made
        if defaults is not None and made_version == version:
            made = {**made, entry.name: dataclasses.replace(defaults, name=entry.name, file=None)}
            self._made = (defaults, version + 1, made)
        self._state = (version + 1, {**zones, entry.name: entry})

    def unserved(self, name: dns.name.Name) -> RuntimeZone | None:
        """The zone is served no more (reactor thread); its entry."""
        version, zones = self._state
        zones = dict(zones)
        entry = zones.pop(name, None)
        defaults, made_version, made = self._made
        if defaults is not None and made_version == version:
            made = dict(made)
            made.pop(name, None)
            self._made = (defaults, version + 1, made)
        self._state = (version + 1, zones)
        return entry

    def __contains__(self, name: dns.name.Name) -> bool:
        return name in self.zones

    def settings(self, defaults) -> dict:
        """Zone -> its settings: ``defaults`` ([zone-defaults]) with its name
        and no file (made again only when the defaults change)."""
        version, zones = self._state
        made_from, made_version, made = self._made
        if made_version == version and (made_from is defaults or made_from == defaults):
            return made
        made = {name: dataclasses.replace(defaults, name=name, file=None) for name in zones}
        self._made = (defaults, version, made)
        return made

    def generations(self) -> dict[dns.name.Name, int]:
        """Zone -> catalog generation, for the zones that have one above 0."""
        return {name: z.generation for name, z in self.zones.items() if z.generation}

    def generation_of(self, name: dns.name.Name) -> int:
        """One zone's catalog generation (0: none, or not created at runtime)."""
        zone = self.zones.get(name)
        return zone.generation if zone is not None else 0

    def add(self, name: dns.name.Name, kind: str, journals) -> RuntimeZone:
        """Note a new zone in the store (in a thread; raises OSError), with
        the next generation of its name. What the store kept of an earlier
        zone of that name (a journal of a zone removed from the
        configuration) goes in the same transaction: the new zone starts
        from its own records."""
        key = store.key_of(name)
        with journals.lock, self.db.write() as txn:
            last = txn.get(_GENERATION + key, db=self.db.meta)
            generation = int(last) + 1 if last is not None else 0
            journals.remove(key)
            txn.put(_GENERATION + key, str(generation).encode(), db=self.db.meta)
            txn.put(_ZONE + key, json.dumps({"kind": kind, "generation": generation}).encode(), db=self.db.meta)
        return RuntimeZone(name, kind, generation)  # (served, and put in ``zones``, by the reactor)

    def remove(self, name: dns.name.Name, dynamic, state) -> None:
        """Forget a deleted zone in the store (in a thread; raises OSError):
        its note, its journal (aliasd.update.dynamic.DynamicZones.purge) and
        its view's digest (its serial stays), in one transaction."""
        with dynamic.files.lock, self.db.write() as txn:
            txn.delete(_ZONE + store.key_of(name), db=self.db.meta)
            dynamic.purge(name)
            served = state.load_zone(name)
            if served is not None:  # never the same view again: the next one moves the serial
                state.save_zone(name, ZoneState(served.serial, ""))

    def forget(self, name: dns.name.Name) -> None:
        """Drop a zone whose creation never finished (no records in the store)."""
        with self.db.write() as txn:
            txn.delete(_ZONE + store.key_of(name), db=self.db.meta)
        self.unserved(name)
