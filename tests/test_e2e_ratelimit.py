"""Response rate limiting, end to end: a flood from one client network is
cut down (dropped, every second answer slipped as TC) while another network
is answered in full, TCP is never limited, and the flooder recovers after
the window. Sources are distinct loopback addresses (127.0.1.1, 127.0.2.1).
"""

from __future__ import annotations

import socket
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

pytestmark = pytest.mark.e2e

ZONE = "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\nwww A 192.0.2.1\n"
RATE = 10
WINDOW = 2


def flood(port: int, source: str, count: int, name: str = "www.example.com") -> dict[str, int]:
    """Send ``count`` queries from ``source`` as fast as possible; classify answers."""
    outcome = {"full": 0, "slipped": 0, "other": 0}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        for i in range(count):
            query = dns.message.make_query(name.replace("*", str(i)), "A")  # "*": a new name each time
            s.sendto(query.to_wire(), ("127.0.0.1", port))
        s.settimeout(0.5)
        try:
            while True:
                answer = dns.message.from_wire(s.recv(65535))
                if answer.flags & dns.flags.TC and not answer.answer:
                    outcome["slipped"] += 1
                elif answer.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                    outcome["full"] += 1
                else:
                    outcome["other"] += 1
        except socket.timeout:
            pass
    return outcome


def ask(port: int, source: str, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query("www.example.com", "A")
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.1", port=port, timeout=2, source=source)


def test_flood_is_limited_while_another_network_is_answered(aliasd):
    process = aliasd(
        f"""
        [rate-limit]
        responses-per-second = {RATE}
        window = {WINDOW}
        slip = 2
        [zones."example.com"]
        file = "example.com.zone"
        """,
        {"example.com.zone": ZONE},
    )
    started = time.monotonic()
    flooded = flood(process.port, "127.0.1.1", 400)
    elapsed = time.monotonic() - started
    # At most one second's burst plus what the rate earns while sending.
    assert flooded["full"] <= RATE + RATE * elapsed + 1, (flooded, elapsed)
    assert flooded["full"] >= RATE - 1, flooded
    limited = 400 - flooded["full"]
    # slip = 2: every second limited answer is sent as an empty TC answer.
    assert abs(flooded["slipped"] - limited / 2) <= 2, flooded
    assert flooded["other"] == 0
    # Another /24 is answered in full meanwhile, and the flooder's TCP too.
    for _ in range(5):
        answer = ask(process.port, "127.0.2.1")
        assert answer.answer and not answer.flags & dns.flags.TC
    assert ask(process.port, "127.0.1.1", tcp=True).answer[0][0].address == "192.0.2.1"
    # The same /24 shares the account: 127.0.1.2 is limited too.
    assert flood(process.port, "127.0.1.2", 20)["full"] <= 2
    # A random-subdomain flood shares one NXDOMAIN account per zone.
    nx = flood(process.port, "127.0.3.1", 200, name="r*.example.com")
    assert nx["full"] <= RATE + 5 and nx["slipped"] > 50, nx
    # After the window without traffic, the flooder is answered again.
    time.sleep(WINDOW + 0.5)
    assert ask(process.port, "127.0.1.1").answer[0][0].address == "192.0.2.1"
    print(f"RRL flood of 400 in {elapsed:.2f}s: {flooded}; NXDOMAIN flood of 200: {nx}")
    log = process.log()
    assert "rate limiting responses to 127.0.1.0/24" in log
    assert "rate limit 10/s per answer" in log


def test_rate_limiting_is_off_by_default(aliasd):
    process = aliasd('[zones."example.com"]\nfile = "example.com.zone"\n', {"example.com.zone": ZONE})
    flooded = flood(process.port, "127.0.1.1", 200)
    assert flooded["slipped"] == 0 and flooded["full"] >= 195, flooded
