"""Batched datagram I/O (aliasd.listen.mmsg) on real loopback sockets:
what recvmmsg reads is what recvfrom would have read, answers go back to
each datagram's own source, a refused answer costs only itself, and a
worker's answers are the same with batches or one datagram at a time
(the rate limiter included)."""

from __future__ import annotations

import ctypes
import errno
import socket

import dns.message
import pytest
from twisted.logger import globalLogPublisher

from aliasd.answer.answers import QueryHandler
from aliasd.base.config import RateLimitSettings
from aliasd.base.stats import Statistics
from aliasd.listen import mmsg, udpport
from aliasd.listen.ratelimit import ResponseRateLimiter
from aliasd.listen.transports import DNSDatagramProtocol
from aliasd.listen.worker import Worker
from aliasd.service.authority import ZoneAuthority
from tests.test_fastpath import SOURCE
from tests.test_workers import _SocketTransport

pytestmark = pytest.mark.skipif(mmsg.LIBC is None, reason="libc has no recvmmsg/sendmmsg")

FAMILIES = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]


def _pair(family: int, host: str, clients: int = 2):
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))
    server.setblocking(False)
    peers = []
    for _ in range(clients):
        client = socket.socket(family, socket.SOCK_DGRAM)
        client.bind((host, 0))
        client.settimeout(2)
        peers.append(client)
    return server, peers


def _serve(batch: mmsg.DatagramBatch, server: socket.socket) -> list[tuple[bytes, tuple]]:
    """One batch served: each datagram answered with "answer N" and its
    first three octets; (octets, source) of what was read."""
    read = []

    def kept(data: bytes) -> bytes:
        read.append(data)
        return b"answer %d" % (len(read) - 1) + data[:3]

    count = batch.serve(server.fileno(), kept, None, None)
    assert count == len(read)
    return [(batch.data(i), batch.address(i)) for i in range(count)]


@pytest.mark.parametrize("family,host", FAMILIES, ids=["ipv4", "ipv6"])
def test_a_batch_reads_what_recvfrom_reads_and_answers_each_source(family, host):
    server, clients = _pair(family, host)
    batch = mmsg.DatagramBatch(8)
    try:
        assert _serve(batch, server) == []  # nothing queued: no wait
        sizes = [0, 1, 512, 1232, 4096, 60000]
        sent = []
        for n, size in enumerate(sizes):
            client = clients[n % 2]
            payload = bytes([n]) * size
            client.sendto(payload, server.getsockname())
            sent.append((payload, client.getsockname()))
        assert _serve(batch, server) == sent
        got = {0: [], 1: []}
        for n in range(len(sizes)):
            got[n % 2].append(clients[n % 2].recv(65535))
        assert got == {k: [b"answer %d" % n + bytes([n]) * min(3, sizes[n]) for n in range(k, len(sizes), 2)]
                       for k in (0, 1)}
        # Source lengths are written back by the kernel: the next batch reads sources again.
        clients[1].sendto(b"again", server.getsockname())
        assert _serve(batch, server) == [(b"again", clients[1].getsockname())]
        assert clients[1].recv(100) == b"answer 0aga"
    finally:
        server.close()
        for client in clients:
            client.close()


def test_more_datagrams_than_a_batch_are_left_for_the_next():
    server, (client,) = _pair(socket.AF_INET, "127.0.0.1", 1)
    batch = mmsg.DatagramBatch(4)
    with server, client:
        for n in range(6):
            client.sendto(b"q%d" % n, server.getsockname())
        assert [data for data, _ in _serve(batch, server)] == [b"q0", b"q1", b"q2", b"q3"]
        assert [data for data, _ in _serve(batch, server)] == [b"q4", b"q5"]


def test_an_answer_the_socket_refuses_is_dropped_and_the_rest_are_sent():
    recvmmsg, sendmmsg = mmsg.LIBC
    calls = []

    def refuse_first(fd, hdrs, count, flags):
        calls.append(count)
        if len(calls) == 1:  # a full send buffer, say
            ctypes.set_errno(errno.EAGAIN)
            return -1
        return sendmmsg(fd, hdrs, count, flags)

    server, (client,) = _pair(socket.AF_INET, "127.0.0.1", 1)
    batch = mmsg.DatagramBatch(4, libc=(recvmmsg, refuse_first))
    with server, client:
        for n in range(3):
            client.sendto(b"q%d" % n, server.getsockname())
        assert len(_serve(batch, server)) == 3
        assert calls == [3, 2]
        assert [client.recv(100) for _ in range(2)] == [b"answer 1q1", b"answer 2q2"]
        client.settimeout(0.2)
        with pytest.raises(TimeoutError):
            client.recv(100)


@pytest.mark.parametrize("family,host", FAMILIES, ids=["ipv4", "ipv6"])
def test_a_worker_answers_alike_in_batches_and_one_at_a_time_rate_limit_included(family, host):
    """Ten answers to one client at 4 per second, slip 2: the same answers
    either way (the limiter's clock stands still), from kept answers and
    the full path alike."""
    outcomes = []
    for batched in (True, False):
        authority = ZoneAuthority()
        authority.set_sources([SOURCE])
        stats = Statistics()
        limiter = ResponseRateLimiter(RateLimitSettings(responses_per_second=4, slip=2), clock=lambda: 100.0)
        protocol = DNSDatagramProtocol(QueryHandler(authority, stats=stats), limiter)
        server, (client,) = _pair(family, host, 1)
        main_end, worker_end = socket.socketpair()
        with server, client, main_end, worker_end:
            protocol.transport = _SocketTransport(server)
            worker = Worker(1, worker_end, [protocol], authority.registry, {}, stats)
            worker.batched = batched
            query = dns.message.make_query("www.example.com", "A")
            for query_id in range(10):
                query.id = query_id
                client.sendto(query.to_wire(), server.getsockname())
            assert worker._read_socket(0, server, protocol) == 10
            client.settimeout(0.2)
            answers = []
            while True:
                try:
                    answers.append(client.recv(65535))
                except TimeoutError:
                    break
        outcomes.append((sorted(answers), limiter.dropped, limiter.slipped, dict(stats.counters)))
    assert outcomes[0] == outcomes[1]
    answers, dropped, slipped, _ = outcomes[0]
    assert (len(answers), dropped, slipped) == (7, 3, 3)  # 4 answered, 6 limited: every second slips


class _Broken(ResponseRateLimiter):
    """A rate limiter that fails at its second answer: logged, that answer
    lost, the rest of the batch answered."""

    calls = 0

    def check(self, client, response):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("limiter bug")
        return super().check(client, response)


@pytest.mark.parametrize("family,host", FAMILIES, ids=["ipv4", "ipv6"])
def test_the_main_process_port_answers_batches_as_twisted_would_and_survives_an_error(family, host):
    """workers = 1: the main process's BatchedPort. The full path sees
    sources as Twisted gives them ((host, port) for IPv6 too); kept answers
    go back batched; an error answering one is logged, not the batch's end."""
    authority = ZoneAuthority()
    authority.set_sources([SOURCE])
    stats = Statistics()
    limiter = _Broken(RateLimitSettings(responses_per_second=1000), clock=lambda: 100.0)
    protocol = DNSDatagramProtocol(QueryHandler(authority, stats=stats), limiter)
    seen = []
    full_path = protocol.datagramReceived
    protocol.datagramReceived = lambda data, addr: (seen.append(addr), full_path(data, addr))
    server, (client,) = _pair(family, host, 1)
    port = udpport.BatchedPort(0, protocol, host, reactor=object())
    port.socket, protocol.transport = server, port
    query = dns.message.make_query("www.example.com", "A")
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        with server, client:
            for query_id in range(4):
                query.id = query_id
                client.sendto(query.to_wire(), server.getsockname())
            port.doRead()  # the first by the full path, the rest kept; the second's limiter fails
            assert sorted(dns.message.from_wire(client.recv(65535)).id for _ in range(3)) == [0, 2, 3]
            assert seen == [client.getsockname()[:2]]
            client.sendto(query.to_wire(), server.getsockname())
            port.doRead()
            assert dns.message.from_wire(client.recv(65535)).id == 3
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert [e["log_format"] for e in logged if e.get("log_failure") is not None] == ["rate limiting a UDP answer"]


def test_without_recvmmsg_the_main_process_port_reads_as_twisted_does(monkeypatch):
    authority = ZoneAuthority()
    authority.set_sources([SOURCE])
    protocol = DNSDatagramProtocol(QueryHandler(authority))
    seen = []
    full_path = protocol.datagramReceived
    protocol.datagramReceived = lambda data, addr: (seen.append(addr), full_path(data, addr))
    monkeypatch.setattr(mmsg, "LIBC", None)
    server, (client,) = _pair(socket.AF_INET, "127.0.0.1", 1)
    port = udpport.BatchedPort(0, protocol, "127.0.0.1", reactor=object())
    port.socket, protocol.transport = server, port
    with server, client:
        query = dns.message.make_query("www.example.com", "A")
        for query_id in range(3):
            query.id = query_id
            client.sendto(query.to_wire(), server.getsockname())
        port.doRead()
        assert [dns.message.from_wire(client.recv(65535)).id for _ in range(3)] == [0, 1, 2]
        assert seen == [client.getsockname()] * 3 and port.batch is None
