"""Hostile input: random, mutated and targeted messages never break the server.

Property tests (hypothesis) throw arbitrary bytes, mutated valid queries and
targeted malformed messages at QueryHandler; end-to-end tests send thousands
of such packets to a real twistd aliasd over UDP and TCP. The server must
never raise, never answer with a message that does not parse, never answer
larger than the client allows over UDP, never sign an error answer to a
request whose key or signature was bad (RFC 8945 5.3.2), and must go on
answering.

The targeted generators (issue 7) are plain functions of a random.Random, so
bench/fuzz.py can use them too; the property tests hand them
``st.randoms(use_true_random=False)``, so every choice they make is a
hypothesis draw (reproducible and shrinkable). Each returns a Packet: the
wire bytes, a description, and what the TSIG in it deserves:

- EDNS: OPT records with unknown, overrunning, empty, huge, ECS, cookie and
  padding options, several OPTs, OPT outside the additional section or with
  a non-root owner, versions 0/1/255, the DO bit, odd payload sizes;
- TSIG: unknown and known keys, wrong algorithms, damaged, truncated, empty
  and correct MACs, times far off, fudge 0, TSIG not last, two TSIGs, class
  other than ANY, on queries and on AXFR/IXFR requests;
- structure: compression loops and wild pointers, label lengths 64-255,
  names over 255 octets, lying section counts, odd types and classes,
  opcodes 1-15, signed queries cut short.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import socket
import struct
import time
from pathlib import Path
from typing import Callable, NamedTuple

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from twisted.internet import task

from aliasd.answer.answers import QueryHandler
from aliasd.answer.status import StatusReporter
from aliasd.base.access import TransferAccess, keyring_from
from aliasd.base.config import KeySettings, ZoneSettings
from aliasd.service.authority import ZoneAuthority
from tests.helpers import zone_source

ZONE_TEXT = (
    "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\n"
    "www A 192.0.2.1\n*.w A 192.0.2.9\nsub NS ns.sub\nns.sub A 192.0.2.7\n"
)
SOURCE = zone_source(
    "example.com",
    ZONE_TEXT + "@ ALIAS www\n" + "big TXT " + " ".join(f'"{"x" * 200}"' for _ in range(10)) + "\n",
)
SEEDS = [
    dns.message.make_query(name, rdtype, use_edns=edns).to_wire()
    for name in ("example.com", "www.example.com", "a.w.example.com", "x.sub.example.com", "big.example.com")
    for rdtype in ("A", "AAAA", "TXT", "AXFR", "IXFR", "ANY")
    for edns in (False, 0)
]

ORIGIN = dns.name.from_text("example.com")
KEY_SECRET = b"aliasd fuzz key: 32 octets long!"
KEY_NAME = dns.name.from_text("fuzz-key")
KEYRING = keyring_from((KeySettings("fuzz-key", "hmac-sha256", KEY_SECRET),))
KEY = KEYRING[KEY_NAME]
#: The same key and transfer rules for a real server (after its [server]).
SERVER_CONFIG = f"""
[keys.fuzz-key]
algorithm = "hmac-sha256"
secret = "{base64.b64encode(KEY_SECRET).decode()}"
[zones."example.com"]
file = "example.com.zone"
allow-transfer = ["127.0.0.1"]
transfer-key = "fuzz-key"
"""


def _handler() -> QueryHandler:
    authority = ZoneAuthority()
    authority.set_sources([SOURCE])
    access = TransferAccess((
        ZoneSettings(
            ORIGIN, Path("example.com.zone"),
            allow_transfer=(ipaddress.ip_network("127.0.0.0/8"),), transfer_key="fuzz-key",
        ),
    ))
    status = StatusReporter(authority, None, task.Clock())
    return QueryHandler(authority, access=access, keyring=KEYRING, status=status)


HANDLER = _handler()


class Packet(NamedTuple):
    wire: bytes
    what: str  # what the generator made, for failure reports
    #: "valid": correctly signed with the configured key, in time; "badtime":
    #: correctly signed, out of time; "forged": a TSIG (or a cut-off signed
    #: message) that must not be accepted; "": no claim.
    tsig: str = ""


# -- checking answers -------------------------------------------------------


def client_limit(wire: bytes) -> int:
    """What the client accepts over UDP: 512 without EDNS, else its payload
    size within [512, our limit]; 512 when the request does not parse."""
    try:
        query = dns.message.from_wire(wire, keyring=False)
    except Exception:
        return 512
    if query.edns < 0:
        return 512
    return min(max(512, query.payload), HANDLER.max_udp_size)


def check_answers(wire: bytes, messages: list[bytes], over_udp: bool, tsig: str = "", stream: bool = False) -> None:
    """The properties every answer to ``wire`` must have."""
    parsed = [
        dns.message.from_wire(m, keyring=False, ignore_trailing=False, one_rr_per_rrset=True)
        for m in messages
    ]
    if over_udp:
        limit = client_limit(wire)
        for message in messages:
            assert len(message) <= limit, f"UDP answer of {len(message)} octets, client allows {limit}"
    for message in parsed:
        if message.had_tsig and message.tsig[0].error in (dns.rcode.BADSIG, dns.rcode.BADKEY):
            assert message.tsig[0].mac == b"", "BADSIG/BADKEY answer is signed (RFC 8945 5.3.2)"
    if not parsed:
        return
    first = parsed[0]
    if tsig == "forged":
        assert not stream, "a transfer streamed for a forged TSIG"
        assert first.rcode() != dns.rcode.NOERROR, "a forged TSIG got a NOERROR answer"
        assert not first.had_tsig or first.tsig[0].mac == b"", "answer to a forged TSIG is signed"
    elif tsig == "valid":
        request = dns.message.from_wire(wire, keyring=False)
        ctx = None
        for message in messages:  # every message verifies, in one chain for a transfer
            answer = dns.message.from_wire(
                message, keyring=KEYRING, request_mac=request.mac, xfr=stream,
                tsig_ctx=ctx, multi=stream, one_rr_per_rrset=True,
            )
            assert answer.had_tsig and answer.tsig[0].error == 0
            ctx = answer.tsig_ctx
    elif tsig == "badtime":
        assert first.rcode() == dns.rcode.NOTAUTH and first.had_tsig
        assert first.tsig[0].error == dns.rcode.BADTIME and first.tsig[0].mac != b""


def check(wire: bytes, over_udp: bool, tsig: str = "") -> None:
    answer = HANDLER.handle(wire, "127.0.0.1", over_udp)
    if answer is None:
        return
    stream = not isinstance(answer, bytes)
    check_answers(wire, list(answer) if stream else [answer], over_udp, tsig, stream)


def mutate(rng: random.Random, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(rng.randint(1, 6)):
        kind = rng.randrange(4)
        if kind == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1 and data:
            del data[rng.randrange(len(data)):]
        elif kind == 2:
            data[rng.randrange(len(data) + 1):0] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        elif len(data) > 12:  # lie in the section counts
            struct.pack_into("!H", data, 4 + 2 * rng.randrange(4), rng.choice((0, 1, 2, 255, 65535)))
    return bytes(data)


# -- building messages octet by octet ---------------------------------------


def wire_name(text: str) -> bytes:
    return dns.name.from_text(text).to_wire()


def question(name: bytes, qtype: int = 1, qclass: int = 1) -> bytes:
    return name + struct.pack("!HH", qtype, qclass)


def rr(owner: bytes, rdtype: int, rdclass: int, ttl: int, rdata: bytes, rdlength: int | None = None) -> bytes:
    size = len(rdata) if rdlength is None else rdlength
    return owner + struct.pack("!HHIH", rdtype, rdclass, ttl, size) + rdata


def message(ident: int, flags: int, questions=(), answer=(), authority=(), additional=(), counts=None) -> bytes:
    sections = (questions, answer, authority, additional)
    if counts is None:
        counts = [len(s) for s in sections]
    return struct.pack("!HHHHHH", ident, flags, *counts) + b"".join(b"".join(s) for s in sections)


def tsig_rdata(algorithm: dns.name.Name, time_signed: int, fudge: int, mac: bytes, original_id: int,
               error: int = 0, other: bytes = b"", mac_size: int | None = None,
               other_size: int | None = None) -> bytes:
    """TSIG rdata; ``mac_size`` and ``other_size`` may lie about the lengths."""
    return (
        algorithm.to_wire()
        + struct.pack("!HIHH", time_signed >> 32 & 0xFFFF, time_signed & 0xFFFFFFFF, fudge,
                      len(mac) if mac_size is None else mac_size)
        + mac
        + struct.pack("!HHH", original_id, error, len(other) if other_size is None else other_size)
        + other
    )


def tsig_mac(body: bytes, key: dns.tsig.Key, time_signed: int, fudge: int, original_id: int,
             error: int = 0, other: bytes = b"") -> bytes:
    """The MAC ``key`` gives ``body`` (a message without its TSIG)."""
    template = dns.rdtypes.ANY.TSIG.TSIG(
        dns.rdataclass.ANY, dns.rdatatype.TSIG, key.algorithm, time_signed, fudge, b"", original_id, error, other
    )
    rdata, _ = dns.tsig.sign(body, key, template, time_signed)
    return rdata.mac


def make_query(name: str, rdtype: str, edns=None, payload: int = 1232) -> dns.message.Message:
    """A query with EDNS version ``edns`` and ``payload``, or without EDNS (None)."""
    if edns is None:  # dnspython turns EDNS on whenever a payload is given
        return dns.message.make_query(name, rdtype)
    return dns.message.make_query(name, rdtype, use_edns=edns, payload=payload)


def signed_query(name: str, rdtype: str, edns=None, payload: int = 1232, ident: int | None = None) -> dns.message.Message:
    """A query (IXFR with the client's SOA) signed with the configured key."""
    query = make_query(name, rdtype, edns, payload)
    if ident is not None:
        query.id = ident
    if rdtype == "IXFR":
        query.authority.append(dns.rrset.from_text(name, 0, "IN", "SOA", "ns1.example.com. h.example.com. 0 1 1 1 1"))
    query.use_tsig(KEYRING, KEY_NAME)
    query.to_wire()  # sets query.mac
    return query


NAMES = (
    "example.com.", "www.example.com.", "a.w.example.com.", "x.sub.example.com.", "big.example.com.",
    "nx.example.com.", "example.net.", ".", "version.bind.", "aliases.bind.",
)
QTYPES = (1, 28, 16, 6, 2, 255, 65401)


def _counts(wire: bytes) -> list[int]:
    return list(struct.unpack_from("!HHHH", wire, 4))


def _with_counts(wire: bytes, counts) -> bytes:
    return wire[:4] + struct.pack("!HHHH", *counts) + wire[12:]


# -- EDNS -------------------------------------------------------------------


def _edns_option(rng: random.Random) -> tuple[bytes, str]:
    kind = rng.choice(("fine", "fine", "unknown", "unknown", "overrun", "empty", "huge", "ecs", "cookie", "padding", "known"))
    length = None
    if kind == "fine":  # well-formed ECS, client cookie, zero padding, NSID request
        code, data = rng.choice((
            (8, struct.pack("!HBB", 1, 24, 0) + bytes((192, 0, 2))),
            (8, struct.pack("!HBB", 2, 56, 0) + bytes(7)),
            (10, rng.randbytes(8)),
            (10, rng.randbytes(24)),
            (12, bytes(rng.choice((0, 16, 200)))),
            (3, b""),
        ))
    elif kind == "unknown":
        code = rng.choice((0, 4, 16, 17, 18, 100, 20292, 26946, 65001, 65534, 65535))
        data = rng.randbytes(rng.randrange(40))
    elif kind == "overrun":  # the option claims more than the OPT rdata holds
        code = rng.randrange(65536)
        data = rng.randbytes(rng.randrange(20))
        length = len(data) + rng.choice((1, 2, 100, 65535 - len(data)))
    elif kind == "empty":
        code = rng.randrange(20)
        data = b""
    elif kind == "huge":
        code = rng.choice((3, 12, 65001, rng.randrange(65536)))
        data = bytes((rng.randrange(256),)) * rng.choice((600, 1300, 4000))
    elif kind == "ecs":  # RFC 7871, with bad families and prefix lengths
        code = 8
        family = rng.choice((0, 1, 2, 3, 65535))
        source = rng.choice((0, 1, 24, 32, 33, 56, 64, 128, 129, 255))
        scope = rng.choice((0, 0, 24, 128, 255))
        size = rng.choice(((source + 7) // 8, 0, 4, 16, 17, rng.randrange(40)))
        data = struct.pack("!HBB", family, source, scope) + rng.randbytes(size)
        if rng.randrange(8) == 0:
            data = data[: rng.randrange(4)]
    elif kind == "cookie":  # RFC 7873: 8 octets, or 16 to 40
        code = 10
        data = rng.randbytes(rng.choice((0, 1, 7, 8, 9, 15, 16, 24, 40, 41, 64)))
    elif kind == "padding":  # RFC 7830: should be zeros
        code = 12
        size = rng.choice((0, 1, 100, 468, 1000))
        data = bytes(size) if rng.randrange(2) else bytes((rng.randrange(1, 256),)) * size
    else:  # NSID, DAU/DHU/N3U, EXPIRE, keepalive, CHAIN, key tag, EDE: odd contents
        code = rng.choice((3, 5, 6, 7, 9, 11, 13, 14, 15))
        data = rng.randbytes(rng.choice((0, 1, 2, 3, 4, 6, 20)))
    return struct.pack("!HH", code, len(data) if length is None else length) + data, f"{kind}:{code}"


def _opt_rr(rng: random.Random, options: bytes, owner: bytes = b"\0") -> tuple[bytes, str]:
    payload = rng.choice((0, 1, 511, 512, 513, 1232, 1233, 4096, 65535, rng.randrange(65536)))
    version = rng.choice((0, 0, 0, 1, 255))
    ext_rcode = rng.choice((0, 0, 0, 1, 255))
    flags = rng.choice((0, 0x8000, 0x8000 | rng.randrange(0x8000), rng.randrange(0x10000)))  # DO and Z
    rdlength = len(options) + rng.choice((0,) * 12 + (1, 10, -1, -len(options)))
    rdlength = min(max(0, rdlength), 65535)
    wire = owner + struct.pack("!HHBBHH", 41, payload, ext_rcode, version, flags, rdlength) + options
    return wire, f"payload {payload} version {version} ext-rcode {ext_rcode} flags {flags:#06x} rdlength {rdlength}/{len(options)}"


def edns_query(rng: random.Random) -> Packet:
    """A query with an odd OPT record, or OPT records in odd places."""
    options, kinds = [], []
    for _ in range(rng.choice((0, 1, 1, 1, 1, 2, 3, 5))):
        option, kind = _edns_option(rng)
        options.append(option)
        kinds.append(kind)
    opt, what = _opt_rr(rng, b"".join(options))
    where = rng.choice(("additional",) * 8 + ("several", "answer", "authority", "owner"))
    answer, authority, additional = [], [], [opt]
    if where == "several":
        additional += [rng.choice((opt, _opt_rr(rng, b"")[0])) for _ in range(rng.randint(1, 2))]
    elif where == "answer":
        answer, additional = [opt], rng.choice(([], [opt]))
    elif where == "authority":
        authority, additional = [opt], []
    elif where == "owner":  # non-root owner: a name, or a pointer to the question
        owner = rng.choice((wire_name("www.example.com."), b"\xc0\x0c", wire_name("fuzz-key.")))
        additional = [owner + opt[1:]]
    flags = 0x0100 | rng.choice((0, 0x0010, 0x0020))  # RD, maybe CD or AD
    wire = message(
        rng.randrange(65536), flags, [question(wire_name(rng.choice(NAMES)), rng.choice(QTYPES))],
        answer, authority, additional,
    )
    return Packet(wire, f"EDNS in {where}: {what}, options {kinds}")


# -- TSIG -------------------------------------------------------------------

#: A name of 255 octets (the most allowed) in the zone: long answers.
LONG_QNAME = ".".join(["a" * 63] * 3 + ["a" * 49]) + ".example.com."
OTHER_KEY_NAMES = (
    dns.name.from_text("no-such-key."), dns.name.root, dns.name.from_text("fuzz-key.example.com."),
    dns.name.from_text(".".join(["k" * 63] * 3 + ["k" * 61])),  # 255 octets
)
OTHER_ALGORITHMS = (
    dns.tsig.HMAC_SHA256_128, dns.tsig.HMAC_MD5, dns.tsig.HMAC_SHA1, dns.tsig.HMAC_SHA512, dns.tsig.GSS_TSIG,
    dns.name.from_text("hmac-sha999."), dns.name.root,
    dns.name.from_text(".".join(["a" * 63] * 3 + ["a" * 61])),  # 255 octets
)
TSIG_BASES = (
    ("www.example.com.", "A", None), ("www.example.com.", "A", 0), ("nx.example.com.", "AAAA", 0),
    ("example.com.", "SOA", None), ("example.com.", "AXFR", None), ("example.com.", "AXFR", 0),
    ("example.com.", "IXFR", None), ("example.com.", "IXFR", 0), ("big.example.com.", "TXT", 0),
    ("example.net.", "A", None), (LONG_QNAME, "A", None), (LONG_QNAME, "TXT", 0),
)
#: What can be wrong with a TSIG: each packet has none, one or a few.
TSIG_FLAWS = ("key", "algorithm", "mac", "time", "fudge", "error", "lengths", "class", "placement")


def tsig_query(rng: random.Random) -> Packet:
    """A query or transfer request signed with the configured key, with flaws or not."""
    now = int(time.time())
    ident = rng.randrange(65536)
    name, rdtype, edns = rng.choice(TSIG_BASES)
    query = make_query(name, rdtype, edns, rng.choice((512, 1232, 4096)))
    query.id = ident
    if rdtype == "IXFR":
        query.authority.append(dns.rrset.from_text(name, 0, "IN", "SOA", "ns1.example.com. h.example.com. 0 1 1 1 1"))
    body = query.to_wire()

    # Harmless variety first: a correct signature stays correct with these.
    keyname = dns.name.from_text("FUZZ-KEY.") if rng.randrange(6) == 0 else KEY_NAME
    algorithm = KEY.algorithm
    time_signed = now + rng.choice((0, 0, 0, 1, -1, 200, -200))
    fudge = rng.choice((300, 300, 300, 65535))
    error = 0
    other = b"" if rng.randrange(5) else rng.choice((now.to_bytes(6, "big"), rng.randbytes(rng.randrange(1, 20))))
    original_id = ident if rng.randrange(5) else rng.randrange(65536)
    ttl = 0 if rng.randrange(6) else rng.choice((1, 2**31))
    mac_kind, lie, rdclass, placement = "correct", None, 255, "last"

    flaws = rng.sample(TSIG_FLAWS, rng.choice((0, 0, 1, 1, 1, 1, 2, 3)))
    for flaw in flaws:
        if flaw == "key":
            keyname = rng.choice(OTHER_KEY_NAMES)
        elif flaw == "algorithm":
            algorithm = rng.choice(OTHER_ALGORITHMS)
        elif flaw == "mac":
            mac_kind = rng.choice(("truncated", "flipped", "random", "empty", "longer"))
        elif flaw == "time":  # far in the past or future
            time_signed = rng.choice((now + 310, now - 310, now + 10**6, now - 10**6, 0, 2**48 - 1))
        elif flaw == "fudge":
            fudge, time_signed = 0, now - rng.choice((10, 100))
        elif flaw == "error":  # a request carrying a TSIG error
            error = rng.choice((16, 17, 18, 22, rng.randrange(1, 65536)))
        elif flaw == "lengths":  # MAC or other data size lying about the rdata
            lie = (rng.choice(("mac", "other")), rng.choice((1, 2, 100)))
        elif flaw == "class":
            rdclass = rng.choice((1, 3, 254, 0))
        else:
            placement = rng.choice(("not-last", "two", "answer", "uncounted", "overcounted"))

    if algorithm in dns.tsig.HMACTSig._hashes:  # the MAC this key name, algorithm and secret give
        key = dns.tsig.Key(keyname, KEY_SECRET, algorithm)
        right = tsig_mac(body, key, time_signed, fudge, original_id, error & 0xFFF, other)  # dnspython: 12 bits
    else:
        right = rng.randbytes(32)
    mac = {
        "correct": lambda: right,
        "truncated": lambda: right[: rng.choice((1, 10, 16, len(right) - 1))],  # RFC 8945 5.2.2.1
        "flipped": lambda: _flip(rng, right),
        "random": lambda: rng.randbytes(rng.choice((0, 16, 32, 64))),
        "empty": lambda: b"",
        "longer": lambda: right + bytes(rng.randint(1, 32)),
    }[mac_kind]()
    mac_size = len(mac) + lie[1] if lie and lie[0] == "mac" else None
    other_size = len(other) + lie[1] if lie and lie[0] == "other" else None
    rdata = tsig_rdata(algorithm, time_signed, fudge, mac, original_id, error, other, mac_size, other_size)
    record = rr(keyname.to_wire(), 250, rdclass, ttl, rdata)

    counts = _counts(body)
    if placement == "last":
        wire, counts[3] = body + record, counts[3] + 1
    elif placement == "not-last":
        wire, counts[3] = body + record + rr(b"\xc0\x0c", 1, 1, 0, bytes(4)), counts[3] + 2
    elif placement == "two":
        wire, counts[3] = body + record + record, counts[3] + 2
    elif placement == "answer":  # right after the question, as the first answer record
        qend = 12 + len(wire_name(name)) + 4
        wire, counts[1] = body[:qend] + record + body[qend:], counts[1] + 1
    elif placement == "uncounted":
        wire = body + record
    else:
        wire, counts[3] = body + record, counts[3] + 2
    wire = _with_counts(wire, counts)

    if set(flaws) - {"time", "fudge"}:
        label = "forged"
    else:
        margin = fudge - abs(time_signed - now)
        label = "valid" if margin >= 5 else "badtime" if margin <= -5 else ""  # "": too close to call
    what = (
        f"TSIG {rdtype} {name} flaws {flaws}: key {keyname} alg {algorithm} time {time_signed - now:+d} "
        f"fudge {fudge} error {error} mac {mac_kind}/{len(mac)} lie {lie} class {rdclass} ttl {ttl} {placement}"
    )
    return Packet(wire, what, label)


def _flip(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return b"\x01"
    i = rng.randrange(len(data))
    return data[:i] + bytes((data[i] ^ 1 << rng.randrange(8),)) + data[i + 1:]


# -- structure ----------------------------------------------------------------


def compression_query(rng: random.Random) -> Packet:
    """Compression pointers that loop, point forward, into the header or mid-label."""
    ident = rng.randrange(65536)
    www = wire_name("www.example.com.")  # at offset 12 in the question
    kind = rng.choice(("self", "mutual", "label-loop", "forward", "header", "mid-label",
                       "answer-self", "rdata-self", "chain"))
    if kind == "self":  # the question name is a pointer to itself
        wire = message(ident, 0x0100, [b"\xc0\x0c\x00\x01\x00\x01"])
    elif kind == "mutual":  # 12 -> 14 -> 12
        wire = message(ident, 0x0100, [b"\xc0\x0e\xc0\x0c\x00\x01\x00\x01"])
    elif kind == "label-loop":  # a label, then back to the start: endless labels
        wire = message(ident, 0x0100, [b"\x01a\xc0\x0c\x00\x01\x00\x01"])
    elif kind == "forward":  # past the end of the message
        target = rng.choice((0x3FFF, 0x0100, 18, 19))
        wire = message(ident, 0x0100, [struct.pack("!H", 0xC000 | target) + b"\x00\x01\x00\x01"])
    elif kind == "header":
        wire = message(ident, 0x0100, [struct.pack("!H", 0xC000 | rng.randrange(12)) + b"\x00\x01\x00\x01"])
    elif kind == "mid-label":  # the owner of an answer record points into "www"
        wire = message(ident, 0x0100, [question(www)], [rr(b"\xc0\x0d", 1, 1, 0, bytes(4))])
    elif kind == "answer-self":  # an answer owner pointing at itself
        at = 12 + len(www) + 4
        wire = message(ident, 0x0100, [question(www)], [rr(struct.pack("!H", 0xC000 | at), 1, 1, 0, bytes(4))])
    elif kind == "rdata-self":  # a CNAME whose target points at itself
        at = 12 + len(www) + 4 + 2 + 10
        wire = message(ident, 0x0100, [question(www)], [rr(b"\xc0\x0c", 5, 1, 0, struct.pack("!H", 0xC000 | at))])
    else:  # each name one label longer than the one it points to: over 255 octets
        records, offset = [], 12 + len(www) + 4
        previous = 12
        for _ in range(rng.choice((10, 70, 130))):
            owner = b"\x01a" + struct.pack("!H", 0xC000 | previous)
            records.append(rr(owner, 1, 1, 0, bytes(4)))
            previous = offset
            offset += len(records[-1])
        wire = message(ident, 0x0100, [question(www)], records)
    if rng.randrange(3) == 0:
        wire = wire + _opt_rr(rng, b"")[0]
        wire = _with_counts(wire, _counts(wire)[:3] + [_counts(wire)[3] + 1])
    return Packet(wire, f"compression {kind}")


def label_query(rng: random.Random) -> Packet:
    """A label length of 64-255: too long, or the reserved types 0x40 and 0x80."""
    length = rng.choice((64, 65, 0x7F, 0x80, 0x81, 0xBF, rng.randint(64, 255)))
    labels = [b"\x03www", b"\x07example", b"\x03com"]
    labels.insert(rng.randrange(len(labels) + 1), bytes((length,)) + b"x" * rng.choice((0, 1, 63, length & 0x3F)))
    name = b"".join(labels) + b"\x00"
    return Packet(message(rng.randrange(65536), 0x0100, [question(name, rng.choice(QTYPES))]), f"label length {length:#x}")


def long_name_query(rng: random.Random) -> Packet:
    """Names of 255 octets (the most allowed), 256 and more, in the zone and not."""
    total = rng.choice((255, 256, 257, 320, 500, 1000))
    suffix = wire_name(rng.choice(("example.com.", "w.example.com.", ".")))
    labels, remaining = [], total - len(suffix)
    while remaining > 0:  # labels of 1 to 63 octets; may overshoot by one
        n = max(1, min(rng.choice((1, 10, 63)), remaining - 1))
        labels.append(bytes((n,)) + b"a" * n)
        remaining -= n + 1
    name = b"".join(labels) + suffix
    return Packet(message(rng.randrange(65536), 0x0100, [question(name, rng.choice(QTYPES))]), f"name of {len(name)} octets")


def counts_query(rng: random.Random) -> Packet:
    """A valid query whose section counts are larger or smaller than its content."""
    wire = rng.choice(SEEDS)
    counts = _counts(wire)
    for i in rng.sample(range(4), rng.randint(1, 4)):
        counts[i] = rng.choice((0, 1, 2, 3, 255, 65535, max(0, counts[i] - 1), counts[i] + 1))
    return Packet(_with_counts(wire, counts), f"counts {counts}")


def type_class_query(rng: random.Random) -> Packet:
    """Unknown, meta and reserved types and classes, ALIAS (65401) asked directly."""
    qtype = rng.choice((65401, 0, 255, 65535, 41, 249, 250, 251, 252, 253, 254, 65280, 32769, 99, rng.randrange(65536)))
    qclass = rng.choice((1, 1, 0, 3, 4, 254, 255, 65535, 2, rng.randrange(65536)))
    additional = [_opt_rr(rng, b"")[0]] if rng.randrange(2) else []
    wire = message(rng.randrange(65536), 0x0100, [question(wire_name(rng.choice(NAMES)), qtype, qclass)], (), (), additional)
    return Packet(wire, f"qtype {qtype} qclass {qclass}")


def opcode_query(rng: random.Random) -> Packet:
    """Opcodes 1-15 (IQUERY, STATUS, NOTIFY, UPDATE, unassigned) with odd header bits."""
    opcode = rng.randint(1, 15)
    bits = rng.choice((0x0100, 0x0500, 0x0700, 0x07F0, 0x0100 | rng.randrange(16), rng.randrange(0x0800)))
    flags = opcode << 11 | (bits & 0x07FF)
    www = wire_name(rng.choice(NAMES))
    kind = rng.choice(("question", "empty", "soa-answer", "update"))
    if kind == "question":
        wire = message(rng.randrange(65536), flags, [question(www, rng.choice(QTYPES))])
    elif kind == "empty":
        wire = message(rng.randrange(65536), flags)
    elif kind == "soa-answer":  # NOTIFY-like
        soa = wire_name("ns1.example.com.") + wire_name("h.example.com.") + struct.pack("!IIIII", 2, 1, 1, 1, 1)
        wire = message(rng.randrange(65536), flags, [question(wire_name("example.com."), 6)],
                       [rr(b"\xc0\x0c", 6, 1, 300, soa)])
    else:  # UPDATE-like: zone, a prerequisite, an update deleting an RRset
        wire = message(rng.randrange(65536), flags, [question(wire_name("example.com."), 6)],
                       [rr(wire_name("www.example.com."), 255, 255, 0, b"")],
                       [rr(wire_name("www.example.com."), 1, 255, 0, b"")])
    return Packet(wire, f"opcode {opcode} flags {flags:#06x} {kind}")


def truncated_signed_query(rng: random.Random) -> Packet:
    """A correctly signed query or transfer request, cut short."""
    name, rdtype, edns = rng.choice(TSIG_BASES)
    wire = signed_query(name, rdtype, edns, ident=rng.randrange(65536)).to_wire()
    cut = rng.randrange(len(wire))
    return Packet(wire[:cut], f"signed {rdtype} {name} cut at {cut} of {len(wire)}", "forged")


TARGETED: dict[str, Callable[[random.Random], Packet]] = {
    "edns": edns_query,
    "tsig": tsig_query,
    "compression": compression_query,
    "label": label_query,
    "long-name": long_name_query,
    "counts": counts_query,
    "type-class": type_class_query,
    "opcode": opcode_query,
    "truncated-signed": truncated_signed_query,
}


def targeted_packet(rng: random.Random) -> Packet:
    return TARGETED[rng.choice(sorted(TARGETED))](rng)


# -- property tests -----------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.booleans())
def test_arbitrary_bytes(wire, over_udp):
    check(wire, over_udp)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(0, 2**32), st.booleans())
def test_mutated_queries(seed, salt, over_udp):
    check(mutate(random.Random(salt), seed), over_udp)


def describe(packet: Packet, over_udp: bool) -> str:
    return f"{packet.what} [{packet.tsig or '-'}] over {'UDP' if over_udp else 'TCP'}: {packet.wire.hex()}"


def _run(packet: Packet, over_udp: bool) -> None:
    check(packet.wire, over_udp, packet.tsig)


@pytest.mark.parametrize("family", sorted(TARGETED))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), over_udp=st.booleans())
def test_targeted_messages(family, rng, over_udp):
    packet = TARGETED[family](rng)
    note(describe(packet, over_udp))
    _run(packet, over_udp)


@pytest.mark.parametrize("family", sorted(TARGETED))
def test_targeted_messages_fixed_seeds(family):
    """Many more of each kind, from fixed seeds: reproducible, and rare variants are reached."""
    labels = set()
    for seed in range(300):
        packet = TARGETED[family](random.Random(seed))
        labels.add(packet.tsig)
        for over_udp in (True, False):
            try:
                _run(packet, over_udp)
            except Exception as e:
                raise AssertionError(f"seed {seed}: {describe(packet, over_udp)}") from e
    if family == "tsig":  # the generator does produce each kind of TSIG
        assert {"valid", "badtime", "forged"} <= labels


@pytest.mark.parametrize("over_udp", [True, False], ids=["udp", "tcp"])
@pytest.mark.parametrize(
    "name, rdtype, edns", [("www.example.com.", "A", None), ("www.example.com.", "A", 0), ("example.com.", "AXFR", 0)]
)
def test_signed_query_cut_at_every_octet(name, rdtype, edns, over_udp):
    wire = signed_query(name, rdtype, edns).to_wire()
    for cut in range(len(wire)):
        check(wire[:cut], over_udp, "forged")
    check(wire, over_udp, "valid")


# -- TSIG controls --------------------------------------------------------------


@pytest.mark.parametrize("over_udp", [True, False], ids=["udp", "tcp"])
def test_correctly_signed_query_gets_a_signed_answer(over_udp):
    """The positive control: the fuzzed handler does accept its key."""
    query = signed_query("www.example.com.", "A", 0)  # signed once: query.mac is this wire's
    wire = HANDLER.handle(query.wire, "127.0.0.1", over_udp)
    answer = dns.message.from_wire(wire, keyring=KEYRING, request_mac=query.mac)
    assert answer.rcode() == dns.rcode.NOERROR and answer.had_tsig and answer.tsig[0].error == 0
    assert [r.address for r in answer.answer[0]] == ["192.0.2.1"]


def test_correctly_signed_axfr_streams_the_zone_signed():
    wire = signed_query("example.com.", "AXFR").to_wire()
    messages = list(HANDLER.handle(wire, "127.0.0.1", False))
    check_answers(wire, messages, False, "valid", stream=True)
    first = dns.message.from_wire(messages[0], keyring=False, xfr=True)
    assert first.answer[0].rdtype == dns.rdatatype.SOA


@pytest.mark.parametrize("rdtype", ["A", "AXFR", "IXFR"])
@pytest.mark.parametrize("damage", ["flipped", "truncated", "empty", "unknown-key", "wrong-algorithm"])
def test_damaged_signature_gets_an_unsigned_error(rdtype, damage):
    """NOTAUTH with BADSIG/BADKEY and an empty MAC; never the data, never a transfer."""
    now = int(time.time())
    body = dns.message.make_query("example.com.", rdtype, use_edns=0).to_wire()
    ident = struct.unpack_from("!H", body)[0]
    mac = tsig_mac(body, KEY, now, 300, ident)
    keyname, algorithm = KEY_NAME, KEY.algorithm
    if damage == "flipped":
        mac = _flip(random.Random(1), mac)
    elif damage == "truncated":
        mac = mac[:16]
    elif damage == "empty":
        mac = b""
    elif damage == "unknown-key":
        keyname = dns.name.from_text("no-such-key.")
    else:
        algorithm = dns.tsig.HMAC_SHA512
    record = rr(keyname.to_wire(), 250, 255, 0, tsig_rdata(algorithm, now, 300, mac, ident))
    counts = _counts(body)
    wire = _with_counts(body + record, counts[:3] + [counts[3] + 1])
    for over_udp in (True, False):
        answer = HANDLER.handle(wire, "127.0.0.1", over_udp)
        assert isinstance(answer, bytes)
        response = dns.message.from_wire(answer, keyring=False)
        assert response.rcode() == dns.rcode.NOTAUTH and not response.answer
        expected = dns.rcode.BADSIG if damage in ("flipped", "truncated", "empty") else dns.rcode.BADKEY
        assert response.tsig[0].error == expected and response.tsig[0].mac == b""


# -- regressions: server bugs this fuzzing found (fixed) ------------------------


@pytest.mark.parametrize("edns, payload", [(None, 512), (0, 512), (0, 1024)])
def test_signed_ixfr_over_udp_with_a_small_udp_limit(edns, payload):
    """Once raised: 1024 octets were reserved for the TSIG, more than the
    limit. Now the reservation is the TSIG's real size, and an answer that
    cannot fit is the SOA alone or a TC header."""
    query = signed_query("example.com.", "IXFR", edns, payload)
    check(query.to_wire(), True, "valid")


@pytest.mark.parametrize("keyname, algorithm", [
    (OTHER_KEY_NAMES[-1], dns.tsig.HMAC_SHA256),  # unknown key, 255-octet name
    (KEY_NAME, OTHER_ALGORITHMS[-1]),  # the known key, 255-octet algorithm name
    (OTHER_KEY_NAMES[-1], OTHER_ALGORITHMS[-1]),
])
def test_tsig_error_answer_with_long_names_over_udp(keyname, algorithm):
    """Once sent 565-807 octets to a client allowing 512; now bounded (TC)."""
    body = dns.message.make_query(LONG_QNAME, "A").to_wire()
    ident = struct.unpack_from("!H", body)[0]
    record = rr(keyname.to_wire(), 250, 255, 0, tsig_rdata(algorithm, int(time.time()), 300, bytes(32), ident))
    counts = _counts(body)
    wire = _with_counts(body + record, counts[:3] + [counts[3] + 1])
    check(wire, True, "forged")


def _padded_query_handler() -> QueryHandler:
    authority = ZoneAuthority()
    authority.set_sources([zone_source(
        "example.com", ZONE_TEXT + "mid TXT " + " ".join(f'"{"y" * 200}"' for _ in range(5)) + "\n"
    )])
    return QueryHandler(authority)


@pytest.mark.parametrize("payload", [1232, 4096])
def test_padding_option_with_an_answer_near_the_udp_limit(payload):
    """Once raised TooBig (padding added after truncation); padding is now
    used over TLS only, where it hides something (RFC 8467)."""
    query = dns.message.make_query(
        "mid.example.com", "TXT", use_edns=0, payload=payload, options=[dns.edns.GenericOption(12, b"")]
    )
    answer = _padded_query_handler().handle(query.to_wire(), "127.0.0.1", True)
    assert len(answer) <= 1232


# -- end to end -------------------------------------------------------------------


@pytest.mark.e2e
def test_real_server_survives_a_burst_of_mutated_packets(aliasd):
    p = aliasd(
        '[zones."example.com"]\nfile = "example.com.zone"\nallow-transfer = ["127.0.0.1"]\n',
        {"example.com.zone": "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\nwww A 192.0.2.1\n"},
    )
    rng = random.Random(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        sent, answered = _send_and_check(udp, p.port, (mutate(rng, rng.choice(SEEDS)) for _ in range(3000)))
    for _ in range(100):  # and over TCP, one connection per mutated message
        with socket.create_connection(("127.0.0.1", p.port), timeout=2) as tcp:
            wire = mutate(rng, rng.choice(SEEDS))
            tcp.sendall(struct.pack("!H", len(wire)) + wire)
            sent += 1
    assert answered > 0 and p.alive()
    assert p.query("www.example.com").rcode() == dns.rcode.NOERROR
    assert "Traceback" not in p.log() and "Unhandled" not in p.log()


def _send_and_check(udp: socket.socket, port: int, packets) -> tuple[int, int]:
    """Send ``packets`` over UDP; every answer must parse and fit 1232 octets.
    Returns (sent, answered)."""
    udp.settimeout(0.05)
    sent = answered = 0
    for wire in packets:
        udp.sendto(wire, ("127.0.0.1", port))
        sent += 1
        if sent % 50 == 1:  # drain what came back
            try:
                while True:
                    data = udp.recv(65535)
                    dns.message.from_wire(data, keyring=False, one_rr_per_rrset=True)
                    assert len(data) <= 1232
                    answered += 1
            except socket.timeout:
                pass
    return sent, answered


def _read_tcp_message(tcp: socket.socket) -> bytes | None:
    data = b""
    try:
        while len(data) < 2 or len(data) < 2 + struct.unpack_from("!H", data)[0]:
            chunk = tcp.recv(65535)
            if not chunk:
                return None
            data += chunk
    except socket.timeout:
        return None
    return data[2 : 2 + struct.unpack_from("!H", data)[0]]


@pytest.mark.e2e
def test_real_server_survives_targeted_packets(aliasd):
    p = aliasd(SERVER_CONFIG, {"example.com.zone": ZONE_TEXT})
    rng = random.Random(7)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        sent, answered = _send_and_check(udp, p.port, (targeted_packet(rng).wire for _ in range(2000)))
    for _ in range(60):  # over TCP: the first answer parses and keeps its promises
        packet = targeted_packet(rng)
        with socket.create_connection(("127.0.0.1", p.port), timeout=2) as tcp:
            tcp.sendall(struct.pack("!H", len(packet.wire)) + packet.wire)
            data = _read_tcp_message(tcp)
        if data is not None:
            check_answers(packet.wire, [data], False, packet.tsig)
    assert answered > 0 and p.alive()
    assert p.addresses("www.example.com") == {"192.0.2.1"}
    query = signed_query("www.example.com.", "A", 0)  # and the key still works
    answer = dns.query.udp(query, "127.0.0.1", port=p.port, timeout=2)  # verifies the signature
    assert answer.rcode() == dns.rcode.NOERROR and answer.had_tsig
    assert "Traceback" not in p.log() and "Unhandled" not in p.log()
