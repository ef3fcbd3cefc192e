"""A fast reader for plain master files, straight to aliasd's packed records.

Why: a DNS host loads thousands of small zones at start-up, and dnspython's
master-file reader takes about 4 ms for a dozen records (41 s for 10,000
zones), mostly building Name and Rdata objects that the packed store
(``aliasd.base.store``) throws away again. This reader handles the common subset
of the syntax and encodes the common record types itself; other types are
built one record at a time with ``dns.rdata.from_text``.

Anything unusual (escapes, non-ASCII text, ``$INCLUDE`` or ``$GENERATE``,
another class, a broken zone rule, anything whose result might differ from
dnspython's) raises NotSimple, and the caller reads the file with the
dnspython-based reader in ``aliasd.zones.zonefile``, which also gives the exact
error message. When ``read_records`` returns, its result is byte for byte
what that reader produces.
"""

from __future__ import annotations

import re
import socket

import dns.exception
import dns.name
import dns.node
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.ttl

from aliasd.base.store import name_of, pack


class NotSimple(Exception):
    """The file needs the full (dnspython) reader."""


_A, _NS, _CNAME, _SOA, _PTR, _MX, _TXT = 1, 2, 5, 6, 12, 15, 16
_AAAA, _SRV, _DNAME, _SPF, _SIG, _RRSIG = 28, 33, 39, 99, 24, 46
_ALIAS = 65401  # aliasd.zones.zonefile.ALIAS_TYPE; not imported, to allow imports either way
_MAX_TTL = 2**32 - 1
_IN = dns.rdataclass.IN

#: Types that may stand beside a CNAME. dns.node._neutral_types is private:
#: pinned by tests/test_private_apis.py.
_NEUTRAL = frozenset(int(t) for t in dns.node._neutral_types)
#: Types whose rdatas dnspython compares exactly (no names inside).
_EXACT = frozenset((_A, _AAAA, _TXT, _SPF))

#: A backslash, or a character that is neither printable ASCII, tab nor newline.
_unusual = re.compile(r"[^\t\n\x20-\x5b\x5d-\x7e]").search
#: A character that needs the full tokenizer (dnspython's delimiters).
_special = re.compile(r'["();]').search
#: Tokens as dnspython's tokenizer sees them. An identifier directly followed
#: by a quoted string stays one token, so that re-joined rdata text keeps
#: them adjacent (SVCB's key="value" cares); a lone quote is unterminated.
_tokens = re.compile(r'[^\s"();]*"[^"]*"|[^\s"();]+|[()]|;.*|"').findall

_LEN = [bytes((n,)) for n in range(256)]

# Caches shared by all zones; they only grow with distinct tokens.
_CACHE_LIMIT = 50_000
_absolute_names: dict[str, bytes] = {}
_classes: dict[str, int] = {}
_types: dict[str, int] = {}


def _labels(body: str, tail: bytes) -> bytes:
    """Wire form of the dotted labels in ``body`` followed by ``tail``."""
    if '"' in body or body[0] == "." or body[-1] == "." or ".." in body:
        raise NotSimple  # not an identifier, or an empty label
    parts = []
    for label in body.encode().split(b"."):
        if len(label) > 63:
            raise NotSimple
        parts.append(_LEN[len(label)])
        parts.append(label)
    parts.append(tail)
    wire = b"".join(parts)
    if len(wire) > 255:
        raise NotSimple
    return wire


def _name(text: str, origin: bytes, cache: dict[str, bytes]) -> bytes:
    """Wire form of a name as dnspython's ``from_text`` makes it."""
    wire = cache.get(text)
    if wire is None:
        if text[-1] == ".":
            wire = _absolute_names.get(text)
            if wire is None:
                wire = b"\0" if text == "." else _labels(text[:-1], b"\0")
                if len(_absolute_names) < _CACHE_LIMIT:
                    _absolute_names[text] = wire
        elif text == "@":
            wire = origin
        else:
            wire = _labels(text, origin)
        cache[text] = wire
    return wire


def _within(key: bytes, zone: bytes) -> bool:
    """Is the name ``key`` at or below ``zone`` (both lower-case wire)?"""
    start = len(key) - len(zone)
    if start < 0 or not key.endswith(zone):
        return False
    i = 0
    while i < start:
        i += key[i] + 1
    return i == start


def _ttl(token: str) -> int | None:
    """The TTL ``token`` stands for, or None as dnspython's BadTTL."""
    if token.isdigit():
        value = int(token)
        return value if value <= _MAX_TTL else None
    if "0" <= token[0] <= "9":
        try:
            return dns.ttl.from_text(token)
        except dns.ttl.BadTTL:
            return None
    return None


def _class_kind(token: str) -> int:
    """1 for the class IN, 0 for a token that is not a class, -1 otherwise."""
    try:
        rdclass = dns.rdataclass.from_text(token)
    except dns.exception.SyntaxError:
        kind = -1
    except Exception:
        kind = 0
    else:
        kind = 1 if rdclass == _IN else -1
    if len(_classes) < _CACHE_LIMIT:
        _classes[token] = kind
    return kind


def _type_of(token: str) -> int:
    if token.upper() == "ALIAS":
        rdtype = _ALIAS
    else:
        try:
            rdtype = int(dns.rdatatype.from_text(token))
        except Exception:
            raise NotSimple from None
    if rdtype in (0, _SIG, _RRSIG) or dns.rdatatype.is_metatype(rdtype):
        raise NotSimple
    if len(_types) < _CACHE_LIMIT:
        _types[token] = rdtype
    return rdtype


def _uint(token: str, limit: int) -> int | None:
    if token.isdigit():
        value = int(token)
        if value <= limit:
            return value
    return None


# Native rdata encoders: (rdata tokens, current origin wire, name cache) ->
# wire, or None to let dnspython build the record (and find any error).

def _enc_a(args, origin, cache):
    if len(args) != 1:
        return None
    try:
        wire = socket.inet_aton(args[0])
    except (OSError, ValueError):
        return None
    # Only the strict dotted quad that dnspython accepts reads back as written.
    return wire if socket.inet_ntoa(wire) == args[0] else None


def _enc_aaaa(args, origin, cache):
    if len(args) != 1:
        return None
    try:
        return socket.inet_pton(socket.AF_INET6, args[0])
    except (OSError, ValueError):
        return None


def _enc_name(args, origin, cache):
    if len(args) != 1:
        return None
    return _name(args[0], origin, cache)


def _enc_mx(args, origin, cache):
    if len(args) != 2:
        return None
    preference = _uint(args[0], 0xFFFF)
    if preference is None:
        return None
    return preference.to_bytes(2, "big") + _name(args[1], origin, cache)


def _enc_srv(args, origin, cache):
    if len(args) != 4:
        return None
    numbers = [_uint(a, 0xFFFF) for a in args[:3]]
    if None in numbers:
        return None
    return (b"".join(n.to_bytes(2, "big") for n in numbers)
            + _name(args[3], origin, cache))


def _enc_soa(args, origin, cache):
    if len(args) != 7:
        return None
    numbers = [_uint(a, _MAX_TTL) for a in args[2:]]
    if None in numbers:
        return None  # TTL-style units (or an error): dnspython decides
    return (_name(args[0], origin, cache) + _name(args[1], origin, cache)
            + b"".join(n.to_bytes(4, "big") for n in numbers))


def _enc_txt(args, origin, cache):
    if not args:
        return None
    parts = []
    for arg in args:
        if arg[0] == '"':
            arg = arg[1:-1]
        elif '"' in arg:
            return None
        if len(arg) > 255:
            return None
        parts.append(_LEN[len(arg)])
        parts.append(arg.encode())
    return b"".join(parts)


_ENCODERS = {
    _A: _enc_a, _AAAA: _enc_aaaa, _NS: _enc_name, _CNAME: _enc_name,
    _PTR: _enc_name, _DNAME: _enc_name, _ALIAS: _enc_name, _MX: _enc_mx,
    _SRV: _enc_srv, _SOA: _enc_soa, _TXT: _enc_txt, _SPF: _enc_txt,
}


def _by_dnspython(rdtype: int, args: list[str], origin: dns.name.Name) -> bytes:
    """One record built by dnspython from its re-joined rdata tokens."""
    try:
        rdata = dns.rdata.from_text(_IN, rdtype, " ".join(args), origin=origin,
                                    relativize=False)
        return rdata.to_wire()
    except Exception:
        raise NotSimple from None


def _tokenize(line: str, tokens: list[str], depth: int) -> int:
    """Add the tokens of ``line`` to ``tokens``; return the parenthesis depth."""
    for token in _tokens(line):
        first = token[0]
        if first == "(":
            depth += 1
        elif first == ")":
            depth -= 1
            if depth < 0:
                raise NotSimple
        elif first == ";":
            break
        elif token == '"':
            raise NotSimple  # unterminated quoted string
        else:
            tokens.append(token)
    return depth


def read_records(text: str, origin: dns.name.Name) -> dict[bytes, bytes]:
    """The zone's records (``aliasd.base.store`` form) from master-file ``text``.

    Raises NotSimple when the file needs the full reader.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if _unusual(text) or not origin.is_absolute():
        raise NotSimple
    try:
        return _read(text, origin)
    except (IndexError, ValueError, OverflowError, UnicodeError):
        raise NotSimple from None


def _read(text: str, origin: dns.name.Name) -> dict[bytes, bytes]:
    zone_wire = origin.to_wire()
    zone_key = zone_wire.lower()
    current = zone_wire  # the current origin's wire form
    current_name: dns.name.Name | None = origin
    names: dict[str, bytes] = {}  # name text -> wire, for the current origin
    owners: dict[str, tuple[bytes, bytes]] = {}  # owner text -> (wire, key)
    owner_wire, owner_key = zone_wire, zone_key  # dnspython's last_name
    default_ttl, default_known, default_from_soa = 0, False, False
    last_ttl, last_known = 0, False
    soa_seen = False
    # key -> (owner wire as first written, {type: [ttl, rdatas, seen]})
    nodes: dict[bytes, tuple[bytes, dict[int, list]]] = {}
    classes, types, encoders = _classes, _types, _ENCODERS
    depth = 0
    blank = False
    toks: list[str] = []

    for line in text.split("\n"):
        if depth == 0:
            if not line:
                continue
            first = line[0]
            if first in '()"':
                raise NotSimple  # dnspython's leading-token corner cases
            blank = first == " " or first == "\t"
            if _special(line) is None:
                toks = line.split()
            else:
                toks = []
                depth = _tokenize(line, toks, 0)
                if depth:
                    continue
            if not toks:
                continue
        else:
            if _special(line) is None:
                toks += line.split()
            else:
                depth = _tokenize(line, toks, depth)
            if depth or not toks:
                continue

        # One whole entry (parentheses joined) in toks.
        if not blank and toks[0][0] == "$":
            directive = toks[0].upper()
            if len(toks) != 2:
                raise NotSimple
            if directive == "$TTL":
                ttl = _ttl(toks[1])
                if ttl is None:
                    raise NotSimple
                default_ttl, default_known, default_from_soa = ttl, True, False
            elif directive == "$ORIGIN":
                current = _name(toks[1], current, names)
                current_name = None
                names = {}
                owners = {}
            else:
                raise NotSimple
            continue

        if blank:
            i = 0
        else:
            known = owners.get(toks[0])
            if known is None:
                wire = _name(toks[0], current, names)
                key = wire.lower()
                if not _within(key, zone_key):
                    raise NotSimple
                known = owners[toks[0]] = (wire, key)
            owner_wire, owner_key = known
            i = 1

        # [TTL] [class] [TTL] type, as dnspython's Reader._rr_line reads them.
        token = toks[i]
        ttl = None
        if "0" <= token[0] <= "9":
            ttl = _ttl(token)
            if ttl is not None:
                last_ttl, last_known = ttl, True
                i += 1
                token = toks[i]
        kind = classes.get(token)
        if kind is None:
            kind = _class_kind(token)
        if kind:
            if kind < 0:
                raise NotSimple
            i += 1
            token = toks[i]
        if ttl is None:
            if "0" <= token[0] <= "9" and (ttl := _ttl(token)) is not None:
                last_ttl, last_known = ttl, True
                i += 1
                token = toks[i]
            elif last_known and (not default_known or default_from_soa):
                ttl = last_ttl
            elif default_known:
                ttl = default_ttl
        rdtype = types.get(token) or _type_of(token)
        args = toks[i + 1:]

        encode = encoders.get(rdtype)
        rdata = encode(args, current, names) if encode is not None else None
        if rdata is None:
            if current_name is None:
                current_name = name_of(current)
            rdata = _by_dnspython(rdtype, args, current_name)

        if rdtype == _SOA:
            if soa_seen or owner_key != zone_key:
                raise NotSimple
            soa_seen = True
            if not default_known:
                # No $TTL yet: the SOA MINIMUM becomes the default.
                default_ttl = int.from_bytes(rdata[-4:], "big")
                default_known = default_from_soa = True
                if ttl is None:
                    ttl = last_ttl if last_known else default_ttl
        if ttl is None:
            raise NotSimple

        node = nodes.get(owner_key)
        if node is None:
            nodes[owner_key] = (owner_wire, {rdtype: _new_rrset(rdtype, ttl, rdata)})
            continue
        rrsets = node[1]
        rrset = rrsets.pop(rdtype, None)
        if rrset is None:
            rrsets[rdtype] = _new_rrset(rdtype, ttl, rdata)
            continue
        rrsets[rdtype] = rrset  # dnspython moves an updated RRset to the end
        if ttl < rrset[0]:
            rrset[0] = ttl
        seen = rrset[2]
        same = rdata if rdtype in _EXACT else rdata.lower()
        earlier = seen.get(same)
        if earlier is None:
            if rdtype == _ALIAS or dns.rdatatype.is_singleton(rdtype):
                raise NotSimple
            seen[same] = rdata
            rrset[1].append(rdata)
        elif earlier != rdata:
            raise NotSimple  # equal to dnspython but for letter case

    if depth:
        raise NotSimple
    apex = nodes.get(zone_key)
    if apex is None or _SOA not in apex[1] or _NS not in apex[1]:
        raise NotSimple
    records = {}
    for key, (wire, rrsets) in nodes.items():
        if _CNAME in rrsets and len(rrsets) > 1:
            if any(t != _CNAME and t not in _NEUTRAL for t in rrsets):
                raise NotSimple
        records[key] = pack(wire, [(t, r[0], r[1]) for t, r in rrsets.items()])
    return records


def _new_rrset(rdtype: int, ttl: int, rdata: bytes) -> list:
    same = rdata if rdtype in _EXACT else rdata.lower()
    return [ttl, [rdata], {same: rdata}]
