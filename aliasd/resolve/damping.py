"""Serial-rate damping: a token bucket per zone.

Why a unit of its own: a target that answers a different subset of a pool
on every query would otherwise move its zones' serials (and send NOTIFYs,
and fill the journals) on every refresh. Each zone may publish ``burst``
new versions at once, then one per ``interval`` seconds; changes that
arrive meanwhile are held and come out together in the next version (one
serial, one NOTIFY). Nothing is dropped: a held zone is queued again when
its bucket has a token. ``interval = 0`` turns damping off.

Only zones whose changes were damped have any state here: most zones never
change after their first version.
"""

from __future__ import annotations

from typing import Callable

import dns.name
from twisted.logger import Logger

# Logged as the authority always did: operators' filters keep working.
log = Logger(namespace="aliasd.service.authority")


class SerialDamper:
    """Token buckets for the zones' serials; ``flush(origin)`` is called
    when a zone held back may publish again."""

    def __init__(self, clock, interval: float, burst: int, flush: Callable[[dns.name.Name], None]):
        self.clock = clock
        self.interval = interval if clock is not None else 0.0
        self.burst = max(1, burst)
        self._flush = flush
        # origin -> [tokens, refilled at]: a full burst until first used.
        self._buckets: dict[dns.name.Name, list] = {}
        self._calls: dict[dns.name.Name, object] = {}  # origin -> its pending flush

    def take(self, origin: dns.name.Name) -> bool:
        """May this zone publish a new version now?"""
        if not self.interval:
            return True
        now = self.clock.seconds()
        bucket = self._buckets.get(origin)
        if bucket is None:
            bucket = self._buckets[origin] = [float(self.burst), now]
        tokens = min(float(self.burst), bucket[0] + (now - bucket[1]) / self.interval)
        bucket[1] = now
        if tokens >= 1.0 - 1e-9:  # float dust must not stall a flush
            bucket[0] = max(0.0, tokens - 1.0)
            return True
        bucket[0] = tokens
        return False

    def hold(self, origin: dns.name.Name) -> None:
        """The zone's changes wait for its next token (``take`` said no)."""
        call = self._calls.get(origin)
        if call is not None and call.active():
            return
        delay = max(0.001, (1.0 - self._buckets[origin][0]) * self.interval)
        self._calls[origin] = self.clock.callLater(delay, self._due, origin)
        log.info(
            "zone {zone}: ALIAS changes held back for {delay:.0f}s (serial-interval)",
            zone=origin.to_text(),
            delay=delay,
        )

    def _due(self, origin: dns.name.Name) -> None:
        self._calls.pop(origin, None)
        self._flush(origin)

    def published(self, origin: dns.name.Name) -> None:
        """The zone's held changes went out: no flush is due any more."""
        if self._calls:
            call = self._calls.pop(origin, None)
            if call is not None and call.active():
                call.cancel()

    def forget(self, origin: dns.name.Name) -> None:
        """The zone is removed or reloaded: a new file starts a new bucket."""
        self.published(origin)
        self._buckets.pop(origin, None)
