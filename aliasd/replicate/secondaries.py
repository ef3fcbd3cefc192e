"""Which serial each secondary holds, as its transfer requests show it.

Why: no other primary tells an operator which secondaries lag. An IXFR
request carries the secondary's serial; a transfer sent to its end leaves
it with the serial served. Both are noted here per zone, keyed by the
request's source address and TSIG key name, so that ``aliasd-ctl
zone-status`` can show each secondary's serial and how far behind it is,
and a gauge can count those that are behind. A secondary counts as behind when it has held a serial
older than the served one for longer than NOTIFY's retry span (by then it
was told, and would have asked). Each zone keeps at most ``per_zone``
secondaries (the least recently heard from are forgotten first) and the
moment its served serial last moved, so the table stays small whatever asks.
"""

from __future__ import annotations

import collections
import dataclasses

import dns.name
import dns.serial


@dataclasses.dataclass
class Secondary:
    """One secondary of one zone, as last heard from."""

    address: str
    key: str | None  # the TSIG key name of its request, None when unsigned
    serial: int | None  # the serial it holds (None: an AXFR not finished, nothing known before)
    kind: str  # "IXFR" or "AXFR": its last request
    seen: float  # when
    complete: bool  # the transfer was sent to its end (it holds the served serial)
    behind_since: float | None = None  # since when the zone serves a newer serial than it holds


def _older(a: int | None, b: int) -> bool:
    return a is None or dns.serial.Serial(a) < dns.serial.Serial(b)


class SecondaryTable:
    """Per zone: its secondaries' serials, and since when the served one stands."""

    per_zone = 64

    def __init__(self, clock, retry_span: float):
        self.clock = clock
        self.retry_span = retry_span
        self._zones: dict[dns.name.Name, collections.OrderedDict] = {}
        self._current: dict[dns.name.Name, tuple[int, float]] = {}  # zone -> (serial served, since)

    def served(self, origin: dns.name.Name, serial: int) -> None:
        """The zone serves ``serial`` from now on (each new serial): the
        secondaries that held the previous one are behind from now."""
        previous = self._current.get(origin)
        if previous is not None and previous[0] == serial:
            return
        now = self.clock.seconds()
        self._current[origin] = (serial, now)
        for secondary in self._zones.get(origin, {}).values():
            if secondary.behind_since is None and _older(secondary.serial, serial):
                secondary.behind_since = now

    def heard(self, origin: dns.name.Name, address: str, key: str | None, serial: int | None, kind: str,
              complete: bool = False) -> None:
        """A transfer of ``origin`` to ``address`` (TSIG ``key``): asked for
        from ``serial`` (an IXFR; None: an AXFR), or sent to its end
        (``complete``, ``serial`` the one served)."""
        entries = self._zones.setdefault(origin, collections.OrderedDict())
        old = entries.pop((address, key), None)
        now = self.clock.seconds()
        if serial is None and old is not None:
            serial = old.serial
        current = self._current.get(origin)
        since = None
        if current is not None and _older(serial, current[0]):
            # Behind since it was last known to be, or (first heard) since the served serial stands.
            since = old.behind_since if old is not None and old.behind_since is not None else (
                current[1] if serial is not None else now)
        entries[(address, key)] = Secondary(address, key, serial, kind, now, complete, since)
        while len(entries) > self.per_zone:
            entries.popitem(last=False)

    def forget(self, origin: dns.name.Name) -> None:
        self._zones.pop(origin, None)
        self._current.pop(origin, None)

    def report(self, origin: dns.name.Name) -> list[dict]:
        """Each secondary of the zone: address, key, serial, and how far behind."""
        now = self.clock.seconds()
        current = self._current.get(origin)
        rows = []
        for secondary in self._zones.get(origin, {}).values():
            since = secondary.behind_since
            lag = 0
            if since is not None and current is not None and secondary.serial is not None:
                lag = (current[0] - secondary.serial) % 2**32
            rows.append({
                "address": secondary.address,
                "key": secondary.key,
                "serial": secondary.serial,
                "kind": secondary.kind,
                "complete": secondary.complete,
                "seen_seconds_ago": round(now - secondary.seen, 1),
                "serials_behind": lag,
                "seconds_behind": round(now - since, 1) if since is not None else 0.0,
                "behind": since is not None and now - since > self.retry_span,
            })
        return rows

    def behind(self) -> int:
        """Secondaries of all zones that are behind (the gauge; no scan of history)."""
        limit = self.clock.seconds() - self.retry_span
        return sum(1 for entries in self._zones.values() for s in entries.values()
                   if s.behind_since is not None and s.behind_since < limit)
