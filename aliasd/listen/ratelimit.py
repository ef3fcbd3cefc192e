"""Response rate limiting (RRL) for UDP answers, as BIND 9 and Knot do it.

An authoritative server is a handy amplifier: a small query with a spoofed
source address draws a larger answer at the victim. RRL caps how many
alike answers one client network receives per second; past that cap the
answers are dropped, except every ``slip``-th, which goes out as an empty
truncated answer so that a real client behind the address retries over TCP
(never limited: TCP cannot be spoofed). ``ResponseRateLimiter.check`` runs
for every UDP answer, so it reads only the header and the question from the
raw wire and parses names with dnspython only for NXDOMAIN/NODATA answers
whose zone name is not simply a suffix of the question.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from typing import Callable

import dns.exception
import dns.name
import dns.rdatatype
from twisted.logger import Logger

from aliasd.base import store
from aliasd.base.config import RateLimitSettings
from aliasd.base.fastpath import question_end
from aliasd.base.logthrottle import LogThrottle
from aliasd.base.stats import Statistics

log = Logger()

_HEADER = struct.Struct("!HHHHHH")
_TC = 0x0200
_V4_MAPPED = b"\0" * 10 + b"\xff\xff"
_MAX_CLIENTS = 65_536  # cached client address -> network entries

#: answer classes; each has its own accounts and rate
POSITIVE, NXDOMAIN, NODATA, REFERRAL, ERROR = range(5)
_NS, _SOA = 2, 6


class Account:
    """The token balance of one (client network, answer class) pair."""

    __slots__ = ("balance", "stamp", "used", "limited_count", "limited")

    def __init__(self, balance: float, stamp: float):
        self.balance = balance  # tokens left; negative is debt
        self.stamp = stamp  # clock time of the last response
        self.used = 0  # the limiter's use count at the last response (recency)
        self.limited_count = 0  # limited responses since limiting began (for slip)
        self.limited = False  # the last response was limited

    def __repr__(self) -> str:
        return f"Account(balance={self.balance!r}, stamp={self.stamp!r}, limited={self.limited})"


def _skip_name(wire: bytes, i: int, size: int) -> int:
    """The offset after the (possibly compressed) name at ``i``, or -1."""
    while i < size:
        length = wire[i]
        if length == 0:
            return i + 1
        if length >= 0xC0:
            return i + 2 if i + 2 <= size else -1
        if length > 63:
            return -1
        i += length + 1
    return -1


class ResponseRateLimiter:
    """Decides, answer by answer, what a UDP client is sent.

    Accounting is BIND's: every account is a token balance that gains
    ``rate`` tokens per elapsed second, capped at ``rate`` (at most one
    second's worth of burst), and every response spends one token. A
    response is limited when the balance is negative after spending. Limited
    responses spend too, and the debt may grow to ``rate * window - 1``
    tokens: a flood stays limited for as long as it lasts, and a client that
    stops is answered again after at most ``window`` seconds (one second of
    silence is not enough after a long flood).

    Accounts are keyed by client network (the address cut to the configured
    prefix length) and answer class: positive answers by query name and
    type, NXDOMAIN, NODATA and referrals by zone (the owner of the first
    authority record, else the query name), so that a flood of random names
    in one zone shares one account, and errors by network alone.

    The table holds at most ``max_table_size`` accounts. When a new account
    would not fit, accounts unused for more than ``window`` seconds are
    dropped (they hold no debt anyway); if that leaves the table more than
    three quarters full, the least recently used accounts are dropped until
    half remain, so the sweep's cost is spread over many new accounts. A
    flooding client's account is recently used and survives.
    """

    def __init__(
        self,
        settings: RateLimitSettings,
        clock: Callable[[], float] = time.monotonic,
        stats: Statistics | None = None,
    ):
        self.settings = settings
        self.clock = clock
        self.stats = stats
        rate = settings.responses_per_second
        nx = rate if settings.nxdomains_per_second is None else settings.nxdomains_per_second
        errors = rate if settings.errors_per_second is None else settings.errors_per_second
        #: tokens per second by answer class; 0: never limited
        self.rates = (rate, nx, rate, rate, errors) if rate > 0 else (0, 0, 0, 0, 0)
        self.window = float(settings.window)
        #: (network, answer class, name) -> Account
        self.accounts: dict[tuple[bytes, int, bytes], Account] = {}
        self.dropped = 0
        self.slipped = 0
        self._uses = 0
        # One line per newly limited account, but spoofed floods from many
        # networks must not become one line per few packets.
        self._log = LogThrottle("rate-limited clients", clock=clock)
        self._networks: dict[str, bytes | None] = {}
        self._v4_mask = ((1 << 32) - 1) ^ ((1 << (32 - settings.ipv4_prefix_length)) - 1)
        self._v6_mask = ((1 << 128) - 1) ^ ((1 << (128 - settings.ipv6_prefix_length)) - 1)

    @property
    def limited_total(self) -> int:
        """Responses limited so far (dropped or slipped)."""
        return self.dropped + self.slipped

    # -- client networks ----------------------------------------------------

    def network(self, client: str) -> bytes | None:
        """The client's network as packed address bytes (4 octets for IPv4,
        16 for IPv6), or None if the client is exempt or not an address."""
        try:
            return self._networks[client]
        except KeyError:
            pass
        network = self._compute_network(client)
        if len(self._networks) >= _MAX_CLIENTS:
            self._networks.clear()
        self._networks[client] = network
        return network

    def _compute_network(self, client: str) -> bytes | None:
        address = client.split("%", 1)[0]
        try:
            packed = socket.inet_pton(socket.AF_INET, address)
        except (OSError, ValueError):
            try:
                packed = socket.inet_pton(socket.AF_INET6, address)
            except (OSError, ValueError):
                return None
            if packed[:12] == _V4_MAPPED:
                packed = packed[12:]
        if self.settings.exempt:
            ip = ipaddress.ip_address(packed)
            if any(ip in net for net in self.settings.exempt):
                return None
        if len(packed) == 4:
            return (int.from_bytes(packed, "big") & self._v4_mask).to_bytes(4, "big")
        return (int.from_bytes(packed, "big") & self._v6_mask).to_bytes(16, "big")

    # -- the decision -------------------------------------------------------

    def check(self, client: str, response: bytes) -> bytes | None:
        """What to send to ``client`` (an IP address string) for the UDP
        answer ``response`` (wire bytes): ``response`` itself, a slip answer,
        or None to drop it."""
        network = self._networks.get(client)
        if network is None:
            if client in self._networks:
                return response  # exempt or not an address
            network = self.network(client)
            if network is None:
                return response
        size = len(response)
        if size < 12:
            return response
        _, flags, qd, an, ns, _ = _HEADER.unpack_from(response)
        rcode = flags & 0x0F
        if rcode == 0 or rcode == 3:
            if qd == 0:
                return response
            qname_end = question_end(response, size)  # uncompressed in our answers
            if qname_end < 0:
                return response
            if rcode == 0 and an:
                kind = POSITIVE
                name = response[12:qname_end].lower() + response[qname_end:qname_end + 2]
            else:
                kind, name = self._zone(response, size, qd, an, ns, qname_end, rcode)
        else:
            kind, name = ERROR, b""
        rate = self.rates[kind]
        if not rate:
            return response

        now = self.clock()
        key = (network, kind, name)
        account = self.accounts.get(key)
        if account is None:
            if len(self.accounts) >= self.settings.max_table_size:
                self._make_room(now)
            account = self.accounts[key] = Account(rate, now)
            balance = rate - 1
        else:
            elapsed = now - account.stamp
            balance = account.balance
            if elapsed > 0:
                balance += rate * elapsed
                if balance > rate:
                    balance = rate
            balance -= 1
        account.stamp = now
        self._uses = account.used = self._uses + 1
        if balance >= 0:
            account.balance = balance
            if account.limited:
                account.limited = False
                account.limited_count = 0
            return response

        floor = 1.0 - rate * self.window
        account.balance = balance if balance > floor else floor
        if not account.limited:
            account.limited = True
            if self._log.allow():
                log.info(
                    "rate limiting responses to {network} for {what}",
                    network=self._describe_network(network), what=_describe(key),
                )
        account.limited_count += 1
        slip = self.settings.slip
        if slip and account.limited_count % slip == 0:
            self.slipped += 1
            if self.stats is not None:
                self.stats.inc("aliasd_rrl_slipped_total")
            return slip_answer(response)
        self.dropped += 1
        if self.stats is not None:
            self.stats.inc("aliasd_rrl_dropped_total")
        return None

    def _zone(
        self, wire: bytes, size: int, qd: int, an: int, ns: int, qname_end: int, rcode: int
    ) -> tuple[int, bytes]:
        """(answer class, zone name wire) of an NXDOMAIN or NODATA answer."""
        kind = NXDOMAIN if rcode == 3 else NODATA
        qname = wire[12:qname_end].lower()
        if not ns:
            return kind, qname
        i = qname_end + 4
        for _ in range(qd - 1):
            i = _skip_name(wire, i, size)
            if i < 0:
                return kind, qname
            i += 4
        for _ in range(an):
            i = _skip_name(wire, i, size)
            if i < 0 or i + 10 > size:
                return kind, qname
            i += 10 + ((wire[i + 8] << 8) | wire[i + 9])
        owner_end = _skip_name(wire, i, size)
        if owner_end < 0 or owner_end + 2 > size:
            return kind, qname
        if kind == NODATA and ((wire[owner_end] << 8) | wire[owner_end + 1]) == _NS:
            kind = REFERRAL
        length = wire[i]
        if length >= 0xC0 and owner_end == i + 2:
            # Usually a pointer into the question name: the zone is a suffix.
            target = ((length & 0x3F) << 8) | wire[i + 1]
            if 12 <= target < qname_end:
                for suffix in store.suffixes(qname):  # only at a label boundary
                    if len(suffix) == qname_end - target:
                        return kind, suffix
        try:
            owner, _ = dns.name.from_wire(wire, i)
        except (dns.exception.DNSException, IndexError, ValueError):
            return kind, qname
        return kind, owner.to_digestable()

    def _make_room(self, now: float) -> None:
        """Drop idle accounts, and the least recently used if that is not enough."""
        accounts = self.accounts
        limit = self.settings.max_table_size
        idle_since = now - self.window
        for key in [key for key, account in accounts.items() if account.stamp < idle_since]:
            del accounts[key]
        if len(accounts) > limit * 3 // 4:
            by_age = sorted(accounts, key=lambda key: accounts[key].used)
            for key in by_age[:len(by_age) - limit // 2]:
                del accounts[key]

    def _describe_network(self, network: bytes) -> str:
        if len(network) == 4:
            return f"{ipaddress.ip_address(network)}/{self.settings.ipv4_prefix_length}"
        return f"{ipaddress.ip_address(network)}/{self.settings.ipv6_prefix_length}"


def _describe(key: tuple[bytes, int, bytes]) -> str:
    """What an account counts, for the log."""
    _, kind, name = key
    if kind == ERROR:
        return "error answers"
    try:
        text = dns.name.from_wire(name, 0)[0].to_text()
    except (dns.exception.DNSException, IndexError, ValueError):
        text = repr(name)
    if kind == POSITIVE:
        rdtype = dns.rdatatype.to_text((name[-2] << 8) | name[-1])
        return f"answers {text}/{rdtype}"
    return {NXDOMAIN: "NXDOMAIN in ", NODATA: "NODATA in ", REFERRAL: "referrals to "}[kind] + text


def slip_answer(response: bytes) -> bytes:
    """The response's header with TC set, its first question, no records.

    Header only (QDCOUNT 0) when the question cannot be read.
    """
    size = len(response)
    flags = ((response[2] << 8) | response[3]) | _TC
    head = response[:2] + bytes((flags >> 8, flags & 0xFF))
    qname_end = question_end(response, size) if response[4] or response[5] else -1
    if qname_end < 0:
        return head + b"\0" * 8
    return head + b"\0\1" + b"\0" * 6 + response[12:qname_end + 4]
