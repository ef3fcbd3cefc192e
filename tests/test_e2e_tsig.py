"""End to end: TSIG-protected transfers and multi-message AXFR.

dnspython signs the requests and verifies every message of the answers.
"""

from __future__ import annotations

import base64
import struct
from unittest import mock

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest

pytestmark = pytest.mark.e2e

SECRET = base64.b64encode(b"aliasd transfer key, 32 octets!!").decode()
RECORDS = 12000  # large enough for several 64 KiB messages


def zone_text() -> str:
    lines = [
        "$ORIGIN example.com.",
        "$TTL 300",
        "@ SOA ns1 hostmaster 7 86400 600 864000 120",
        "@ NS ns1",
        "ns1 A 192.0.2.53",
    ]
    lines += [f"host{i} A 10.0.{i >> 8 & 255}.{i & 255}" for i in range(RECORDS)]
    lines += [f"txt{i} TXT \"{'x' * 180}\"" for i in range(200)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def server(aliasd):
    return aliasd(
        f"""
        [keys.xfr-key]
        algorithm = "hmac-sha256"
        secret = "{SECRET}"
        [zones."example.com"]
        file = "example.com.zone"
        allow-transfer = ["127.0.0.1"]
        transfer-key = "xfr-key"
        """,
        {"example.com.zone": zone_text()},
    )


def keyring(secret=SECRET, name="xfr-key."):
    return dns.tsigkeyring.from_text({name: (dns.tsig.HMAC_SHA256, secret)})


def signed_axfr(port, ring, keyname="xfr-key."):
    zone = dns.zone.Zone("example.com", relativize=False)
    query, _ = dns.xfr.make_query(zone, serial=None, keyring=ring, keyname=keyname)
    dns.query.inbound_xfr("127.0.0.1", zone, query=query, port=port, timeout=10, lifetime=60)
    return zone


def test_signed_multi_message_axfr_verifies_every_message(server):
    zone = signed_axfr(server.port, keyring())
    count = sum(len(rds) for node in zone.nodes.values() for rds in node.rdatasets)
    assert count == RECORDS + 200 + 3  # hosts, TXT, SOA, NS, ns1 A
    line = [ln for ln in server.log().splitlines() if "AXFR of example.com." in ln][-1]
    messages = int(line.split(" messages")[0].rsplit(" ", 1)[1])
    assert messages >= 4, line


def test_unsigned_transfer_is_refused_where_a_key_is_required(server):
    response = server.query("example.com", "AXFR", tcp=True)
    assert response.rcode() == dns.rcode.REFUSED
    assert "unsigned, key xfr-key. required" in server.log()


def _raw_tcp(port, query_or_wire):
    """Send a query over TCP and parse the answer without verifying TSIG."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        wire = query_or_wire if isinstance(query_or_wire, bytes) else query_or_wire.to_wire()
        s.sendall(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", s.recv(2, socket.MSG_WAITALL))
        data = s.recv(length, socket.MSG_WAITALL)
    return dns.message.from_wire(data, keyring=False)


@pytest.mark.parametrize(
    "ring, keyname, error",
    [
        (keyring(name="other-key."), "other-key.", dns.rcode.BADKEY),
        (keyring(secret=base64.b64encode(b"a different secret").decode()), "xfr-key.", dns.rcode.BADSIG),
    ],
)
def test_wrong_key_or_signature_gets_notauth_with_tsig_error(server, ring, keyname, error):
    query = dns.message.make_query("example.com", "AXFR")
    query.use_tsig(ring, keyname)
    response = _raw_tcp(server.port, query)
    assert response.rcode() == dns.rcode.NOTAUTH
    assert response.tsig[0].error == error
    assert response.tsig[0].mac == b""  # unsigned, as RFC 8945 5.3.2 says


def test_bad_time_gets_notauth_badtime_signed_with_server_time(server):
    query = dns.message.make_query("example.com", "AXFR")
    query.use_tsig(keyring(), "xfr-key.")
    with mock.patch("dns.message.time.time", return_value=1_000_000_000):
        wire = query.to_wire()  # signed at a time far in the past
    response = _raw_tcp(server.port, wire)
    assert response.rcode() == dns.rcode.NOTAUTH
    assert response.tsig[0].error == dns.rcode.BADTIME
    assert response.tsig[0].mac != b""
    assert int.from_bytes(response.tsig[0].other, "big") > 1_700_000_000


def test_signed_query_gets_signed_answer(server):
    query = dns.message.make_query("host1.example.com", "A")
    query.use_tsig(keyring(), "xfr-key.")
    response = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=2)  # verifies
    assert response.had_tsig and response.answer[0][0].address == "10.0.0.1"
