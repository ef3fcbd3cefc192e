"""Which serial each secondary holds, as its transfer requests show it.

Why: no other primary tells an operator which secondaries lag. An IXFR
request carries the secondary's serial; a transfer sent to its end leaves
it with the serial served. Both are noted here per zone, keyed by the
request's source address and TSIG key name, so ``aliasd-ctl zone-status`` can show each
secondary's serial and how far behind it is, and a gauge can count those
that are behind. A secondary counts as behind when it has held a serial
older than the served one for longer than NOTIFY's retry span (by then it
was told, and would have asked). Each zone keeps at most ``per_zone``
secondaries (the least recently heard from are forgotten first) and its
last ``history`` serial changes, so the table stays small whatever asks.
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


class SecondaryTable:
    """Per zone: its secondaries' serials, and when its served serial moved."""

    per_zone = 64
    history = 64

    def __init__(self, clock, retry_span: float):
        self.clock = clock
        self.retry_span = retry_span
        self._zones: dict[dns.name.Name, collections.OrderedDict] = {}
        self._served: dict[dns.name.Name, collections.deque] = {}  # (serial, since) of recent versions

    def served(self, origin: dns.name.Name, serial: int) -> None:
        """The zone serves ``serial`` from now on (each new serial)."""
        changes = self._served.setdefault(origin, collections.deque(maxlen=self.history))
        if not changes or changes[-1][0] != serial:
            changes.append((serial, self.clock.seconds()))

    def heard(self, origin: dns.name.Name, address: str, key: str | None, serial: int | None, kind: str,
              complete: bool = False) -> None:
        """A transfer of ``origin`` to ``address`` (TSIG ``key``): asked for
        from ``serial`` (an IXFR; None: an AXFR), or sent to its end
        (``complete``, ``serial`` the one served)."""
        entries = self._zones.setdefault(origin, collections.OrderedDict())
        old = entries.pop((address, key), None)
        if serial is None and old is not None:
            serial = old.serial
        entries[(address, key)] = Secondary(address, key, serial, kind, self.clock.seconds(), complete)
        while len(entries) > self.per_zone:
            entries.popitem(last=False)

    def forget(self, origin: dns.name.Name) -> None:
        self._zones.pop(origin, None)
        self._served.pop(origin, None)

    def behind_since(self, origin: dns.name.Name, secondary: Secondary) -> float | None:
        """Since when a newer serial than the secondary's has been served
        (None: it is not behind)."""
        changes = self._served.get(origin)
        if not changes:
            return None
        if secondary.serial is None:  # an AXFR that did not finish, nothing known before
            return secondary.seen
        current = changes[-1][0]
        if not dns.serial.Serial(secondary.serial) < dns.serial.Serial(current):
            return None
        newer = [since for serial, since in changes if dns.serial.Serial(serial) > dns.serial.Serial(secondary.serial)]
        return newer[0] if newer else changes[0][1]

    def report(self, origin: dns.name.Name) -> list[dict]:
        """Each secondary of the zone: address, key, serial, and how far behind."""
        now = self.clock.seconds()
        changes = self._served.get(origin)
        current = changes[-1][0] if changes else None
        rows = []
        for secondary in self._zones.get(origin, {}).values():
            since = self.behind_since(origin, secondary)
            lag = (current - secondary.serial) % 2**32 if since is not None and secondary.serial is not None else None
            rows.append({
                "address": secondary.address,
                "key": secondary.key,
                "serial": secondary.serial,
                "kind": secondary.kind,
                "complete": secondary.complete,
                "seen_seconds_ago": round(now - secondary.seen, 1),
                "serials_behind": lag if since is not None else 0,
                "seconds_behind": round(now - since, 1) if since is not None else 0.0,
                "behind": since is not None and now - since > self.retry_span,
            })
        return rows

    def behind(self) -> int:
        """Secondaries of all zones that are behind (the gauge)."""
        return sum(row["behind"] for origin in list(self._zones) for row in self.report(origin))
