"""Worker processes: forked, fed every change, supervised.

Why a module of its own: this is the main process's side of
``[server] workers`` (each worker's loop is aliasd.listen.worker). Once
the zones loaded at start are served, the main process forks the workers
and stops reading its UDP sockets; the workers answer from the same
sockets. The main process keeps everything that writes or schedules.

- Every change of the zone registry is streamed to every worker
  (aliasd.listen.frames), the changes of one reactor turn in one frame.
- ``synced()`` fires once every live worker has acknowledged the changes
  made so far: the authority announces a version (NOTIFY, the answer to an
  UPDATE or API call) only then, so nobody learns of a serial that some
  worker does not serve yet.
- A worker that dies is forked again at once (a crash loop backs off); one
  that does not acknowledge within ``ACK_TIMEOUT`` is killed and replaced.
  Forked from the main process, a replacement starts with current data.
- After a reload that changed the configuration every worker is replaced
  by a fresh fork, one by one, so every setting reaches every worker
  without being streamed (a reload of zone files alone is streamed).
- Stopping: SIGTERM to every worker, SIGKILL after ``STOP_TIMEOUT``. A
  worker also dies with the main process (PR_SET_PDEATHSIG, channel EOF).
- The workers' counters are added into the main process's statistics, and
  their log events are logged here, named ``[worker N]``.
"""

from __future__ import annotations

import collections
import gc
import os
import signal
import socket
import time

from twisted.application import service
from twisted.internet import defer, protocol, task
from twisted.internet.interfaces import IFileDescriptorReceiver
from twisted.logger import Logger, LogLevel, globalLogPublisher
from zope.interface import implementer

from aliasd.listen import frames
from aliasd.listen.connections import SharedConnectionCounts
from aliasd.listen.worker import Worker, die_with_parent

log = Logger()

#: Seconds a worker may take to acknowledge a change before it is replaced.
ACK_TIMEOUT = 2.0
#: Seconds stopping workers get before SIGKILL.
STOP_TIMEOUT = 2.0
#: Deaths within ``CRASH_WINDOW`` seconds after which a restart waits ``CRASH_DELAY``.
CRASH_DEATHS = 3
CRASH_WINDOW = 10.0
CRASH_DELAY = 1.0
#: Seconds a scrape waits for the workers' counts.
COUNTS_TIMEOUT = 0.5
#: Visibility delays kept for the ``aliasd_worker_sync_seconds`` quantiles.
SYNC_SAMPLES = 1024


class _Worker:
    """The main process's record of one worker process."""

    def __init__(self, number: int, pid: int, acked: int):
        self.number = number
        self.pid = pid
        self.acked = acked  # the last change frame it applied
        self.channel: _Channel | None = None
        self.stopping = False  # told to stop (replaced, or the server stops)
        self.status: int | None = None  # its exit status, once reaped
        self.ready = False  # its loop runs (it said so)
        self.forked = time.monotonic()
        self.reaped = defer.Deferred()
        self.row = number  # its row of the shared TCP connection counts

    def __str__(self) -> str:
        return f"worker {self.number} (pid {self.pid})"


@implementer(IFileDescriptorReceiver)
class _Channel(protocol.Protocol):
    """The main process's end of one worker's control channel. TCP
    connections a worker hands over come as descriptors (SCM_RIGHTS), each
    before the frame that says what was read of it."""

    def __init__(self, pool: "WorkerPool", worker: _Worker):
        self.pool = pool
        self.worker = worker
        self.reader = frames.FrameReader()
        self.descriptors: collections.deque[int] = collections.deque()

    def connectionMade(self) -> None:
        self.worker.channel = self

    def fileDescriptorReceived(self, descriptor: int) -> None:
        self.descriptors.append(descriptor)

    def dataReceived(self, data: bytes) -> None:
        for kind, seq, payload in self.reader.feed(data):
            if kind == frames.HAND_OVER:
                if not self.descriptors:
                    log.error("{worker} handed over a TCP connection without its descriptor", worker=str(self.worker))
                    continue
                self.pool.adopt(self.worker, self.descriptors.popleft(), *payload)
            else:
                self.pool.frame_received(self.worker, kind, seq, payload)

    def connectionLost(self, reason=None) -> None:
        while self.descriptors:
            os.close(self.descriptors.popleft())
        self.worker.channel = None
        self.pool.channel_lost(self.worker)


class _ChannelFactory(protocol.Factory):
    noisy = False

    def __init__(self, pool: "WorkerPool", worker: _Worker):
        self.pool = pool
        self.worker = worker

    def buildProtocol(self, addr):
        return _Channel(self.pool, self.worker)


class WorkerPool(service.Service):
    """``count`` worker processes answering UDP for the main process.

    ``protocols``: the main's DNSDatagramProtocol per listening UDP socket;
    ``status``: the CHAOS status reporter, told which worker a forwarded
    status query came through; ``logging``: the top service
    (aliasd.service.logsetup), whose twistd observer a worker stops writing
    to (its events come here instead).
    """

    #: Reactor time one slice of the start's work may take (seconds).
    slice_seconds = 0.01

    def __init__(self, count: int, reactor, authority, protocols: list, stats, *,
                 limiter=None, status=None, logging=None, tcp_listeners: list = (), tcp_factory=None):
        self.count = count
        self.reactor = reactor
        self.authority = authority
        self.protocols = protocols
        self.tcp_listeners = list(tcp_listeners)  # aliasd.listen.transports.StreamListener
        self.tcp_factory = tcp_factory
        self.stats = stats
        self.limiter = limiter
        self.status = status
        self.logging = logging
        self.workers: dict[int, _Worker] = {}  # pid -> every worker not reaped yet
        self.shared = frames.SharedObjects()
        self.restarts = 0
        self.started = False  # forked the first workers
        # Start-up work still running besides the reactor (the snapshot's
        # save): its memory, freed after a fork, would be copied into pages
        # that the workers alone then hold.
        self.fork_after: list[defer.Deferred] = []
        self.answering_here = True  # the main process reads its UDP sockets (until the workers are ready)
        self._seq = 0  # the last change frame sent
        self._pending: list[tuple[str, tuple]] = []
        self._pending_since = 0.0
        self._flush_call = None
        self._sent_at: dict[int, tuple[float, float]] = {}  # seq -> (first change, sent), until all acked
        self._waiters: list[tuple[int, defer.Deferred]] = []
        self._deaths: collections.deque = collections.deque(maxlen=CRASH_DEATHS)
        self.sync_seconds: collections.deque = collections.deque(maxlen=SYNC_SAMPLES)
        self._counts_asked = 0  # the last scrape's request to the workers
        self._collecting: list[tuple[int, set, defer.Deferred]] = []  # scrapes waiting for counts
        self._watch = task.LoopingCall(self._check_acks)
        self._watch.clock = reactor
        if count >= 2:  # (one process: the metrics of today, no more)
            self._register_metrics()

    # -- start and stop --------------------------------------------------

    def startService(self) -> None:
        super().startService()
        if self.count >= 2:
            # After the zones loaded at start are served: forked then, the
            # workers share those pages and start with every zone.
            self.reactor.callWhenRunning(self._start_when_settled)

    def _start_when_settled(self) -> defer.Deferred:
        """Fork once the zones loaded at start are served and what runs
        beside them (``fork_after``) is done."""
        d = self.authority.when_idle()
        d.addCallback(lambda _: defer.gatherResults(self.fork_after))
        return d.addCallback(self._start)

    def _start(self, _=None) -> defer.Deferred | None:
        """Give every served object its token in slices, then fork: at ten
        thousand zones the tokens took 0.05-0.12 s of the reactor at once."""
        if not self.running or self.started:
            return None
        self.started = True
        slices = task.Cooperator(
            terminationPredicateFactory=lambda: _until(time.perf_counter() + self.slice_seconds),
            scheduler=lambda f: self.reactor.callLater(0, f),
        )
        d = slices.coiterate(self._share(list(self._served_parts())))
        d.addCallback(self._fork_all)
        d.addErrback(lambda failure: log.failure("starting the workers", failure))
        return d

    def _served_parts(self):
        """What a worker inherits by the fork, to be known by the same token."""
        registry = self.authority.registry
        yield from registry.sources.values()
        for v in registry.versions.values():
            yield v.source
            yield v.base

    def _share(self, objects: list):
        """Token the objects, yielding between steps (a Cooperator's slices)."""
        shared = self.shared
        for obj in objects:
            if shared.token(obj) is None:
                shared.add(obj)
            yield None

    def _fork_all(self, _=None) -> None:
        if not self.running:
            return
        registry = self.authority.registry
        # What the registry served while the slices ran (lookups only: cheap).
        for _none in self._share(list(self._served_parts())):
            pass
        self.shared.sent_sources = dict(registry.sources)  # what every worker has by the fork
        registry.listeners.append(self._changed)
        self.authority.synced = self.synced
        self.stats.refresh = self.collect  # a scrape counts what every worker answered before it
        if self.tcp_factory is not None:  # the TCP limits hold for all the processes together
            # (rows: the main process, and twice the workers: one being
            # replaced and its successor both run for a while)
            self.tcp_factory.counts = SharedConnectionCounts(2 * self.count + 1, self.tcp_factory.counts)
        gc.collect()
        gc.freeze()  # forked pages stay shared: the collector does not write to them
        for number in range(1, self.count + 1):
            self._fork(number)
        self._watch.start(ACK_TIMEOUT / 4, now=False)
        # The main process answers until every worker reads the sockets.

    def _all_ready(self) -> None:
        if self.answering_here and all(w.ready for w in self.live()) and self.live():
            self.answering_here = False
            for udp in self.protocols:
                udp.transport.stopReading()
            if self.tcp_factory is not None:
                for listener in self.tcp_listeners:
                    listener.port.stopReading()  # (connections handed over still come here)
            log.info("{count} workers answer UDP and TCP queries: {workers}", count=len(self.live()),
                     workers=", ".join(str(w) for w in self.live()))

    def stopService(self) -> defer.Deferred | None:
        super().stopService()
        if self._watch.running:
            self._watch.stop()
        workers = list(self.workers.values())
        for worker in workers:
            worker.stopping = True
            _signal(worker.pid, signal.SIGTERM)
        if not workers:
            return None
        waits = [w.reaped for w in workers]
        timer = self.reactor.callLater(STOP_TIMEOUT, self._kill_all)
        done = defer.DeferredList(waits)

        def finished(result):
            if timer.active():
                timer.cancel()
            return None

        return done.addBoth(finished)

    def _kill_all(self) -> None:
        for worker in self.workers.values():
            log.warn("{worker} did not stop within {seconds} s; killed", worker=str(worker), seconds=STOP_TIMEOUT)
            _signal(worker.pid, signal.SIGKILL)

    def live(self) -> list[_Worker]:
        """Workers whose channel is open (they answer queries)."""
        return sorted((w for w in self.workers.values() if w.channel is not None), key=lambda w: w.number)

    # -- forking ---------------------------------------------------------

    def _fork(self, number: int) -> _Worker:
        """A new worker, forked now: it starts with every change so far."""
        self._flush()
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # A row of the shared connection counts no live worker writes (one
        # being replaced still holds its own until it is reaped).
        used = {w.row for w in self.workers.values()}
        row = next((r for r in range(1, 2 * self.count + 1) if r not in used), number)
        parent = os.getpid()  # now: twistd's daemon fork changed it since this service was made
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            try:
                parent_end.close()
                self._child(number, child_end, row, parent)
            finally:
                os._exit(70)
        child_end.close()
        worker = _Worker(number, pid, self._seq)
        worker.row = row
        self.workers[pid] = worker
        self.reactor.adoptStreamConnection(parent_end.fileno(), socket.AF_UNIX, _ChannelFactory(self, worker))
        parent_end.close()
        return worker

    def _child(self, number: int, channel: socket.socket, row: int, parent: int) -> None:
        """In the worker: its own copies of what the main process shares
        set up for answering, then the worker's loop."""
        # Until the worker's loop handles it, SIGTERM ends the worker at
        # once: the main's handler (Twisted's) would only wake its reactor.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        die_with_parent()
        if os.getppid() != parent:  # the main process died before prctl
            os._exit(0)
        registry = self.authority.registry
        registry.listeners = []
        observer = getattr(self.logging, "observer", None)
        if observer is not None:
            globalLogPublisher.removeObserver(observer)
        self.stats.counters.clear()  # this worker's counts only, sent to the main process
        if self.limiter is not None:  # a client as a whole: about the configured rate
            self.limiter.rates = tuple(rate / self.count for rate in self.limiter.rates)
        factory = self.tcp_factory
        if factory is not None:  # its connections counted in its own row of the shared counts
            factory.counts.row = row
        Worker(number, channel, self.protocols, registry, self.shared.objects(), self.stats,
               tcp_listeners=[listener.port.socket for listener in self.tcp_listeners],
               tcp_factory=factory).run()

    # -- the change stream and the barrier --------------------------------

    def _changed(self, method: str, args: tuple) -> None:
        if not self._pending:
            self._pending_since = time.monotonic()
            self._flush_call = self.reactor.callLater(0, self._flush)
        self._pending.append((method, args))

    def _flush(self) -> None:
        """Send the changes of this turn to every worker, as one frame."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if not self._pending:
            return
        calls, self._pending = self._pending, []
        self._seq += 1
        frame = frames.encode(frames.CHANGES, self._seq, frames.encode_changes(self.shared, calls))
        self._sent_at[self._seq] = (self._pending_since, time.monotonic())
        for worker in self.live():
            worker.channel.transport.write(frame)
        self._check_synced()

    def synced(self) -> defer.Deferred:
        """Fires once every live worker answers from what the registry
        holds now (at once without workers)."""
        target = self._seq + (1 if self._pending else 0)
        if self._lowest_acked() >= target:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiters.append((target, d))
        return d

    def _lowest_acked(self) -> float:
        return min((w.acked for w in self.live()), default=float("inf"))

    def _check_synced(self) -> None:
        lowest = self._lowest_acked()
        if lowest == float("inf"):
            lowest = self._seq
        now = time.monotonic()
        for seq in [s for s in self._sent_at if s <= lowest]:
            changed, _ = self._sent_at.pop(seq)
            if self.live():
                self.sync_seconds.append(now - changed)
        ready = [d for target, d in self._waiters if target <= lowest]
        if ready:
            self._waiters = [(t, d) for t, d in self._waiters if t > lowest]
            for d in ready:
                d.callback(None)

    def _check_acks(self) -> None:
        """Replace a worker that has not applied a change for ACK_TIMEOUT."""
        now = time.monotonic()
        for worker in self.live():
            if not worker.ready and now - worker.forked > ACK_TIMEOUT:
                log.warn("{worker} did not start within {seconds} s; replacing it",
                         worker=str(worker), seconds=ACK_TIMEOUT)
                _signal(worker.pid, signal.SIGKILL)
                continue
            pending = self._sent_at.get(worker.acked + 1)
            if pending is not None and not worker.stopping and now - pending[1] > ACK_TIMEOUT:
                log.warn("{worker} did not apply the changes sent {seconds:.1f} s ago; replacing it",
                         worker=str(worker), seconds=now - pending[1])
                _signal(worker.pid, signal.SIGKILL)

    # -- what workers send -----------------------------------------------

    def frame_received(self, worker: _Worker, kind: str, seq: int, payload) -> None:
        if kind == frames.ACK:
            worker.acked = seq
            self._check_synced()
        elif kind == frames.READY:
            worker.ready = True
            self._all_ready()
        elif kind == frames.STATS:
            self.stats.counters.update(payload)
            answered = sum(v for (metric, _), v in payload.items() if metric == "aliasd_queries_total")
            if answered:
                self.stats.inc("aliasd_worker_queries_total", answered, worker=str(worker.number))
            if seq:  # a scrape's answer: counted above before the scrape renders
                self._counted(worker, seq)
        elif kind == frames.LOG:
            level, namespace, text = payload
            Logger(namespace=namespace).emit(LogLevel.levelWithName(level), "[worker {worker}] {text}",
                                             worker=worker.number, text=text)
        elif kind == frames.FORWARD:
            index, addr, data = payload
            self._answer_forwarded(worker, index, addr, data)

    def adopt(self, worker: _Worker, descriptor: int, family: int, unread: bytes) -> None:
        """A TCP connection a worker handed over (its next message is one
        the main process answers): served here from now on, starting with
        the octets the worker read of it."""
        try:
            transport = self.reactor.adoptStreamConnection(descriptor, family, self.tcp_factory)
        except OSError as e:  # the client went away meanwhile
            log.debug("a TCP connection from {worker} could not be adopted: {error}", worker=str(worker), error=e)
            transport = None
        finally:
            os.close(descriptor)  # (the reactor holds its own duplicate)
        if transport is None or not unread:
            return
        if self.status is not None:
            self.status.via = str(worker)
        try:
            transport.protocol.dataReceived(unread)
        finally:
            if self.status is not None:
                self.status.via = None

    def _answer_forwarded(self, worker: _Worker, index: int, addr, data: bytes) -> None:
        """A message a worker does not answer: answered here, from the
        main process's copy of the socket it came in on."""
        if self.status is not None:
            self.status.via = str(worker)
        try:
            self.protocols[index].datagramReceived(data, addr)
        finally:
            if self.status is not None:
                self.status.via = None

    # -- deaths and replacements -----------------------------------------

    def channel_lost(self, worker: _Worker) -> None:
        self._check_synced()  # it no longer holds the barrier back
        self._counted(worker, self._counts_asked)  # nor a scrape
        self._reap(worker, time.monotonic())

    def _reap(self, worker: _Worker, since: float) -> None:
        try:
            pid, status = os.waitpid(worker.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = worker.pid, 0
        if pid == 0:  # its channel closed first: it exits now, or is made to
            if time.monotonic() - since > STOP_TIMEOUT:
                _signal(worker.pid, signal.SIGKILL)
            self.reactor.callLater(0.01, self._reap, worker, since)
            return
        worker.status = status
        del self.workers[worker.pid]
        counts = getattr(self.tcp_factory, "counts", None)
        if isinstance(counts, SharedConnectionCounts):
            counts.clear_row(worker.row)  # its connections died with it (or were handed over)
        if not worker.stopping and self.running:
            self._restart(worker)
        worker.reaped.callback(status)

    def _restart(self, dead: _Worker) -> None:
        now = time.monotonic()
        self._deaths.append(now)
        self.restarts += 1
        delay = CRASH_DELAY if len(self._deaths) == CRASH_DEATHS and now - self._deaths[0] < CRASH_WINDOW else 0

        def again():
            if not self.running:
                return
            worker = self._fork(dead.number)
            log.warn("{dead} died ({how}); started again as pid {pid}",
                     dead=str(dead), how=_how(dead.status), pid=worker.pid)

        if delay:
            log.warn("{dead} died ({how}); {count} deaths in {window:.0f} s: starting it again in {delay:.0f} s",
                     dead=str(dead), how=_how(dead.status), count=CRASH_DEATHS, window=CRASH_WINDOW, delay=delay)
            self.reactor.callLater(delay, again)
        else:
            again()

    def replace_all(self) -> defer.Deferred:
        """Replace every worker by a fresh fork, one by one (after a reload
        that changed the configuration: every setting reaches every worker).
        The new one starts
        before the old one is told to stop."""
        if not self.started or not self.running:
            return defer.succeed(0)
        old = self.live()

        @defer.inlineCallbacks
        def one_by_one():
            replaced = 0
            for worker in old:
                if not self.running or worker.pid not in self.workers:
                    continue
                worker.stopping = True
                self._fork(worker.number)
                _signal(worker.pid, signal.SIGTERM)
                kill = self.reactor.callLater(STOP_TIMEOUT, _signal, worker.pid, signal.SIGKILL)
                yield worker.reaped
                if kill.active():
                    kill.cancel()
                replaced += 1
            log.info("reload: {count} worker(s) replaced", count=replaced)
            return replaced

        return one_by_one()

    # -- statistics --------------------------------------------------------

    def collect(self) -> defer.Deferred:
        """Fires once every live worker has sent its counts (a scrape: what
        was answered before it is counted), or after ``COUNTS_TIMEOUT``."""
        live = self.live()
        if not live:
            return defer.succeed(None)
        self._counts_asked += 1
        asked = self._counts_asked
        d = defer.Deferred()
        entry = (asked, {w.pid for w in live}, d)
        self._collecting.append(entry)
        for worker in live:
            worker.channel.transport.write(frames.encode(frames.COUNTS, asked, None))
        self.reactor.callLater(COUNTS_TIMEOUT, self._collected, entry)
        return d

    def _counted(self, worker: _Worker, asked: int) -> None:
        for entry in list(self._collecting):
            if entry[0] <= asked:
                entry[1].discard(worker.pid)
                if not entry[1]:
                    self._collected(entry)

    def _collected(self, entry) -> None:
        if entry in self._collecting:
            self._collecting.remove(entry)
            entry[2].callback(None)

    def _register_metrics(self) -> None:
        self.stats.gauge("aliasd_workers", "Worker processes answering queries.",
                         lambda: [({}, len(self.live()))])
        self.stats.counter("aliasd_worker_restarts_total", "Worker processes started again after they died.",
                           lambda: self.restarts)

        def quantiles():
            samples = sorted(self.sync_seconds)
            if not samples:
                return []
            return [({"quantile": q}, round(samples[min(len(samples) - 1, int(float(q) * len(samples)))], 6))
                    for q in ("0.5", "0.99", "1")]

        self.stats.gauge("aliasd_worker_sync_seconds",
                         "From a change of the served zones to every worker answering from it (recent changes).",
                         quantiles)

    def describe(self) -> list[dict]:
        """The live workers, for aliasd-ctl status."""
        return [{"number": w.number, "pid": w.pid} for w in self.live()]


def _signal(pid: int, signum: int) -> None:
    if pid <= 0:  # never a process group, never every process
        return
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _how(status: int | None) -> str:
    if status is None:
        return "unknown"
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _until(deadline: float):
    """A Cooperator's termination predicate: true once ``deadline`` (perf_counter) passed."""
    return lambda: time.perf_counter() >= deadline
