"""How long the reactor thread was held up: the measure of every stall.

A LoopingCall every ``interval`` seconds notes how late it runs: a query
that arrived meanwhile waited at least that long. The largest lateness,
the number of stalls over ``threshold`` and the longest pause of Python's
cyclic garbage collector (which also holds the reactor) are kept for the
statistics endpoint and logged when a stall is long, so an operator (and
bench/many_zones.py) can tell a slow upstream from a busy server.
"""

from __future__ import annotations

import gc
import time

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger

log = Logger()


class LagMonitor(service.Service):
    """Measures reactor lateness and garbage-collector pauses."""

    interval = 0.05
    threshold = 0.1  # seconds: a stall worth counting and logging

    def __init__(self, clock):
        self.clock = clock
        self.max_lag = 0.0
        self.stalls = 0
        self.max_gc_pause = 0.0
        self._expected: float | None = None
        self._gc_started: float | None = None
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = clock

    def startService(self) -> None:
        super().startService()
        gc.callbacks.append(self._gc)
        self._expected = self.clock.seconds()
        self._loop.start(self.interval, now=True)

    def stopService(self):
        super().stopService()
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)
        if self._loop.running:
            self._loop.stop()

    def _tick(self) -> None:
        now = self.clock.seconds()
        if self._expected is not None:
            lag = max(0.0, now - self._expected)
            self.max_lag = max(self.max_lag, lag)
            if lag >= self.threshold:
                self.stalls += 1
                log.info("reactor held up for {lag:.3f}s (longest garbage collection so far "
                         "{gc:.3f}s)", lag=lag, gc=self.max_gc_pause)
        self._expected = now + self.interval

    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self.max_gc_pause = max(self.max_gc_pause, time.perf_counter() - self._gc_started)
            self._gc_started = None
