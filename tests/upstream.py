"""A small upstream DNS server for tests, whose answers the test changes.

It runs in a thread of the test process on a loopback UDP port and answers
A/AAAA (and CNAME chains) from a table the test edits while aliasd runs;
per name it can also SERVFAIL, REFUSE, say NXDOMAIN or stay silent.
"""

from __future__ import annotations

import socket
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
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.zone_apex = dns.name.from_text("upstream.test.")
        self._lock = threading.Lock()
        self._records: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        self._behaviour: dict[dns.name.Name, str] = {}
        self.queries: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def set(self, name: str, rdtype: str, values: list[str], ttl: int = 1) -> None:
        """Answer ``name``/``rdtype`` with ``values`` (empty: NODATA)."""
        owner = dns.name.from_text(name)
        with self._lock:
            self._behaviour.pop(owner, None)
            key = (owner, dns.rdatatype.from_text(rdtype))
            if values:
                self._records[key] = dns.rrset.from_text_list(owner, ttl, "IN", rdtype, values)
            else:
                self._records.pop(key, None)

    def behave(self, name: str, behaviour: str | None) -> None:
        """Make ``name`` answer "servfail", "refused", "nxdomain" or "drop"."""
        owner = dns.name.from_text(name)
        with self._lock:
            if behaviour is None:
                self._behaviour.pop(owner, None)
            else:
                self._behaviour[owner] = behaviour

    def count(self, name: str, rdtype: str = "A") -> int:
        """How many queries for ``name``/``rdtype`` have arrived."""
        wanted = (dns.name.from_text(name).to_text().lower(), rdtype)
        with self._lock:
            return sum(1 for q in self.queries if q == wanted)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def _serve(self) -> None:
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
            response = self._answer(query)
            if response is not None:
                self.sock.sendto(response.to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        response = dns.message.make_response(query, recursion_available=True)
        question = query.question[0]
        with self._lock:
            self.queries.append(
                (question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype))
            )
            behaviour = self._behaviour.get(question.name)
            if behaviour == "drop":
                return None
            if behaviour in ("servfail", "refused", "nxdomain"):
                response.set_rcode(dns.rcode.from_text(behaviour.upper()))
                return response
            name = question.name
            for _ in range(8):
                rrset = self._records.get((name, question.rdtype))
                if rrset is not None:
                    response.answer.append(rrset)
                    return response
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
            return response
