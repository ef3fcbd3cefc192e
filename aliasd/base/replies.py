"""Replies that are not an answer from a zone, in wire form.

The answer path (aliasd.answer.answers), the transfer path
(aliasd.answer.transfer_requests) and the transports (aliasd.listen.transports) all need
a few replies built the same way: a message rendered within a size limit
(truncated at whole RRsets, or a bare TC header when even the question does
not fit), a header-only error for a message that cannot be parsed, and the
NOTAUTH reply that carries a TSIG error. They live here, below all three,
so that none of them imports another for a helper.
"""

from __future__ import annotations

import struct
import time

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig

#: The DNS header: ID, flags, and the four section counts.
HEADER = struct.Struct("!HHHHHH")



def render(response: dns.message.Message, limit: int) -> bytes:
    """``response`` in at most ``limit`` octets: truncated at whole RRsets
    with TC when too large, and as a bare TC header when even the question
    (and a TSIG record) does not fit. Records keep their zone order
    (dnspython shuffles them by default): the fast path keeps the first
    answer it renders, so a shuffle would make each worker process answer
    in its own order, and the direct path writes the zone order too."""
    try:
        return response.to_wire(max_size=limit, prefer_truncation=True, want_shuffle=False)
    except (dns.exception.TooBig, ValueError):  # ValueError: the TSIG alone is too big
        pass
    ident = response.id
    flags = response.flags | dns.flags.TC
    return HEADER.pack(ident, flags, 0, 0, 0, 0)


def tsig_error_response(
    query: dns.message.Message, error: int, key: dns.tsig.Key | None, limit: int = 65535
) -> bytes:
    """NOTAUTH with a TSIG error (RFC 8945 5.3.2): unsigned, except BADTIME.

    A BADTIME answer is signed with the (valid) key and carries the
    server's time in Other Data so the client can see the clock skew. An
    answer longer than ``limit`` (long names, over UDP) is a bare TC header.
    """
    response = _bare_response(query)
    response.set_rcode(dns.rcode.NOTAUTH)
    keyname = query.keyname
    algorithm = query.keyalgorithm
    now = int(time.time())
    if error == dns.rcode.BADTIME and key is not None:
        response.use_tsig(
            key, keyname, tsig_error=error,
            other_data=now.to_bytes(6, "big"), algorithm=algorithm,
        )
        response.request_mac = query.mac
    else:
        # An unsigned TSIG record that only carries the error: empty MAC,
        # the query's ID, the usual fudge of 300 s.
        record = dns.rdtypes.ANY.TSIG.TSIG(
            dns.rdataclass.ANY, dns.rdatatype.TSIG, algorithm, now, 300, b"", query.id, error, b""
        )
        response.tsig = dns.rrset.from_rdata(keyname, 0, record)
    return render(response, limit)


def _bare_response(query: dns.message.Message) -> dns.message.Message:
    response = dns.message.Message(id=query.id)
    response.flags = dns.flags.QR | (query.flags & dns.flags.RD)
    response.set_opcode(query.opcode())
    response.question = list(query.question)
    return response


def header_only(wire: bytes, rcode: int) -> bytes | None:
    """A bare error response built from the request header alone."""
    ident, flags, *_ = HEADER.unpack_from(wire)
    if flags & dns.flags.QR:
        return None
    opcode_bits = flags & 0x7800
    flags = dns.flags.QR | opcode_bits | (flags & dns.flags.RD) | (rcode & 0xF)
    return HEADER.pack(ident, flags, 0, 0, 0, 0)


_TSIG_HEAD = struct.Struct("!HHIH")  # type, class, TTL, rdlength
_TSIG_TIMES = struct.Struct("!HIH")  # time signed (48 bits), fudge
_TSIG_FUDGE = 300
_TSIG_CLASS_TTL = struct.pack("!HI", dns.rdataclass.ANY, 0)  # of the TSIG variables
_TSIG_NO_ERROR = struct.pack("!HH", 0, 0)  # error, other size (no other data)


def _tsig_rdata(unsigned: bytes, key: dns.tsig.Key, original_id: int, request_mac: bytes | None) -> bytes:
    """The TSIG rdata signing ``unsigned``, a reply without a TSIG error:
    the digest of RFC 8945 4.3.3 (request MAC, message, TSIG variables)
    fed to dnspython's HMAC context for ``key``, so that no rdata object is
    built, replaced and rendered per reply (dns.tsig.sign's replace alone
    costs an inspect.signature); the octets dns.tsig.sign's record gives."""
    now = int(time.time())
    times = _TSIG_TIMES.pack((now >> 32) & 0xFFFF, now & 0xFFFFFFFF, _TSIG_FUDGE)
    ctx = dns.tsig.get_context(key)
    if request_mac:
        ctx.update(len(request_mac).to_bytes(2, "big") + request_mac)
    ctx.update(unsigned)
    ctx.update(key.name.to_digestable() + _TSIG_CLASS_TTL + key.algorithm.to_digestable() + times
               + _TSIG_NO_ERROR)
    mac = ctx.sign()
    return (key.algorithm.to_wire() + times + len(mac).to_bytes(2, "big") + mac
            + struct.pack("!HHH", original_id, 0, 0))


def plain_reply(query: dns.message.Message, rcode: int, limit: int, key: dns.tsig.Key | None) -> bytes:
    """The reply to ``query`` (no EDNS) that carries only its question
    section and ``rcode``, signed with ``key`` when the query was signed:
    an UPDATE's answer. Written here rather than by make_response and
    to_wire, which built and rendered a message object for every update
    (a sixth of the reactor's time per update). The same octets as
    dnspython's, except that the TSIG owner name is not compressed."""
    flags = (dns.flags.QR | (query.flags & (dns.flags.RD | dns.flags.CD))
             | (int(query.opcode()) << 11) | (rcode & 0xF))
    parts = [b""]
    for rrset in query.question:
        parts.append(rrset.name.to_wire() + struct.pack("!HH", rrset.rdtype, rrset.rdclass))
    signed = query.had_tsig and key is not None
    parts[0] = HEADER.pack(query.id, flags, len(query.question), 0, 0, 1 if signed else 0)
    if signed:
        unsigned = HEADER.pack(query.id, flags, len(query.question), 0, 0, 0) + b"".join(parts[1:])
        rdata = _tsig_rdata(unsigned, key, query.id, query.mac)
        parts.append(key.name.to_wire() + _TSIG_HEAD.pack(dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(rdata))
                     + rdata)
    wire = b"".join(parts)
    if len(wire) > limit:
        return HEADER.pack(query.id, flags | dns.flags.TC, 0, 0, 0, 0)
    return wire
