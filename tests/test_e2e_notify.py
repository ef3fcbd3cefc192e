"""End to end: NOTIFY to IPv4 and IPv6 secondaries, retransmitted until answered."""

from __future__ import annotations

import socket
import threading
import time

import dns.flags
import dns.message
import dns.opcode
import pytest

from tests.test_e2e_transfer import ZONE, config

pytestmark = pytest.mark.e2e


class NotifyListener:
    """A UDP socket that records NOTIFY messages and answers when told to."""

    def __init__(self, host: str):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self.received: list[tuple[float, dns.message.Message]] = []
        self.sources: list[str] = []  # the address each NOTIFY came from
        self.answering = True
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            message = dns.message.from_wire(data)
            self.sources.append(peer[0])
            self.received.append((time.monotonic(), message))
            if self.answering:
                self.sock.sendto(dns.message.make_response(message).to_wire(), peer)

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listeners():
    made = []

    def make(host):
        made.append(NotifyListener(host))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


def test_notify_reaches_ipv4_and_ipv6_secondaries_with_retries(aliasd, upstream, listeners):
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=30)
    v6 = listeners("::1")
    v4 = listeners("127.0.0.1")
    v4.answering = False
    p = aliasd(
        config(upstream, extra=f'notify = ["{v6.endpoint}", "{v4.endpoint}"]'),
        {"example.com.zone": ZONE},
    )
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.1"})
    serial = p.query("example.com", "SOA").answer[0][0].serial
    p.wait_for(lambda: any(m.answer[0][0].serial == serial for _, m in v6.received))
    message = [m for _, m in v6.received if m.answer[0][0].serial == serial][-1]
    assert message.opcode() == dns.opcode.NOTIFY and message.flags & dns.flags.AA
    assert message.question[0].name.to_text() == "example.com."
    # The silent IPv4 secondary gets the same NOTIFY again, with growing gaps.
    p.wait_for(lambda: len([m for _, m in v4.received if m.answer[0][0].serial == serial]) >= 3, timeout=15)
    tries = [(t, m) for t, m in v4.received if m.answer[0][0].serial == serial]
    assert len({m.id for _, m in tries}) == 1
    gaps = [b[0] - a[0] for a, b in zip(tries, tries[1:])]
    assert gaps[1] > gaps[0] * 1.5
    v4.answering = True
    p.wait_for(lambda: f"to {v4.endpoint} acknowledged" in p.log(), timeout=15)
    assert f"NOTIFY example.com. serial {serial} to [::1]:{v6.port} acknowledged" in p.log()
    # Each serial got a fresh query ID.
    assert len({m.id for _, m in v6.received}) == len({m.answer[0][0].serial for _, m in v6.received})


@pytest.mark.parametrize("setting, expected", [
    ('notify-source = "127.0.0.7"', "127.0.0.7"),  # set explicitly
    ("", "127.0.0.5"),  # the one IPv4 address aliasd listens on
])
def test_notify_leaves_from_the_primarys_own_address(aliasd, setting, expected):
    """Secondaries accept NOTIFY only from the address they transfer from."""
    listener = NotifyListener("127.0.0.1")
    try:
        p = aliasd(
            f"""
            [zones."example.com"]
            file = "example.com.zone"
            notify = ["{listener.endpoint}"]
            """,
            {"example.com.zone": ZONE},
            args=["--listen", "127.0.0.5"], server=setting + "\n", host="127.0.0.5",
        )
        p.wait_for(lambda: listener.received, timeout=10)
        assert set(listener.sources) == {expected}
    finally:
        listener.close()
