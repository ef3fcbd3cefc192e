"""Settings: the TOML configuration file, validated into frozen dataclasses.

Every problem is a ConfigError whose message names the file and the key
(``aliasd.toml: [resolver] min-refresh: expected a number``), so that the
operator can fix it from one line. Relative paths in the file are taken
relative to the file's directory. Command-line overrides are applied by
``aliasd.service.tap`` through ``Settings.replace``-style helpers here.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import ipaddress
import os
import re
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from aliasd.base import store

DEFAULT_STATE_DIR = Path("/var/lib/aliasd")
#: Octets of IXFR history kept per zone unless configured (as Knot's journal-max-usage).
DEFAULT_JOURNAL_MAX_USAGE = 10 * 1024 * 1024
TSIG_ALGORITHMS = (
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
    "hmac-sha224",
    "hmac-sha1",
    "hmac-md5",
)


class ConfigError(Exception):
    """A configuration that cannot be used; the message names file and key."""


@dataclasses.dataclass(frozen=True)
class DnssecSettings:
    """``[dnssec]``: how signed zones are signed."""

    algorithm: str = "ECDSAP256SHA256"
    denial: str = "nsec3"  # or "nsec"
    signature_validity: int = 14 * 86400
    refresh_before: int = 7 * 86400
    # The DNSKEY, CDS and CDNSKEY TTL; None: the SOA's TTL (as before policies).
    dnskey_ttl: int | None = None

    @property
    def period(self) -> int:
        """Seconds between two signings of a zone's records."""
        return self.signature_validity - self.refresh_before


#: Key roles of a policy: a key-signing key, a zone-signing key, or one combined key.
KEY_ROLES = ("ksk", "zsk", "csk")
#: The policy name that takes a zone down to unsigned (RFC 8078 section 4).
INSECURE = "insecure"
#: The built-in policy of ``dnssec = true``: the keys [dnssec] says, never rolled.
BUILTIN_POLICY = "default"


@dataclasses.dataclass(frozen=True)
class DnssecPolicy:
    """``[dnssec-policy.NAME]``: a zone's keys, their lifetimes and the
    timings a rollover waits out (RFC 7583's names in docs/dnssec.md)."""

    name: str
    algorithm: str = "ECDSAP256SHA256"
    # (role, lifetime in seconds; 0: never rolled), in the order given.
    keys: tuple[tuple[str, int], ...] = (("ksk", 0), ("zsk", 0))
    dnskey_ttl: int = 3600
    publish_safety: int = 3600
    retire_safety: int = 3600
    zone_propagation_delay: int = 300
    parent_ds_ttl: int = 86400
    parent_propagation_delay: int = 3600
    parental_agents: tuple[Endpoint, ...] = ()
    ds_submit_command: str | None = None
    denial: str = "nsec3"
    signature_validity: int = 14 * 86400
    refresh_before: int = 7 * 86400
    # The longest TTL of the zone's records, if known beforehand: a floor
    # for the retire interval (the engine measures the zone too).
    max_zone_ttl: int | None = None
    # Built-in (dnssec = true): keys as [dnssec] says and never rolled.
    builtin: bool = False

    @property
    def signing(self) -> DnssecSettings:
        """How the signer signs a zone of this policy."""
        return DnssecSettings(self.algorithm, self.denial, self.signature_validity, self.refresh_before,
                              None if self.builtin else self.dnskey_ttl)

    @property
    def split(self) -> bool:
        """A KSK and a ZSK (rather than one CSK)."""
        return any(role == "zsk" for role, _ in self.keys)

    def lifetime(self, role: str) -> int:
        return next((life for r, life in self.keys if r == role), 0)

    @property
    def publish_interval(self) -> int:
        """RFC 7583 Ipub: a new DNSKEY is in every cache's RRset after it."""
        return self.zone_propagation_delay + self.dnskey_ttl + self.publish_safety

    def retire_interval(self, role: str, max_ttl: int = 0) -> int:
        """RFC 7583 Iret: how long a retired key stays published. A ZSK's
        signatures (re-made at once by aliasd, so Dsgn = 0) must leave
        every cache: propagation, the longest TTL, the safety margin. A
        KSK's (or CSK's) DS must leave the parent's caches."""
        ttl = max(max_ttl, self.max_zone_ttl or 0, self.dnskey_ttl)
        zone = self.zone_propagation_delay + ttl + self.retire_safety
        if role == "zsk":
            return zone
        return max(zone, self.parent_propagation_delay + self.parent_ds_ttl + self.retire_safety)

    def minimum_lifetime(self, role: str) -> int:
        """The shortest lifetime one rollover of ``role`` fits in (RFC 7583:
        Ipub + Iret, plus the DS's way to the parent for a KSK or CSK)."""
        needed = self.publish_interval + self.retire_interval(role)
        if role != "zsk":
            needed += self.parent_propagation_delay
        return needed


@dataclasses.dataclass(frozen=True)
class UpdateRule:
    """Who may change what: ``key`` may change records at ``name`` (or at
    and below it with ``subdomains``; None: anywhere in the zone; a relative
    name is taken relative to the zone) of the ``types`` (empty: every type
    but SOA). A ``*`` label of ``name`` stands for exactly one label at its
    place (Knot's ``update-owner-match: pattern``), so that one rule covers
    ``_acme-challenge.*.example.com.`` for every host ACME asks about."""

    key: str
    name: dns.name.Name | None = None
    subdomains: bool = False
    types: frozenset[int] = frozenset()

    @functools.cached_property
    def key_name(self) -> dns.name.Name:
        return dns.name.from_text(self.key)

    def allows(self, key: dns.name.Name, name: dns.name.Name, rdtype: int | None, origin: dns.name.Name) -> bool:
        """May ``key`` change ``rdtype`` records at ``name`` (None: some type)?"""
        if self.key_name != key:
            return False
        if self.name is not None and not name_matches(self.name.derelativize(origin), name, self.subdomains):
            return False
        if rdtype is None:
            return True
        if self.types:
            return rdtype in self.types
        return rdtype != dns.rdatatype.SOA


WILDCARD_LABEL = b"*"


def name_matches(pattern: dns.name.Name, name: dns.name.Name, subdomains: bool = False) -> bool:
    """Is ``name`` the absolute ``pattern`` (each ``*`` label standing for
    one label, any), or below it with ``subdomains``?"""
    labels, wanted = name.labels, pattern.labels
    extra = len(labels) - len(wanted)
    if extra < 0 or extra > 0 and not subdomains:
        return False
    if WILDCARD_LABEL not in wanted:
        return name == pattern if extra == 0 else name.is_subdomain(pattern)
    return all(w == WILDCARD_LABEL or w.lower() == got.lower() for w, got in zip(wanted, labels[extra:]))


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """An IP address and port, for upstreams and NOTIFY targets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    listen: tuple[str, ...] = ("127.0.0.1", "::1")
    port: int = 5353
    state_dir: Path = DEFAULT_STATE_DIR
    max_udp_size: int = 1232
    tcp_idle_timeout: float = 30.0
    tcp_max_connections: int = 1000
    tcp_max_per_client: int = 20
    journal_size: int | None = None  # differences kept per zone (None: bounded by octets only)
    journal_db_max_size: int = 2 * 1024**3  # octets of IXFR history, all zones together
    serial_interval: float = 60.0
    serial_burst: int = 3
    answer_cache_size: int | None = None  # None: sized from the zones
    notify_rate: float = 500.0  # NOTIFY messages per second, all secondaries together
    notify_source: tuple[str, ...] = ()  # at most one address per family
    # $INCLUDE may name files outside the including zone file's directory.
    allow_include_anywhere: bool = False
    # Seconds between writes of dynamic zones' records back to their files.
    dynamic_file_sync: float = 300.0
    # The answer to CH TXT version.bind: None, aliasd's name and version;
    # "none": REFUSED, as BIND's ``version none``.
    version: str | None = None
    # Processes answering queries (aliasd.service.workers): a count, or
    # "auto" for one per CPU; 1 is the single process of old.
    workers: int | str = "auto"

    @property
    def worker_count(self) -> int:
        """``workers`` as a number ("auto": the CPUs this process may use)."""
        if self.workers == "auto":
            return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        return int(self.workers)


@dataclasses.dataclass(frozen=True)
class ResolverSettings:
    upstreams: tuple[Endpoint, ...] = ()
    min_refresh: float = 30.0
    max_refresh: float = 3600.0
    serve_stale: float = 3600.0
    timeout: float = 2.0
    max_in_flight: int = 64
    min_ttl: int = 0  # floor for the TTL of addresses from upstream
    require_validated: bool = False  # signed zones take only answers the upstream validated (AD)


@dataclasses.dataclass(frozen=True)
class KeySettings:
    name: str
    algorithm: str
    secret: bytes = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class ZoneSettings:
    """One served zone. ``file`` is None for the catalog zone, which aliasd
    builds itself (aliasd.zones.catalog). Slots: one per zone, ten thousand
    of them."""

    name: dns.name.Name
    file: Path | None
    notify: tuple[Endpoint, ...] = ()
    allow_transfer: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    transfer_key: str | None = None
    transfer_tls_only: bool = False
    # $INCLUDE outside the zone file's directory is allowed ([server]
    # allow-include-anywhere, copied into every zone so that whoever loads
    # the file knows it).
    include_anywhere: bool = False
    # Who may change the zone by dynamic UPDATE (RFC 2136); none: nobody,
    # and the zone file is aliasd's to read only.
    update: tuple[UpdateRule, ...] = ()
    # Sign the zone's served view with DNSSEC ([dnssec] says how).
    dnssec: bool = False
    # The zone's [dnssec-policy.NAME] ("insecure": going unsigned); None
    # with dnssec = true: the built-in policy (BUILTIN_POLICY).
    dnssec_policy: str | None = None
    # Octets of IXFR history kept for the zone (its journal's differences).
    journal_max_usage: int = DEFAULT_JOURNAL_MAX_USAGE
    # -- issue 22 (zones): max-records --
    # At most this many records in the zone (0: no limit), as BIND's
    # max-records: a change or a file load that would exceed it is refused.
    max_records: int = 0
    # -- end issue 22 (zones) --

    @property
    def dynamic(self) -> bool:
        return bool(self.update)


#: Log levels, least to most severe ([log]); twisted.logger's names.
LOG_LEVELS = ("debug", "info", "warn", "error")
#: [log] categories: each is a level for the modules that log about it.
LOG_CATEGORIES = ("resolution", "transfer", "notify", "update", "dnssec")


@dataclasses.dataclass(frozen=True)
class LogSettings:
    """``[log]``: the least severe level logged, and per category (None:
    as ``level``)."""

    level: str = "info"
    categories: tuple[tuple[str, str], ...] = ()  # (category, level), the ones set

    def level_of(self, category: str) -> str:
        return dict(self.categories).get(category, self.level)


@dataclasses.dataclass(frozen=True)
class StatisticsSettings:
    """The Prometheus endpoint; off (None) unless configured."""

    listen: Endpoint | None = None


@dataclasses.dataclass(frozen=True)
class TLSSettings:
    """DNS over TLS (RFC 7858) and zone transfers over TLS (RFC 9103).

    Off unless a certificate is configured. With ``client_ca`` set, only
    clients presenting a certificate issued by that CA may connect (mutual
    TLS); TSIG and allow-transfer still apply to transfers over TLS.
    """

    listen: tuple[str, ...] = ()
    port: int = 853
    certificate: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.certificate is not None


@dataclasses.dataclass(frozen=True)
class RateLimitSettings:
    """Response rate limiting for UDP answers, in the manner of BIND's RRL.

    Off while ``responses_per_second`` is 0. Each client network (IPv4 /24,
    IPv6 /56 by default) gets a budget per answer: per name and type for
    positive answers, per zone for NXDOMAIN and NODATA, one for errors.
    Past the budget answers are dropped, except every ``slip``-th, which is
    sent as an empty truncated answer so a real client retries over TCP.
    """

    responses_per_second: int = 0
    nxdomains_per_second: int | None = None  # None: as responses_per_second
    errors_per_second: int | None = None  # None: as responses_per_second
    window: float = 15.0
    slip: int = 2
    ipv4_prefix_length: int = 24
    ipv6_prefix_length: int = 56
    exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_table_size: int = 100_000

    @property
    def enabled(self) -> bool:
        return self.responses_per_second > 0


# -- [api] (issue 22: the PowerDNS-compatible HTTP API) -----------------------

#: PowerDNS's default-soa-content: the SOA of a zone created without one
#: (``@`` stands for the zone's name).
DEFAULT_API_SOA = "a.misconfigured.dns.server.invalid. hostmaster.@ 0 10800 3600 604800 3600"


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """One ``[api] keys`` entry: who presents ``secret`` in X-API-Key, which
    zones it sees (None: every zone), whether it may create and delete
    zones, how many it may have created, and its requests per second."""

    name: str
    secret: str = dataclasses.field(repr=False)
    zones: frozenset[dns.name.Name] | None = None
    create: bool = True
    max_zones: int | None = None  # None: unlimited
    rate: float | None = None  # requests per second; None: unlimited

    def sees(self, zone: dns.name.Name) -> bool:
        return self.zones is None or zone in self.zones


@dataclasses.dataclass(frozen=True)
class ApiSettings:
    """``[api]``: the HTTP API; off while ``listen`` is empty."""

    listen: tuple[Endpoint, ...] = ()
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    keys: tuple[ApiKey, ...] = ()
    default_soa: str = DEFAULT_API_SOA

    @property
    def enabled(self) -> bool:
        return bool(self.listen)

    @property
    def tls(self) -> TLSSettings | None:
        """The certificate settings as [tls] has them (None: plain HTTP)."""
        if self.tls_certificate is None:
            return None
        return TLSSettings(certificate=self.tls_certificate, key=self.tls_key)


# -- end of [api] ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    server: ServerSettings = ServerSettings()
    resolver: ResolverSettings = ResolverSettings()
    statistics: StatisticsSettings = StatisticsSettings()
    keys: tuple[KeySettings, ...] = ()
    zones: tuple[ZoneSettings, ...] = ()
    path: Path | None = None
    tls: TLSSettings = TLSSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    catalog: ZoneSettings | None = None  # RFC 9432 catalog of every other zone
    zone_directory: Path | None = None
    dnssec: DnssecSettings = DnssecSettings()
    log: LogSettings = LogSettings()
    api: ApiSettings = ApiSettings()
    # -- issue 22 (zones): what a zone created at runtime gets --
    zone_defaults: ZoneSettings = ZoneSettings(dns.name.root, None)
    # -- end issue 22 (zones) --
    policies: tuple[DnssecPolicy, ...] = ()

    def policy_of(self, zone: ZoneSettings) -> DnssecPolicy | None:
        """The policy a signed zone follows (the built-in one for ``dnssec =
        true``; for "insecure", default timings: the rollover engine puts
        back those of the policy the zone had); None if unsigned."""
        if not zone.dnssec:
            return None
        name = zone.dnssec_policy
        for policy in self.policies:
            if policy.name == name:
                return policy
        d = self.dnssec
        return DnssecPolicy(name or BUILTIN_POLICY, d.algorithm, denial=d.denial,
                            signature_validity=d.signature_validity, refresh_before=d.refresh_before,
                            builtin=name is None)

    @property
    def signed_zones(self) -> tuple[ZoneSettings, ...]:
        """The zones with ``dnssec`` on, in order; kept for the zones tuple
        (the very tuple while the configuration is as it was), so that a
        reload's signing steps do not pass over ten thousand unsigned zones
        to find none."""
        global _signed
        zones, signed = _signed
        if zones is not self.zones:
            zones, signed = _signed = (self.zones, tuple(z for z in self.zones if z.dnssec))
        return signed

    @property
    def transferable_zones(self) -> tuple[ZoneSettings, ...]:
        """Every zone with transfer and NOTIFY settings, the catalog included."""
        return self.zones + ((self.catalog,) if self.catalog is not None else ())


#: The last zones tuple asked for its signed zones, and those.
_signed: tuple = ((), ())


# -- small validators -------------------------------------------------------


class _Section:
    """One TOML table being read; knows its name for error messages."""

    def __init__(self, where: str, label: str, table: Any):
        self.where = where
        self.label = label
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {label}: expected a table")
        self.table = dict(table)
        self.taken: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where}: {self.label} {key}: {problem}")

    def take(self, key: str, kinds: tuple[type, ...], what: str, default=None):
        if key not in self.table:
            return default
        value = self.table.pop(key)
        self.taken.add(key)
        if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"expected {what}, got {value!r}")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        value = self.take(key, (int, float), "a number", default)
        if value < minimum:
            raise self.error(key, f"must be at least {minimum:g}, got {value!r}")
        return float(value)

    def size(self, key: str, default: int | None, minimum: int = 0) -> int | None:
        """Octets: an integer, or a string with a K, M or G suffix (powers of 1024)."""
        value = self.take(key, (int, str), 'octets, as an integer or a string like "10M"', default)
        if isinstance(value, str):
            text = value.strip().upper().removesuffix("B").removesuffix("I")
            factor = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
            digits = text[:-1] if factor > 1 else text
            if not digits.strip().isdigit():
                raise self.error(key, f'expected octets like 10485760 or "10M", got {value!r}')
            value = int(digits) * factor
        if value is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value!r}")
        return value

    def duration(self, key: str, default: int | None, minimum: int = 0) -> int | None:
        """Seconds: an integer, or a string with an s, m, h or d suffix ("30d")."""
        value = self.take(key, (int, str), 'seconds, as an integer or a string like "1h"', default)
        if isinstance(value, str):
            try:
                value = parse_duration(value)
            except ValueError as e:
                raise self.error(key, str(e)) from None
        if value is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum} seconds, got {value!r}")
        return value

    def endpoints(self, key: str) -> list[Endpoint]:
        """A list of "address[:port]" strings (port 53 unless given)."""
        out = []
        for text in self.strings(key):
            try:
                out.append(parse_endpoint(text, 53))
            except ValueError as e:
                raise self.error(key, str(e)) from None
        return out

    def given(self, key: str) -> bool:
        """Was ``key`` in the table (before it was taken)?"""
        return key in self.taken

    def strings(self, key: str, default=()) -> tuple[str, ...]:
        value = self.take(key, (list,), "a list of strings", None)
        if value is None:
            return tuple(default)
        if not all(isinstance(v, str) for v in value):
            raise self.error(key, f"expected a list of strings, got {value!r}")
        return tuple(value)

    def finish(self) -> None:
        if self.table:
            unknown = ", ".join(sorted(self.table))
            raise ConfigError(f"{self.where}: {self.label}: unknown key(s): {unknown}")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in ``"90s"``, ``"5m"``, ``"1h"``, ``"30d"`` or ``"120"``; ValueError otherwise."""
    body = text.strip().lower()
    factor = _DURATION_UNITS.get(body[-1:], 0)
    digits = body[:-1] if factor else body
    if not digits.isdigit():
        raise ValueError(f'expected seconds like 3600 or "1h" (units s, m, h, d), got {text!r}')
    return int(digits) * (factor or 1)


def parse_ip(text: str) -> str:
    """The normalised text of an IPv4 or IPv6 address; ValueError otherwise."""
    return str(ipaddress.ip_address(text.strip()))


def parse_endpoint(text: str, default_port: int) -> Endpoint:
    """``address``, ``address:port``, ``[v6]`` or ``[v6]:port``."""
    text = text.strip()
    port = default_port
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"missing ']' in {text!r}")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"expected ':port' after ']' in {text!r}")
            port = _port(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text)
    else:
        host = text
    return Endpoint(parse_ip(host), port)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port {text!r}")
    return int(text)


#: A name of plain labels (letters, digits, hyphens, underscores), short
#: enough for any wire limit: read without dnspython's text parser.
_PLAIN_NAME = re.compile(r"(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?\Z")


def parse_zone_name(text: str) -> dns.name.Name:
    """A zone name, hashed once (ten thousand zones are looked up by name
    in several maps on every reload; aliasd.base.store.CachedName). A plain
    name is split here: dns.name.from_text took 0.3 s of a start at ten
    thousand zones; the labels are the same."""
    if len(text) < 250 and _PLAIN_NAME.match(text):
        return store.CachedName([label.encode() for label in text.rstrip(".").split(".")] + [b""])
    try:
        return store.cached(dns.name.from_text(text))
    except dns.exception.DNSException as e:
        raise ValueError(f"bad zone name {text!r}: {e}") from None


def with_command_line_zones(settings: Settings, extra) -> tuple[ZoneSettings, ...]:
    """The configured zones with ``--zone NAME=FILE`` ones added (replacing
    a configured zone of the same name), under the server's $INCLUDE rule;
    without any, the configured tuple itself (a reload compares it)."""
    if not extra:
        return settings.zones
    zones = {z.name: z for z in settings.zones}
    anywhere = settings.server.allow_include_anywhere
    zones.update({z.name: z if z.include_anywhere == anywhere else dataclasses.replace(z, include_anywhere=anywhere)
                  for z in extra})
    return tuple(zones.values())


def parse_zone_arg(spec: str) -> ZoneSettings:
    """A zone given on a command line as NAME=FILE (``--zone`` of
    ``twistd aliasd`` and of ``aliasd-check``); ValueError if it is not one.

    The file is made absolute, so a reload finds it whatever the working
    directory.
    """
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"expected NAME=FILE, got {spec!r}")
    return ZoneSettings(parse_zone_name(name), Path(path).resolve())


# -- the file ---------------------------------------------------------------


def load_settings(path: Path | str) -> Settings:
    """Read and validate the configuration file at ``path``.

    A file with the bytes of the last load that succeeded, at the same
    place, whose outside inputs (``_outside``: secret files, TLS files, the
    zone directory's listing) read as they did then, gives the very
    Settings of that load without being parsed again. Why: a SIGHUP with
    ten thousand ``[zones."NAME"]`` tables spent a second parsing 1.2 MB
    of TOML and checking every table again, to find them as they were.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read configuration: {e.strerror}") from None
    base_dir = path.resolve().parent
    key = (str(path), base_dir, hashlib.sha256(raw).digest())
    global _looks, _last_load
    with _loading:
        if _last_load is not None and _last_load[0] == key and _as_looked(_last_load[1]):
            return _last_load[2]
        _looks = []
        try:
            try:
                data = tomllib.loads(raw.decode())
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(f"{path}: invalid TOML: {e}") from None
            settings = settings_from_dict(data, str(path), base_dir)
            _last_load = (key, tuple(_looks), settings)
        finally:
            _looks = None
    return settings


#: The last load that succeeded: ((path, its directory, the file's
#: SHA-256), the outside reads it made, its Settings).
_last_load: tuple | None = None
#: The outside reads of the load under way: (look, its arguments, what it gave).
_looks: list | None = None
#: One load at a time (start-up, then the reload thread; aliasd-ctl's reload).
_loading = threading.Lock()


def _outside(look, *args):
    """``look(*args)``: a read of something outside the configuration file
    (a secret file, a TLS file, the zone directory), noted for
    load_settings, which gives the last settings again only while every
    such read gives what it gave."""
    value = look(*args)
    if _looks is not None:
        _looks.append((look, args, value))
    return value


def _as_looked(looks) -> bool:
    """Does every outside read in ``looks`` give what it gave (an error: no)?"""
    try:
        return all(look(*args) == value for look, args, value in looks)
    except OSError:
        return False


def settings_from_dict(data: dict, where: str, base_dir: Path) -> Settings:
    """Validate an already parsed configuration (``where`` names it in errors)."""
    top = _Section(where, "", data)
    server = _server(_Section(where, "[server]", top.table.pop("server", {})), base_dir)
    resolver = _resolver(_Section(where, "[resolver]", top.table.pop("resolver", {})))
    statistics = _statistics(_Section(where, "[statistics]", top.table.pop("statistics", {})))
    tls = _tls(_Section(where, "[tls]", top.table.pop("tls", {})), base_dir, server.listen)
    rate_limit = _rate_limit(_Section(where, "[rate-limit]", top.table.pop("rate-limit", {})))
    keys_table = _Section(where, "[keys]", top.table.pop("keys", {}))
    keys = tuple(
        _key(_Section(where, f"[keys.{name}]", table), name, base_dir)
        for name, table in sorted(keys_table.table.items())
    )
    zones_table = _Section(where, "[zones]", top.table.pop("zones", {}))
    key_names = {k.name for k in keys}
    defaults = _Section(where, "[zone-defaults]", top.table.pop("zone-defaults", {}))
    if "file" in defaults.table:
        raise defaults.error("file", "belongs in a zone's own table")
    policies = _policies(where, top.table.pop("dnssec-policy", {}))
    policy_names = frozenset(p.name for p in policies)
    defaults = _zone_options(defaults, key_names, policy_names=policy_names)
    if server.allow_include_anywhere:  # every zone inherits it from here
        defaults = dataclasses.replace(defaults, include_anywhere=True)
    checked: dict = {}  # (one zone table's options, often the same in thousands of tables, checked once)
    zones = _as_before(tuple(
        _zone(_Section(where, f'[zones."{name}"]', table), name, base_dir, key_names, defaults, policy_names,
              checked)
        for name, table in zones_table.table.items()
    ))
    _check_unique_zones(where, zones)
    directory = None
    if "zone-directory" in top.table:
        directory = _zone_directory(
            _Section(where, "[zone-directory]", top.table.pop("zone-directory")), base_dir
        )
    if directory is not None:
        zones += _directory_settings(where, directory, defaults, frozenset(z.name for z in zones))
    catalog = None
    if "catalog" in top.table:
        catalog = _catalog(_Section(where, "[catalog]", top.table.pop("catalog")), key_names)
        if any(z.name == catalog.name for z in zones):
            raise ConfigError(f"{where}: [catalog] zone: {catalog.name} is also a served zone")
    for zone in zones + ((catalog,) if catalog else ()):
        if zone.transfer_tls_only and not tls.enabled:
            raise ConfigError(
                f'{where}: [zones."{zone.name.to_text(omit_final_dot=True)}"] transfer-tls-only: '
                "needs [tls] certificate and key"
            )
    dnssec = _dnssec(_Section(where, "[dnssec]", top.table.pop("dnssec", {})))
    log = _log(_Section(where, "[log]", top.table.pop("log", {})))
    api = _api(_Section(where, "[api]", top.table.pop("api")), base_dir) if "api" in top.table else ApiSettings()
    top.label = "top level"
    top.finish()
    return Settings(
        server, resolver, statistics, keys, zones, Path(where), tls, rate_limit, catalog, directory, dnssec, log, api,
        zone_defaults=defaults, policies=policies,
    )


def _log(section: _Section) -> LogSettings:
    def level(key: str, default):
        value = section.take(key, (str,), "a log level", default)
        if value is not None and value.lower() not in LOG_LEVELS:
            raise section.error(key, f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return value.lower() if value is not None else None

    overall = level("level", LogSettings.level)
    categories = tuple((c, v) for c in LOG_CATEGORIES if (v := level(c, None)) is not None)
    section.finish()
    return LogSettings(overall, categories)


#: Signing algorithms ([dnssec] algorithm): RFC 8624's recommended ones.
DNSSEC_ALGORITHMS = ("ECDSAP256SHA256", "ED25519", "ECDSAP384SHA384", "RSASHA256")


def _dnssec(section: _Section) -> DnssecSettings:
    defaults = DnssecSettings()
    algorithm = _algorithm(section, defaults.algorithm)
    denial = _denial(section, defaults.denial)
    validity, refresh = _signature_window(section, defaults.signature_validity, defaults.refresh_before)
    section.finish()
    return DnssecSettings(algorithm, denial, validity, refresh)


def _signature_window(section: _Section, validity: int, refresh: int) -> tuple[int, int]:
    """signature-validity and refresh-before, checked against each other."""
    validity = section.duration("signature-validity", validity)
    refresh = section.duration("refresh-before", refresh)
    # Short windows (seconds) are for tests: real zones want days, so that
    # secondaries and caches never hold expired signatures.
    if validity < 10:
        raise section.error("signature-validity", f"must be at least 10 seconds, got {validity}")
    if not 1 <= refresh < validity:
        raise section.error(
            "refresh-before", f"must be at least 1 and less than signature-validity ({validity}), got {refresh}")
    return validity, refresh


def _algorithm(section: _Section, default: str) -> str:
    algorithm = section.take("algorithm", (str,), "an algorithm name", default).upper()
    if algorithm not in DNSSEC_ALGORITHMS:
        raise section.error("algorithm", f"unsupported {algorithm!r}; use one of {', '.join(DNSSEC_ALGORITHMS)}")
    return algorithm


def _denial(section: _Section, default: str) -> str:
    denial = section.take("denial", (str,), '"nsec" or "nsec3"', default).lower()
    if denial not in ("nsec", "nsec3"):
        raise section.error("denial", f'must be "nsec" or "nsec3", got {denial!r}')
    return denial


def _policies(where: str, table: Any) -> tuple[DnssecPolicy, ...]:
    """Every [dnssec-policy.NAME]."""
    top = _Section(where, "[dnssec-policy]", table)
    return tuple(_policy(_Section(where, f"[dnssec-policy.{name}]", body), name)
                 for name, body in sorted(top.table.items()))


def _policy(section: _Section, name: str) -> DnssecPolicy:
    if name in (INSECURE, BUILTIN_POLICY):
        raise ConfigError(f"{section.where}: [dnssec-policy.{name}]: the name {name!r} is aliasd's own")
    d = DnssecPolicy(name)
    algorithm = _algorithm(section, d.algorithm)
    keys = _policy_keys(section)
    durations = {}
    for key in ("dnskey-ttl", "publish-safety", "retire-safety", "zone-propagation-delay", "parent-ds-ttl",
                "parent-propagation-delay"):
        field = key.replace("-", "_")
        durations[field] = section.duration(key, getattr(d, field))
    max_zone_ttl = section.duration("max-zone-ttl", None)
    agents = section.endpoints("parental-agents")
    command = section.take("ds-submit-command", (str,), "a command", None)
    denial = _denial(section, d.denial)
    validity, refresh = _signature_window(section, d.signature_validity, d.refresh_before)
    section.finish()
    policy = DnssecPolicy(name, algorithm, keys, parental_agents=tuple(agents), ds_submit_command=command,
                          denial=denial, signature_validity=validity, refresh_before=refresh,
                          max_zone_ttl=max_zone_ttl, **durations)
    short = [f"{role} lifetime {life} s < {policy.minimum_lifetime(role)} s"
             for role, life in keys if 0 < life < policy.minimum_lifetime(role)]
    if short:
        raise section.error("keys", "lifetimes shorter than a rollover needs (publish and retire "
                            f"intervals, RFC 7583): {'; '.join(short)}")
    return policy


def _policy_keys(section: _Section) -> tuple[tuple[str, int], ...]:
    """keys = [ { role = "ksk", lifetime = "365d" }, { role = "zsk", ... } ] or one CSK."""
    entries = section.take("keys", (list,), "a list of tables", None)
    if entries is None:
        return DnssecPolicy.keys
    out = []
    for i, table in enumerate(entries):
        if not isinstance(table, dict):
            raise section.error("keys", f'entry {i + 1}: expected a table like {{ role = "zsk", lifetime = "30d" }}')
        entry = _Section(section.where, f"{section.label} keys entry {i + 1}:", table)
        role = entry.take("role", (str,), '"ksk", "zsk" or "csk"', None)
        if role is None or role.lower() not in KEY_ROLES:
            raise entry.error("role", f'must be "ksk", "zsk" or "csk", got {role!r}')
        lifetime = entry.duration("lifetime", 0)
        entry.finish()
        out.append((role.lower(), lifetime))
    roles = sorted(role for role, _ in out)
    if roles not in (["ksk", "zsk"], ["csk"]):
        raise section.error("keys", f"expected one KSK and one ZSK, or one CSK; got {', '.join(roles) or 'none'}")
    return tuple(out)


def _check_unique_zones(where: str, zones) -> None:
    seen = set()
    for zone in zones:
        if zone.name in seen:
            raise ConfigError(f"{where}: zone {zone.name} is configured twice")
        seen.add(zone.name)


def _listen_and_port(section: _Section, listen_default, port_default: int) -> tuple[list[str], int]:
    """A section's ``listen`` addresses and ``port``, validated."""
    listen = []
    for text in section.strings("listen", listen_default):
        try:
            listen.append(parse_ip(text))
        except ValueError:
            raise section.error("listen", f"not an IP address: {text!r}") from None
    port = section.take("port", (int,), "an integer", port_default)
    if not 0 <= port < 65536:
        raise section.error("port", f"must be between 0 and 65535, got {port}")
    return listen, port


def _server(section: _Section, base_dir: Path) -> ServerSettings:
    defaults = ServerSettings()
    listen, port = _listen_and_port(section, defaults.listen, defaults.port)
    state_dir = section.take("state-dir", (str,), "a path", None)
    max_udp = section.take("max-udp-size", (int,), "an integer", defaults.max_udp_size)
    if not 512 <= max_udp <= 65535:
        raise section.error("max-udp-size", f"must be between 512 and 65535, got {max_udp}")
    idle = section.number("tcp-idle-timeout", defaults.tcp_idle_timeout, 0.1)
    tcp_max = section.take("tcp-max-connections", (int,), "an integer", defaults.tcp_max_connections)
    tcp_per_client = section.take("tcp-max-per-client", (int,), "an integer", defaults.tcp_max_per_client)
    for key, value in (("tcp-max-connections", tcp_max), ("tcp-max-per-client", tcp_per_client)):
        if value < 1:
            raise section.error(key, f"must be at least 1, got {value}")
    journal = section.take("journal-size", (int,), "an integer", defaults.journal_size)
    if journal is not None and journal < 1:
        raise section.error("journal-size", f"must be at least 1, got {journal}")
    journal_db = section.size("journal-db-max-size", defaults.journal_db_max_size, 1024 * 1024)
    serial_interval = section.number("serial-interval", defaults.serial_interval, 0)
    serial_burst = section.take("serial-burst", (int,), "an integer", defaults.serial_burst)
    if serial_burst < 1:
        raise section.error("serial-burst", f"must be at least 1, got {serial_burst}")
    cache_size = section.take("answer-cache-size", (int,), "an integer", defaults.answer_cache_size)
    if cache_size is not None and cache_size < 2:
        raise section.error("answer-cache-size", f"must be at least 2, got {cache_size}")
    notify_rate = section.number("notify-rate", defaults.notify_rate, 1)
    notify_source = _notify_source(section)
    include_anywhere = section.take(
        "allow-include-anywhere", (bool,), "true or false", defaults.allow_include_anywhere
    )
    file_sync = section.number("dynamic-file-sync", defaults.dynamic_file_sync, 1)
    version = section.take("version", (str,), 'a string, or "none"', defaults.version)
    workers = section.take("workers", (int, str), 'an integer or "auto"', defaults.workers)
    if (isinstance(workers, str) and workers != "auto") or (isinstance(workers, int) and workers < 1):
        raise section.error("workers", f'must be an integer of at least 1 or "auto", got {workers!r}')
    section.finish()
    if not listen:
        raise section.error("listen", "needs at least one address")
    return ServerSettings(
        tuple(listen),
        port,
        base_dir / state_dir if state_dir else defaults.state_dir,
        max_udp,
        idle,
        tcp_max,
        tcp_per_client,
        journal,
        journal_db,
        serial_interval,
        serial_burst,
        cache_size,
        notify_rate,
        notify_source,
        include_anywhere,
        file_sync,
        version,
        workers,
    )


def _notify_source(section: _Section) -> tuple[str, ...]:
    """``notify-source``: one address, or a list with at most one per family."""
    value = section.take("notify-source", (str, list), "an address or a list of addresses", None)
    if value is None:
        return ()
    texts = [value] if isinstance(value, str) else value
    addresses = []
    for text in texts:
        try:
            addresses.append(parse_ip(text) if isinstance(text, str) else None)
        except ValueError:
            addresses.append(None)
        if addresses[-1] is None:
            raise section.error("notify-source", f"not an IP address: {text!r}")
    families = [":" in a for a in addresses]
    if len(set(families)) != len(families):
        raise section.error("notify-source", "give at most one IPv4 and one IPv6 address")
    return tuple(addresses)


def _resolver(section: _Section) -> ResolverSettings:
    defaults = ResolverSettings()
    upstreams = section.endpoints("upstreams")
    min_refresh = section.number("min-refresh", defaults.min_refresh, 1)
    max_refresh = section.number("max-refresh", defaults.max_refresh, 1)
    if max_refresh < min_refresh:
        raise section.error(
            "max-refresh", f"is smaller than min-refresh ({max_refresh:g} < {min_refresh:g})"
        )
    serve_stale = section.number("serve-stale", defaults.serve_stale, 0)
    timeout = section.number("timeout", defaults.timeout, 0.1)
    in_flight = section.take("max-in-flight", (int,), "an integer", defaults.max_in_flight)
    if in_flight < 1:
        raise section.error("max-in-flight", f"must be at least 1, got {in_flight}")
    min_ttl = section.take("min-ttl", (int,), "an integer", defaults.min_ttl)
    if not 0 <= min_ttl <= 2**31 - 1:
        raise section.error("min-ttl", f"must be between 0 and 2147483647 seconds, got {min_ttl}")
    require_validated = section.take("require-validated", (bool,), "true or false", defaults.require_validated)
    section.finish()
    return ResolverSettings(
        tuple(upstreams), min_refresh, max_refresh, serve_stale, timeout, in_flight, min_ttl, require_validated
    )


def _statistics(section: _Section) -> StatisticsSettings:
    text = section.take("listen", (str,), 'an "address:port" string', None)
    section.finish()
    if text is None:
        return StatisticsSettings()
    return StatisticsSettings(_endpoint_with_port(section, "listen", text, "127.0.0.1:9353"))


def _endpoint_with_port(section: _Section, key: str, text: str, example: str) -> Endpoint:
    """An "address:port" of a listener (a port is required)."""
    try:
        endpoint = parse_endpoint(text, 0)
    except ValueError as e:
        raise section.error(key, str(e)) from None
    if endpoint.port == 0:
        raise section.error(key, f"needs a port, as in {example}, got {text!r}")
    return endpoint


def _tls(section: _Section, base_dir: Path, server_listen: tuple[str, ...]) -> TLSSettings:
    listen, port = _listen_and_port(section, server_listen, TLSSettings().port)
    paths = {}
    for key in ("certificate", "key", "client-ca"):
        text = section.take(key, (str,), "a path", None)
        paths[key] = None if text is None else _readable(section, key, base_dir / text)
    section.finish()
    if paths["certificate"] is None and (paths["key"] or paths["client-ca"]):
        raise section.error("certificate", "is required when key or client-ca is set")
    if paths["certificate"] is not None and paths["key"] is None:
        raise section.error("key", "is required with certificate")
    if paths["certificate"] is not None and not listen:
        raise section.error("listen", "needs at least one address")
    return TLSSettings(tuple(listen), port, paths["certificate"], paths["key"], paths["client-ca"])


def _rate_limit(section: _Section) -> RateLimitSettings:
    defaults = RateLimitSettings()

    def count(key, default, minimum=0):
        value = section.take(key, (int,), "an integer", default)
        if value is not None and value < minimum:
            raise section.error(key, f"must be at least {minimum}, got {value}")
        return value

    responses = count("responses-per-second", defaults.responses_per_second)
    nxdomains = count("nxdomains-per-second", None)
    errors = count("errors-per-second", None)
    window = section.number("window", defaults.window, 1)
    slip = count("slip", defaults.slip)
    if slip > 10:
        raise section.error("slip", f"must be between 0 and 10, got {slip}")
    v4 = count("ipv4-prefix-length", defaults.ipv4_prefix_length)
    v6 = count("ipv6-prefix-length", defaults.ipv6_prefix_length)
    if v4 > 32:
        raise section.error("ipv4-prefix-length", f"must be between 0 and 32, got {v4}")
    if v6 > 128:
        raise section.error("ipv6-prefix-length", f"must be between 0 and 128, got {v6}")
    exempt = []
    for text in section.strings("exempt-clients"):
        try:
            exempt.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise section.error("exempt-clients", f"not an address or network: {text!r}") from None
    table = count("max-table-size", defaults.max_table_size, 1)
    section.finish()
    return RateLimitSettings(
        responses, nxdomains, errors, window, slip, v4, v6, tuple(exempt), table
    )


def _key(section: _Section, name: str, base_dir: Path) -> KeySettings:
    algorithm = section.take("algorithm", (str,), "a string", "hmac-sha256").lower()
    if algorithm not in TSIG_ALGORITHMS:
        raise section.error("algorithm", f"unsupported {algorithm!r}; use one of {', '.join(TSIG_ALGORITHMS)}")
    secret_text = section.take("secret", (str,), "a base64 string", None)
    secret_file = section.take("secret-file", (str,), "a path", None)
    section.finish()
    if (secret_text is None) == (secret_file is None):
        raise section.error("secret", "give exactly one of secret and secret-file")
    key = "secret"
    if secret_file is not None:
        key = "secret-file"
        try:
            secret_text = _outside(_secret_text, base_dir / secret_file)
        except OSError as e:
            raise section.error(key, f"cannot read {base_dir / secret_file}: {e.strerror}") from None
    try:
        secret = base64.b64decode(secret_text, validate=True)
    except (binascii.Error, ValueError):
        raise section.error(key, "not valid base64") from None
    if not secret:
        raise section.error(key, "is empty")
    return KeySettings(name, algorithm, secret)


def _zone_options(section: _Section, key_names: set[str], base: ZoneSettings | None = None,
                  policy_names: frozenset[str] = frozenset()) -> ZoneSettings:
    """The transfer and NOTIFY settings of a zone table (or of [zone-defaults]);
    a key the table does not set keeps its value from ``base``."""
    base = base if base is not None else ZoneSettings(dns.name.root, None)
    notify = section.endpoints("notify")
    networks = []
    for text in section.strings("allow-transfer"):
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise section.error("allow-transfer", f"not an address or network: {text!r}") from None
    transfer_key = section.take("transfer-key", (str,), "a key name", base.transfer_key)
    if transfer_key is not None and transfer_key not in key_names:
        raise section.error("transfer-key", f"no key named {transfer_key!r} in [keys]")
    tls_only = section.take("transfer-tls-only", (bool,), "true or false", base.transfer_tls_only)
    update = _update_rules(section, key_names)
    dnssec = section.take("dnssec", (bool,), "true or false", base.dnssec)
    policy = section.take("dnssec-policy", (str,), "a policy name", None)
    if policy is not None:
        if policy != INSECURE and policy not in policy_names:
            raise section.error("dnssec-policy", f"no [dnssec-policy.{policy}] (nor {INSECURE!r})")
        dnssec = True
    else:
        policy = base.dnssec_policy if dnssec else None
    journal_max_usage = section.size("journal-max-usage", base.journal_max_usage, 4096)
    max_records = section.take("max-records", (int,), "an integer", base.max_records)  # issue 22 (zones)
    if isinstance(max_records, bool) or max_records < 0:
        raise section.error("max-records", f"must be 0 (no limit) or more, got {max_records!r}")
    section.finish()
    return dataclasses.replace(
        base,
        dnssec=dnssec,
        dnssec_policy=policy,
        journal_max_usage=journal_max_usage,
        max_records=max_records,
        update=update if update is not None else base.update,
        notify=tuple(notify) if section.given("notify") else base.notify,
        allow_transfer=tuple(networks) if section.given("allow-transfer") else base.allow_transfer,
        transfer_key=transfer_key,
        transfer_tls_only=tls_only,
    )


def _update_rules(section: _Section, key_names: set[str]) -> tuple[UpdateRule, ...] | None:
    """``update = [{ key, name, subdomains, types }, ...]``: who may change
    what by dynamic UPDATE (None: not given here)."""
    rules = section.take("update", (list,), "a list of tables", None)
    if rules is None:
        return None
    out = []
    for i, table in enumerate(rules):
        if not isinstance(table, dict):
            raise section.error("update", f"entry {i + 1}: expected a table like {{ key = \"ops\" }}, got {table!r}")
        rule = _Section(section.where, f"{section.label} update entry {i + 1}:", dict(table))
        key = rule.take("key", (str,), "a key name", None)
        if key is None:
            raise rule.error("key", "is required")
        if key not in key_names:
            raise rule.error("key", f"no key named {key!r} in [keys]")
        name_text = rule.take("name", (str,), "a domain name", None)
        name = None
        if name_text is not None:
            try:
                name = dns.name.from_text(name_text, origin=None)
            except dns.exception.DNSException as e:
                raise rule.error("name", f"not a domain name: {name_text!r} ({e})") from None
            if any(WILDCARD_LABEL in label and label != WILDCARD_LABEL for label in name.labels):
                raise rule.error("name", f"{name_text!r}: a * stands for a whole label only, as in "
                                 '"_acme-challenge.*.example.com."')
        subdomains = rule.take("subdomains", (bool,), "true or false", False)
        types = []
        for text in rule.strings("types"):
            if text.upper() == "ALIAS":
                types.append(store.ALIAS_TYPE)
                continue
            try:
                types.append(dns.rdatatype.from_text(text))
            except dns.exception.DNSException:
                raise rule.error("types", f"unknown record type {text!r}") from None
        rule.finish()
        out.append(UpdateRule(key, name, subdomains, frozenset(types)))
    return tuple(out)


def _zone(
    section: _Section, name: str, base_dir: Path, key_names: set[str], defaults: ZoneSettings | None = None,
    policy_names: frozenset[str] = frozenset(), checked: dict | None = None,
) -> ZoneSettings:
    """One ``[zones."NAME"]`` table; ``checked`` (options text -> the
    options and their fields) spares checking a table of the same options
    again: at ten thousand zones that was 0.6 s of a start."""
    try:
        origin = parse_zone_name(name)
    except ValueError as e:
        raise ConfigError(f"{section.where}: {e}") from None
    file_text = section.take("file", (str,), "a path", None)
    if file_text is None:
        raise section.error("file", "is required")
    text = repr(section.table)  # (TOML's values: their repr tells them apart)
    found = checked.get(text) if checked is not None else None
    if found is None:
        options = _zone_options(section, key_names, defaults, policy_names)
        found = (options, _zone_fields_after_file(options))
        if checked is not None:
            checked[text] = found
    options, rest = found
    for rule in options.update:
        if rule.name is not None and rule.name.is_absolute() and not rule.name.is_subdomain(origin):
            raise section.error("update", f"rule name {rule.name} is not in zone {origin}")
    return ZoneSettings(origin, base_dir / file_text, *rest)


def _catalog(section: _Section, key_names: set[str]) -> ZoneSettings:
    """[catalog]: the catalog zone's name and its own transfer and NOTIFY settings."""
    name = section.take("zone", (str,), "a zone name", None)
    if name is None:
        raise section.error("zone", "is required")
    try:
        origin = parse_zone_name(name)
    except ValueError as e:
        raise section.error("zone", str(e)) from None
    return dataclasses.replace(_zone_options(section, key_names), name=origin)


def _zone_directory(section: _Section, base_dir: Path) -> Path:
    path = section.take("path", (str,), "a path", None)
    section.finish()
    if path is None:
        raise section.error("path", "is required")
    directory = base_dir / path
    if not _outside(os.path.isdir, directory):
        raise section.error("path", f"{directory} is not a directory")
    return directory


#: The suffix that makes a file in [zone-directory] a zone file.
ZONE_FILE_SUFFIX = ".zone"


def _as_before(zones: tuple[ZoneSettings, ...]) -> tuple[ZoneSettings, ...]:
    """``zones`` ([zones."NAME"] tables), each replaced by the object the
    last read made if equal to it (letter case included): a reload finds an unchanged zone
    unchanged by identity (aliasd.service.reload), as it does the
    directory's (``_directory_settings``)."""
    global _explicit_made
    before = _explicit_made
    if before:
        zones = tuple(old if (old := before.get(z.name)) is not None and old == z
                      and old.name.labels == z.name.labels else z for z in zones)  # (letter case shows)
    _explicit_made = {z.name: z for z in zones}
    return zones


#: The [zones."NAME"] settings of the last read, by name.
_explicit_made: dict = {}


def _directory_files(where: str, directory: Path) -> list[str]:
    """The names of the zone files in ``directory``, sorted.

    The zone is the file name without ``.zone``: ``example.com.zone`` is
    ``example.com.``. Hidden files and other suffixes are ignored (editors'
    backups, files being written).
    """
    global _listed
    try:
        names = _outside(_listing, directory)
    except OSError as e:
        raise ConfigError(f"{where}: [zone-directory] path: cannot list {directory}: {e.strerror}") from None
    if _listed[0] == names:  # (a directory listed as last time: its sorted names without sorting)
        return _listed[1]
    files = sorted(n for n in names if n.endswith(ZONE_FILE_SUFFIX) and not n.startswith("."))
    _listed = (names, files)
    return files


#: The last directory listing and its zone files, sorted.
_listed: tuple = (None, [])


def _listing(directory: Path) -> list[str]:
    """``os.listdir(directory)``; the very list of the last listing while
    the directory's stamp (modification and change times, inode, device)
    is the one it had then, unless it was modified just before that
    listing (RACY_NS). Why: an entry added, removed or renamed changes the
    directory's times, and a stat of it is a thousandth of listing ten
    thousand files at every reload."""
    global _last_listing
    st = os.stat(directory)
    stamp = (st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    last = _last_listing
    if last is not None and last[0] == directory and last[1] == stamp:
        return last[2]
    listed_at = time.time_ns()
    names = os.listdir(directory)
    settled = max(st.st_mtime_ns, st.st_ctime_ns) < listed_at - RACY_NS
    _last_listing = (directory, stamp, names) if settled else None
    return names


#: (directory, its stamp, its names) of the last listing of a settled directory.
_last_listing: tuple | None = None
#: A file modified less than this many nanoseconds before it was read may
#: change again with the same size and times: file systems keep times in
#: ticks (a few ms on Linux, 1 s or 2 s on some), so a second write in the
#: tick of the first can leave (size, mtime, ctime, inode) as they were.
#: Such a file is read again (its digest compared) at the next reload, as
#: git treats a "racily clean" file; a directory is listed again.
RACY_NS = 2_000_000_000


def _directory_settings(where: str, directory: Path, defaults: ZoneSettings,
                        explicit: frozenset) -> tuple[ZoneSettings, ...]:
    """The settings of the directory's zones (those not in ``explicit``):
    [zone-defaults] with each zone's name and file.

    Why kept: a reload at ten thousand zones made them all again (60 ms),
    and then had to compare each. While the directory lists the same files
    under the same [zone-defaults], the very tuple of the last read comes
    back; while [zone-defaults] stays, each zone keeps its object. So a
    reload finds unchanged zones unchanged by identity (aliasd.service.reload).
    """
    global _directory_made
    files = _directory_files(where, directory)
    key = (directory, defaults, explicit)
    last_key, last_files, last_zones, made = _directory_made
    if last_key == key and last_files == files:
        return last_zones
    if last_key is None or last_key[0] != directory:
        made = {}
    same_defaults = last_key is not None and last_key[1] == defaults
    zones, now = [], {}
    rest = _zone_fields_after_file(defaults)
    for filename in files:
        zone = made.get(filename)
        if zone is None:
            try:
                name, path = _directory_entry(directory, filename)
            except ValueError as e:
                raise ConfigError(f"{where}: [zone-directory] {directory / filename}: {e}") from None
        else:
            name, path = zone.name, zone.file
        if explicit and name in explicit:
            continue
        if zone is None or not same_defaults:
            zone = ZoneSettings(name, path, *rest)  # (dataclasses.replace: three times the cost)
        now[filename] = zone
        zones.append(zone)
    zones = tuple(zones)
    # (Replaced whole: a load in another thread sees the old one or this.)
    _directory_made = (key, files, zones, now)
    return zones


#: The last directory read: ((directory, [zone-defaults], explicit zones),
#: its file names, their settings, file name -> settings). A known file's
#: zone name and path are taken from its settings, not parsed again (for
#: ten thousand files, that took half a second); no other cache of them
#: (an lru_cache of the pairs held 2 MiB at ten thousand zones).
_directory_made: tuple = (None, None, (), {})


def _directory_entry(directory: Path, filename: str) -> tuple[dns.name.Name, Path]:
    """The zone and path of one directory file."""
    return parse_zone_name(filename[: -len(ZONE_FILE_SUFFIX)]), directory / filename


def _zone_fields_after_file(zone: ZoneSettings) -> tuple:
    """``zone``'s fields after ``name`` and ``file``, in order: with a name
    and a file, the arguments of a ZoneSettings like it."""
    return tuple(getattr(zone, field.name) for field in dataclasses.fields(ZoneSettings)[2:])


# -- [api] (issue 22) --------------------------------------------------------------


def _api(section: _Section, base_dir: Path) -> ApiSettings:
    """``[api]``: listeners, optional TLS, keys and the default SOA."""
    listen = [_endpoint_with_port(section, "listen", text, "127.0.0.1:8081") for text in section.strings("listen")]
    paths = {}
    for key in ("tls-certificate", "tls-key"):
        text = section.take(key, (str,), "a path", None)
        paths[key] = None if text is None else _readable(section, key, base_dir / text)
    entries = section.take("keys", (list,), "a list of tables", [])
    default_soa = section.take("default-soa", (str,), "SOA data as text", DEFAULT_API_SOA)
    section.finish()
    if not listen:
        raise section.error("listen", 'needs at least one "address:port"')
    if (paths["tls-certificate"] is None) != (paths["tls-key"] is None):
        raise section.error("tls-key", "tls-certificate and tls-key go together")
    try:  # checked now with a stand-in zone: "@" is the created zone's name
        dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, default_soa.replace("@", "example."),
                            origin=dns.name.root)
    except dns.exception.DNSException as e:
        raise section.error("default-soa", f"not SOA data: {default_soa!r} ({e})") from None
    keys = tuple(_api_key(section, i, table, base_dir) for i, table in enumerate(entries))
    if not keys:
        raise section.error("keys", "needs at least one key (without one, nobody could use the API)")
    seen_names, seen_secrets = set(), set()
    for key in keys:
        if key.name in seen_names:
            raise section.error("keys", f"two keys are named {key.name!r}")
        if key.secret in seen_secrets:
            raise section.error("keys", f"key {key.name!r} has the secret of another key")
        seen_names.add(key.name)
        seen_secrets.add(key.secret)
    return ApiSettings(tuple(listen), paths["tls-certificate"], paths["tls-key"], keys, default_soa)


def _readable(section: _Section, key: str, path: Path) -> Path:
    """``path``, which must be readable now (TLS files are read when used)."""
    problem = _outside(_unreadable, path)
    if problem is not None:
        raise section.error(key, f"cannot read {path}: {problem}")
    return path


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be opened for reading, or None."""
    try:
        with path.open("rb"):
            return None
    except OSError as e:
        return e.strerror


def _secret_text(path: Path) -> str:
    """A secret file's text (base64), less the spaces around it."""
    return path.read_text().strip()


def _api_key(api: _Section, i: int, table: Any, base_dir: Path) -> ApiKey:
    """One entry of ``[api] keys``."""
    if not isinstance(table, dict):
        raise api.error("keys", f'entry {i + 1}: expected a table like {{ name = "admin", secret = "..." }}')
    section = _Section(api.where, f"[api] keys entry {i + 1}:", table)
    name = section.take("name", (str,), "a string", None)
    secret = section.take("secret", (str,), "a string", None)
    secret_file = section.take("secret-file", (str,), "a path", None)
    zone_texts = section.take("zones", (list,), "a list of zone names", None)
    create = section.take("create", (bool,), "true or false", None)
    max_zones = section.take("max-zones", (int,), "an integer", None)
    rate = section.take("rate", (int, float), "requests per second", None)
    section.finish()
    if not name:
        raise section.error("name", "is required")
    if (secret is None) == (secret_file is None):
        raise section.error("secret", "give exactly one of secret and secret-file")
    if secret_file is not None:
        try:
            secret = _outside(_secret_text, base_dir / secret_file)
        except OSError as e:
            raise section.error("secret-file", f"cannot read {base_dir / secret_file}: {e.strerror}") from None
    if not secret:
        raise section.error("secret-file" if secret_file else "secret", "is empty")
    zones = None
    if zone_texts is not None:
        try:
            if not all(isinstance(text, str) for text in zone_texts):
                raise ValueError(f"expected a list of zone names, got {zone_texts!r}")
            zones = frozenset(parse_zone_name(text) for text in zone_texts)
        except ValueError as e:
            raise section.error("zones", str(e)) from None
    if max_zones is not None and max_zones < 0:
        raise section.error("max-zones", f"must be at least 0, got {max_zones}")
    if rate is not None and rate <= 0:
        raise section.error("rate", f"must be more than 0, got {rate!r}")
    return ApiKey(name, secret, zones, zones is None if create is None else create, max_zones,
                  None if rate is None else float(rate))
