"""DNS over TCP in a worker process: the connections its loop accepts.

Why a module of its own: a worker (aliasd.listen.worker) runs a small epoll
loop of its own, not a Twisted reactor (the main's, copied by the fork, is
not the worker's to run). This is the part of that loop that accepts TCP
connections on the listening sockets it shares with the main process and
the other workers, and gives each to the same ``DNSStreamProtocol`` as the
main process uses, through ``_Connection``: the few transport methods that
protocol calls, written against the worker's epoll. So TCP answers, their
order, the idle timeout, the send-buffer back-pressure and the connection
limits (each worker's share of them) are the main process's code.

A connection whose next message is not a plain query (a zone transfer, an
UPDATE, a NOTIFY, a CHAOS-class question: ``needs_main``) is handed over to
the main process once what was answered before it is written: its socket
goes over the control channel (SCM_RIGHTS) with the octets read and not
answered, and the main process serves the rest of the connection. Transfers
stream from the main process's journal with its flow control, and an UPDATE
is recorded there.
"""

from __future__ import annotations

import select
import socket
import time

from twisted.internet import address, error, task
from twisted.python import failure

#: Connections accepted from one listening socket per wake-up.
ACCEPT_BATCH = 16
#: Octets of answers waiting for the client past which the protocol stops
#: reading its queries (Twisted's transports pause their producer at 64 KiB).
HIGH_WATER = 64 * 1024

_READ = select.EPOLLIN | select.EPOLLRDHUP
_WRITE = select.EPOLLOUT


class _Connection:
    """A DNSStreamProtocol's transport in a worker: the worker's epoll
    reads and writes its socket."""

    disconnecting = False

    def __init__(self, owner: "Connections", sock: socket.socket, peer, host):
        self.owner = owner
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.host = host
        self.protocol = None
        self.producer = None
        self.out = bytearray()
        self.unread = b""  # octets read, not yet a whole message for the protocol
        self.paused = False  # the protocol's producer asked us to stop reading
        self.throttled = False  # we paused the protocol: too much waiting to be written
        self.closing = False  # close once written
        self.closed = False
        self.hand_over: bytes | None = None  # what the main process reads first, once written
        self.events = _READ

    # -- what DNSStreamProtocol calls --------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.out += data
        self.owner.flush(self)

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def getPeer(self):
        return self.peer

    def getHost(self):
        return self.host

    def registerProducer(self, producer, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        self.paused = True
        self.owner.watch(self)

    def resumeProducing(self) -> None:
        self.paused = False
        self.owner.watch(self)

    def stopProducing(self) -> None:
        self.owner.close(self)

    def loseConnection(self) -> None:
        self.closing = True
        self.owner.flush(self)

    def abortConnection(self) -> None:
        self.owner.close(self)


def _address(family: int, addr) -> address.IPv4Address | address.IPv6Address:
    if family == socket.AF_INET6:
        return address.IPv6Address("TCP", addr[0], addr[1])
    return address.IPv4Address("TCP", addr[0], addr[1])


class Connections:
    """The TCP side of a worker's loop.

    ``listeners``: the listening sockets (shared), ``factory``: the main's
    DNSStreamFactory (this worker's copy: its limits are the worker's
    share), ``needs_main``: whether a message goes to the main process,
    ``hand_over(sock, unread)``: sends a connection there.
    """

    def __init__(self, poller, listeners: list[socket.socket], factory, needs_main, hand_over):
        self.poller = poller
        self.factory = factory
        self.needs_main = needs_main
        self._hand_over = hand_over
        self.listeners = {s.fileno(): s for s in listeners}
        self.connections: dict[int, _Connection] = {}
        # Idle timeouts (TimeoutMixin) on a clock the loop moves to the
        # monotonic time; its resolution is the loop's wake-ups.
        self.clock = task.Clock()
        self.clock.advance(time.monotonic())
        self.handed_over = 0
        for fd in self.listeners:
            poller.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)

    def ready(self, fd: int, events: int) -> None:
        """An epoll event on one of our descriptors."""
        listener = self.listeners.get(fd)
        if listener is not None:
            self._accept(listener)
            return
        conn = self.connections.get(fd)
        if conn is None:
            return
        if events & _WRITE:
            self.flush(conn)
        if events & (select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR) and not conn.closed:
            self._read(conn)

    def tick(self) -> None:
        """Run the timers that are due (idle connections closed)."""
        now = time.monotonic()
        if now > self.clock.seconds():
            self.clock.advance(now - self.clock.seconds())

    def hand_over_all(self) -> None:
        """The worker stops (replaced after a reload, or the server stops):
        its open connections go to the main process, which serves them
        until their clients close them, after what was answered is written
        (each within half a second)."""
        for conn in list(self.connections.values()):
            self._hand_over_one(conn)

    def _hand_over_one(self, conn: _Connection) -> None:
        try:
            conn.sock.settimeout(0.5)
        except OSError:
            self.close(conn)
            return
        for _ in range(64):  # (a protocol we paused answers what it holds)
            if conn.closed or not (conn.out or conn.throttled):
                break
            self.flush(conn)
        if conn.closed:
            return
        if conn.closing:
            self.close(conn)
            return
        if conn.hand_over is None:  # (else it holds every octet from its message on)
            conn.hand_over = conn.unread
        self._give(conn)

    # -- accepting and reading -----------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        # The clock stands still while no connection is open (the loop
        # ticks it only then): bring it to now first, or a new connection's
        # idle timer starts in the past and closes it at the next tick.
        self.tick()
        host = _address(listener.family, listener.getsockname())
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return  # another process took it
            except OSError:  # out of descriptors, or the client gave up: later
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = _address(listener.family, addr)
            protocol = self.factory.buildProtocol(peer)
            if protocol is None:  # over this worker's share of the limits
                sock.close()
                continue
            conn = _Connection(self, sock, peer, host)
            conn.protocol = protocol
            protocol.callLater = self.clock.callLater  # (TimeoutMixin's timers on our clock)
            self.connections[conn.fd] = conn
            self.poller.register(conn.fd, conn.events)
            protocol.makeConnection(conn)

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close(conn)
            return
        if not data:
            self.close(conn)
            return
        unread = conn.unread + data
        # Whole messages go to the protocol one by one, up to the first one
        # the main process answers: the connection is handed over there.
        start = 0
        while len(unread) - start >= 2 and conn.hand_over is None and not conn.closed:
            end = start + 2 + int.from_bytes(unread[start:start + 2], "big")
            if end > len(unread):
                break
            if self.needs_main(unread[start + 2:end]):
                conn.hand_over = unread[start:]
                conn.unread = b""
                self.watch(conn)
                self.flush(conn)
                return
            conn.protocol.dataReceived(unread[start:end])
            start = end
        conn.unread = unread[start:]
        if len(conn.unread) > conn.protocol.max_buffered:  # a client that never finishes a message
            self.close(conn)

    # -- writing, handing over, closing ----------------------------------

    def flush(self, conn: _Connection) -> None:
        """Write what waits; resume a protocol we paused, hand the
        connection over, or close it, once all is written."""
        if conn.closed:
            return
        if conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close(conn)
                return
            del conn.out[:sent]
        if conn.out:
            if len(conn.out) > HIGH_WATER and not conn.throttled and conn.producer is not None:
                conn.throttled = True
                conn.producer.pauseProducing()
            self.watch(conn)
            return
        if conn.throttled:
            conn.throttled = False
            if conn.producer is not None:
                conn.producer.resumeProducing()
        if conn.closing:
            self.close(conn)
        elif conn.hand_over is not None and not conn.paused:
            self._give(conn)
        else:
            self.watch(conn)

    def watch(self, conn: _Connection) -> None:
        """The epoll events the connection waits for now."""
        if conn.closed:
            return
        events = 0
        if not conn.paused and conn.hand_over is None:
            events |= _READ
        if conn.out:
            events |= _WRITE
        if events != conn.events:
            conn.events = events
            self.poller.modify(conn.fd, events)

    def _give(self, conn: _Connection) -> None:
        """The connection to the main process, with the octets it reads first."""
        unread, conn.hand_over = conn.hand_over, None
        try:
            self._hand_over(conn.sock, unread)
        except OSError:
            self.close(conn)
            return
        self.handed_over += 1
        self._forget(conn)
        conn.sock.close()  # (ours only: the main process holds its own descriptor)

    def close(self, conn: _Connection) -> None:
        if conn.closed:
            return
        self._forget(conn)
        try:
            conn.sock.close()
        except OSError:
            pass

    def _forget(self, conn: _Connection) -> None:
        conn.closed = True
        self.connections.pop(conn.fd, None)
        try:
            self.poller.unregister(conn.fd)
        except (OSError, ValueError):
            pass
        conn.protocol.connectionLost(failure.Failure(error.ConnectionDone()))
