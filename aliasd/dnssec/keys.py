"""DNSSEC signing keys, kept in BIND's key-file format.

Each key is a pair of files in the key directory, exactly as
``dnssec-keygen`` writes them: ``K<zone>+<alg>+<tag>.key`` (the DNSKEY in
master-file syntax under a comment header) and ``K<zone>+<alg>+<tag>.private``
("Private-key-format: v1.3", the key material, BIND's timing metadata). An
operator can bring keys made by BIND, and take aliasd's keys to BIND, without
converting anything.

Private files are written mode 0600 and atomically (temporary file, fsync,
rename, fsync of the directory); the directory is kept at 0700. Of a pair the
``.private`` file is written first, so a crash can leave a ``.private``
without its ``.key`` (ignored with a warning) but never a published key
whose private half is missing.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import os
import re
import stat
import struct
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zonefile
from dns.dnssectypes import Algorithm, DSDigest
from dns.rdtypes.ANY.CDNSKEY import CDNSKEY
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from twisted.logger import Logger

from aliasd.base.state import atomic_write, fsync_directory

log = Logger()

#: DNSKEY flags: ZONE plus SEP for a key-signing (or combined) key, ZONE alone for a ZSK.
KSK_FLAGS = 257
ZSK_FLAGS = 256
_SEP = 0x0001
_REVOKE = 0x0080

DEFAULT_ALGORITHM = Algorithm.ECDSAP256SHA256
RSA_BITS = 2048

# cryptography (and dns.dnssec, which imports it) are imported where a key
# is made, loaded or digested: an unsigned server never imports them (about
# 10 MiB of code and shared libraries in each of its processes).
#: ECDSA: the curve's name in cryptography's ``ec``, the octets of a coordinate.
_EC_CURVES: dict[Algorithm, tuple[str, int]] = {
    Algorithm.ECDSAP256SHA256: ("SECP256R1", 32),
    Algorithm.ECDSAP384SHA384: ("SECP384R1", 48),
}
_EDDSA = (Algorithm.ED25519, Algorithm.ED448)
_RSA = (Algorithm.RSASHA256, Algorithm.RSASHA512)
SUPPORTED_ALGORITHMS = frozenset((*_RSA, *_EC_CURVES, *_EDDSA))

#: The RSA fields of a .private file, in BIND's order.
_RSA_FIELDS = ("Modulus", "PublicExponent", "PrivateExponent", "Prime1", "Prime2",
               "Exponent1", "Exponent2", "Coefficient")
#: BIND's timing metadata, in the order it writes them to .private files.
TIMING_TAGS = ("Created", "Publish", "Activate", "Revoke", "Inactive", "Delete",
               "DSPublish", "SyncPublish", "SyncDelete", "DSRemoved")
#: The subset BIND repeats as comments in the .key file.
_KEY_COMMENT_TAGS = ("Created", "Publish", "Activate", "Revoke", "Inactive", "Delete",
                     "SyncPublish", "SyncDelete")

_FILE_RE = re.compile(r"^K(?P<zone>.+)\+(?P<alg>\d{3})\+(?P<tag>\d{5})\.(?P<ext>key|private)$")
_FILE_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")
_VERSION_RE = re.compile(r"v(\d+)\.(\d+)")


class KeyFileError(Exception):
    """A key file cannot be used; the message names the file and says why."""

    def __init__(self, message: str, path: Path | str | None = None):
        super().__init__(message)
        self.path = Path(path) if path is not None else None


def _moment(now: datetime | float | None) -> datetime:
    """``now`` as an aware UTC datetime (BIND's times are UTC)."""
    if now is None:
        return datetime.now(timezone.utc)
    if isinstance(now, datetime):
        return now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(now, timezone.utc)


def format_time(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S")


@functools.lru_cache(maxsize=4096)  # (keys made together share their times)
def parse_time(text: str) -> datetime:
    if not (len(text) == 14 and text.isascii() and text.isdigit()):
        raise ValueError(f"not a YYYYMMDDHHMMSS time: {text!r}")
    return datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]),
                    int(text[10:12]), int(text[12:14]), tzinfo=timezone.utc)


def _absolute(zone: dns.name.Name | str) -> dns.name.Name:
    if isinstance(zone, str):
        return dns.name.from_text(zone)
    return zone if zone.is_absolute() else zone.derelativize(dns.name.root)


def zone_file_text(zone: dns.name.Name | str) -> str:
    """The zone part of a key file name, as BIND's dns_name_tofilenametext
    writes it: lower case, with its final dot, and every octet other than a
    letter, digit, '-' or '_' as %XX, so names with '/' stay one file name."""
    zone = _absolute(zone)
    if zone == dns.name.root:
        return "."
    return "".join(
        "".join(chr(b) if b in _FILE_SAFE else f"%{b:02X}" for b in label.lower()) + "."
        for label in zone.labels[:-1]
    )


def key_file_stem(zone: dns.name.Name | str, algorithm: int, tag: int) -> str:
    """``K<zone>+<alg>+<tag>``, the name both files of a key share."""
    return f"K{zone_file_text(zone)}+{int(algorithm):03d}+{tag:05d}"


@dataclasses.dataclass(frozen=True)
class ZoneKey:
    """One signing key of a zone.

    ``private`` is a ``cryptography`` private key: every dnspython from 2.6
    to 2.9 accepts it (as well as a dns.dnssecalgs GenericPrivateKey) in
    ``dns.dnssec.sign(rrset, key.private, key.zone, key.dnskey, ...)``.
    ``timing`` maps BIND's tags (Created, Publish, Activate, Inactive,
    Delete, SyncPublish, ...) to aware UTC datetimes; ``extra`` holds the
    .private file's other metadata lines (Predecessor, Successor, ...),
    written back unchanged.
    """

    zone: dns.name.Name
    algorithm: Algorithm
    flags: int
    private: Any = dataclasses.field(repr=False, compare=False)
    dnskey: DNSKEY = dataclasses.field(repr=False)
    tag: int
    timing: dict[str, datetime] = dataclasses.field(default_factory=dict, hash=False)
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def is_ksk(self) -> bool:
        """Has the SEP bit: a KSK, or a CSK when the zone has no active ZSK."""
        return bool(self.flags & _SEP)

    @property
    def is_zsk(self) -> bool:
        return not self.flags & _SEP

    @property
    def revoked(self) -> bool:
        return bool(self.flags & _REVOKE)

    @property
    def stem(self) -> str:
        return key_file_stem(self.zone, self.algorithm, self.tag)

    def _reached(self, tag: str, now: datetime) -> bool:
        when = self.timing.get(tag)
        return when is not None and when <= now

    def _signing_window(self, now: datetime) -> bool:
        return self._reached("Activate", now) and not self._reached("Inactive", now)

    def published(self, now: datetime | float | None = None) -> bool:
        """In the DNSKEY RRset at ``now``: BIND's rule (dst_key_is_published,
        dns_dnssec_get_hints). From its Publish time until its Delete time;
        a key with no Publish time is published while it signs (Activate
        passed, Inactive not). A Publish time still to come keeps the key
        out even if its Activate time has passed, as BIND does."""
        now = _moment(now)
        if self._reached("Delete", now):
            return False
        if "Publish" in self.timing:
            return self._reached("Publish", now)
        return self._signing_window(now)

    def active(self, now: datetime | float | None = None) -> bool:
        """Signing at ``now``: published, activated, not yet inactive. (BIND's
        dnssec-signzone also signs with an activated key whose Publish time
        is still to come; its signatures could not be validated, so here
        such a key waits.)"""
        now = _moment(now)
        return self.published(now) and self._signing_window(now)

    def syncing(self, now: datetime | float | None = None) -> bool:
        """Wanted in CDS/CDNSKEY (RFC 7344): an active, unrevoked KSK within
        its SyncPublish/SyncDelete window, either end of which may be unset."""
        now = _moment(now)
        return (self.is_ksk and not self.revoked and self.active(now)
                and ("SyncPublish" not in self.timing or self._reached("SyncPublish", now))
                and not self._reached("SyncDelete", now))


#: The timing metadata whose moments change what a zone publishes or who
#: signs it (ZoneKey.published, active, syncing).
EVENT_TAGS = ("Publish", "Activate", "Inactive", "Delete", "SyncPublish", "SyncDelete")


def key_roles(keys: Iterable[ZoneKey], now: datetime | float | None = None
              ) -> tuple[list[ZoneKey], list[ZoneKey], list[ZoneKey]]:
    """(published, active, syncing) among ``keys`` at ``now``, each in the
    order given: what goes into the DNSKEY RRset, what signs, what goes
    into CDS/CDNSKEY."""
    now = _moment(now)
    published = [k for k in keys if k.published(now)]
    active = [k for k in published if k.active(now)]
    return published, active, [k for k in active if k.syncing(now)]


def next_key_event(keys: Iterable[ZoneKey], now: datetime | float | None = None) -> datetime | None:
    """The first moment after ``now`` at which one of ``keys`` may be
    published, withdrawn, start or stop signing (EVENT_TAGS); None if
    none is to come."""
    now = _moment(now)
    return min((when for k in keys for tag, when in k.timing.items() if tag in EVENT_TAGS and when > now),
               default=None)


def key_events(keys: Iterable[ZoneKey], start: datetime | float, end: datetime | float) -> list[str]:
    """``"<tag> <event>"`` for each timing moment of ``keys`` in [start, end], in time order (for the log)."""
    start, end = _moment(start), _moment(end)
    events = sorted((when, k.tag, tag) for k in keys for tag, when in k.timing.items()
                    if tag in EVENT_TAGS and start <= when <= end)
    return [f"{tag} {event}" for _, tag, event in events]


# ---------------------------------------------------------------- key material


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _int_b64(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _curve(algorithm: Algorithm):
    from cryptography.hazmat.primitives.asymmetric import ec

    return getattr(ec, _EC_CURVES[algorithm][0])


def _eddsa_class(algorithm: Algorithm):
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

    return ed25519.Ed25519PrivateKey if algorithm == Algorithm.ED25519 else ed448.Ed448PrivateKey


def _generate_private(algorithm: Algorithm) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if algorithm in _RSA:
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    if algorithm in _EC_CURVES:
        return ec.generate_private_key(_curve(algorithm)())
    if algorithm in _EDDSA:
        return _eddsa_class(algorithm).generate()
    raise ValueError(f"DNSSEC algorithm {Algorithm.to_text(algorithm)} is not supported "
                     f"(supported: {', '.join(a.name for a in sorted(SUPPORTED_ALGORITHMS))})")


def _private_fields(algorithm: Algorithm, private: Any) -> list[tuple[str, str]]:
    """The key material lines of a .private file, as BIND writes them."""
    from cryptography.hazmat.primitives import serialization

    if algorithm in _RSA:
        numbers = private.private_numbers()
        values = (numbers.public_numbers.n, numbers.public_numbers.e, numbers.d,
                  numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp)
        return [(name, _int_b64(value)) for name, value in zip(_RSA_FIELDS, values)]
    if algorithm in _EC_CURVES:
        size = _EC_CURVES[algorithm][1]
        return [("PrivateKey", _b64(private.private_numbers().private_value.to_bytes(size, "big")))]
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return [("PrivateKey", _b64(raw))]


class _NotItsKey(Exception):
    """The private key is sound but is not the one of the .key file's public key."""


def _field_value(fields: dict[str, str], name: str) -> bytes:
    if name not in fields:
        raise ValueError(f"no {name} field")
    try:
        return base64.b64decode(fields[name], validate=True)
    except binascii.Error as e:
        raise ValueError(f"{name} is not base64 ({e})") from None


def _rsa_public_key(e: int, n: int) -> bytes:
    """The DNSKEY key material of the RSA public key (e, n) (RFC 3110)."""
    exponent = e.to_bytes((e.bit_length() + 7) // 8 or 1, "big")
    length = bytes((len(exponent),)) if len(exponent) <= 255 else b"\0" + struct.pack("!H", len(exponent))
    return length + exponent + n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")


def _rsa_private_key(numbers) -> Any:
    """``numbers``: cryptography's RSAPrivateNumbers."""
    # OpenSSL's own check of the key (RSA_check_key) tests p and q for
    # primality: 50 ms or more a 2048-bit key, two minutes of a start with
    # 1,000 RSA-signed zones. Our caller has checked every relation between
    # the numbers, and n against the DNSKEY's: with n = p * q the product of
    # two primes (it is a published key's modulus), p and q are its primes.
    try:
        return numbers.private_key(unsafe_skip_rsa_key_validation=True)
    except TypeError:  # cryptography before 40
        return numbers.private_key()


def _private_key_for(algorithm: Algorithm, fields: dict[str, str], public: bytes) -> Any:
    """The private key in a .private file's fields, checked against
    ``public``, the .key file's DNSKEY key material. Raises ValueError
    saying what is wrong with the fields, _NotItsKey for a sound private
    key of another public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def integer(name: str) -> int:
        return int.from_bytes(_field_value(fields, name), "big")

    if algorithm in _RSA:
        n, e, d = integer("Modulus"), integer("PublicExponent"), integer("PrivateExponent")
        if "Prime1" in fields and "Prime2" in fields:
            p, q = integer("Prime1"), integer("Prime2")
        else:
            p, q = rsa.rsa_recover_prime_factors(n, e, d)
        dmp1 = integer("Exponent1") if "Exponent1" in fields else rsa.rsa_crt_dmp1(d, p)
        dmq1 = integer("Exponent2") if "Exponent2" in fields else rsa.rsa_crt_dmq1(d, q)
        iqmp = integer("Coefficient") if "Coefficient" in fields else rsa.rsa_crt_iqmp(p, q)
        if not (p > 1 and q > 1 and p * q == n and 1 < d < n and e > 1):
            raise ValueError("Prime1 and Prime2 are not the factors of Modulus")
        if (e * d) % (p - 1) != 1 or (e * d) % (q - 1) != 1:
            raise ValueError("PrivateExponent is not the inverse of PublicExponent")
        if dmp1 != d % (p - 1) or dmq1 != d % (q - 1) or (iqmp * q) % p != 1:
            raise ValueError("Exponent1, Exponent2 or Coefficient does not agree with the primes")
        if _rsa_public_key(e, n) != public:
            raise _NotItsKey()
        return _rsa_private_key(rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, n)))
    if algorithm in _EC_CURVES:
        curve, size = _curve(algorithm), _EC_CURVES[algorithm][1]
        raw = _field_value(fields, "PrivateKey")
        if len(raw) > size:
            raise ValueError(f"PrivateKey is {len(raw)} octets, more than {size}")
        value = int.from_bytes(raw, "big")
        if len(public) == 2 * size:
            # Given the public point, OpenSSL checks it is the private
            # value's (EC_KEY_check_key): one point multiplication, as
            # deriving it would be, and no comparison to make after.
            point = ec.EllipticCurvePublicNumbers(int.from_bytes(public[:size], "big"),
                                                  int.from_bytes(public[size:], "big"), curve())
            try:
                return ec.EllipticCurvePrivateNumbers(value, point).private_key()
            except ValueError:
                pass  # damaged, or another key's: found out below, and said which
        private = ec.derive_private_key(value, curve())
        encoded = private.public_key().public_bytes(serialization.Encoding.X962,
                                                    serialization.PublicFormat.UncompressedPoint)
        if encoded[1:] != public:
            raise _NotItsKey()
        return private
    private = _eddsa_class(algorithm).from_private_bytes(_field_value(fields, "PrivateKey"))
    if private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) != public:
        raise _NotItsKey()
    return private


# ---------------------------------------------------------------- file texts


def _key_text(key: ZoneKey) -> str:
    """The .key file: BIND's comment header, then the DNSKEY record."""
    kind = "key" if key.is_ksk else "zone"
    revoked = "revoked " if key.revoked else ""
    lines = [f"; This is a {revoked}{kind}-signing key, keyid {key.tag}, for {key.zone.to_text()}"]
    for tag in _KEY_COMMENT_TAGS:
        when = key.timing.get(tag)
        if when is not None:
            lines.append(f"; {tag}: {format_time(when)} ({time.ctime(when.timestamp())})")
    material = _b64(key.dnskey.key)
    chunks = " ".join(material[i:i + 56] for i in range(0, len(material), 56))
    lines.append(f"{key.zone.to_text()} IN DNSKEY {key.dnskey.flags} {key.dnskey.protocol} "
                 f"{int(key.dnskey.algorithm)} {chunks}")
    return "\n".join(lines) + "\n"


def _private_text(key: ZoneKey) -> str:
    lines = ["Private-key-format: v1.3",
             f"Algorithm: {int(key.algorithm)} ({Algorithm.to_text(key.algorithm)})"]
    lines += [f"{name}: {text}" for name, text in _private_fields(key.algorithm, key.private)]
    lines += [f"{name}: {text}" for name, text in key.extra]
    lines += [f"{tag}: {format_time(key.timing[tag])}" for tag in TIMING_TAGS if tag in key.timing]
    return "\n".join(lines) + "\n"


def _read_text(path: Path) -> str:
    try:
        # os.read rather than open(): a third of the time, for files this small.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read: {e.strerror}", path) from None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a key file (non-ASCII content)", path) from None


def key_tag(flags: int, protocol: int, algorithm: int, key: bytes) -> int:
    """The key tag of a DNSKEY (RFC 4034 appendix B), from its fields:
    ``dns.dnssec.key_id`` without making an rdata (or a copy of one)."""
    wire = struct.pack("!HBB", flags, protocol, algorithm) + key
    if algorithm == 1:  # RSAMD5: octets of the modulus (RFC 4034 B.1), as dnspython has it
        return (wire[-3] << 8) + wire[-2]
    total = (sum(wire[0::2]) << 8) + sum(wire[1::2])
    return (total + (total >> 16)) & 0xFFFF


def _tag(dnskey: DNSKEY, flags: int | None = None) -> int:
    return key_tag(dnskey.flags if flags is None else flags, dnskey.protocol, dnskey.algorithm, dnskey.key)


#: Characters that make a .key file's record line more than the plain
#: ``owner [ttl] [IN] DNSKEY flags protocol algorithm base64`` that BIND and
#: aliasd write: such a file is read with dnspython's zone file reader.
_NOT_PLAIN = re.compile(r'[()"\\;$@]')
_MAX_TTL = 2**32 - 1


def _plain_dnskey(line: str, zone: dns.name.Name | None, zone_text: str) -> tuple[dns.name.Name, DNSKEY] | None:
    """The owner and DNSKEY of a plain record line, as BIND writes them;
    None for anything else (dnspython's reader then has its say)."""
    if not line or line[0].isspace() or _NOT_PLAIN.search(line):
        return None
    tokens = line.split()
    owner, i = tokens[0], 1
    seen_ttl = seen_class = False
    while i < len(tokens) and i <= 2:
        token = tokens[i]
        if token.isdigit() and not seen_ttl and int(token) <= _MAX_TTL:
            seen_ttl = True
        elif token.upper() == "IN" and not seen_class:
            seen_class = True
        else:
            break
        i += 1
    fields = tokens[i:i + 4]
    if len(fields) < 4 or fields[0].upper() != "DNSKEY" or not all(f.isdigit() for f in fields[1:]):
        return None
    flags, protocol, algorithm = int(fields[1]), int(fields[2]), int(fields[3])
    if flags > 0xFFFF or protocol > 0xFF or algorithm > 0xFF or not owner.endswith("."):
        return None
    material = "".join(tokens[i + 4:])
    if not material:
        return None
    try:
        key = base64.b64decode(material, validate=True)
    except binascii.Error:
        return None
    if zone is not None and owner.lower() == zone_text:
        name = zone
    else:
        try:
            name = dns.name.from_text(owner)
        except dns.exception.DNSException:
            return None
    return name, DNSKEY(dns.rdataclass.IN, dns.rdatatype.DNSKEY, flags, protocol, algorithm, key)


def _parse_key_file(path: Path, zone: dns.name.Name | None = None,
                    zone_text: str = "") -> tuple[dns.name.Name, DNSKEY]:
    """The owner and DNSKEY of a .key file. ``zone`` (``zone_text``: its
    text, lower case) is the name the owner is expected to be, returned
    itself when the owner is written the same way (a name made once)."""
    text = _read_text(path)
    # The comment header is most of the file; dnspython's tokenizer reads it
    # a character at a time, so it is dropped first.
    lines = [line for line in text.splitlines() if line and not line.startswith(";")]
    parsed = None
    if len(lines) == 1:
        # The record line BIND and aliasd write is read here directly: the
        # zone file reader took three quarters of load's time.
        parsed = _plain_dnskey(lines[0], zone, zone_text)
    if parsed is None:
        try:
            rrsets = dns.zonefile.read_rrsets("\n".join(lines), rdclass=None, default_ttl=0, relativize=False)
        except dns.exception.DNSException as e:
            raise KeyFileError(f"{path}: not a DNSKEY record: {e}", path) from None
        if len(rrsets) != 1 or len(rrsets[0]) != 1 or rrsets[0].rdtype != dns.rdatatype.DNSKEY:
            raise KeyFileError(f"{path}: expected exactly one DNSKEY record", path)
        parsed = rrsets[0].name, rrsets[0][0]
    dnskey = parsed[1]
    if dnskey.protocol != 3 or not dnskey.flags & 0x0100:
        raise KeyFileError(f"{path}: not a zone key (flags {dnskey.flags}, protocol {dnskey.protocol})", path)
    return parsed


_TIMING_SET = frozenset(TIMING_TAGS)
_FIELD_SET = frozenset(("Private-key-format", "Algorithm", "PrivateKey", *_RSA_FIELDS))


def _parse_private_file(path: Path) -> tuple[Algorithm, dict[str, str], dict[str, datetime], list[tuple[str, str]]]:
    fields: dict[str, str] = {}
    timing: dict[str, datetime] = {}
    extra: list[tuple[str, str]] = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        name, sep, rest = line.partition(":")
        name, rest = name.strip(), rest.strip()
        if not sep or not name:
            if not line.strip():
                continue
            raise KeyFileError(f"{path}:{number}: not a 'Name: value' line", path)
        if name in fields or name in timing:
            raise KeyFileError(f"{path}:{number}: {name} given twice", path)
        if name in _TIMING_SET:
            try:
                timing[name] = parse_time(rest)
            except ValueError as e:
                raise KeyFileError(f"{path}:{number}: {name}: {e}", path) from None
        elif name in _FIELD_SET:
            fields[name] = rest
        elif name == "Engine" or name == "Label":
            raise KeyFileError(f"{path}: the private key is held in a hardware token "
                               f"({name}: {rest}); aliasd needs the key material in the file", path)
        else:
            extra.append((name, rest))
    version = fields.get("Private-key-format", "")
    match = _VERSION_RE.fullmatch(version)
    if match is None or match[1] != "1":
        raise KeyFileError(f"{path}: Private-key-format {version or '(missing)'} is not "
                           f"BIND's v1.x", path)
    if int(match[2]) < 3 and not timing:
        raise KeyFileError(f"{path}: Private-key-format {version} has no timing metadata; "
                           f"add it with dnssec-settime -P now -A now", path)
    try:
        algorithm = Algorithm.make(int(fields.get("Algorithm", "").split()[0]))
    except (ValueError, IndexError):
        raise KeyFileError(f"{path}: no valid Algorithm line", path) from None
    return algorithm, fields, timing, extra


def _atomic_write(path: Path, text: str, mode: int) -> None:
    atomic_write(path, text.encode("ascii"), mode)


# ---------------------------------------------------------------- the store


class KeyStore:
    """The key directory: every zone's key pairs, read and written.

    The directory's listing is indexed by zone and kept while the
    directory's mtime stays the same, so loading the keys of ten thousand
    zones reads the directory once, not once per zone; files an operator
    adds change the mtime and are seen at the next ``load``. File contents
    are read on every ``load``.

    A load checks everything at once, private halves included (each is
    made and checked against its DNSKEY: one point multiplication for
    ECDSA and EdDSA), so that a broken file stops the start naming itself
    rather than failing the first signing in the commit thread. What it
    costs, with the files in the page cache: about 0.3 ms a zone of two
    ECDSA keys (bench/keys_perf.py), most of it Python reading the files.
    The .key file's usual single record line is read directly, anything
    else by dnspython's zone file reader. Zones that need keys are best
    given to ``ensure_many`` together: their files are written and synced
    in parallel.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._index: dict[str, set[tuple[int, int, str]]] | None = None
        self._index_mtime: int | None = None

    # -- reading

    def _listing(self) -> dict[str, set[tuple[int, int, str]]]:
        try:
            mtime = self.directory.stat().st_mtime_ns
        except FileNotFoundError:
            self._index, self._index_mtime = None, None
            return {}
        except OSError as e:
            raise KeyFileError(f"key directory {self.directory}: {e.strerror}", self.directory) from None
        if self._index is not None and mtime == self._index_mtime:
            return self._index
        index: dict[str, set[tuple[int, int, str]]] = {}
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    match = _FILE_RE.match(entry.name)
                    if match is not None:
                        index.setdefault(match["zone"], set()).add(
                            (int(match["alg"]), int(match["tag"]), match["ext"]))
        except OSError as e:
            raise KeyFileError(f"key directory {self.directory}: cannot list: {e.strerror}",
                               self.directory) from None
        self._index, self._index_mtime = index, mtime
        return index

    def load(self, zone: dns.name.Name | str) -> list[ZoneKey]:
        """Every key of ``zone`` in the directory, sorted by (flags, tag).

        Raises KeyFileError, naming the file, for a ``.key`` without its
        ``.private`` and for any file that cannot be read or does not hold
        a usable key of this zone (the private key is made and checked
        against the public one here, not when first used).
        """
        zone = _absolute(zone)
        text = zone_file_text(zone)
        files = self._listing().get(text)
        if not files:
            return []
        owner_text = zone.to_text().lower()
        directory = os.path.join(self.directory, "")
        keys = []
        for alg, tag in sorted({(alg, tag) for alg, tag, _ in files}):
            # (Paths as strings: a Path is made only for an error.)
            stem = f"{directory}K{text}+{alg:03d}+{tag:05d}"
            key_path, private_path = f"{stem}.key", f"{stem}.private"
            if (alg, tag, "key") not in files:
                log.warn("ignoring {path}: it has no .key file", path=private_path)
                continue
            if (alg, tag, "private") not in files:
                raise KeyFileError(f"{key_path}: no private key: {os.path.basename(private_path)} is missing",
                                   Path(key_path))
            keys.append(self._load_pair(zone, owner_text, alg, tag, key_path, private_path))
        keys.sort(key=lambda k: (k.flags, k.tag))
        return keys

    def _load_pair(self, zone: dns.name.Name, owner_text: str, alg: int, tag: int, key_path: str,
                   private_path: str) -> ZoneKey:
        owner, dnskey = _parse_key_file(key_path, zone, owner_text)
        if owner is not zone and owner != zone:
            raise KeyFileError(f"{key_path}: the key is for {owner}, not {zone}", Path(key_path))
        actual = _tag(dnskey)
        if int(dnskey.algorithm) != alg or actual != tag:
            raise KeyFileError(
                f"{key_path}: holds key {actual} of algorithm {int(dnskey.algorithm)}, "
                f"not what its name says", Path(key_path))
        algorithm, fields, timing, extra = _parse_private_file(private_path)
        if algorithm != dnskey.algorithm:
            raise KeyFileError(f"{private_path}: Algorithm {int(algorithm)} does not match "
                               f"the .key file's {int(dnskey.algorithm)}", Path(private_path))
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise KeyFileError(f"{private_path}: algorithm {Algorithm.to_text(algorithm)} "
                               f"is not supported", Path(private_path))
        try:
            private = _private_key_for(algorithm, fields, dnskey.key)
        except _NotItsKey:
            raise KeyFileError(f"{private_path}: the private key does not belong to the public key "
                               f"in {os.path.basename(key_path)}", Path(private_path)) from None
        except (ValueError, TypeError, ArithmeticError) as e:
            raise KeyFileError(f"{private_path}: damaged private key: {e}", Path(private_path)) from None
        return ZoneKey(zone=zone, algorithm=algorithm, flags=dnskey.flags, private=private,
                       dnskey=dnskey, tag=tag, timing=timing, extra=tuple(extra))

    # -- writing

    def _prepare_directory(self) -> None:
        """Create the directory 0700, or tighten it to 0700 if it is looser."""
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fsync_directory(self.directory.parent)
        mode = stat.S_IMODE(self.directory.stat().st_mode)
        if mode != 0o700:
            try:
                os.chmod(self.directory, 0o700)
            except OSError as e:
                log.warn("key directory {path} is mode {mode:04o} and cannot be made 0700: {error}",
                         path=str(self.directory), mode=mode, error=e.strerror)

    def save(self, key: ZoneKey) -> None:
        """Write ``key``'s two files (a new key, or new timing for one).

        The .private file (0600) goes first, then the .key file (0644, as
        BIND makes it: public data).
        """
        self._prepare_directory()
        self._listing()  # first take in whatever changed since the last look
        stem = self.directory / key.stem
        _atomic_write(stem.with_name(stem.name + ".private"), _private_text(key), 0o600)
        _atomic_write(stem.with_name(stem.name + ".key"), _key_text(key), 0o644)
        index = self._listing() if self._index is None else self._index
        files = index.setdefault(zone_file_text(key.zone), set())
        files.add((int(key.algorithm), key.tag, "private"))
        files.add((int(key.algorithm), key.tag, "key"))
        # Our own renames moved the mtime; an operator's change after this does again.
        self._index_mtime = self.directory.stat().st_mtime_ns

    def generate(self, zone: dns.name.Name | str, algorithm: Algorithm | int | str = DEFAULT_ALGORITHM,
                 flags: int = KSK_FLAGS, now: datetime | float | None = None,
                 existing: Iterable[ZoneKey] | None = None) -> ZoneKey:
        """Make, write and return a new key published and active from ``now``.

        A key whose tag (or tag once revoked) collides with one of the
        zone's keys is made again, as dnssec-keygen does.
        """
        zone = _absolute(zone)
        algorithm = Algorithm.make(algorithm)
        others = self.load(zone) if existing is None else existing
        key = _new_key(zone, algorithm, flags, _moment(now), _taken_tags(others))
        self.save(key)
        _log_generated(key)
        return key

    def ensure(self, zone: dns.name.Name | str, algorithm: Algorithm | int | str = DEFAULT_ALGORITHM,
               split: bool = True, now: datetime | float | None = None) -> list[ZoneKey]:
        """The zone's keys, made first if it has none: a KSK and a ZSK
        (``split``) or one combined signing key (flags 257).

        The KSK's files are in place before the ZSK's .key file: if the
        process dies in between, the zone is left with a key that can sign
        it all (and the ZSK's .private file, ignored with a warning).
        """
        zone = _absolute(zone)
        return self.ensure_many([zone], algorithm, split, now)[zone]

    def ensure_many(self, zones: Iterable[dns.name.Name | str],
                    algorithm: Algorithm | int | str = DEFAULT_ALGORITHM, split: bool = True,
                    now: datetime | float | None = None,
                    writers: int | None = None) -> dict[dns.name.Name, list[ZoneKey]]:
        """``ensure`` for each of ``zones``: each zone's keys (by its
        absolute name, in the order given), made for the zones that have
        none.

        The new keys are written together, as ``ensure`` writes one zone's:
        every .private file, then the KSKs' .key files, then the ZSKs', the
        directory synced after each step (not after each file); the files
        of a step are written and synced by ``writers`` threads at once.
        Made one zone at a time, the keys of 10,000 zones took a minute,
        nearly all of it in fsync; together, about 20 s.
        If a write fails, the .private files of the keys whose .key file
        was not written are removed again and the OSError raised; keys
        already complete stay.
        """
        algorithm = Algorithm.make(algorithm)
        result: dict[dns.name.Name, list[ZoneKey]] = {}
        made: list[ZoneKey] = []
        when = _moment(now)
        for zone in zones:
            zone = _absolute(zone)
            if zone in result:
                continue
            keys = self.load(zone)
            if keys:
                if all(k.algorithm != algorithm for k in keys):
                    log.warn("zone {zone} keeps its {have} keys; {want} is configured (an algorithm rollover "
                             "is automatic only under a dnssec-policy)", zone=zone.to_text(),
                             have=", ".join(sorted({k.algorithm.name for k in keys})),
                             want=Algorithm.to_text(algorithm))
                result[zone] = keys
                continue
            taken: set[tuple[int, int]] = set()
            keys = [_new_key(zone, algorithm, KSK_FLAGS, when, taken)]
            if split:
                keys.append(_new_key(zone, algorithm, ZSK_FLAGS, when, taken))
            made += keys
            result[zone] = sorted(keys, key=lambda k: (k.flags, k.tag))
        if made:
            self._write_new(made, WRITERS if writers is None else writers)
            for key in made:
                _log_generated(key)
        return result

    def _write_new(self, keys: list[ZoneKey], writers: int) -> None:
        self._prepare_directory()
        index = self._listing()
        steps = [(".private", keys), (".key", [k for k in keys if k.is_ksk]),
                 (".key", [k for k in keys if not k.is_ksk])]
        published: set[str] = set()
        try:
            for ext, step in steps:
                if not step:
                    continue
                text, mode = (_private_text, 0o600) if ext == ".private" else (_key_text, 0o644)
                _write_files([(self.directory / f"{key.stem}{ext}", text(key), mode) for key in step], writers)
                fsync_directory(self.directory)
                if ext == ".key":
                    published.update(key.stem for key in step)
        except BaseException:
            # What was not published is taken back: no .private file left for
            # a key nobody saw (the .key files of a failed step may be there).
            for key in keys:
                if key.stem not in published and not (self.directory / f"{key.stem}.key").exists():
                    try:
                        os.unlink(self.directory / f"{key.stem}.private")
                    except OSError:
                        pass
            self._index = None  # listed again next time
            raise
        for key in keys:
            files = index.setdefault(zone_file_text(key.zone), set())
            files.add((int(key.algorithm), key.tag, "private"))
            files.add((int(key.algorithm), key.tag, "key"))
        self._index = index
        # Our own renames moved the mtime; an operator's change after this does again.
        self._index_mtime = self.directory.stat().st_mtime_ns


#: Threads writing new key files at once (see KeyStore.ensure_many). On
#: the test machine's ext4, 4 or 16 gave the same; most of the gain is in
#: syncing the directory three times in all rather than four times a zone.
WRITERS = 8


def _write_files(files: list[tuple[Path, str, int]], writers: int) -> None:
    """Write and sync ``files`` (path, text, mode), ``writers`` at a time;
    raises the first error once every write has ended."""
    if writers <= 1 or len(files) <= 1:
        for path, text, mode in files:
            atomic_write(path, text, mode, sync_directory=False)
        return
    with ThreadPoolExecutor(min(writers, len(files)), thread_name_prefix="aliasd-keys") as pool:
        futures = [pool.submit(atomic_write, path, text, mode, sync_directory=False) for path, text, mode in files]
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error


def _taken_tags(keys: Iterable[ZoneKey]) -> set[tuple[int, int]]:
    return {(int(k.algorithm), t) for k in keys for t in (k.tag, _revoked_tag(k.dnskey))}


def _new_key(zone: dns.name.Name, algorithm: Algorithm, flags: int, now: datetime,
             taken: set[tuple[int, int]]) -> ZoneKey:
    """A new key (not written), published and active from ``now``, whose
    tag and revoked tag are not in ``taken`` (both added to it)."""
    import dns.dnssec

    when = now.replace(microsecond=0)
    while True:
        private = _generate_private(algorithm)  # (raises for an unsupported algorithm)
        dnskey = dns.dnssec.make_dnskey(private.public_key(), algorithm, flags)
        tags = {(int(algorithm), _tag(dnskey)), (int(algorithm), _revoked_tag(dnskey))}
        if not tags & taken:
            break
    taken |= tags
    return ZoneKey(zone=zone, algorithm=algorithm, flags=flags, private=private, dnskey=dnskey,
                   tag=_tag(dnskey), timing={"Created": when, "Publish": when, "Activate": when})


def new_key(zone: dns.name.Name | str, algorithm: Algorithm | int | str, flags: int,
            existing: Iterable[ZoneKey], timing: dict[str, datetime]) -> ZoneKey:
    """A new key (not written yet: KeyStore.save) with ``timing``, whose
    tag collides with none of ``existing`` (a rollover's successor)."""
    moment = min(timing.values(), default=_moment(None))
    key = _new_key(_absolute(zone), Algorithm.make(algorithm), flags, moment, _taken_tags(existing))
    key = dataclasses.replace(key, timing={"Created": key.timing["Created"],
                                           **{tag: when.replace(microsecond=0) for tag, when in timing.items()}})
    _log_generated(key)
    return key


def _log_generated(key: ZoneKey) -> None:
    log.info("generated {role} {stem} for zone {zone}",
             role="KSK" if key.is_ksk else "ZSK", stem=key.stem, zone=key.zone.to_text())


def _revoked_tag(dnskey: DNSKEY) -> int:
    return _tag(dnskey, dnskey.flags | _REVOKE)


# ---------------------------------------------------------------- RRsets


def _rrset(zone: dns.name.Name | str, rdtype: dns.rdatatype.RdataType, ttl: int, rdatas) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(_absolute(zone), dns.rdataclass.IN, rdtype)
    rrset.update_ttl(ttl)
    for rdata in rdatas:
        rrset.add(rdata)
    return rrset


def dnskey_rrset(zone: dns.name.Name | str, keys: Iterable[ZoneKey], ttl: int) -> dns.rrset.RRset:
    """The DNSKEY RRset of ``keys`` (the caller picks them, e.g. the published ones)."""
    return _rrset(zone, dns.rdatatype.DNSKEY, ttl, (k.dnskey for k in keys))


def ds_rrset(zone: dns.name.Name | str, keys: Iterable[ZoneKey], ttl: int,
             digest: DSDigest | int | str = DSDigest.SHA256) -> dns.rrset.RRset:
    """The DS records for the parent: one per unrevoked KSK/CSK among ``keys``."""
    import dns.dnssec

    zone = _absolute(zone)
    digest = DSDigest.make(digest)
    return _rrset(zone, dns.rdatatype.DS, ttl,
                  (dns.dnssec.make_ds(zone, k.dnskey, digest) for k in keys if k.is_ksk and not k.revoked))


def cds_rrset(zone: dns.name.Name | str, keys: Iterable[ZoneKey], ttl: int,
              digest: DSDigest | int | str = DSDigest.SHA256,
              now: datetime | float | None = None) -> dns.rrset.RRset:
    """CDS (RFC 7344) of the KSKs that should have a DS at ``now`` (ZoneKey.syncing)."""
    import dns.dnssec

    zone = _absolute(zone)
    digest = DSDigest.make(digest)
    moment = _moment(now)
    return _rrset(zone, dns.rdatatype.CDS, ttl,
                  (dns.dnssec.make_cds(zone, k.dnskey, digest) for k in keys if k.syncing(moment)))


def cdnskey_rrset(zone: dns.name.Name | str, keys: Iterable[ZoneKey], ttl: int,
                  now: datetime | float | None = None) -> dns.rrset.RRset:
    """CDNSKEY (RFC 7344) of the KSKs that should have a DS at ``now``."""
    moment = _moment(now)
    return _rrset(zone, dns.rdatatype.CDNSKEY, ttl, (
        CDNSKEY(dns.rdataclass.IN, dns.rdatatype.CDNSKEY, k.dnskey.flags, k.dnskey.protocol,
                k.dnskey.algorithm, k.dnskey.key)
        for k in keys if k.syncing(moment)))


def cds_delete_rrsets(zone: dns.name.Name | str, ttl: int) -> tuple[dns.rrset.RRset, dns.rrset.RRset]:
    """(CDS, CDNSKEY) asking the parent to remove every DS (RFC 8078 section 4):
    ``CDS 0 0 0 00`` and ``CDNSKEY 0 3 0 AA==``."""
    cds = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CDS, "0 0 0 00")
    cdnskey = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CDNSKEY, "0 3 0 AA==")
    return (_rrset(zone, dns.rdatatype.CDS, ttl, [cds]), _rrset(zone, dns.rdatatype.CDNSKEY, ttl, [cdnskey]))
