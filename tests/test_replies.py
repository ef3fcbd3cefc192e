"""Replies built outside the zones' answers (aliasd.base.replies)."""

from __future__ import annotations

import struct
import time

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig

from aliasd.base.replies import HEADER, header_only, render, tsig_error_response

KEY = dns.tsig.Key("xfr-key.", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "hmac-sha256")


def signed_query() -> dns.message.Message:
    """A signed query as the server sees it: parsed, signature not checked."""
    query = dns.message.make_query("example.com", "SOA")
    query.use_tsig(KEY)
    return dns.message.from_wire(query.to_wire(), keyring=lambda message, name: False)


def test_badkey_and_badsig_replies_carry_an_unsigned_tsig_record_with_the_error():
    """RFC 8945 5.3.2: NOTAUTH, and a TSIG record with the error, the
    query's key name, algorithm and ID, an empty MAC and no other data.
    Built with dnspython's public TSIG rdata constructor: the wire form
    is pinned here, field by field."""
    query = signed_query()
    for error in (dns.rcode.BADKEY, dns.rcode.BADSIG):
        before = int(time.time())
        wire = tsig_error_response(query, error, None)
        ident, flags, qd, an, ns, ar = HEADER.unpack_from(wire)
        assert (ident, qd, an, ns, ar) == (query.id, 1, 0, 0, 1)
        assert flags & dns.flags.QR and flags & 0xF == dns.rcode.NOTAUTH
        # The record: owner, type TSIG, class ANY, TTL 0, then the rdata.
        owner = query.keyname.to_wire()
        start = wire.index(owner + struct.pack("!HHI", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0))
        rdata = wire[start + len(owner) + 10:]
        algorithm = query.keyalgorithm.to_wire()
        assert rdata.startswith(algorithm)
        signed_high, signed_low, fudge, mac_size, original_id, got_error, other_size = struct.unpack(
            "!HIHHHHH", rdata[len(algorithm):]
        )
        assert before <= (signed_high << 32 | signed_low) <= time.time()
        assert (fudge, mac_size, original_id, got_error, other_size) == (300, 0, query.id, error, 0)
        reply = dns.message.from_wire(wire, keyring=lambda message, name: False)
        assert reply.question == query.question and reply.tsig_error == error


def test_badtime_reply_is_signed_and_tells_the_server_time():
    query = signed_query()
    now = int(time.time())
    wire = tsig_error_response(query, dns.rcode.BADTIME, KEY)
    reply = dns.message.from_wire(wire, keyring=lambda message, name: False)
    record = reply.tsig[0]
    assert reply.rcode() == dns.rcode.NOTAUTH and record.error == dns.rcode.BADTIME
    assert len(record.mac) == 32 and record.original_id == query.id
    assert now <= int.from_bytes(record.other, "big") <= time.time()


def test_a_reply_too_long_for_the_limit_is_truncated_at_whole_rrsets():
    query = dns.message.make_query("a" * 60 + "." + "b" * 60 + ".example", "TXT")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "TXT", '"' + "x" * 200 + '"'))
    response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "TXT", '"' + "y" * 250 + '"'))
    truncated = dns.message.from_wire(render(response, 512))
    assert truncated.flags & dns.flags.TC and len(truncated.answer) == 1


def test_header_only_error_keeps_id_opcode_and_rd_and_never_answers_a_response():
    query = dns.message.make_query("example.com", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    wire = header_only(query.to_wire(), dns.rcode.FORMERR)
    ident, flags, *counts = HEADER.unpack(wire)
    assert ident == query.id and counts == [0, 0, 0, 0]
    assert flags == dns.flags.QR | dns.opcode.to_flags(dns.opcode.NOTIFY) | dns.flags.RD | dns.rcode.FORMERR
    assert header_only(wire, dns.rcode.SERVFAIL) is None
