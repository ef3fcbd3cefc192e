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
import os
import re
import stat
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zonefile
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from dns.dnssec import Algorithm, DSDigest
from dns.rdtypes.ANY.CDNSKEY import CDNSKEY
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from twisted.logger import Logger

from aliasd.state import atomic_write, fsync_directory

log = Logger()

#: DNSKEY flags: ZONE plus SEP for a key-signing (or combined) key, ZONE alone for a ZSK.
KSK_FLAGS = 257
ZSK_FLAGS = 256
_SEP = 0x0001
_REVOKE = 0x0080

DEFAULT_ALGORITHM = Algorithm.ECDSAP256SHA256
RSA_BITS = 2048

_EC_CURVES: dict[Algorithm, tuple[type[ec.EllipticCurve], int]] = {
    Algorithm.ECDSAP256SHA256: (ec.SECP256R1, 32),
    Algorithm.ECDSAP384SHA384: (ec.SECP384R1, 48),
}
_EDDSA: dict[Algorithm, Any] = {
    Algorithm.ED25519: ed25519.Ed25519PrivateKey,
    Algorithm.ED448: ed448.Ed448PrivateKey,
}
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
_TIME_RE = re.compile(r"^\d{14}$")


class KeyFileError(Exception):
    """A key file cannot be used; the message names the file and says why."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


def _moment(now: datetime | float | None) -> datetime:
    """``now`` as an aware UTC datetime (BIND's times are UTC)."""
    if now is None:
        return datetime.now(timezone.utc)
    if isinstance(now, datetime):
        return now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(now, timezone.utc)


def format_time(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S")


def parse_time(text: str) -> datetime:
    if not _TIME_RE.match(text):
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

    def published(self, now: datetime | float | None = None) -> bool:
        """In the DNSKEY RRset at ``now``: BIND's rule, where an activation
        date implies publication and a deletion date ends it."""
        now = _moment(now)
        return ((self._reached("Publish", now) or self._reached("Activate", now))
                and not self._reached("Delete", now))

    def active(self, now: datetime | float | None = None) -> bool:
        """Signing at ``now``: published, activated, not yet inactive."""
        now = _moment(now)
        return (self.published(now) and self._reached("Activate", now)
                and not self._reached("Inactive", now))

    def syncing(self, now: datetime | float | None = None) -> bool:
        """Wanted in CDS/CDNSKEY (RFC 7344): an active, unrevoked KSK within
        its SyncPublish/SyncDelete window, either end of which may be unset."""
        now = _moment(now)
        return (self.is_ksk and not self.revoked and self.active(now)
                and ("SyncPublish" not in self.timing or self._reached("SyncPublish", now))
                and not self._reached("SyncDelete", now))


# ---------------------------------------------------------------- key material


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _int_b64(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _generate_private(algorithm: Algorithm) -> Any:
    if algorithm in _RSA:
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    if algorithm in _EC_CURVES:
        return ec.generate_private_key(_EC_CURVES[algorithm][0]())
    if algorithm in _EDDSA:
        return _EDDSA[algorithm].generate()
    raise ValueError(f"DNSSEC algorithm {dns.dnssec.algorithm_to_text(algorithm)} is not supported "
                     f"(supported: {', '.join(a.name for a in sorted(SUPPORTED_ALGORITHMS))})")


def _private_fields(algorithm: Algorithm, private: Any) -> list[tuple[str, str]]:
    """The key material lines of a .private file, as BIND writes them."""
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


def _private_from_fields(algorithm: Algorithm, fields: dict[str, str]) -> Any:
    """The private key in a .private file's fields; ValueError says what is wrong."""

    def value(name: str) -> bytes:
        if name not in fields:
            raise ValueError(f"no {name} field")
        try:
            return base64.b64decode(fields[name], validate=True)
        except binascii.Error as e:
            raise ValueError(f"{name} is not base64 ({e})") from None

    def integer(name: str) -> int:
        return int.from_bytes(value(name), "big")

    if algorithm in _RSA:
        n, e, d = integer("Modulus"), integer("PublicExponent"), integer("PrivateExponent")
        if "Prime1" in fields and "Prime2" in fields:
            p, q = integer("Prime1"), integer("Prime2")
        else:
            p, q = rsa.rsa_recover_prime_factors(n, e, d)
        dmp1 = integer("Exponent1") if "Exponent1" in fields else rsa.rsa_crt_dmp1(d, p)
        dmq1 = integer("Exponent2") if "Exponent2" in fields else rsa.rsa_crt_dmq1(d, q)
        iqmp = integer("Coefficient") if "Coefficient" in fields else rsa.rsa_crt_iqmp(p, q)
        return rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp,
                                     rsa.RSAPublicNumbers(e, n)).private_key()
    if algorithm in _EC_CURVES:
        curve, size = _EC_CURVES[algorithm]
        raw = value("PrivateKey")
        if len(raw) > size:
            raise ValueError(f"PrivateKey is {len(raw)} octets, more than {size}")
        return ec.derive_private_key(int.from_bytes(raw, "big"), curve())
    return _EDDSA[algorithm].from_private_bytes(value("PrivateKey"))


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
             f"Algorithm: {int(key.algorithm)} ({dns.dnssec.algorithm_to_text(key.algorithm)})"]
    lines += [f"{name}: {text}" for name, text in _private_fields(key.algorithm, key.private)]
    lines += [f"{name}: {text}" for name, text in key.extra]
    lines += [f"{tag}: {format_time(key.timing[tag])}" for tag in TIMING_TAGS if tag in key.timing]
    return "\n".join(lines) + "\n"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read: {e.strerror}", path) from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a key file (non-ASCII content)", path) from None


def _parse_key_file(path: Path) -> tuple[dns.name.Name, DNSKEY]:
    # The comment header is most of the file; dnspython's tokenizer reads it
    # a character at a time, so it is dropped first (it was half of load's time).
    text = "\n".join(line for line in _read_text(path).splitlines() if not line.startswith(";"))
    try:
        rrsets = dns.zonefile.read_rrsets(text, rdclass=None, default_ttl=0, relativize=False)
    except dns.exception.DNSException as e:
        raise KeyFileError(f"{path}: not a DNSKEY record: {e}", path) from None
    if len(rrsets) != 1 or len(rrsets[0]) != 1 or rrsets[0].rdtype != dns.rdatatype.DNSKEY:
        raise KeyFileError(f"{path}: expected exactly one DNSKEY record", path)
    dnskey = rrsets[0][0]
    if dnskey.protocol != 3 or not dnskey.flags & 0x0100:
        raise KeyFileError(f"{path}: not a zone key (flags {dnskey.flags}, protocol {dnskey.protocol})", path)
    return rrsets[0].name, dnskey


def _parse_private_file(path: Path) -> tuple[Algorithm, dict[str, str], dict[str, datetime], list[tuple[str, str]]]:
    fields: dict[str, str] = {}
    timing: dict[str, datetime] = {}
    extra: list[tuple[str, str]] = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        name, sep, rest = line.partition(":")
        name, rest = name.strip(), rest.strip()
        if not sep or not name:
            raise KeyFileError(f"{path}:{number}: not a 'Name: value' line", path)
        if name in fields or name in timing:
            raise KeyFileError(f"{path}:{number}: {name} given twice", path)
        if name in TIMING_TAGS:
            try:
                timing[name] = parse_time(rest)
            except ValueError as e:
                raise KeyFileError(f"{path}:{number}: {name}: {e}", path) from None
        elif name in ("Private-key-format", "Algorithm", "PrivateKey", *_RSA_FIELDS):
            fields[name] = rest
        elif name in ("Engine", "Label"):
            raise KeyFileError(f"{path}: the private key is held in a hardware token "
                               f"({name}: {rest}); aliasd needs the key material in the file", path)
        else:
            extra.append((name, rest))
    version = fields.get("Private-key-format", "")
    match = re.fullmatch(r"v(\d+)\.(\d+)", version)
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
        a usable key of this zone.
        """
        zone = _absolute(zone)
        files = self._listing().get(zone_file_text(zone), set())
        keys = []
        for alg, tag in sorted({(alg, tag) for alg, tag, _ in files}):
            stem = self.directory / f"K{zone_file_text(zone)}+{alg:03d}+{tag:05d}"
            key_path, private_path = stem.with_name(stem.name + ".key"), stem.with_name(stem.name + ".private")
            if (alg, tag, "key") not in files:
                log.warn("ignoring {path}: it has no .key file", path=str(private_path))
                continue
            if (alg, tag, "private") not in files:
                raise KeyFileError(f"{key_path}: no private key: {private_path.name} is missing", key_path)
            keys.append(self._load_pair(zone, alg, tag, key_path, private_path))
        keys.sort(key=lambda k: (k.flags, k.tag))
        return keys

    def _load_pair(self, zone: dns.name.Name, alg: int, tag: int, key_path: Path,
                   private_path: Path) -> ZoneKey:
        owner, dnskey = _parse_key_file(key_path)
        if owner != zone:
            raise KeyFileError(f"{key_path}: the key is for {owner}, not {zone}", key_path)
        if int(dnskey.algorithm) != alg or dns.dnssec.key_id(dnskey) != tag:
            raise KeyFileError(
                f"{key_path}: holds key {dns.dnssec.key_id(dnskey)} of algorithm {int(dnskey.algorithm)}, "
                f"not what its name says", key_path)
        algorithm, fields, timing, extra = _parse_private_file(private_path)
        if algorithm != dnskey.algorithm:
            raise KeyFileError(f"{private_path}: Algorithm {int(algorithm)} does not match "
                               f"the .key file's {int(dnskey.algorithm)}", private_path)
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise KeyFileError(f"{private_path}: algorithm {dns.dnssec.algorithm_to_text(algorithm)} "
                               f"is not supported", private_path)
        try:
            private = _private_from_fields(algorithm, fields)
            public = dns.dnssec.make_dnskey(private.public_key(), algorithm, dnskey.flags)
        except (ValueError, TypeError, dns.exception.DNSException) as e:
            raise KeyFileError(f"{private_path}: damaged private key: {e}", private_path) from None
        if public.key != dnskey.key:
            raise KeyFileError(f"{private_path}: the private key does not belong to the public key "
                               f"in {key_path.name}", private_path)
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
        if algorithm not in SUPPORTED_ALGORITHMS:
            _generate_private(algorithm)  # raises with the supported list
        when = _moment(now).replace(microsecond=0)
        others = list(self.load(zone) if existing is None else existing)
        taken = {(int(k.algorithm), t) for k in others for t in (k.tag, _revoked_tag(k.dnskey))}
        while True:
            private = _generate_private(algorithm)
            dnskey = dns.dnssec.make_dnskey(private.public_key(), algorithm, flags)
            tag = dns.dnssec.key_id(dnskey)
            if not {(int(algorithm), tag), (int(algorithm), _revoked_tag(dnskey))} & taken:
                break
        key = ZoneKey(zone=zone, algorithm=algorithm, flags=flags, private=private, dnskey=dnskey,
                      tag=tag, timing={"Created": when, "Publish": when, "Activate": when})
        self.save(key)
        log.info("generated {role} {stem} for zone {zone}",
                 role="KSK" if key.is_ksk else "ZSK", stem=key.stem, zone=zone.to_text())
        return key

    def ensure(self, zone: dns.name.Name | str, algorithm: Algorithm | int | str = DEFAULT_ALGORITHM,
               split: bool = True, now: datetime | float | None = None) -> list[ZoneKey]:
        """The zone's keys, made first if it has none: a KSK and a ZSK
        (``split``) or one combined signing key (flags 257).

        The KSK is written first: if the process dies before the ZSK is
        written, the zone is left with a key that can sign it all.
        """
        zone = _absolute(zone)
        algorithm = Algorithm.make(algorithm)
        keys = self.load(zone)
        if keys:
            if all(k.algorithm != algorithm for k in keys):
                log.warn("zone {zone} keeps its {have} keys; {want} is configured (an algorithm "
                         "rollover is not automatic)", zone=zone.to_text(),
                         have=", ".join(sorted({k.algorithm.name for k in keys})),
                     want=dns.dnssec.algorithm_to_text(algorithm))
            return keys
        keys.append(self.generate(zone, algorithm, KSK_FLAGS, now, existing=keys))
        if split:
            keys.append(self.generate(zone, algorithm, ZSK_FLAGS, now, existing=keys))
        keys.sort(key=lambda k: (k.flags, k.tag))
        return keys


def _revoked_tag(dnskey: DNSKEY) -> int:
    return dns.dnssec.key_id(dnskey.replace(flags=dnskey.flags | _REVOKE))


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
    zone = _absolute(zone)
    digest = DSDigest.make(digest)
    return _rrset(zone, dns.rdatatype.DS, ttl,
                  (dns.dnssec.make_ds(zone, k.dnskey, digest) for k in keys if k.is_ksk and not k.revoked))


def cds_rrset(zone: dns.name.Name | str, keys: Iterable[ZoneKey], ttl: int,
              digest: DSDigest | int | str = DSDigest.SHA256,
              now: datetime | float | None = None) -> dns.rrset.RRset:
    """CDS (RFC 7344) of the KSKs that should have a DS at ``now`` (ZoneKey.syncing)."""
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
