"""DNS NOTIFY (RFC 1996): tell secondaries that a zone has a new serial.

NotifySender keeps one pending notification per (zone, secondary). New
serials wait in a queue that is drained at ``rate`` messages per second
across all secondaries (a target shared by ten thousand zones must not
become a burst of ten thousand datagrams); a newer serial replaces a queued
one for the same zone and secondary. Each NOTIFY sent gets a query ID not in
use towards that secondary, and the new SOA; it is
retransmitted with doubling timeouts until the matching response arrives
(same ID, from that address and port, QR set, opcode NOTIFY) or the tries run
out. A newer serial replaces a pending retry for the same zone and target.
Every outcome is logged once. NOTIFY is signed with the zone's transfer key
when it has one, and a signed response is checked with it.

NotifyService owns the UDP sockets (one per address family, bound to the
configured ``notify-source`` or to the one address aliasd listens on in
that family, since secondaries accept NOTIFY only from their primary's
address) and sends the start-up notifications once the reactor runs.
"""

from __future__ import annotations

import collections
import dataclasses
import random
import struct
import sys
from typing import Callable, Mapping

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsig
from twisted.application import service
from twisted.internet import error, protocol
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aliasd.base import store
from aliasd.base.config import Endpoint
from aliasd.base.logthrottle import LogThrottle
from aliasd.base.stats import Statistics
from aliasd.zones.zone import ZoneVersion

log = Logger()


_NOTIFY_FLAGS = (dns.opcode.NOTIFY << 11) | dns.flags.AA


def _notify_wire(version: ZoneVersion, query_id: int) -> bytes:
    """An unsigned NOTIFY (RFC 1996) for ``version``: the zone's SOA in the
    question and the new SOA in the answer, its owner a pointer to the question."""
    packed = version.soa_packed
    owner = store.owner_of(packed)
    _, ttl, _, start, end = next(store.directory(packed))
    rdata = next(store.rdata_wires(packed, start, end))
    return (
        struct.pack("!HHHHHH", query_id, _NOTIFY_FLAGS, 1, 1, 0, 0)
        + owner + struct.pack("!HH", dns.rdatatype.SOA, 1)
        + b"\xc0\x0c" + struct.pack("!HHIH", dns.rdatatype.SOA, 1, ttl, len(rdata)) + rdata
    )


@dataclasses.dataclass(slots=True)
class _Pending:
    zone: dns.name.Name
    target: Endpoint
    serial: int
    query_id: int
    wire: bytes
    request: dns.message.Message | None  # kept when signed: its MAC checks the answer
    tries: int = 0
    timer: object = None


class NotifySender:
    """Sends NOTIFY, retransmits, matches responses; no sockets of its own."""

    def __init__(
        self,
        clock: IReactorTime,
        targets: Mapping[dns.name.Name, tuple[Endpoint, ...]],
        keys: Mapping[dns.name.Name, dns.tsig.Key] | None = None,
        *,
        send: Callable[[bytes, Endpoint], None] | None = None,
        first_timeout: float = 1.0,
        max_tries: int = 5,
        stats: Statistics | None = None,
        rate: float = 500.0,
    ):
        self.clock = clock
        self.targets = dict(targets)
        self.keys = dict(keys or {})
        self.send = send
        self.first_timeout = first_timeout
        self.max_tries = max_tries
        self.stats = stats if stats is not None else Statistics()
        self._pending: dict[tuple[dns.name.Name, Endpoint], _Pending] = {}
        self._by_id: dict[tuple[int, str, int], _Pending] = {}
        self._in_use: collections.Counter = collections.Counter()  # IDs in use per target
        # (zone, target) -> the newest version not sent yet, oldest first.
        # (An OrderedDict: taken from the front, which a plain dict finds
        # past every slot popped before it; thousands are queued at start.)
        self._queue: collections.OrderedDict[tuple[dns.name.Name, Endpoint], ZoneVersion] = collections.OrderedDict()
        self.rate = rate
        self._tokens: float | None = None  # a full burst until first used
        self._refilled_at = 0.0
        self._pump_call = None
        self._random = random.SystemRandom()
        # Thousands of zones change at once: their outcomes would be
        # thousands of lines at the same moment (a reactor stall of their own).
        self._ok_log = LogThrottle("acknowledged NOTIFYs", burst=20)
        self._failed_log = LogThrottle("failed NOTIFYs", burst=20)
        self._superseded_log = LogThrottle("superseded NOTIFYs", burst=20)
        self.acknowledged = 0
        self.failed = 0
        # (zone, target) -> (the last outcome as text, its serial): aliasd-ctl zone-status
        self.outcomes: dict[tuple[dns.name.Name, Endpoint], tuple[str, int]] = {}

    def zone_changed(self, version: ZoneVersion) -> None:
        """Notify every secondary of ``version``'s zone of its serial.

        Before the sockets are open (versions built at start-up) nothing is
        sent: NotifyService notifies every zone once it has started.
        """
        if self.send is None:
            return
        for target in self.targets.get(version.origin, ()):
            key = (version.origin, target)
            self._queue.pop(key, None)  # a newer serial goes to the back, replacing the older
            self._queue[key] = version
        self._pump()

    @property
    def retry_span(self) -> float:
        """Seconds from a NOTIFY's first sending until its last try times
        out (1 + 2 + 4 + 8 + 16 = 31 by default): a secondary still on an
        older serial after that was told, or could not be."""
        return self.first_timeout * (2**self.max_tries - 1)

    def notify_again(self, versions: list[ZoneVersion]) -> int:
        """Send NOTIFY for these versions to their secondaries now (``aliasd-ctl
        notify``); returns how many secondaries are queued."""
        for version in versions:
            self.zone_changed(version)
        return sum(len(self.targets.get(v.origin, ())) for v in versions)

    def last_answers(self, origin: dns.name.Name) -> list[dict]:
        """Each secondary of the zone and the outcome of its last NOTIFY."""
        rows = []
        for target in self.targets.get(origin, ()):
            pending = self._pending.get((origin, target))
            queued = (origin, target) in self._queue
            outcome = self.outcomes.get((origin, target))
            rows.append({
                "target": str(target),
                "state": "queued" if queued else f"waiting (try {pending.tries})" if pending else
                         outcome[0] if outcome else "not sent",
                "serial": pending.serial if pending else outcome[1] if outcome else None,
            })
        return rows

    @property
    def queued(self) -> int:
        """NOTIFYs waiting for their turn under the rate limit."""
        return len(self._queue)

    def _pump(self) -> None:
        """Send queued NOTIFYs as the rate allows; come back for the rest."""
        if self._pump_call is not None and self._pump_call.active():
            return
        self._pump_call = None
        now = self.clock.seconds()
        burst = max(1.0, self.rate / 10)  # up to a tenth of a second's worth at once
        if self._tokens is None:
            self._tokens = burst
        self._tokens = min(burst, self._tokens + (now - self._refilled_at) * self.rate)
        self._refilled_at = now
        deferred = []
        while self._queue and self._tokens >= 1.0 and self.send is not None:
            key, version = self._queue.popitem(last=False)
            if not self._start(version, key[1]):
                deferred.append((key, version))  # every query ID in use: later
                continue
            self._tokens -= 1.0
        for key, version in deferred:
            self._queue.setdefault(key, version)
        if self._queue and self.send is not None:
            wait = max((1.0 - self._tokens) / self.rate, 0.01)  # at most 100 wake-ups a second
            if deferred and len(deferred) == len(self._queue):
                wait = max(wait, self.first_timeout)
            self._pump_call = self.clock.callLater(wait, self._pump)

    def _start(self, version: ZoneVersion, target: Endpoint) -> bool:
        query_id = self._fresh_id(target)
        if query_id is None:
            return False
        old = self._pending.pop((version.origin, target), None)
        if old is not None:
            self._forget(old)
            if self._superseded_log.allow():
                log.info(
                    "NOTIFY {zone} serial {old} to {target} superseded by serial {serial}",
                    zone=version.origin.to_text(), old=old.serial, target=str(target),
                    serial=version.serial,
                )
        key = self.keys.get(version.origin)
        if key is None:  # the common case, written from the packed SOA (thousands at once)
            request = None
            wire = _notify_wire(version, query_id)
        else:
            request = dns.message.make_query(version.origin, dns.rdatatype.SOA, id=query_id)
            request.set_opcode(dns.opcode.NOTIFY)
            request.flags = (request.flags & ~dns.flags.RD) | dns.flags.AA
            request.answer.append(version.soa)
            request.use_tsig(key)
            wire = request.to_wire()
        pending = _Pending(version.origin, target, version.serial, query_id, wire, request)
        self._pending[(version.origin, target)] = pending
        self._by_id[(query_id, target.host, target.port)] = pending
        self._in_use[(target.host, target.port)] += 1
        self.stats.inc("aliasd_notify_total", outcome="sent")
        self._transmit(pending)
        return True

    #: DNS query IDs are 16 bits (smaller only in unit tests).
    id_space = 65536

    def _fresh_id(self, target: Endpoint) -> int | None:
        """A random query ID not in use towards ``target``, or None if all are.

        Random while few are in use (RFC 5452: unpredictable IDs); a scan
        when the space is nearly full, so this never loops for long.
        """
        host, port = target.host, target.port
        space = self.id_space
        if self._in_use[(host, port)] >= space:
            return None
        for _ in range(32):
            query_id = self._random.randrange(0, space)
            if (query_id, host, port) not in self._by_id:
                return query_id
        start = self._random.randrange(0, space)
        for offset in range(space):
            query_id = (start + offset) % space
            if (query_id, host, port) not in self._by_id:
                return query_id
        return None

    def _transmit(self, pending: _Pending) -> None:
        pending.tries += 1
        if self.send is not None:
            try:
                self.send(pending.wire, pending.target)
            except Exception as e:  # e.g. no route, no IPv6 socket
                log.warn(
                    "NOTIFY {zone} to {target}: cannot send: {error}",
                    zone=pending.zone.to_text(), target=str(pending.target), error=str(e),
                )
        timeout = self.first_timeout * 2 ** (pending.tries - 1)
        pending.timer = self.clock.callLater(timeout, self._timed_out, pending)

    def _timed_out(self, pending: _Pending) -> None:
        pending.timer = None
        if pending.tries < self.max_tries:
            self._transmit(pending)
            return
        self.failed += 1
        self.stats.inc("aliasd_notify_total", outcome="failed")
        # (interned: thousands of zones fail alike when a secondary is down)
        self.outcomes[(pending.zone, pending.target)] = (sys.intern(f"no response after {pending.tries} tries"),
                                                         pending.serial)
        if self._failed_log.allow():
            log.warn(
                "NOTIFY {zone} serial {serial} to {target} failed: no response after {tries} tries",
                zone=pending.zone.to_text(), serial=pending.serial, target=str(pending.target),
                tries=pending.tries,
            )
        self._drop(pending)

    def response_received(self, data: bytes, host: str, port: int) -> None:
        """A datagram arrived on a NOTIFY socket: match it to a pending NOTIFY."""
        if len(data) < 12:
            return
        query_id = int.from_bytes(data[:2], "big")
        pending = self._by_id.get((query_id, host, port))
        if pending is None:
            return
        try:
            signed = pending.request is not None and pending.request.tsig is not None
            response = dns.message.from_wire(
                data,
                keyring=pending.request.keyring if signed else False,
                request_mac=pending.request.mac if signed else b"",
            )
        except (dns.exception.DNSException, ValueError) as e:
            log.warn(
                "NOTIFY {zone} to {target}: bad response: {error}",
                zone=pending.zone.to_text(), target=str(pending.target), error=str(e) or type(e).__name__,
            )
            return
        if not response.flags & dns.flags.QR or response.opcode() != dns.opcode.NOTIFY:
            return
        if response.question and response.question[0].name != pending.zone:
            return
        rcode = response.rcode()
        outcome = "acknowledged" if rcode == dns.rcode.NOERROR else "failed"
        self.stats.inc("aliasd_notify_total", outcome=outcome)
        self.outcomes[(pending.zone, pending.target)] = (
            f"answered {dns.rcode.to_text(rcode)} after {pending.tries} tries", pending.serial)
        if rcode == dns.rcode.NOERROR:
            self.acknowledged += 1
            if self._ok_log.allow():
                log.info(
                    "NOTIFY {zone} serial {serial} to {target} acknowledged after {tries} tries",
                    zone=pending.zone.to_text(), serial=pending.serial, target=str(pending.target),
                    tries=pending.tries,
                )
        else:
            self.failed += 1
        if rcode != dns.rcode.NOERROR and self._failed_log.allow():
            log.warn(
                "NOTIFY {zone} serial {serial} to {target} answered {rcode}",
                zone=pending.zone.to_text(), serial=pending.serial, target=str(pending.target),
                rcode=dns.rcode.to_text(rcode),
            )
        self._drop(pending)

    def _drop(self, pending: _Pending) -> None:
        if self._pending.get((pending.zone, pending.target)) is pending:
            del self._pending[(pending.zone, pending.target)]
        self._forget(pending)

    def _forget(self, pending: _Pending) -> None:
        if self._by_id.pop((pending.query_id, pending.target.host, pending.target.port), None) is not None:
            self._in_use[(pending.target.host, pending.target.port)] -= 1
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None

    def pending(self) -> list[tuple[str, str, int, int]]:
        """(zone, target, serial, tries) of every NOTIFY still waiting."""
        return [
            (p.zone.to_text(), str(p.target), p.serial, p.tries) for p in self._pending.values()
        ]

    def stop(self) -> None:
        for pending in list(self._pending.values()):
            self._forget(pending)
        self._pending.clear()
        self._queue.clear()
        if self._pump_call is not None and self._pump_call.active():
            self._pump_call.cancel()
        self._pump_call = None


class _NotifyProtocol(protocol.DatagramProtocol):
    noisy = False

    def __init__(self, sender: NotifySender):
        self.sender = sender

    def datagramReceived(self, data: bytes, addr) -> None:
        try:
            self.sender.response_received(data, addr[0], addr[1])
        except Exception:
            log.failure("unexpected error handling a NOTIFY response from {addr}", addr=addr)


class NotifyService(service.Service):
    """Owns the NOTIFY sockets; notifies every zone's secondaries at start."""

    def __init__(
        self,
        sender: NotifySender,
        reactor,
        current_versions: Callable[[], list[ZoneVersion]],
        sources: tuple[str, ...] = (),
        listen: tuple[str, ...] = (),
    ):
        self.sender = sender
        self.reactor = reactor
        self.current_versions = current_versions
        self.sources = sources
        self.listen = listen
        self._ports: dict[int, object] = {}

    def source_for(self, family: int) -> str:
        """The address NOTIFY leaves from: ``notify-source``, else the one
        address aliasd listens on in that family, else any (the kernel picks)."""
        for address in self.sources:
            if (":" in address) == (family == 6):
                return address
        listening = [a for a in self.listen if (":" in a) == (family == 6)]
        if len(listening) == 1 and listening[0] not in ("0.0.0.0", "::"):
            return listening[0]
        return "::" if family == 6 else "0.0.0.0"

    def startService(self) -> None:
        super().startService()
        wanted = {4 if ":" not in t.host else 6 for ts in self.sender.targets.values() for t in ts}
        for family in sorted(wanted):
            interface = self.source_for(family)
            try:
                self._ports[family] = self.reactor.listenUDP(0, _NotifyProtocol(self.sender), interface=interface)
            except error.CannotListenError as e:
                log.error("cannot open a NOTIFY socket for IPv{family}: {error}", family=family, error=str(e))
        self.sender.send = self._send
        for version in self.current_versions():
            self.sender.zone_changed(version)

    def _send(self, wire: bytes, target: Endpoint) -> None:
        port = self._ports.get(6 if ":" in target.host else 4)
        if port is None:
            raise OSError("no socket for this address family")
        port.write(wire, (target.host, target.port))

    def stopService(self):
        super().stopService()
        self.sender.send = None
        self.sender.stop()
        for port in self._ports.values():
            port.stopListening()
        self._ports.clear()
