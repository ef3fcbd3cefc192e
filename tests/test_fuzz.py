"""Hostile input: random and mutated messages never break the server.

Property tests (hypothesis) throw arbitrary bytes and mutated valid queries
at QueryHandler; an end-to-end test sends thousands of mutated packets to a
real twistd aliasd over UDP and TCP. The server must never raise, never
answer with a message that does not parse, never answer larger than the
client allows over UDP, and must go on answering.
"""

from __future__ import annotations

import random
import socket
import struct

import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aliasd.authority import ZoneAuthority
from aliasd.server import QueryHandler
from tests.helpers import zone_source

SOURCE = zone_source(
    "example.com",
    "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\n@ ALIAS www\n"
    "www A 192.0.2.1\n*.w A 192.0.2.9\nsub NS ns.sub\nns.sub A 192.0.2.7\n"
    "big TXT " + " ".join(f'"{"x" * 200}"' for _ in range(10)) + "\n",
)
SEEDS = [
    dns.message.make_query(name, rdtype, use_edns=edns).to_wire()
    for name in ("example.com", "www.example.com", "a.w.example.com", "x.sub.example.com", "big.example.com")
    for rdtype in ("A", "AAAA", "TXT", "AXFR", "IXFR", "ANY")
    for edns in (False, 0)
]


def _handler() -> QueryHandler:
    authority = ZoneAuthority()
    authority.set_sources([SOURCE])
    return QueryHandler(authority)


HANDLER = _handler()


def check(wire: bytes, over_udp: bool) -> None:
    answer = HANDLER.handle(wire, "127.0.0.1", over_udp)
    if answer is None:
        return
    messages = [answer] if isinstance(answer, bytes) else list(answer)
    for message in messages:
        dns.message.from_wire(message, keyring=False, ignore_trailing=False, one_rr_per_rrset=True)
        if over_udp:
            assert len(message) <= HANDLER.max_udp_size


def mutate(rng: random.Random, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(rng.randint(1, 6)):
        kind = rng.randrange(4)
        if kind == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1 and data:
            del data[rng.randrange(len(data)):]
        elif kind == 2:
            data[rng.randrange(len(data) + 1):0] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        elif len(data) > 12:  # lie in the section counts
            struct.pack_into("!H", data, 4 + 2 * rng.randrange(4), rng.choice((0, 1, 2, 255, 65535)))
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.booleans())
def test_arbitrary_bytes(wire, over_udp):
    check(wire, over_udp)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(0, 2**32), st.booleans())
def test_mutated_queries(seed, salt, over_udp):
    check(mutate(random.Random(salt), seed), over_udp)


@pytest.mark.e2e
def test_real_server_survives_a_burst_of_mutated_packets(aliasd):
    p = aliasd(
        '[zones."example.com"]\nfile = "example.com.zone"\nallow-transfer = ["127.0.0.1"]\n',
        {"example.com.zone": "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\nwww A 192.0.2.1\n"},
    )
    rng = random.Random(1)
    sent = answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(0.05)
        for i in range(3000):
            udp.sendto(mutate(rng, rng.choice(SEEDS)), ("127.0.0.1", p.port))
            sent += 1
            if i % 50 == 0:  # drain what came back and check it parses
                try:
                    while True:
                        data = udp.recv(65535)
                        dns.message.from_wire(data, keyring=False, one_rr_per_rrset=True)
                        assert len(data) <= 1232
                        answered += 1
                except socket.timeout:
                    pass
    for _ in range(100):  # and over TCP, one connection per mutated message
        with socket.create_connection(("127.0.0.1", p.port), timeout=2) as tcp:
            wire = mutate(rng, rng.choice(SEEDS))
            tcp.sendall(struct.pack("!H", len(wire)) + wire)
            sent += 1
    assert answered > 0 and p.alive()
    assert p.query("www.example.com").rcode() == dns.rcode.NOERROR
    assert "Traceback" not in p.log() and "Unhandled" not in p.log()
