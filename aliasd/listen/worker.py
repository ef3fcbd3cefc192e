"""A worker process: answers UDP queries from the shared sockets.

Why a module of its own: this is all a forked worker runs (the main
process's side is aliasd.service.workers). The worker is an ``os.fork()``
child of the main process, so it starts with the main's zone registry,
answer handler and sockets, sharing their pages. It must not touch what
the fork copied but does not own: the main's Twisted reactor (its epoll
instance is shared), threads and their locks, the state store's LMDB
environment. So it runs a small loop of its own: one epoll over the
listening UDP sockets (EPOLLEXCLUSIVE: one worker wakes per burst, the
others stay asleep) and its control channel to the main process.

- Plain queries are answered here, by the same ``DNSDatagramProtocol``
  code as in the main process (query handler, rate limiter, sendto). A
  query whose octets after the ID came before is answered first, from the
  handler's answers kept by wire (``QueryHandler.exact_answer``): most of
  the traffic costs a dict lookup and a counter. A wake-up reads up to
  ``BATCH`` datagrams with one recvmmsg and sends their kept answers with
  one sendmmsg (aliasd.listen.mmsg), or, where libc lacks them, one
  recvfrom and one sendto per datagram.
- Each socket is read until it is empty (``BATCH`` at a time). After a
  wake-up that found at most one datagram, once it has read ``SPREAD``
  datagrams, the worker moves to the end of the socket's exclusive
  waiters, so a trickle spreads over the workers in turns; under load it
  stays where it is.
- Everything else read from a UDP socket (UPDATE, NOTIFY, other opcodes,
  AXFR/IXFR, CHAOS-class questions) goes to the main process over the
  channel, which answers it from its own copy of the socket.
- TCP connections are accepted on the shared listening sockets too and
  answered by the main's stream protocol (aliasd.listen.worker_tcp); one
  whose next message the main process answers is handed over to it.
- Change frames (aliasd.listen.frames) are replayed on the registry and
  acknowledged, so the main process knows when every worker serves a change.
- Counter increments go to the main every ``STATS_INTERVAL`` seconds, and
  log events as they happen, so that operators see one picture.

The worker exits when told (SIGTERM: it finishes what it read), when the
channel closes, or at once when the main process dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import time

from twisted.logger import formatEvent, globalLogPublisher

from aliasd.listen import frames, mmsg, worker_tcp

#: Datagrams read from one socket before looking at the others.
BATCH = 64
#: At most this many datagrams read in one wake-up: a trickle, which moves
#: the worker behind the others once it has read ``SPREAD`` datagrams from
#: that socket (see ``Worker._serve``).
TRICKLE = 1
SPREAD = 16
#: Seconds between counter reports to the main process.
STATS_INTERVAL = 0.25

_PR_SET_PDEATHSIG = 1
_QUERY = 0
_CHAOS = 3
_TRANSFERS = (251, 252)  # IXFR, AXFR


def needs_main(wire: bytes) -> bool:
    """Must the main process answer this message? Anything but a plain
    query: other opcodes (UPDATE, NOTIFY), zone transfers, CHAOS class
    (the status view reads the main process's resolver). Malformed
    messages stay here: the handler answers FORMERR or drops them."""
    if len(wire) < 12 or wire[2] & 0x80:  # too short, or a response
        return False
    if (wire[2] >> 3) & 0xF != _QUERY:
        return True
    if not (wire[4] or wire[5]):
        return False
    i = 12
    size = len(wire)
    while i < size:
        length = wire[i]
        if length == 0:
            break
        if length & 0xC0:  # a pointer in a question: malformed, answered here
            return False
        i += 1 + length
    if i + 5 > size:
        return False
    qtype = (wire[i + 1] << 8) | wire[i + 2]
    qclass = (wire[i + 3] << 8) | wire[i + 4]
    return qtype in _TRANSFERS or qclass == _CHAOS


def _find_prctl():
    """libc's prctl, found in the main process: a fork made while another
    thread loads a library must not wait for the loader's lock."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: channel EOF still ends the worker
        return None


_prctl = _find_prctl()


def die_with_parent() -> None:
    """Die with the main process, even by kill -9 (Linux). SIGKILL, not
    SIGTERM: a worker that lived on for its last turn answered from the old
    sockets while a new server was starting, and the queries it read then
    were lost with them; a dead main process has nobody to report to."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def close_other_files(keep: set[int]) -> None:
    """Close every inherited descriptor but ``keep``: the main's client TCP
    connections must close when the main closes them, and its epoll
    registrations must not outlive its own descriptors."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


class Worker:
    """One worker's loop. ``protocols``: the main's DNSDatagramProtocol per
    listening UDP socket, in the order the main knows them by."""

    def __init__(self, number: int, channel: socket.socket, protocols: list, registry, objects: dict, stats,
                 tcp_listeners: list[socket.socket] = (), tcp_factory=None):
        self.number = number
        self.channel = channel
        self.protocols = protocols
        self.tcp_listeners = list(tcp_listeners)
        self.tcp_factory = tcp_factory
        self.tcp = None  # aliasd.listen.worker_tcp.Connections, once the loop runs
        self.channel_open = True
        self.registry = registry
        self.objects = objects  # the change stream's token table (aliasd.listen.frames)
        self.stats = stats
        self.reader = frames.FrameReader()
        self.running = True
        # recvmmsg/sendmmsg where libc has them (aliasd.listen.mmsg), chosen
        # once; their buffers are made on first use, after the fork.
        self.batched = mmsg.LIBC is not None
        self._batch = None

    def run(self) -> None:
        """Serve until told to stop; never returns into the caller's stack."""
        code = 0
        try:
            self._serve()
        except BaseException:  # noqa: BLE001 - the worker's last word, then out
            code = 70
            try:
                from twisted.logger import Logger

                Logger().failure("worker {number} failed", number=self.number)
            except BaseException:  # noqa: BLE001
                pass
        finally:
            try:
                self._report_stats()
                self._close_channel()
            except BaseException:  # noqa: BLE001 - the channel may be gone
                pass
            os._exit(code)

    def _serve(self) -> None:
        sockets = [p.transport.socket for p in self.protocols]
        wake_r, wake_w = os.pipe()
        close_other_files({self.channel.fileno(), wake_r, wake_w, *(s.fileno() for s in sockets),
                           *(s.fileno() for s in self.tcp_listeners)})
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the main process reloads, then replaces us
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self._log_to_main()
        poller = select.epoll()
        by_fd = {}
        for index, sock in enumerate(sockets):
            poller.register(sock.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
            by_fd[sock.fileno()] = (index, sock, self.protocols[index])
        poller.register(self.channel.fileno(), select.EPOLLIN)
        poller.register(wake_r, select.EPOLLIN)
        if self.tcp_listeners and self.tcp_factory is not None:
            self.tcp = worker_tcp.Connections(poller, self.tcp_listeners, self.tcp_factory, needs_main,
                                              self._hand_over)
        tcp = self.tcp
        channel_fd = self.channel.fileno()
        self._send(frames.READY, 0, os.getpid())
        read = dict.fromkeys(by_fd, 0)  # datagrams read from each socket since it was re-registered
        now = time.monotonic()
        next_report = now + STATS_INTERVAL
        while self.running:
            for fd, events in poller.poll(max(0.0, next_report - now)):
                udp = by_fd.get(fd)  # (the queries first: most wake-ups)
                if udp is None:
                    if fd == channel_fd:
                        self._read_channel()
                    elif fd == wake_r:
                        try:
                            os.read(wake_r, 512)
                        except BlockingIOError:
                            pass
                    elif tcp is not None:
                        tcp.ready(fd, events)
                else:
                    count = self._read_socket(*udp)
                    read[fd] += count
                    if count <= TRICKLE and read[fd] >= SPREAD:
                        # A trickle: to the end of the socket's queue of
                        # exclusive waiters, which wakes its first idle
                        # one, so that later datagrams wake another worker
                        # and even one query at a time spreads over all of
                        # them (and their rate limiters). Not after every
                        # wake-up: under load a busy worker is passed over
                        # anyway, and two system calls per datagram, and a
                        # switch of worker each time, were work for nothing.
                        read[fd] = 0
                        poller.unregister(fd)
                        poller.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
            if tcp is not None and tcp.connections:  # (idle timeouts: only with connections open)
                tcp.tick()
            now = time.monotonic()
            if now >= next_report:
                self._report_stats()
                next_report = now + STATS_INTERVAL
        if tcp is not None and self.channel_open:
            tcp.hand_over_all()  # (told to stop: its connections go on in the main process)

    def _stop(self, signum, frame) -> None:
        self.running = False

    def _read_socket(self, index: int, sock: socket.socket, protocol) -> int:
        """Answer up to ``BATCH`` datagrams; how many were read. A query
        seen before is answered here from the handler's exact answers
        (one dict lookup, no other layer); the rest as the main process
        would, or forwarded to it."""
        if self.batched:
            return self._read_batch(index, sock, protocol)
        recvfrom = sock.recvfrom
        exact_answer = protocol.handler.exact_answer
        send = protocol.send
        for count in range(BATCH):
            try:
                data, addr = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return count
            except OSError:  # an ICMP error queued on the socket: next datagram
                continue
            try:
                response = exact_answer(data)
            except Exception:  # noqa: BLE001 - the full path below answers and logs it
                response = None
            if response is not None:
                send(response, addr)
            else:
                self._answer_slowly(index, protocol, data, addr)
        return BATCH

    def _read_batch(self, index: int, sock: socket.socket, protocol) -> int:
        """``_read_socket`` with one recvmmsg and one sendmmsg
        (DNSDatagramProtocol.answer_batch)."""
        batch = self._batch
        if batch is None:
            batch = self._batch = mmsg.DatagramBatch(BATCH)
        return protocol.answer_batch(
            batch, sock, lambda data, i: self._answer_slowly(index, protocol, data, batch.address(i)))

    def _answer_slowly(self, index: int, protocol, data: bytes, addr) -> None:
        """A datagram without a kept answer: forwarded to the main process,
        or answered by the full path here (which sends it at once)."""
        if needs_main(data):
            self._send(frames.FORWARD, 0, (index, addr, data))
        else:
            protocol.datagramReceived(data, addr)

    def _read_channel(self) -> None:
        data = self.channel.recv(1 << 20)
        if not data:  # the main process is gone
            self.running = False
            self.channel_open = False
            return
        for kind, seq, payload in self.reader.feed(data):
            if kind == frames.CHANGES:
                frames.apply_changes(self.registry, self.objects, payload)
                self._send(frames.ACK, seq, None)
            elif kind == frames.COUNTS:
                self._report_stats(seq)

    def _report_stats(self, asked: int = 0) -> None:
        """Counter increments since the last report (the main process adds
        them up); ``asked``: the scrape that asks, answered even if none."""
        counters = self.stats.counters
        increments = {key: value for key, value in counters.items() if value}
        counters.clear()
        if increments or asked:
            self._send(frames.STATS, asked, increments)

    def _close_channel(self) -> None:
        """End our side, then read until the main process closes its own:
        an AF_UNIX socket closed with unread data in it resets the
        connection, and the main process would lose what was sent last
        (the last counts, TCP connections handed over)."""
        self.channel.shutdown(socket.SHUT_WR)
        self.channel.settimeout(1.0)
        while self.channel.recv(1 << 16):
            pass

    def _send(self, kind: str, seq: int, payload) -> None:
        self.channel.sendall(frames.encode(kind, seq, payload))

    def _hand_over(self, sock: socket.socket, unread: bytes) -> None:
        """A TCP connection to the main process (aliasd.listen.worker_tcp):
        its socket rides with the frame that says what was read of it."""
        data = frames.encode(frames.HAND_OVER, 0, (sock.family, unread))
        sent = socket.send_fds(self.channel, [data], [sock.fileno()])
        if sent < len(data):
            self.channel.sendall(data[sent:])

    def _log_to_main(self) -> None:
        """Log events go to the main process, which logs them as this
        worker's (its log file and filters)."""

        def observer(event) -> None:
            level = event.get("log_level")
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text += "\n" + failure.getTraceback()
            try:
                self._send(frames.LOG, 0, (level.name if level else "info",
                                           event.get("log_namespace", "aliasd"), text))
            except OSError:
                pass

        globalLogPublisher.addObserver(observer)
