"""One thread for the state store's commits, woken through a pipe.

Why not the reactor's thread pool: handing it a job wakes a worker with
``threading.Condition.notify``, a lock release that keeps the GIL. On a busy
machine the kernel often switches to the woken worker right then, and the
reactor thread waits for a CPU while still holding the GIL, so neither runs:
under 8 concurrent UPDATE clients on 2 cores this was a tenth of the reactor's
time. ``os.write`` releases the GIL around the system call, so the worker
starts the commit (whose fsync runs without the GIL) while the reactor waits
for its CPU. Jobs run one at a time, in order: the authority has one batch
in flight, and LMDB takes one write transaction at a time anyway.
"""

from __future__ import annotations

import collections
import os
import threading

from twisted.internet import defer
from twisted.python.failure import Failure


class CommitThread:
    """Runs functions on one thread; each call's Deferred fires on the reactor."""

    def __init__(self, reactor, name: str = "aliasd-commit"):
        self.reactor = reactor
        self.name = name
        self._jobs: collections.deque = collections.deque()
        self._thread: threading.Thread | None = None
        self._wake_read = self._wake_write = -1
        self._starting = False  # a start is waiting for the reactor to run
        self._stopped = False

    def __call__(self, f, *args) -> defer.Deferred:
        d = defer.Deferred()
        if self._stopped:
            return d  # the reactor is stopping: nothing more runs (as in its thread pool), nothing is answered
        self._jobs.append((f, args, d))
        if self._thread is None:
            if not self.reactor.running:
                # Not before the reactor runs: twistd may still fork to run
                # as a daemon, and a thread does not follow a fork.
                if not self._starting:
                    self._starting = True
                    self.reactor.callWhenRunning(self._start)
                return d
            self._start()
        os.write(self._wake_write, b"\0")
        return d

    def _start(self) -> None:
        self._starting = False
        if self._thread is not None:
            return
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        # As the thread pool's workers: a job under way ends before the reactor stops.
        self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        os.write(self._wake_write, b"\0")  # jobs queued before the start

    def _run(self) -> None:
        jobs, call = self._jobs, self.reactor.callFromThread
        while True:
            os.read(self._wake_read, 4096)
            while jobs:
                f, args, d = jobs.popleft()
                if f is None:
                    return
                try:
                    result = f(*args)
                except BaseException:
                    call(d.errback, Failure())
                else:
                    call(d.callback, result)

    def stop(self) -> None:
        """Finish the jobs queued so far, then end the thread; later calls run nothing."""
        self._stopped = True
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._jobs.append((None, (), None))
        os.write(self._wake_write, b"\0")
        thread.join()
        os.close(self._wake_read)
        os.close(self._wake_write)
