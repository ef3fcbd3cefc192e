"""Log lines that a remote client can trigger, kept to a few per minute.

A refused transfer or a bad TSIG signature deserves a log line, but each
costs an attacker one (possibly spoofed) packet: unthrottled, a flood of
them fills the disk. Each kind of such event gets a LogThrottle: the first
``burst`` lines of every ``interval`` are logged, the rest are counted and
reported in one line with the first event of a later interval (a flood
that stops for good leaves its last count unreported; the statistics
counters still count every event).
"""

from __future__ import annotations

import time
from typing import Callable

from twisted.logger import Logger

log = Logger()


class LogThrottle:
    """Allows ``burst`` lines per ``interval`` seconds for one kind of event."""

    def __init__(self, what: str, burst: int = 20, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.what = what
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.count = 0
        self.suppressed = 0

    def allow(self) -> bool:
        """True if this event may be logged now."""
        now = self.clock()
        if now - self.started >= self.interval:
            if self.suppressed:
                log.warn(
                    "{count} more {what} were not logged in the last {seconds:.0f} s",
                    count=self.suppressed, what=self.what, seconds=now - self.started,
                )
            self.started, self.count, self.suppressed = now, 0, 0
        self.count += 1
        if self.count <= self.burst:
            return True
        self.suppressed += 1
        return False
