"""What is wrong with a zone-file line, in words an operator can act on.

Why: dnspython's reader stops with ``Text input is malformed.`` for
``192.0.2.300``, where named-checkzone says which record and which field
is wrong. When the reader (aliasd.zones.zonefile) fails on a record or a
directive, the failing line is read again here, field by field, with
dnspython's own parsers, to name the record type, the field and the
reason: ``A record: '192.0.2.300' is not an IPv4 address``. This runs on
the error path only; a file that loads never comes here.

Every function returns None when it cannot tell more than dnspython did;
the caller keeps dnspython's message then.
"""

from __future__ import annotations

import re

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.ttl

from aliasd.base.store import ALIAS_TYPE

_T = dns.rdatatype.RdataType

#: The fields of the common types, in order: (name, kind). The kind says
#: what the field must be (_REASONS).
_FIELDS: dict[int, tuple[tuple[str, str], ...]] = {
    _T.A: (("address", "ipv4"),),
    _T.AAAA: (("address", "ipv6"),),
    _T.NS: (("name server", "name"),),
    _T.CNAME: (("target", "name"),),
    _T.DNAME: (("target", "name"),),
    _T.PTR: (("target", "name"),),
    _T.MX: (("preference", "uint16"), ("exchange", "name")),
    _T.SRV: (("priority", "uint16"), ("weight", "uint16"), ("port", "uint16"), ("target", "name")),
    _T.SOA: (("primary name server", "name"), ("responsible mailbox", "name"), ("serial", "uint32"),
             ("refresh", "time"), ("retry", "time"), ("expire", "time"), ("minimum", "time")),
    _T.CAA: (("flags", "uint8"), ("tag", "tag"), ("value", "string")),
    ALIAS_TYPE: (("target", "name"),),
}

_REASONS = {
    "ipv4": "is not an IPv4 address",
    "ipv6": "is not an IPv6 address",
    "uint8": "is not a number from 0 to 255",
    "uint16": "is not a number from 0 to 65535",
    "uint32": "is not a number from 0 to 4294967295",
    "time": "is not a number of seconds up to 4294967295 (or a time such as 1h30m)",
    "tag": "is not a tag of letters and digits",
}

#: What dnspython's name errors mean.
_NAME_REASONS = {
    dns.name.LabelTooLong: "a label is longer than 63 octets",
    dns.name.NameTooLong: "the name is longer than 255 octets",
    dns.name.EmptyLabel: "an empty label (two dots in a row, or a leading dot)",
    dns.name.BadEscape: "a bad escape (a backslash must be followed by a character or three digits)",
}

_TTL_REASON = "is not a TTL: a number of seconds up to 4294967295, or a time such as 1h30m"


def name_reason(error: Exception) -> str:
    """Why a name is not one, from dnspython's exception."""
    for kind, reason in _NAME_REASONS.items():
        if isinstance(error, kind):
            return reason
    return str(error) or "not a domain name"


def _type_text(rdtype: int) -> str:
    return "ALIAS" if rdtype == ALIAS_TYPE else dns.rdatatype.to_text(rdtype)


def _shown(value: str) -> str:
    """A field as quoted in a message: long ones cut short."""
    return value if len(value) <= 70 else value[:67] + "..."


def record_text(lines: list[str], start: int) -> tuple[str | None, str | None]:
    """(the record starting on line ``start`` (1-based) with the lines its
    parentheses join, or None; what is wrong with its quotes or
    parentheses, or None)."""
    depth = 0
    quoted = False
    taken = []
    for number in range(start - 1, len(lines)):
        line = lines[number]
        taken.append(line)
        escaped = False
        for char in line:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif quoted:
                quoted = char != '"'
            elif char == '"':
                quoted = True
            elif char == ";":
                break
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth < 0:
                    return None, "')' without an opening '('"
        if quoted:
            return None, "unterminated quoted string: a '\"' has no closing quote on its line"
        if depth == 0:
            return "\n".join(taken), None
    return None, "unterminated parenthesis: a '(' is never closed"


class _Counting(dns.tokenizer.Tokenizer):
    """A tokenizer that remembers the tokens the rdata parser took."""

    def __init__(self, text: str):
        super().__init__(text)
        self.taken: list[dns.tokenizer.Token] = []

    def get(self, want_leading: bool = False, want_comment: bool = False):
        token = super().get(want_leading, want_comment)
        self.taken.append(token)
        return token

    def unget(self, token) -> None:
        super().unget(token)
        if self.taken and self.taken[-1] is token:
            self.taken.pop()


def explain_record(lines: list[str], start: int, origin: dns.name.Name | None) -> str | None:
    """What is wrong with the record that starts on line ``start``
    (``origin``: the $ORIGIN in force there), or None."""
    text, wrong = record_text(lines, start)
    if wrong is not None:
        return wrong
    if text is None or not text.strip():
        return None
    tok = _Counting(text)
    try:
        tokens = []
        token = tok.get(want_leading=True)
        if token.is_identifier():  # (whitespace: the previous owner)
            try:
                dns.name.from_text(token.value, origin)
            except dns.exception.DNSException as e:
                return f"owner name '{_shown(token.value)}': {name_reason(e)}"
        token = tok.get()
        while token.is_identifier() and len(tokens) < 3:
            tokens.append(token)
            kind = _token_kind(token.value)
            if kind == "type":
                break
            if isinstance(kind, str):
                return kind
            token = tok.get()
        else:
            tok.unget(token)
    except dns.exception.SyntaxError:
        return None
    rdtype = _rdtype(tokens[-1].value) if tokens else None
    if rdtype is None:
        return "no record type (an owner, then an optional TTL and class, a type and its data)"
    return _explain_rdata(tok, rdtype, origin)


def _token_kind(value: str):
    """"type" for a record type, None for a TTL or the class IN, else what
    is wrong with this token in the TTL-class-type position."""
    if _rdtype(value) is not None:
        if dns.rdatatype.is_metatype(_rdtype(value)):
            return f"'{value}' is a query type, not a record type"
        return "type"
    rdclass = _rdclass(value)
    if rdclass is not None:
        if rdclass != dns.rdataclass.IN:
            return f"class {value.upper()}: aliasd serves class IN only"
        return None
    if value[:1].isdigit():
        try:
            dns.ttl.from_text(value)
        except dns.exception.DNSException:
            return f"TTL '{value}' {_TTL_REASON}"
        return None
    return f"unknown record type '{value}'"


def _rdtype(value: str) -> int | None:
    try:
        return dns.rdatatype.from_text(value)
    except (dns.exception.DNSException, ValueError):
        return None


def _rdclass(value: str) -> int | None:
    try:
        return dns.rdataclass.from_text(value)
    except (dns.exception.DNSException, ValueError):
        return None


def _explain_rdata(tok: _Counting, rdtype: int, origin: dns.name.Name | None) -> str | None:
    """Parse the record data as dnspython does, and name the field it fails on."""
    already = len(tok.taken)
    try:
        dns.rdata.from_text(dns.rdataclass.IN, rdtype, tok, origin, relativize=False)
    except Exception as e:  # noqa: BLE001 - any, as dnspython's reader takes any as a syntax error
        error = e
    else:
        return None
    what = f"{_type_text(rdtype)} record"
    taken = tok.taken[already:]
    given = [t for t in taken if not t.is_eol_or_eof()]
    last = taken[-1] if taken else None
    rest = 0  # the fields after the one it failed on
    try:
        while last is not None and not last.is_eol_or_eof():
            if tok.get().is_eol_or_eof():
                break
            rest += 1
    except dns.exception.SyntaxError:
        pass
    fields = _FIELDS.get(rdtype)
    count = len(given) + rest
    if fields and count != len(fields):
        return (f"{what}: {count} field{'s' if count != 1 else ''} where {_type_text(rdtype)} needs "
                f"{len(fields)} ({', '.join(n for n, _ in fields)})")
    if last is None or last.is_eol_or_eof():
        return f"{what}: missing data after {count} field{'s' if count != 1 else ''} ({error})"
    value = _shown(last.value)
    index = len(given) - 1
    if fields:
        name, kind = fields[index]
        if kind == "name":
            try:
                dns.name.from_text(last.value, origin)
            except dns.exception.DNSException as e:
                return f"{what}: {name} '{value}': {name_reason(e)}"
        reason = _REASONS.get(kind)
        if kind == "ipv4" and _leading_zero(last.value):
            reason += " (a number with a leading zero is refused: it reads as octal to some software)"
        if reason is not None:
            return f"{what}: '{value}' {reason}" if len(fields) == 1 else f"{what}: {name} '{value}' {reason}"
        return f"{what}: {name} '{value}': {error}"
    if "expected EOL or EOF" in str(error):
        return f"{what}: '{value}' is one field too many"
    return f"{what}: field {index + 1} '{value}': {str(error) or type(error).__name__}"


def _leading_zero(text: str) -> bool:
    """``192.0.2.01``: four decimal parts, one with a leading zero."""
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts) and any(len(p) > 1 and p[0] == "0" for p in parts)


def explain_directive(lines: list[str], where: int, origin: dns.name.Name | None) -> str | None:
    """What is wrong with the $TTL, $ORIGIN or $GENERATE directive on line ``where``, or None."""
    try:
        tok = dns.tokenizer.Tokenizer(lines[where - 1])
        directive = tok.get().value.upper()
    except (IndexError, dns.exception.SyntaxError):
        return None
    _, wrong = record_text(lines, where)
    if wrong is not None:
        return f"{directive}: {wrong}"
    try:
        value = tok.get()
    except dns.exception.SyntaxError:
        return None
    if directive == "$GENERATE":
        return _explain_generate(tok, value)
    if directive not in ("$TTL", "$ORIGIN"):
        return None
    if not value.is_identifier():
        return f"{directive} needs a value" if directive == "$TTL" else "$ORIGIN needs a domain name"
    if directive == "$TTL":
        try:
            dns.ttl.from_text(value.value)
        except dns.exception.DNSException:
            return f"$TTL '{value.value}' {_TTL_REASON}"
    else:
        try:
            dns.name.from_text(value.value, origin)
        except dns.exception.DNSException as e:
            return f"$ORIGIN '{value.value}': {name_reason(e)}"
    try:
        extra = tok.get()
    except dns.exception.SyntaxError:
        return None
    if not extra.is_eol_or_eof():
        return f"{directive}: '{extra.value}' is one value too many"
    return None


def _explain_generate(tok, first) -> str | None:
    """A $GENERATE with too few fields (dnspython: ``Text input is malformed.``)."""
    count = 0
    token = first
    try:
        while not token.is_eol_or_eof():
            count += 1
            token = tok.get()
    except dns.exception.SyntaxError:
        return None
    if count < 4:
        return (f"$GENERATE: {count} field{'s' if count != 1 else ''} where it needs a range, an owner, "
                "an optional TTL and class, a type and its data")
    if not first.is_identifier() or not re.fullmatch(r"\d+-\d+(/\d+)?", first.value):
        return f"$GENERATE: range '{_shown(first.value)}' is not START-STOP or START-STOP/STEP"
    return None
