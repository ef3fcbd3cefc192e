"""The main process's listening UDP ports, read and answered in batches.

Why: with ``workers = 1`` the main process answers every query, and
Twisted's udp.Port reads one datagram per recvfrom and the protocol answers
each with a sendto. ``BatchedPort`` reads through
``DNSDatagramProtocol.answer_batch`` (aliasd.listen.mmsg: one recvmmsg, one
sendmmsg per batch) where libc has them, and as Twisted does elsewhere.
``UDPServer`` is twisted.application.internet.UDPServer with this port:
bound in privilegedStartService, so port 53 before privileges drop.
"""

from __future__ import annotations

import socket

from twisted.application import service
from twisted.internet import udp
from twisted.logger import Logger

from aliasd.listen import mmsg

log = Logger()

#: Datagrams per batch, and batches per turn of the reactor: a few hundred
#: queries, as Twisted's 16 KiB per turn (DNSDatagramProtocol.max_throughput).
BATCH = 64
TURN = 4


class BatchedPort(udp.Port):
    """A udp.Port whose reads are batches (when libc has recvmmsg)."""

    batch = None  # mmsg.DatagramBatch, made on the first read

    def doRead(self) -> None:
        if mmsg.LIBC is None:
            return super().doRead()
        batch = self.batch
        if batch is None:
            batch = self.batch = mmsg.DatagramBatch(BATCH)
        protocol = self.protocol
        trim = self.addressFamily == socket.AF_INET6  # (host, port), as Twisted gives IPv6 sources

        def unkept(data: bytes, i: int) -> None:
            addr = batch.address(i)
            try:
                protocol.datagramReceived(data, addr[:2] if trim else addr)
            except BaseException:  # noqa: BLE001 - as udp.Port: logged, the next datagram
                log.failure("answering a UDP message")

        for _ in range(TURN):
            try:
                if protocol.answer_batch(batch, self.socket, unkept) < BATCH:
                    break
            except Exception:  # noqa: BLE001 - as udp.Port: logged, the port reads on
                log.failure("answering a batch of UDP messages")
        return None


class UDPServer(service.Service):
    """Listens on ``port`` at ``interface`` with a BatchedPort for ``protocol``."""

    def __init__(self, port: int, protocol, interface: str = "", reactor=None):
        self.args = (port, protocol, interface)
        self.reactor = reactor
        self.port = None

    def _listen(self) -> None:
        port, protocol, interface = self.args
        self.port = BatchedPort(port, protocol, interface, reactor=self.reactor)
        self.port.startListening()

    def privilegedStartService(self) -> None:
        service.Service.privilegedStartService(self)
        self._listen()

    def startService(self) -> None:
        service.Service.startService(self)
        if self.port is None:
            self._listen()

    def stopService(self):
        service.Service.stopService(self)
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None
