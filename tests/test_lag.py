"""Unit tests: the reactor lag monitor (task.Clock)."""

from __future__ import annotations

import gc

from aliasd.base.lag import LagMonitor


def test_lateness_is_measured_and_long_stalls_counted(clock, log_events):
    monitor = LagMonitor(clock)
    monitor.startService()
    try:
        clock.advance(0.05)
        clock.advance(0.05)
        assert monitor.max_lag == 0.0 and monitor.stalls == 0
        clock.advance(0.3)  # the tick ran 0.25 s late: something held the reactor
        assert abs(monitor.max_lag - 0.25) < 1e-9
        assert monitor.stalls == 1
        assert [e for e in log_events if "reactor held up" in e.get("log_format", "")]
        gc.collect()
        assert monitor.max_gc_pause > 0.0
    finally:
        monitor.stopService()
    assert monitor._gc not in gc.callbacks
