"""A small upstream DNS server for tests, whose answers the test changes.

It runs in threads of the test process on a loopback port (UDP and TCP) and
answers A/AAAA (and CNAME chains) from a table the test edits while aliasd
runs. Per name it can also misbehave: SERVFAIL, REFUSED, NXDOMAIN, stay
silent ("drop"), answer late ("delay:SECONDS"), send garbage ("garbage"),
or set TC over UDP so the client must ask again over TCP ("truncate"), or
answer with the question's name in lower case and other addresses, as a
spoofer who does not know the query's case would ("spoof-case").
``rotate`` serves a different subset of a pool on every query, as some CDNs do.
``validated`` names get answers with AD set, as from a validating resolver.
``received`` records each UDP query as sent: (name with its case, ID,
source port, AD asked).
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset


class UpstreamServer:
    """A loopback DNS server with a mutable answer table."""

    def __init__(self, host: str = "127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(100):  # a port free for both UDP and TCP
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.bind((host, 0))
            self.port = self.sock.getsockname()[1]
            self.tcp = socket.socket(family, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind((host, self.port))
                break
            except OSError:
                self.tcp.close()
                self.sock.close()
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        self.sock.settimeout(0.1)
        self.host = host
        self.tcp.listen(16)
        self.tcp.settimeout(0.1)
        self.zone_apex = dns.name.from_text("upstream.test.")
        self._lock = threading.Lock()
        self._records: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        self._behaviour: dict[dns.name.Name, str] = {}
        self._rotations: dict[tuple[dns.name.Name, int], tuple] = {}
        self.queries: list[tuple[str, str]] = []
        self.tcp_queries: list[tuple[str, str]] = []
        self.received: list[tuple[str, int, int, bool]] = []
        self._validated: set[dns.name.Name] = set()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def set(self, name: str, rdtype: str, values: list[str], ttl: int = 1) -> None:
        """Answer ``name``/``rdtype`` with ``values`` (empty: NODATA)."""
        owner = dns.name.from_text(name)
        with self._lock:
            self._behaviour.pop(owner, None)
            key = (owner, dns.rdatatype.from_text(rdtype))
            self._rotations.pop(key, None)
            if values:
                self._records[key] = dns.rrset.from_text_list(owner, ttl, "IN", rdtype, values)
            else:
                self._records.pop(key, None)

    def rotate(self, name: str, rdtype: str, pool: list[str], size: int, ttl: int = 1) -> None:
        """Answer with the next ``size`` addresses of ``pool`` on every query."""
        owner = dns.name.from_text(name)
        key = (owner, dns.rdatatype.from_text(rdtype))
        with self._lock:
            self._behaviour.pop(owner, None)
            self._rotations[key] = (itertools.count(), list(pool), size, ttl, rdtype)
            self._records[key] = dns.rrset.from_text_list(owner, ttl, "IN", rdtype, pool[:size])

    def behave(self, name: str, behaviour: str | None) -> None:
        """Make ``name`` misbehave (see the module docstring); None: normal."""
        owner = dns.name.from_text(name)
        with self._lock:
            if behaviour is None:
                self._behaviour.pop(owner, None)
            else:
                self._behaviour[owner] = behaviour

    def validated(self, name: str, flag: bool = True) -> None:
        """Answer ``name`` with AD set (True) or clear (False)."""
        owner = dns.name.from_text(name)
        with self._lock:
            (self._validated.add if flag else self._validated.discard)(owner)

    def count(self, name: str, rdtype: str = "A") -> int:
        """How many queries (UDP) for ``name``/``rdtype`` have arrived."""
        wanted = (dns.name.from_text(name).to_text().lower(), rdtype)
        with self._lock:
            return sum(1 for q in self.queries if q == wanted)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        self.sock.close()
        self.tcp.close()

    # -- serving ---------------------------------------------------------

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            with self._lock:
                self.received.append((query.question[0].name.to_text(), query.id, peer[1],
                                      bool(query.flags & dns.flags.AD)))
            behaviour, response = self._answer(query, self.queries)
            if behaviour == "drop" or response is None:
                continue
            if behaviour == "garbage":
                self.sock.sendto(data[:2] + b"\x81\x80\x00\x01\x00\x05", peer)
                continue
            if behaviour == "spoof-case":
                forged = dns.message.make_response(dns.message.from_wire(data))
                lower = dns.name.from_text(query.question[0].name.to_text().lower())
                forged.question[0].name = lower
                forged.answer.append(dns.rrset.from_text(lower, 60, "IN", "A", "198.18.0.66"))
                self.sock.sendto(forged.to_wire(), peer)
                continue
            if behaviour == "truncate":
                truncated = dns.message.make_response(query)
                truncated.flags |= dns.flags.TC
                self.sock.sendto(truncated.to_wire(), peer)
                continue
            wire = response.to_wire()
            if behaviour and behaviour.startswith("delay:"):
                delay = float(behaviour.split(":", 1)[1])
                threading.Timer(delay, self._send_late, (wire, peer)).start()
                continue
            self.sock.sendto(wire, peer)

    def _send_late(self, wire: bytes, peer) -> None:
        if not self._stop.is_set():
            try:
                self.sock.sendto(wire, peer)
            except OSError:
                pass

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve_connection, args=(conn,), daemon=True).start()

    def _serve_connection(self, conn: socket.socket) -> None:
        """Any number of queries on one TCP connection (RFC 7766)."""
        with conn:
            conn.settimeout(2)
            while not self._stop.is_set():
                try:
                    header = conn.recv(2, socket.MSG_WAITALL)
                    if len(header) < 2:
                        return
                    (length,) = struct.unpack("!H", header)
                    query = dns.message.from_wire(conn.recv(length, socket.MSG_WAITALL))
                except Exception:
                    return
                _, response = self._answer(query, self.tcp_queries)
                if response is not None:
                    wire = response.to_wire()
                    conn.sendall(struct.pack("!H", len(wire)) + wire)

    def _answer(self, query: dns.message.Message, log: list) -> tuple[str | None, dns.message.Message | None]:
        response = dns.message.make_response(query, recursion_available=True)
        question = query.question[0]
        with self._lock:
            if question.name in self._validated:
                response.flags |= dns.flags.AD
            log.append((question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype)))
            behaviour = self._behaviour.get(question.name)
            if behaviour in ("servfail", "refused", "nxdomain"):
                response.set_rcode(dns.rcode.from_text(behaviour.upper()))
                return behaviour, response
            rotation = self._rotations.get((question.name, question.rdtype))
            if rotation is not None:
                counter, pool, size, ttl, rdtype = rotation
                start = next(counter) * size
                chosen = [pool[(start + i) % len(pool)] for i in range(size)]
                self._records[(question.name, question.rdtype)] = dns.rrset.from_text_list(
                    question.name, ttl, "IN", rdtype, chosen
                )
            name = question.name
            for _ in range(8):
                rrset = self._records.get((name, question.rdtype))
                if rrset is not None:
                    response.answer.append(rrset)
                    return behaviour, response
                cname = self._records.get((name, dns.rdatatype.CNAME))
                if cname is None:
                    break
                response.answer.append(cname)
                name = cname[0].target
            exists = any(owner == name for owner, _ in self._records)
            if not exists and not response.answer:
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(
                dns.rrset.from_text(
                    self.zone_apex, 5, "IN", "SOA", "ns.upstream.test. h.upstream.test. 1 60 60 600 5"
                )
            )
            return behaviour, response
