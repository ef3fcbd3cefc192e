"""Unit tests: the state store's commit thread (aliasd.base.committhread)."""

from __future__ import annotations

import queue
import threading

from aliasd.base.committhread import CommitThread


class _Reactor:
    """callFromThread queued for the test's thread, as the reactor's are."""

    def __init__(self):
        self.calls: queue.Queue = queue.Queue()
        self.shutdown: list = []
        self.running = False
        self.when_running: list = []

    def callWhenRunning(self, f):
        self.when_running.append(f)

    def callFromThread(self, f, *args):
        self.calls.put((f, args))

    def addSystemEventTrigger(self, phase, event, f):
        self.shutdown.append((phase, event, f))

    def run_one(self):
        f, args = self.calls.get(timeout=10)
        f(*args)


def test_jobs_run_in_order_on_one_thread_and_their_results_come_back_on_the_reactor():
    reactor = _Reactor()
    commits = CommitThread(reactor)
    ran = []

    def job(i):
        ran.append((i, threading.current_thread().name))
        return i * 10

    calls = [commits(job, 0)]
    assert reactor.calls.empty() and len(reactor.when_running) == 1  # no thread before the reactor runs (a fork)
    reactor.running = True
    calls += [commits(job, i) for i in range(1, 5)] + [commits(lambda: 1 // 0)]
    reactor.when_running.pop()()
    results = []
    for d in calls:
        d.addBoth(results.append)
    assert results == []  # nothing fires off the reactor's thread
    for _ in calls:
        reactor.run_one()
    assert ran == [(i, "aliasd-commit") for i in range(5)]
    assert results[:5] == [0, 10, 20, 30, 40] and results[5].check(ZeroDivisionError)
    [(phase, event, stop)] = reactor.shutdown
    assert (phase, event) == ("during", "shutdown")
    stop()  # the reactor stops: the thread ends
    assert not any(t.name == "aliasd-commit" for t in threading.enumerate())
    late = commits(job, 5)  # during the rest of the shutdown: nothing runs, nothing answers
    assert not late.called and reactor.calls.empty() and ran[-1][0] == 4
    assert not any(t.name == "aliasd-commit" for t in threading.enumerate())
