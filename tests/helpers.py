"""Helpers shared by tests: zone sources, a hand-driven upstream, socket reads."""

from __future__ import annotations

import socket
import tempfile
import textwrap
from pathlib import Path

import dns.rdatatype as T
from twisted.internet import defer
from twisted.names import dns as tdns

from aliasd.zones.zonefile import ZoneSource, load_zone_file


def zone_source(origin: str, text: str) -> ZoneSource:
    """Parse zone text through the real loader (via a temporary file)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "zone"
        path.write_text(textwrap.dedent(text))
        return load_zone_file(origin, path)


class ManualUpstream:
    """An IResolver stand-in: each lookup waits for the test to answer it."""

    def __init__(self):
        self.pending: list[tuple[str, int, defer.Deferred]] = []

    def lookupAddress(self, name, timeout=None):
        return self._lookup(name, T.A)

    def lookupIPV6Address(self, name, timeout=None):
        return self._lookup(name, T.AAAA)

    def _lookup(self, name, rdtype):
        d = defer.Deferred()
        self.pending.append((name, rdtype, d))
        return d

    def take(self, rdtype=T.A) -> defer.Deferred:
        for i, (_, t, d) in enumerate(self.pending):
            if t == rdtype:
                del self.pending[i]
                return d
        raise AssertionError(f"no pending {rdtype} lookup")


def a_answer(name: str, *addresses: str, ttl: int = 60):
    return (
        [tdns.RRHeader(name, tdns.A, ttl=ttl, payload=tdns.Record_A(a, ttl)) for a in addresses],
        [],
        [],
    )


def recv_exactly(s: socket.socket, n: int) -> bytes:
    """Read exactly ``n`` octets from a stream socket."""
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


def update_summary(message) -> tuple:
    """What the update path reads of a parsed UPDATE: header, zone, each
    prerequisite and update RR as an RRset (name, class, type, covers,
    deleting, TTL, rdatas in wire form) and the TSIG; for comparing
    aliasd.update.wireparse with dnspython's full parse."""
    def rrsets(section):
        return [(r.name, r.rdclass, r.rdtype, r.covers, r.deleting, r.ttl, sorted(rd.to_wire() for rd in r))
                for r in section]
    return (message.id, int(message.flags), message.opcode(), message.edns,
            [(r.name, r.rdclass, r.rdtype) for r in message.question],
            rrsets(message.prerequisite), rrsets(message.update),
            message.had_tsig, message.keyname, message.mac)


def reactor_turn(clock) -> None:
    """Run the calls due now, as one turn of a real reactor does: those
    they schedule for now run in the next turn (Clock.advance runs them too)."""
    due = [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.called = 1
        call.func(*call.args, **call.kw)
