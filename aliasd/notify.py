"""DNS NOTIFY (RFC 1996): tell secondaries that a zone has a new serial.

NotifySender keeps one pending notification per (zone, secondary). Each
new serial gets a NOTIFY with a fresh query ID and the new SOA; it is
retransmitted with doubling timeouts until the matching response arrives
(same ID, from that address and port, QR set, opcode NOTIFY) or the tries run
out. A newer serial replaces a pending retry for the same zone and target.
Every outcome is logged once. NOTIFY is signed with the zone's transfer key
when it has one, and a signed response is checked with it.

NotifyService owns the UDP sockets (one per address family) and sends the
start-up notifications once the reactor runs.
"""

from __future__ import annotations

import dataclasses
import random
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

from aliasd.config import Endpoint
from aliasd.stats import Statistics
from aliasd.zone import ZoneVersion

log = Logger()


@dataclasses.dataclass
class _Pending:
    zone: dns.name.Name
    target: Endpoint
    serial: int
    query_id: int
    wire: bytes
    request: dns.message.Message
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
        self.acknowledged = 0
        self.failed = 0

    def zone_changed(self, version: ZoneVersion) -> None:
        """Notify every secondary of ``version``'s zone of its serial.

        Before the sockets are open (versions built at start-up) nothing is
        sent: NotifyService notifies every zone once it has started.
        """
        if self.send is None:
            return
        for target in self.targets.get(version.origin, ()):
            self._start(version, target)

    def _start(self, version: ZoneVersion, target: Endpoint) -> None:
        old = self._pending.pop((version.origin, target), None)
        if old is not None:
            self._forget(old)
            log.info(
                "NOTIFY {zone} serial {old} to {target} superseded by serial {serial}",
                zone=version.origin.to_text(), old=old.serial, target=str(target),
                serial=version.serial,
            )
        query_id = self._fresh_id(target)
        request = dns.message.make_query(version.origin, dns.rdatatype.SOA, id=query_id)
        request.set_opcode(dns.opcode.NOTIFY)
        request.flags = (request.flags & ~dns.flags.RD) | dns.flags.AA
        request.answer.append(version.soa)
        key = self.keys.get(version.origin)
        if key is not None:
            request.use_tsig(key)
        wire = request.to_wire()
        pending = _Pending(version.origin, target, version.serial, query_id, wire, request)
        self._pending[(version.origin, target)] = pending
        self._by_id[(query_id, target.host, target.port)] = pending
        self.stats.inc("aliasd_notify_total", zone=version.origin.to_text(), outcome="sent")
        self._transmit(pending)

    def _fresh_id(self, target: Endpoint) -> int:
        while True:
            query_id = random.SystemRandom().randrange(0, 65536)
            if (query_id, target.host, target.port) not in self._by_id:
                return query_id

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
        self.stats.inc("aliasd_notify_total", zone=pending.zone.to_text(), outcome="failed")
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
            signed = pending.request.tsig is not None
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
        self.stats.inc("aliasd_notify_total", zone=pending.zone.to_text(), outcome=outcome)
        if rcode == dns.rcode.NOERROR:
            self.acknowledged += 1
            log.info(
                "NOTIFY {zone} serial {serial} to {target} acknowledged after {tries} tries",
                zone=pending.zone.to_text(), serial=pending.serial, target=str(pending.target),
                tries=pending.tries,
            )
        else:
            self.failed += 1
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
        self._by_id.pop((pending.query_id, pending.target.host, pending.target.port), None)
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

    def __init__(self, sender: NotifySender, reactor, current_versions: Callable[[], list[ZoneVersion]]):
        self.sender = sender
        self.reactor = reactor
        self.current_versions = current_versions
        self._ports: dict[int, object] = {}

    def startService(self) -> None:
        super().startService()
        wanted = {4 if ":" not in t.host else 6 for ts in self.sender.targets.values() for t in ts}
        for family in sorted(wanted):
            interface = "::" if family == 6 else "0.0.0.0"
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
