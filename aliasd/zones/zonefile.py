"""Master files with ALIAS records, parsed by dnspython into a ZoneSource.

This module knows the file format and the zone rules that can be checked on
the file alone (SOA at the apex, one ALIAS per owner, no ALIAS beside a
CNAME, nothing outside the zone; in a zone aliasd signs, none of the
records its signer makes). It does not resolve anything.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import stat
import struct
from pathlib import Path
from typing import Mapping

import dns.exception
import dns.name
import dns.node
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.nsbase
import dns.rrset
import dns.tokenizer
import dns.zone
import dns.zonefile

from aliasd.base import store
from aliasd.zones import explain

#: The private-use type code that other servers use for ALIAS.
ALIAS_TYPE = store.ALIAS_TYPE


class ALIAS(dns.rdtypes.nsbase.UncompressedNS):
    """ALIAS target: a CNAME-like name whose addresses the owner serves.

    Uncompressed on the wire, as RFC 3597 requires for a type that other
    software does not know.
    """


def _register_alias_type() -> None:
    try:
        dns.rdata.register_type(ALIAS, ALIAS_TYPE, "ALIAS")
    except dns.rdata.RdatatypeExists:
        pass  # already registered by an earlier import


_register_alias_type()
ALIAS_RDTYPE = dns.rdatatype.RdataType.make(ALIAS_TYPE)


def type_text(rdtype: int) -> str:
    """The mnemonic of a record type, ALIAS included."""
    if rdtype == ALIAS_TYPE:
        return "ALIAS"
    return dns.rdatatype.to_text(rdtype)


class ZoneFileError(Exception):
    """A zone file that cannot be served; the message names file and line."""


#: The types aliasd's signer makes for a signed zone (aliasd.dnssec.signer). Never
#: taken from its zone file or an update: they would be served and
#: transferred beside the signer's own (a second DNSKEY RRset, signatures
#: that cover nothing, a broken denial chain) and fail validation.
DNSSEC_TYPES = frozenset({
    dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3, dns.rdatatype.NSEC3PARAM,
    dns.rdatatype.DNSKEY, dns.rdatatype.CDS, dns.rdatatype.CDNSKEY,
})
#: What signer_conflicts looks at: the signer's types and DS.
_SIGNING_TYPES = DNSSEC_TYPES | {dns.rdatatype.DS}


def signer_conflicts(origin: dns.name.Name, name: dns.name.Name, types) -> list[tuple[int, str]]:
    """The types among ``types`` (those at ``name``) that a signed zone may
    not hold, each with why: the signer's own, and a DS anywhere but at a
    delegation below the apex (RFC 4035 2.4: a DS is the parent's record
    of a child zone; the apex's is in our parent)."""
    found = []
    for rdtype in types:
        if rdtype in DNSSEC_TYPES:
            found.append((rdtype, f"{type_text(rdtype)} record at {name}: aliasd makes the DNSSEC "
                                  "records of a signed zone (dnssec = true) itself"))
        elif rdtype == dns.rdatatype.DS:
            if name == origin:
                found.append((rdtype, f"DS record at the zone apex {name}: it belongs in the parent zone"))
            elif dns.rdatatype.NS not in types:
                found.append((rdtype, f"DS record at {name}, which is not a delegation (no NS records there)"))
    return found


def signed_zone_conflicts(source: "ZoneSource") -> list[tuple[dns.name.Name, int, str]]:
    """signer_conflicts at every owner of ``source``, as (name, type, why):
    a scan of the packed types, names decoded only where one is found."""
    found = []
    for packed in source.records.values():
        types = store.types_of(packed)
        if _SIGNING_TYPES.isdisjoint(types):
            continue
        name = store.name_of(store.owner_of(packed))
        found += [(name, rdtype, why) for rdtype, why in signer_conflicts(source.origin, name, types)]
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class AliasRecord:
    """One ALIAS rule: A/AAAA queries at ``owner`` get ``target``'s addresses
    (slots: one per ALIAS owner)."""

    owner: dns.name.Name
    ttl: int
    target: dns.name.Name


@dataclasses.dataclass(frozen=True, eq=False, slots=True, weakref_slot=True)
class ZoneSource:
    """What one zone file says, checked, with absolute names.

    ``records`` maps each owner's lookup key (aliasd.base.store.key_of) to its
    packed RRsets, ALIAS included, in file order; ``aliases`` maps each
    ALIAS owner to its rule. Compared by identity: the authority tells a
    reloaded file from an unchanged one by the object it gets.

    Slots, with what is computed on first use in slots of its own: the
    dict that functools.cached_property fills was 380 bytes per zone.
    """

    origin: dns.name.Name
    path: Path
    records: Mapping[bytes, bytes]
    aliases: Mapping[dns.name.Name, AliasRecord]
    _key: bytes | None = dataclasses.field(default=None, init=False, repr=False)
    _soa_wire: tuple | None = dataclasses.field(default=None, init=False, repr=False)
    _digest: str | None = dataclasses.field(default=None, init=False, repr=False)
    _count: int | None = dataclasses.field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, origin: dns.name.Name, path: Path, records: dict[bytes, bytes]) -> "ZoneSource":
        """A source from packed records; finds the ALIAS rules among them."""
        origin = store.cached(origin)
        aliases = {}
        for packed in records.values():
            aliases.update(_aliases_in(packed, origin))
        return cls(origin, path, records, aliases)

    def with_owners(self, touched: Mapping[bytes, bytes | None]) -> "ZoneSource":
        """This source with the owners in ``touched`` replaced by their new
        packed nodes (None: removed), in a new dict; see ``updated``.
        ``copy()``, not ``dict()``: a dict an update deleted keys from is
        cloned whole by ``copy()`` but re-inserted key by key by ``dict()``
        (10,000 owners: 62 against 275 us), and a worker does this once per
        change frame of an updated zone."""
        records = self.records.copy()
        for key, packed in touched.items():
            if packed is None:
                records.pop(key, None)
            else:
                records[key] = packed
        return self.updated(records, touched)

    def updated(self, records: dict[bytes, bytes], touched: Mapping[bytes, bytes | None],
                previous: Mapping[bytes, bytes | None] | None = None) -> "ZoneSource":
        """This source with the owners in ``touched`` replaced (a dynamic
        update): ``records`` is the new dict. Its ALIAS rules and content
        digest are derived from this one's, for the touched owners only,
        so an update costs what it changed, not the zone. ``previous``:
        the touched owners' nodes in this source, when its records are
        about to become the new ones (aliasd.update.rfc2136: changed in place)."""
        if previous is None:
            previous = {key: self.records.get(key) for key in touched}
        aliases = self.aliases  # copied once an ALIAS comes or goes
        total = int(self.digest, 16)
        for key, packed in touched.items():
            old = previous[key]
            if old is not None and packed is not None and store.same_but_serial(old, packed):
                continue  # an apex whose serial alone moved (every update's): same digest, same ALIAS
            if old is not None:
                total -= _node_digest(key, old)
                gone = _aliases_in(old)
                if gone:
                    aliases = aliases if aliases is not self.aliases else dict(aliases)
                    for owner in gone:
                        aliases.pop(owner, None)
            if packed is not None:
                total += _node_digest(key, packed)
                found = _aliases_in(packed, self.origin)
                if found:
                    aliases = aliases if aliases is not self.aliases else dict(aliases)
                    aliases.update(found)
        count = self._count
        if count is not None:
            for key, packed in touched.items():
                count += _count(packed) - _count(previous[key])
        return ZoneSource(self.origin, self.path, records, aliases).knowing(f"{total % 2**256:064x}", count)

    def knowing(self, digest: str, record_count: int | None = None) -> "ZoneSource":
        """This source, its content digest (and record count) known already:
        from the snapshot, the process that parsed it, or the source it was
        derived from."""
        object.__setattr__(self, "_digest", digest)
        if record_count is not None:
            object.__setattr__(self, "_count", record_count)
        return self

    @classmethod
    def from_rrsets(cls, origin: dns.name.Name, path: Path, rrsets) -> "ZoneSource":
        return cls.of(origin, path, store.pack_rrsets(rrsets))

    @property
    def key(self) -> bytes:
        key = self._key
        if key is None:
            key = store.key_of(self.origin)
            object.__setattr__(self, "_key", key)
        return key

    @property
    def soa_wire(self) -> tuple[int, bytes]:
        """(TTL, rdata) of the apex SOA, read without decoding it."""
        found = self._soa_wire
        if found is None:
            packed = self.records[self.key]
            for rdtype, ttl, _, start, end in store.directory(packed):
                if rdtype == dns.rdatatype.SOA:
                    found = ttl, next(store.rdata_wires(packed, start, end))
                    break
            else:
                raise KeyError("no SOA")  # load_zone_file never makes such a source
            object.__setattr__(self, "_soa_wire", found)
        return found

    def soa_with(self, serial: int) -> dns.rrset.RRset:
        """The apex SOA RRset with ``serial`` in place of the file's."""
        ttl, wire = self.soa_wire
        wire = store.with_serial(wire, serial)
        owner = store.name_of(store.owner_of(self.records[self.key]))
        return store.decode_rrset(owner, dns.rdatatype.SOA, ttl, [wire])

    @property
    def soa(self) -> dns.rrset.RRset:
        return self.soa_with(self.serial)

    @property
    def serial(self) -> int:
        return int.from_bytes(self.soa_wire[1][-20:-16], "big")

    @property
    def digest(self) -> str:
        """A digest of the records (serial aside): equal content, equal digest.

        A sum of per-RRset hashes over canonical wire forms (RFC 4034 6.2:
        names in rdata in lower case where DNSSEC says so), so the order of
        records in the file does not matter and no sorting of RRsets is
        needed. It is recorded in the state directory and compared at each
        start: it must not change between versions of aliasd.
        """
        digest = self._digest
        if digest is None:
            total = 0
            for key, packed in self.records.items():
                total += _node_digest(key, packed)
            digest = f"{total % 2**256:064x}"
            object.__setattr__(self, "_digest", digest)
        return digest

    @property
    def rrsets(self) -> "RRsetView":
        """The records as dnspython RRsets keyed by (owner, type), decoded on use."""
        return RRsetView(self.records)

    def record_count(self) -> int:
        """How many records the file holds (counted once: every version's log line gives it)."""
        count = self._count
        if count is None:
            count = sum(_count(packed) for packed in self.records.values())
            object.__setattr__(self, "_count", count)
        return count


def _count(packed: bytes | None) -> int:
    """How many records one packed owner holds (0 for None)."""
    return sum(entry[2] for entry in store.directory(packed)) if packed is not None else 0


#: The ALIAS type as an RRset header of a packed owner holds it (aliasd.base.store.pack).
_ALIAS_BYTES = ALIAS_TYPE.to_bytes(2, "big")


def _aliases_in(packed: bytes, origin: dns.name.Name | None = None) -> dict:
    """The ALIAS rule at one packed owner, as {owner: AliasRecord} (or {}).

    An apex owner written as ``origin`` is that name object, and targets
    are shared between zones (``_target``): ten thousand zones with an
    apex ALIAS to a few CDN names keep no copy of either per zone."""
    if _ALIAS_BYTES not in packed:  # (most owners: no walk of their RRsets; 0.2 s of a start at 10,000 zones)
        return {}
    for rdtype, ttl, _, start, end in store.directory(packed):
        if rdtype == ALIAS_TYPE:
            wire = store.owner_of(packed)
            owner = origin if origin is not None and wire == origin.to_wire() else store.name_of(wire)
            target = _target(bytes(next(store.rdata_wires(packed, start, end))))
            return {owner: AliasRecord(owner, ttl, target)}
    return {}


@functools.lru_cache(maxsize=1024)
def _target(wire: bytes) -> dns.name.Name:
    """An ALIAS target's name, one object per target (names are immutable)."""
    return store.name_of(wire)


_HEAD = struct.Struct("!HIHI")  # an RRset's header in a packed node (aliasd.base.store.pack)
_SOA = int(dns.rdatatype.SOA)


def _node_digest(key: bytes, packed: bytes) -> int:
    """One owner's share of ZoneSource.digest: the sum of its RRsets' hashes,
    each the SHA-256 of the owner's key, type, TTL and the canonical
    rdatas (sorted; the SOA's serial zeroed), each after its length.

    Read straight from the packed node, one hash call per RRset: a cold
    start at ten thousand zones digests a hundred thousand RRsets (0.32 s
    through store.directory, rdata_wires and a hash update per rdata; 0.23 s)."""
    total = 0
    i, size = 1 + packed[0], len(packed)
    unpack, canonical_of, sha256 = _HEAD.unpack_from, store.CANONICAL.get, hashlib.sha256
    while i < size:
        rdtype, ttl, count, length = unpack(packed, i)
        i += 12
        end = i + length
        canonical = canonical_of(rdtype)
        if count == 1 and canonical is None:  # (most RRsets: the rdata as packed, its length before it)
            body = packed[i:end]
        else:
            wires = []
            while i < end:
                n = packed[i] << 8 | packed[i + 1]
                wire = packed[i + 2:i + 2 + n]
                wires.append(wire if canonical is None else canonical(wire))
                i += 2 + n
            if rdtype == _SOA:  # the serial does not count
                wires = [store.with_serial(w, 0) for w in wires]
            elif count > 1:
                wires.sort()
            body = b"".join(len(w).to_bytes(2, "big") + w for w in wires)
        total += int.from_bytes(sha256(key + rdtype.to_bytes(2, "big") + ttl.to_bytes(4, "big") + body).digest(),
                                "big")
        i = end
    return total


class RRsetView(Mapping):
    """A zone's packed records seen as {(owner, type): RRset}."""

    __slots__ = ("_records",)

    def __init__(self, records: Mapping[bytes, bytes]):
        self._records = records

    def __getitem__(self, item) -> dns.rrset.RRset:
        name, rdtype = item
        packed = self._records.get(store.key_of(name))
        if packed is None:
            raise KeyError(item)
        return store.PackedNode(packed)[rdtype]

    def get(self, item, default=None):
        try:
            return self[item]
        except KeyError:
            return default

    def __iter__(self):
        for packed in self._records.values():
            owner = store.name_of(store.owner_of(packed))
            for rdtype in store.types_of(packed):
                yield owner, dns.rdatatype.RdataType.make(rdtype)

    def __len__(self) -> int:
        return sum(len(store.types_of(packed)) for packed in self._records.values())


def _explained(explainer, *args) -> str | None:
    """``explainer(*args)``, or None if it fails: explaining an error must
    never turn a broken zone into a crash of the whole load (the
    explanation is a nicety; dnspython's words are kept then)."""
    try:
        return explainer(*args)
    except Exception:  # noqa: BLE001 - see above
        return None


#: The directives dnspython's reader knows.
_DIRECTIVES = frozenset({"$ORIGIN", "$TTL", "$INCLUDE", "$GENERATE"})


class _RuleViolation(Exception):
    """A bad record; the reader knows the line where it starts."""


class _IncludeRefused(Exception):
    """An $INCLUDE that may not be read; the message names file and line."""


#: $INCLUDE files may include others, at most this deep (stops a file that
#: includes itself).
MAX_INCLUDE_DEPTH = 16


def _inside(path: str, directory: str) -> bool:
    return os.path.commonpath([path, directory]) == directory


class _GuardedTokenizer(dns.tokenizer.Tokenizer):
    """A tokenizer that lets the reader see each ``$INCLUDE`` before
    dnspython opens the file it names (``Reader.read`` reads the directive
    and its file name through ``self.tok.get`` and then calls ``open``).

    The first token of a line comes from ``get(True, True)``, as dnspython's
    main loop asks for it; a ``$INCLUDE`` there makes the next ``get`` the
    file name, which the reader checks and replaces with the resolved path.
    It also remembers that first token and the line it is on (``leading``),
    which an error names and explains (aliasd.zones.explain).
    """

    def __init__(self, f, filename: str, reader: "_CheckingReader", idna_codec=None):
        super().__init__(f, filename, idna_codec)
        self._reader = reader
        self._include_at: tuple[str, int] | None = None
        self.leading: tuple[str, str, int] = ("", "", 0)  # the last line's first token, and where

    def get(self, want_leading: bool = False, want_comment: bool = False):
        leading = want_leading and want_comment  # a line's first token, as Reader.read asks
        # (Taken before: after a token that ends its line, where() names the next.)
        line_start = self.where() if leading else None
        try:
            token = super().get(want_leading, want_comment)
        except dns.exception.SyntaxError:
            if leading:
                self.leading = ("", *line_start)  # the line that failed, for the explanation
            raise
        where = self._include_at
        if where is not None:
            self._include_at = None
            return self._reader._approve_include(token, where)
        if leading:
            self.leading = (token.value if token.is_identifier() else "", *line_start)
            if token.is_identifier() and token.value.upper() == "$INCLUDE":
                self._include_at = self.where()
        return token


class _CheckingReader(dns.zonefile.Reader):
    """dnspython's master-file reader, strict where aliasd needs it.

    It remembers where each record starts (so rule violations name the right
    line), says what is wrong with a record or directive it cannot read
    (aliasd.zones.explain, on the error path only) and rejects out-of-zone
    data, which dnspython skips silently.

    ``$INCLUDE`` names a file relative to the directory of the zone file
    (in included files too), and the file must lie in that directory or
    below it once symbolic links and ``..`` are resolved, unless
    ``include_anywhere`` ([server] allow-include-anywhere): zone files are
    read as root, before privileges are dropped, and may be a customer's
    text. Only regular files are read.
    """

    record_where: tuple[str, int] = ("", 0)

    def __init__(self, tok, rdclass, txn, *, zone_path: Path, include_anywhere: bool = False,
                 text: str = "", **kwargs):
        absolute = os.path.abspath(zone_path)
        self._text = (str(zone_path), text)  # split into lines only to explain an error
        self._lines: dict[str, list[str]] = {}
        self.include_base = os.path.dirname(absolute)  # relative $INCLUDE names start here
        self.include_root = os.path.realpath(self.include_base)  # and must stay in here
        self.include_anywhere = include_anywhere
        # The $INCLUDE file last approved, and "file:line" of its directive.
        self._approved: tuple[str, str] | None = None
        super().__init__(tok, rdclass, txn, **kwargs)

    # dnspython assigns ``self.tok`` at the start, for each included file it
    # opens and when it returns from one: every tokenizer is a guarded one.
    # (Private dnspython behaviour: pinned by tests/test_private_apis.py.)
    @property
    def tok(self):
        return self._tok

    @tok.setter
    def tok(self, tokenizer) -> None:
        if not isinstance(tokenizer, _GuardedTokenizer):
            if "_tok" in self.__dict__:
                self._check_opened(tokenizer)  # dnspython opened an $INCLUDE file
            # Nothing has been read from it yet: the same file, guarded.
            tokenizer = _GuardedTokenizer(
                tokenizer.file, tokenizer.filename, self, getattr(tokenizer, "idna_codec", None)
            )
        self._tok = tokenizer

    def _approve_include(self, token, where: tuple[str, int]):
        """The file name token of an $INCLUDE at ``where``: checked, and
        replaced by the resolved path, which is what dnspython then opens."""
        at = f"{where[0]}:{where[1]}"
        if not (token.is_identifier() or token.is_quoted_string()):
            raise _IncludeRefused(f"{at}: $INCLUDE needs a file name")
        if len(self.saved_state) >= MAX_INCLUDE_DEPTH:
            raise _IncludeRefused(f"{at}: $INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep (does a file include itself?)")
        name = token.value
        real = os.path.realpath(os.path.join(self.include_base, name))
        if not self.include_anywhere and not _inside(real, self.include_root):
            raise _IncludeRefused(self._outside_message(at, name))
        try:
            st = os.stat(real)
        except OSError as e:
            raise _IncludeRefused(f"{at}: $INCLUDE {name}: cannot read it: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise _IncludeRefused(f"{at}: $INCLUDE {name}: not a regular file")
        self._approved = (real, at)
        return dns.tokenizer.Token(token.ttype, real, token.has_escape, token.comment)

    def _outside_message(self, at: str, name: str) -> str:
        return (
            f"{at}: $INCLUDE {name} is outside the zone's directory {self.include_root}; "
            "set [server] allow-include-anywhere = true to allow it"
        )

    def _check_opened(self, tokenizer) -> None:
        """dnspython has just opened an included file: it must be the one
        approved, and (where /proc tells) the file actually opened must still
        lie in the zone's directory: a symbolic link swapped in after the
        check is caught here."""
        opened = self.current_file
        if self._approved is None or getattr(tokenizer, "filename", None) != self._approved[0]:
            if opened is not None:
                opened.close()
            where = self._tok.where()
            raise _IncludeRefused(
                f"{where[0]}:{where[1]}: $INCLUDE read without being checked (has dnspython changed?)"
            )
        approved, at = self._approved
        self._approved = None
        if self.include_anywhere or opened is None:
            return
        try:
            real = os.readlink(f"/proc/self/fd/{opened.fileno()}")
        except (OSError, ValueError, AttributeError):
            return  # no /proc: the check before opening stands
        if not _inside(real, self.include_root):
            opened.close()
            raise _IncludeRefused(self._outside_message(at, approved))

    # Private dnspython API (Reader.read calls it once per record, at its first
    # line): pinned by tests/test_private_apis.py.
    def _rr_line(self) -> None:
        # Where the record's first line starts (read just before this
        # call): where() would name the next line after a one-token line.
        self.record_where = self.tok.leading[1:]
        try:
            super()._rr_line()
        except dns.exception.DNSException as e:
            # dnspython would name the line where the tokenizer stopped,
            # which is the next one when the record's last field is bad;
            # and its words seldom say which field is wrong.
            filename, line = self.record_where
            why = _explained(explain.explain_record, self.lines_of(filename), line, self.current_origin)
            raise _RuleViolation(why or str(e) or "syntax error") from None

    def lines_of(self, filename: str) -> list[str]:
        """The lines of a file read (an $INCLUDE file read again: error path only)."""
        lines = self._lines.get(filename)
        if lines is None and filename == self._text[0]:
            lines = self._lines[filename] = self._text[1].split("\n")
        if lines is None:
            try:
                with open(filename, encoding="utf-8") as f:
                    lines = f.read().split("\n")
            except (OSError, UnicodeDecodeError):
                lines = []
            self._lines[filename] = lines
        return lines

    def directive_error(self, error: dns.exception.SyntaxError) -> str:
        """``file:line: reason`` for an error outside a record: a directive
        named at its own line (dnspython may name the next one)."""
        value, filename, line = self.tok.leading
        directive = value.upper()
        if not directive.startswith("$"):  # a line the tokenizer could not read
            why = _explained(explain.explain_record, self.lines_of(filename), line, self.current_origin)
            return f"{filename}:{line}: {why}" if why else str(error)
        detail = re.sub(r"^.*?:\d+: ", "", str(error))
        if directive not in _DIRECTIVES:
            why = f"unknown directive '{value}' (aliasd reads {', '.join(sorted(_DIRECTIVES))})"
        else:
            why = _explained(explain.explain_directive, self.lines_of(filename), line, self.current_origin)
        detail = detail.replace("\n", "\\n")
        return f"{filename}:{line}: {why or f'{directive}: {detail}'}"

    # Private dnspython API (what Reader skips out-of-zone records with):
    # pinned by tests/test_private_apis.py.
    def _eat_line(self) -> None:
        raise _RuleViolation(f"{self.last_name} is outside the zone {self.zone_origin}")


#: Types that may stand beside a CNAME (DNSSEC and friends). dns.node._neutral_types
#: is private: pinned by tests/test_private_apis.py.
_NEUTRAL_TYPES = frozenset(dns.node._neutral_types)


def _check_record(origin: dns.name.Name, txn, name, rdataset) -> None:
    """Enforce aliasd's zone rules as each RRset is added by the reader."""
    rdtype = rdataset.rdtype
    if rdtype == dns.rdatatype.SOA and name != origin:
        raise _RuleViolation(f"SOA record at {name}, which is not the zone apex {origin}")
    if rdtype == ALIAS_RDTYPE and len(rdataset) > 1:
        raise _RuleViolation(f"more than one ALIAS at {name}")
    node = txn.get_node(name)
    if node is None:
        return
    if rdtype == dns.rdatatype.SOA and node.get_rdataset(dns.rdataclass.IN, rdtype):
        raise _RuleViolation(f"a second SOA record at {name}")
    present = {rds.rdtype for rds in node.rdatasets} - _NEUTRAL_TYPES
    if rdtype in _NEUTRAL_TYPES:
        return
    if rdtype == dns.rdatatype.CNAME and present - {dns.rdatatype.CNAME}:
        others = ", ".join(sorted(type_text(t) for t in present))
        raise _RuleViolation(f"CNAME at {name} beside other data ({others})")
    if rdtype != dns.rdatatype.CNAME and dns.rdatatype.CNAME in present:
        raise _RuleViolation(
            f"{type_text(rdtype)} at {name} beside a CNAME"
        )


def load_zone_file(
    origin: dns.name.Name | str, path: Path | str, *, include_anywhere: bool = False, signed: bool = False
) -> ZoneSource:
    """Parse and check the master file at ``path`` for zone ``origin``.

    Raises ZoneFileError with ``file:line: reason`` on any problem.
    ``$INCLUDE`` may only name files in the zone file's directory (or
    below it) unless ``include_anywhere``. A ``signed`` zone's file may
    not hold the records its signer makes (signer_conflicts).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ZoneFileError(f"{path}: cannot read zone file: {e.strerror}") from None
    return parse_zone(origin, path, data, include_anywhere=include_anywhere, signed=signed)


def parse_zone(
    origin: dns.name.Name | str, path: Path, data: bytes, *, include_anywhere: bool = False,
    signed: bool = False,
) -> ZoneSource:
    """Check and compile the master file content ``data`` (read from ``path``).

    The common syntax goes through aliasd.zones.masterfile, which writes packed
    records directly; anything it does not handle, and every file with a
    problem, goes through dnspython's reader, whose errors name the line.
    ``$INCLUDE`` (which only the latter reads) is confined to the
    directory of ``path`` unless ``include_anywhere``: see _CheckingReader.
    ``signed``: the zone is signed by aliasd (see load_zone_file).
    """
    if isinstance(origin, str):
        origin = dns.name.from_text(origin)
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise ZoneFileError(f"{path}: not a text file: {e}") from None
    from aliasd.zones import masterfile  # imports this module (the ALIAS type)

    try:
        source = ZoneSource.of(origin, path, masterfile.read_records(text, origin))
    except masterfile.NotSimple:
        source = None
    if source is not None and not (signed and signed_zone_conflicts(source)):
        source.record_count()  # (counted here, in the reading thread, not when logged)
        return source
    return read_with_dnspython(origin, path, text, include_anywhere=include_anywhere, signed=signed)


def read_with_dnspython(
    origin: dns.name.Name, path: Path, text: str, *, include_anywhere: bool = False, signed: bool = False
) -> ZoneSource:
    """The full reader (dnspython's, made strict): every syntax, exact errors.
    Also the reference that aliasd.zones.masterfile's results are tested against."""
    zone = dns.zone.Zone(origin, dns.rdataclass.IN, relativize=False)
    reader = None
    # Where each DNSSEC or DS RRset starts, in file order: a signed zone's
    # conflicts are found once the whole file is read (the NS that makes a
    # DS's owner a delegation may come after it), and named by these.
    signing_lines: dict[tuple[bytes, int], tuple[str, int]] = {}

    def check(txn, name, rdataset) -> None:
        _check_record(origin, txn, name, rdataset)
        if signed and rdataset.rdtype in _SIGNING_TYPES:
            signing_lines.setdefault((store.key_of(name), rdataset.rdtype), reader.record_where)

    try:
        with zone.writer(True) as txn:
            txn.check_put_rdataset(check)
            tok = dns.tokenizer.Tokenizer(text, str(path))
            reader = _CheckingReader(
                tok, dns.rdataclass.IN, txn, allow_include=True,
                zone_path=path, include_anywhere=include_anywhere, text=text,
            )
            reader.read()
    except _IncludeRefused as e:
        raise ZoneFileError(str(e)) from None
    except OSError as e:  # an $INCLUDE file that went away after it was checked
        at = reader._approved[1] if reader is not None and reader._approved else str(path)
        raise ZoneFileError(f"{at}: $INCLUDE: cannot read it: {e.strerror}") from None
    except UnicodeDecodeError as e:  # an included file that is not text
        filename, line = reader.tok.where() if reader is not None else (str(path), 0)
        raise ZoneFileError(f"{filename}:{line}: not a text file: {e}") from None
    except (_RuleViolation, ValueError) as e:
        # ValueError: dnspython's own check for an SOA away from the apex.
        if reader is None:
            raise
        filename, line = reader.record_where
        reason = "SOA record away from the zone apex" if isinstance(e, ValueError) else e
        raise ZoneFileError(f"{filename}:{line}: {reason}") from None
    except dns.exception.SyntaxError as e:
        raise ZoneFileError(reader.directive_error(e) if reader is not None else str(e)) from None
    except dns.exception.DNSException as e:
        raise ZoneFileError(f"{path}: {e}") from None
    rrsets = []
    has_soa = False
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            rrset = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype, rdataset.covers)
            rrset.update(rdataset)
            rrsets.append(rrset)
            has_soa = has_soa or (rdataset.rdtype == dns.rdatatype.SOA and name == origin)
    if not has_soa:
        raise ZoneFileError(f"{path}: no SOA record at the zone apex {origin}")
    source = ZoneSource.from_rrsets(origin, path, rrsets)
    if signed:
        conflicts = signed_zone_conflicts(source)
        if conflicts:
            order = {key: i for i, key in enumerate(signing_lines)}
            name, rdtype, why = min(conflicts, key=lambda c: order.get((store.key_of(c[0]), c[1]), len(order)))
            where = signing_lines.get((store.key_of(name), rdtype))
            raise ZoneFileError(f"{where[0]}:{where[1]}: {why}" if where else f"{path}: {why}")
    return source
