"""One DelayedCall kept due at a moment: the earliest entry of a heap.

Why: schedulers of many zones (key timing events, rollover steps) keep a
heap of moments and one timer for its head, never a timer per zone; this
is that timer, moved when the head changes and not otherwise.
"""

from __future__ import annotations

from collections.abc import Callable


class HeadTimer:
    """Calls ``fire()`` at the moment last given to ``at`` (``clock`` is the
    reactor, or a twisted.internet.task.Clock in tests)."""

    def __init__(self, clock, fire: Callable[[], None]):
        self.clock = clock
        self.fire = fire
        self._call = None
        self._at: float | None = None

    def at(self, when: float | None) -> None:
        """Be due at ``when`` (None: not at all); a timer already due then stays."""
        if self._call is not None and self._call.active():
            if when == self._at:
                return
            self._call.cancel()
        self._call, self._at = None, when
        if when is not None:
            self._call = self.clock.callLater(max(0.0, when - self.clock.seconds()), self._fired)

    def _fired(self) -> None:
        self._call = self._at = None
        self.fire()
