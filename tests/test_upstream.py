"""Unit tests: the upstream clients (aliasd.resolve.upstream) on a fake reactor.

The fake reactor is a task.Clock that also hands out UDP ports: each
records what is sent from it and whether it is still open, and the test
answers a query by handing the reply to the port's protocol, as a real
reactor would. Twisted's own client code runs unchanged on top of it, so
these tests also notice when Twisted stops sending through
``client.Resolver.queryUDP`` (the public hook UpstreamResolver overrides).
"""

from __future__ import annotations

import itertools

import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from twisted.internet import defer, task
from twisted.names import error as terror

from aliasd.base.config import Endpoint
from aliasd.resolve.upstream import FailoverResolver, UpstreamClosed, UpstreamResolver

FIRST = Endpoint("192.0.2.53", 53)
SECOND = Endpoint("192.0.2.54", 53)


class FakeUDPPort:
    def __init__(self, protocol, interface: str):
        self.protocol = protocol
        self.interface = interface
        self.sent: list[tuple[bytes, tuple]] = []
        self.open = True

    def write(self, data: bytes, address) -> None:
        assert self.open, "sent from a closed socket"
        self.sent.append((data, address))

    def stopListening(self):
        if self.open:
            self.open = False
            self.protocol.doStop()
        return defer.succeed(None)

    def getHost(self):
        return None


class FakeReactor(task.Clock):
    """A clock with UDP: ``ports`` is every socket ever opened."""

    def __init__(self):
        super().__init__()
        self.ports: list[FakeUDPPort] = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        made = FakeUDPPort(protocol, interface)
        self.ports.append(made)
        protocol.makeConnection(made)
        return made

    @property
    def open_ports(self) -> list[FakeUDPPort]:
        return [p for p in self.ports if p.open]

    def unanswered(self):
        """(port, query message, address) of every query sent and not answered yet."""
        found = []
        for port in self.ports:
            for data, address in port.sent:
                query = dns.message.from_wire(data)
                if port.open and query.id in (port.protocol.liveMessages or {}):
                    found.append((port, query, address))
        return found

    def answer(self, port: FakeUDPPort, query, address, *addresses: str, ttl: int = 60) -> None:
        response = dns.message.make_response(query)
        if addresses:
            response.answer.append(
                dns.rrset.from_text_list(query.question[0].name, ttl, "IN", "A", list(addresses))
            )
        port.protocol.datagramReceived(response.to_wire(), address)


@pytest.fixture
def reactor():
    return FakeReactor()


@pytest.fixture
def one_socket(monkeypatch):
    """A pool of one query socket: tests of how one socket is used and replaced."""
    monkeypatch.setattr(UpstreamResolver, "pool_size", 1)


def results(d: defer.Deferred):
    out = []
    d.addBoth(out.append)
    assert out, "the lookup has not finished"
    return out[0]


def answer_all(reactor: FakeReactor, *addresses: str) -> None:
    for port, query, address in reactor.unanswered():
        reactor.answer(port, query, address, *addresses)


def test_queries_share_a_pool_of_sockets_and_get_their_answers(reactor):
    resolver = UpstreamResolver([FIRST], reactor)
    lookups = [resolver.lookupAddress(f"t{i}.example.net", timeout=(1, 2)) for i in range(50)]
    # not one socket per query (stock client.Resolver), nor one for all
    assert len(reactor.ports) == resolver.pool_size > 1
    assert {address for _, address in reactor.ports[0].sent} == {("192.0.2.53", 53)}
    answer_all(reactor, "198.51.100.1")
    for d in lookups:
        answers, _, _ = results(d)
        assert answers[0].payload.dottedQuad() == "198.51.100.1"
    assert reactor.open_ports == reactor.ports
    resolver.close()
    assert reactor.open_ports == []


def test_a_replaced_socket_closes_when_its_last_query_is_answered(reactor, one_socket):
    resolver = UpstreamResolver([FIRST], reactor)
    resolver.rotate_after = 2
    first = [resolver.lookupAddress(f"a{i}.example.net", timeout=(5,)) for i in range(2)]
    third = resolver.lookupAddress("b.example.net", timeout=(5,))
    assert len(reactor.ports) == 2  # a fresh source port after 2 queries
    old, new = reactor.ports
    assert old.open  # still waiting for its two answers
    for port, query, address in reactor.unanswered():
        if port is old:
            reactor.answer(port, query, address, "198.51.100.2")
    assert all(isinstance(results(d), tuple) for d in first)
    assert not old.open and new.open  # at once, not some fixed time later
    assert [c.getTime() for c in reactor.getDelayedCalls()] == [5]  # the third query's timeout
    answer_all(reactor, "198.51.100.3")
    assert isinstance(results(third), tuple)
    assert reactor.getDelayedCalls() == []
    resolver.close()


def test_a_timed_out_query_is_sent_again_then_fails_over_to_the_next_upstream(reactor, one_socket):
    resolver = FailoverResolver([FIRST, SECOND], reactor)
    d = resolver.lookupAddress("lb.example.net", timeout=(1, 2))
    reactor.advance(1)  # the first try timed out: asked again, same socket, same ID
    (port,) = reactor.ports
    first, again = [dns.message.from_wire(data) for data, _ in port.sent]
    assert first.id == again.id
    reactor.advance(2)  # the second try too: the next upstream is asked
    port, query, address = reactor.unanswered()[-1]
    assert address == ("192.0.2.54", 53)
    reactor.answer(port, query, address, "198.51.100.4")
    assert isinstance(results(d), tuple)
    assert resolver.preferred == 1
    resolver.close()


def test_close_cancels_waiting_lookups_closes_sockets_and_opens_no_new_ones(reactor, one_socket):
    """What a reload with other upstreams does to the old client. Before,
    close() only stopped the sockets: the waiting lookups never got their
    answers, and their timeouts sent them again from a new socket of the
    closed client, which nobody closed any more."""
    resolver = FailoverResolver([FIRST, SECOND], reactor)
    waiting = [resolver.lookupAddress("a.example.net", timeout=(1, 2)),
               resolver.lookupIPV6Address("a.example.net", timeout=(1, 2))]
    assert len(reactor.open_ports) == 1
    resolver.close()
    assert reactor.open_ports == []
    for d in waiting:  # finished, not orphaned
        failure = results(d)
        assert failure.check(defer.CancelledError)
    opened = len(reactor.ports)
    reactor.advance(60)  # every timeout and retry the old queries had
    assert len(reactor.ports) == opened and reactor.open_ports == []
    assert reactor.getDelayedCalls() == []
    later = results(resolver.lookupAddress("b.example.net", timeout=(1,)))
    assert later.check(UpstreamClosed) and len(reactor.ports) == opened


def test_a_cancelled_lookup_asks_no_other_upstream(reactor):
    resolver = FailoverResolver([FIRST, SECOND], reactor)
    d = resolver.lookupAddress("a.example.net", timeout=(1, 2))
    d.cancel()
    assert results(d).check(defer.CancelledError)
    assert [address for port in reactor.ports for _, address in port.sent] == [("192.0.2.53", 53)]
    assert resolver.in_flight == 0
    resolver.close()


def test_nxdomain_ends_the_failover(reactor, one_socket):
    resolver = FailoverResolver([FIRST, SECOND], reactor)
    d = resolver.lookupAddress("gone.example.net", timeout=(1,))
    port, query, address = reactor.unanswered()[0]
    response = dns.message.make_response(query)
    response.set_rcode(3)
    port.protocol.datagramReceived(response.to_wire(), address)
    assert results(d).check(terror.DNSNameError)
    assert len(reactor.ports) == 1
    resolver.close()


def test_source_ports_and_query_ids_change_from_query_to_query(reactor):
    """Each query leaves from a socket of the pool picked at random, each
    socket is replaced after ``rotate_after`` queries, and IDs are random."""
    resolver = UpstreamResolver([FIRST], reactor)
    lookups = [resolver.lookupAddress(f"t{i}.example.net", timeout=(5,)) for i in range(1000)]
    sent = [(port, dns.message.from_wire(data).id) for port in reactor.ports for data, _ in port.sent]
    assert len(sent) == 1000
    assert all(len(port.sent) <= resolver.rotate_after for port in reactor.ports)
    assert len(reactor.ports) > resolver.pool_size  # a pool, and rotated
    # The sockets used in turn: consecutive queries rarely share one.
    in_order = sorted(((dns.message.from_wire(d).question[0].name.to_text().lower(), p) for p in reactor.ports
                       for d, _ in p.sent), key=lambda item: int(item[0].split(".")[0][1:]))
    changes = sum(1 for (_, a), (_, b) in itertools.pairwise(in_order) if a is not b)
    assert changes > 750
    ids = [query_id for _, query_id in sent]
    assert max(ids) - min(ids) > 30000 and len(set(ids)) > 950  # not a counter
    resolver.close()
    assert all(results(d).check(defer.CancelledError) for d in lookups)


def test_names_are_asked_in_random_case_and_a_mismatched_answer_is_dropped(reactor, one_socket):
    resolver = UpstreamResolver([FIRST], reactor)
    lookups = [resolver.lookupAddress("abcdefghijklmnop.example.net", timeout=(5,)) for _ in range(3)]
    # (Twisted joins identical lookups in flight: one query.)
    lookups += [resolver.lookupAddress(f"target{i}.example.net", timeout=(5,)) for i in range(10)]
    asked = [q.question[0].name.to_text() for _, q, _ in reactor.unanswered()]
    assert len(asked) == 11 and len(set(asked)) == 11
    assert any(n != n.lower() for n in asked) and any(n != n.upper() for n in asked)
    port, query, address = reactor.unanswered()[0]
    forged = dns.message.make_response(dns.message.from_wire(query.to_wire()))  # (its own question)
    forged.question[0].name = dns.name.from_text(query.question[0].name.to_text().lower())
    forged.answer.append(dns.rrset.from_text(forged.question[0].name, 60, "IN", "A", "203.0.113.66"))
    port.protocol.datagramReceived(forged.to_wire(), address)  # right ID, port and address: wrong case
    assert not lookups[0].called and resolver.spoofed == 1
    reactor.answer(port, query, address, "198.51.100.7")  # the real answer still counts
    answers, _, _ = results(lookups[0])
    assert [rr.payload.dottedQuad() for rr in answers] == ["198.51.100.7"]
    resolver.close()
    assert all(results(d).check(defer.CancelledError) for d in lookups[3:])


def test_queries_ask_for_validation_and_answers_say_whether_they_were_validated(reactor):
    resolver = UpstreamResolver([FIRST], reactor)
    plain = resolver.lookupAddress("plain.example.net", timeout=(5,))
    signed = resolver.lookupAddress("signed.example.net", timeout=(5,))
    for port, query, address in reactor.unanswered():
        assert query.flags & dns.flags.AD  # RFC 6840 5.7: "tell me whether you validated"
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "198.51.100.8"))
        if query.question[0].name.to_text().lower().startswith("signed"):
            response.flags |= dns.flags.AD
        port.protocol.datagramReceived(response.to_wire(), address)
    assert results(plain).authenticated is False and results(signed).authenticated is True
    resolver.close()
