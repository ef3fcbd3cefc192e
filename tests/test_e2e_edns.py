"""End to end: EDNS conformance of a real twistd aliasd.

- RFC 3225 3: the DO bit of a query is copied into the answer's OPT, on the
  first answer (full path) and on the next ones (kept answers, the fast
  path), and never carried over to a query without it;
- RFC 6891 7 and RFC 5936 2.2.5: a transfer asked with EDNS gets an OPT in
  each message (as BIND does), signed by TSIG when the transfer is;
- RFC 6891 6.1.2 / 7: a query whose OPT options are malformed gets FORMERR,
  however often it is asked and whatever was asked before.

Queries come from dig (as an operator sends them) and from dnspython or
hand-made packets (where they must be malformed).
"""

from __future__ import annotations

import base64
import re
import socket
import struct
import subprocess

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest

from tests.conftest import need
from tests.helpers import recv_exactly

pytestmark = pytest.mark.e2e

SECRET = base64.b64encode(b"aliasd edns transfer key, 32 oct").decode()
HOSTS = 5000  # about 100 KB of records: an AXFR of several messages
ZONE = (
    "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 hostmaster 7 86400 600 864000 120\n@ NS ns1\n"
    "ns1 A 192.0.2.53\nwww A 192.0.2.10\n"
    + "".join(f"host{i} A 10.0.{i >> 8 & 255}.{i & 255}\n" for i in range(HOSTS))
)
SIGNED_ZONE = "$ORIGIN example.net.\n$TTL 300\n@ SOA ns1 hostmaster 3 86400 600 864000 120\n@ NS ns1\n" + "".join(
    f"host{i} A 10.1.{i >> 8 & 255}.{i & 255}\n" for i in range(HOSTS)
)


@pytest.fixture
def server(aliasd):
    return aliasd(
        f"""
        [keys.xfr]
        algorithm = "hmac-sha256"
        secret = "{SECRET}"
        [zones."example.com"]
        file = "example.com.zone"
        allow-transfer = ["127.0.0.0/8"]
        [zones."example.net"]
        file = "example.net.zone"
        allow-transfer = ["127.0.0.0/8"]
        transfer-key = "xfr"
        """,
        {"example.com.zone": ZONE, "example.net.zone": SIGNED_ZONE},
    )


def dig(server, *args: str) -> str:
    result = subprocess.run(
        [need("dig"), "@127.0.0.1", "-p", str(server.port), "+norec", "+time=3", "+tries=1", *args],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def edns_lines(output: str) -> list[str]:
    """dig's OPT PSEUDOSECTION lines: "; EDNS: version: 0, flags: do; udp: 1232"."""
    return re.findall(r"^; EDNS: version: \d+, flags:[^;]*; udp: \d+$", output, re.M)


def test_dig_dnssec_gets_the_do_bit_back_and_a_plain_query_does_not(server):
    # First answer (rendered), second (kept), then alternating: the same
    # name, type and size every time, so only DO tells the queries apart.
    for dnssec in (True, True, False, False, True, False):
        out = dig(server, "+dnssec" if dnssec else "+nodnssec", "+bufsize=1232", "www.example.com", "A")
        assert "status: NOERROR" in out and "192.0.2.10" in out, out
        (line,) = edns_lines(out)
        assert line.startswith("; EDNS: version: 0,") and line.endswith("udp: 1232"), line
        assert bool(re.search(r"flags:[^;]*\bdo\b", line)) == dnssec, (dnssec, out)
    # The same with dnspython, for a missing name (NXDOMAIN: one kept
    # answer per name length and shape, shared by every missing name).
    for i, dnssec in enumerate((True, True, False, True, False, False)):
        q = dns.message.make_query(f"gone{i}.example.com", "A", use_edns=0, payload=1232, want_dnssec=dnssec)
        r = dns.query.udp(q, "127.0.0.1", port=server.port, timeout=3)
        assert r.rcode() == dns.rcode.NXDOMAIN and r.edns == 0
        assert bool(r.ednsflags & dns.flags.DO) == dnssec, i


def read_transfer(port: int, wire: bytes) -> list[bytes]:
    """Send one transfer request over TCP; every message until the closing SOA."""
    messages, soas = [], 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        while soas < 2:
            (length,) = struct.unpack("!H", recv_exactly(s, 2))
            data = recv_exactly(s, length)
            messages.append(data)
            m = dns.message.from_wire(data, keyring=False, xfr=True, one_rr_per_rrset=True)
            assert m.rcode() == dns.rcode.NOERROR
            soas += sum(1 for rrset in m.answer if rrset.rdtype == dns.rdatatype.SOA)
    return messages


def test_dig_edns_axfr_gets_an_opt_in_every_message(server):
    # dig prints each message of a transfer with +comments: its header and
    # its OPT PSEUDOSECTION, if it has one.
    for dnssec in (False, True, False):  # rendered once per shape, then reused
        out = dig(server, "+edns=0", "+dnssec" if dnssec else "+nodnssec", "+comments", "example.com", "AXFR")
        assert f"host{HOSTS - 1}.example.com." in out and "Transfer failed" not in out, out[-2000:]
        messages = int(re.search(r"XFR size: \d+ records \(messages (\d+),", out).group(1))
        assert messages >= 2 and out.count(";; Got answer:") == messages
        lines = edns_lines(out)
        assert len(lines) == messages, "an OPT in each message"
        for line in lines:
            assert line.startswith("; EDNS: version: 0,") and line.endswith("udp: 1232"), line
            assert bool(re.search(r"flags:[^;]*\bdo\b", line)) == dnssec, line
    # Without EDNS in the request, no OPT in the answer.
    out = dig(server, "+noedns", "+comments", "example.com", "AXFR")
    assert f"host{HOSTS - 1}.example.com." in out and not edns_lines(out)


def test_axfr_with_edns_has_an_opt_in_every_message(server):
    for dnssec in (False, True, False):
        q = dns.message.make_query("example.com", "AXFR", use_edns=0, want_dnssec=dnssec)
        messages = [dns.message.from_wire(w, xfr=True) for w in read_transfer(server.port, q.to_wire())]
        assert len(messages) >= 2
        for m in messages:
            assert m.id == q.id and m.opt is not None and m.edns == 0, "an OPT in each message"
            assert bool(m.ednsflags & dns.flags.DO) == dnssec
    plain = dns.message.make_query("example.com", "AXFR")
    assert all(dns.message.from_wire(w, xfr=True).opt is None for w in read_transfer(server.port, plain.to_wire()))


def test_signed_axfr_with_edns_verifies_every_message(server):
    """A secondary such as BIND sends EDNS with its signed request: the OPT
    sits before the TSIG in each message and the signatures cover it."""
    ring = dns.tsigkeyring.from_text({"xfr.": (dns.tsig.HMAC_SHA256, SECRET)})
    zone = dns.zone.Zone("example.net", relativize=False)
    query, _ = dns.xfr.make_query(zone, serial=None, use_edns=0, ednsflags=dns.flags.DO, keyring=ring,
                                  keyname="xfr.")
    dns.query.inbound_xfr("127.0.0.1", zone, query=query, port=server.port, timeout=10, lifetime=60)
    assert sum(len(rds) for node in zone.nodes.values() for rds in node.rdatasets) == HOSTS + 2
    # The same messages read one by one: OPT, then TSIG, in each.
    wires = read_transfer(server.port, query.to_wire())
    assert len(wires) >= 2
    ctx = None
    for wire in wires:
        m = dns.message.from_wire(wire, keyring=ring, request_mac=query.mac, xfr=True, tsig_ctx=ctx, multi=True)
        ctx = m.tsig_ctx
        assert m.had_tsig and m.opt is not None and m.ednsflags & dns.flags.DO


def opt_query(qname: str, options: bytes, ident: int) -> bytes:
    """A query for ``qname`` A with an OPT (payload 1232) whose rdata is ``options``."""
    question = dns.name.from_text(qname).to_wire() + struct.pack("!HH", 1, 1)
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(options)) + options
    return struct.pack("!HHHHHH", ident, 0, 1, 0, 0, 1) + question + opt


@pytest.mark.parametrize(
    "options",
    [
        struct.pack("!HH", 10, 8) + b"\x01" * 7,  # COOKIE whose length runs past the rdata
        struct.pack("!HH", 10, 8) + b"\x01" * 8 + b"\x00\x0c\x00",  # then a truncated option header
        struct.pack("!HH", 10, 4) + b"\x01" * 4,  # a client cookie of 4 octets (RFC 7873 4)
    ],
)
def test_malformed_edns_options_get_formerr_every_time(server, options):
    good = opt_query("www.example.com", struct.pack("!HH", 10, 8) + b"\x02" * 8, 0x1111)
    bad = opt_query("www.example.com", options, 0x2222)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.connect(("127.0.0.1", server.port))

        def ask(wire):
            s.send(wire)
            return s.recv(65535)

        for _ in range(2):  # a well-formed query of the same name, type and size: kept
            answer = dns.message.from_wire(ask(good))
            assert answer.rcode() == dns.rcode.NOERROR and answer.answer[0][0].address == "192.0.2.10"
        for attempt in range(2):
            response = ask(bad)
            ident, flags = struct.unpack_from("!HH", response)
            assert ident == 0x2222 and flags & dns.flags.QR, attempt
            assert flags & 0xF == dns.rcode.FORMERR, f"attempt {attempt}: rcode {flags & 0xF}"
