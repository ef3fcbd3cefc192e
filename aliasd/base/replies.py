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
