"""Zones whose file does not load: that zone's problem, never the others'.

Why: one customer's typo must not stop every zone (BIND, Knot and NSD load
the rest and report the broken one). A zone whose file fails to load
serves the last good data the store holds for it (a dynamic zone's truth,
else the compiled snapshot of its last good file), as Knot serves from its
journal; its serial follows the recorded one, so it never goes back.
Without any, it answers SERVFAIL, as a zone still loading does, and stays
in the catalog: a member leaving it would make every secondary delete the
customer's zone. A zone that keeps serving what it had (a reload) is
counted the same way. Each zone's last error is kept here (``errors``:
origin -> ``file:line: reason``) for the log, the gauges and the control
tool, until its file loads again.
"""

from __future__ import annotations

import dns.name
from twisted.logger import Logger

from aliasd.base.config import ZoneSettings
from aliasd.zones.zonefile import ZoneFileError, ZoneSource

log = Logger()


class BrokenZones:
    """The zones whose file failed to load at the last attempt."""

    def __init__(self):
        self.errors: dict[dns.name.Name, str] = {}  # origin -> "file:line: reason"
        self.stale: set[dns.name.Name] = set()  # those serving older data

    def failed(self, zone: ZoneSettings, error: ZoneFileError, files, dynamic=None,
               current: ZoneSource | None = None, at: str = "start") -> ZoneSource | None:
        """What ``zone``, whose file just failed with ``error``, serves:
        ``current`` (what it served before a reload), else its last good
        data from the store, else None (SERVFAIL). Logged as one line."""
        origin = zone.name
        source = current
        how = "keeps serving its previous data"
        if source is None:
            how = "serves its last good data from the store"
            if dynamic is not None and zone.dynamic:
                source = dynamic.stored_source(origin, zone.file)
            if source is None:
                source = files.last_good(zone)
        self.errors[origin] = str(error)
        if source is None:
            self.stale.discard(origin)
            how = "answers SERVFAIL until its file is mended"
        else:
            self.stale.add(origin)
        prefix = "reload: " if at == "reload" else ""
        log.error("{prefix}zone {zone}: {error}; zone {zone} {how}",
                  prefix=prefix, zone=origin.to_text(), error=str(error), how=how)
        return source

    def loaded(self, origin: dns.name.Name) -> bool:
        """The zone's file loaded: it is broken no more; True if it was."""
        self.stale.discard(origin)
        return self.errors.pop(origin, None) is not None

    def keep_only(self, origins) -> None:
        """Forget zones no longer configured."""
        origins = set(origins)
        for origin in [o for o in self.errors if o not in origins]:
            del self.errors[origin]
        self.stale &= origins
