"""DNS over TLS (RFC 7858) and zone transfers over TLS (RFC 9103), end to end.

A real twistd aliasd with a certificate from a throw-away CA; clients are
Python's ssl module over real sockets on loopback. Transfers over TLS keep
every rule of plain transfers (allow-transfer, TSIG) and need TLS 1.3; a
zone may refuse plain-TCP transfers; a client CA turns on mutual TLS.
"""

from __future__ import annotations

import base64
import re
import signal
import socket
import ssl
import struct
import time

import dns.message
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import pytest

from tests.aliasd_process import free_port, run_twistd
from tests.certs import SERVER_NAME, Authority
from tests.helpers import recv_exactly

pytestmark = pytest.mark.e2e

SECRET = base64.b64encode(b"xot test key, thirty-two octets!").decode()
KEYRING = dns.tsigkeyring.from_text({"xfr": ("hmac-sha256", SECRET)})
ZONE = """\
    $ORIGIN example.com.
    $TTL 300
    @     SOA ns1 hostmaster 2026010101 3600 600 86400 60
          NS  ns1
    @     60 ALIAS lb.upstream.test.
    ns1   A   192.0.2.53
    """


def tls_config(certs, tls_port, *, client_ca=False, tls_only=False, key=True):
    cert, keyfile = certs.server()
    return f"""
        [tls]
        listen = ["127.0.0.1", "::1"]
        port = {tls_port}
        certificate = "{cert}"
        key = "{keyfile}"
        {f'client-ca = "{certs.ca_file}"' if client_ca else ''}

        [keys.xfr]
        secret = "{SECRET}"

        [resolver]
        upstreams = ["UPSTREAM"]
        min-refresh = 1
        max-refresh = 2
        timeout = 0.5

        [zones."example.com"]
        file = "example.com.zone"
        allow-transfer = ["127.0.0.1", "::1"]
        {'transfer-key = "xfr"' if key else ''}
        {'transfer-tls-only = true' if tls_only else ''}
        """


def client_context(certs, *, version=None, cert=None, alpn=True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca_file))
    if version is not None:
        context.minimum_version = context.maximum_version = version
    if cert is not None:
        context.load_cert_chain(*map(str, cert))
    if alpn:
        context.set_alpn_protocols(["dot"])
    return context


class TLSClient:
    """One DNS-over-TLS connection: length-prefixed messages over ssl."""

    def __init__(self, port, context, host="127.0.0.1"):
        raw = socket.create_connection((host, port), timeout=5)
        self.sock = context.wrap_socket(raw, server_hostname=SERVER_NAME)

    def send(self, message: dns.message.Message) -> None:
        wire = message.to_wire()
        self.sock.sendall(struct.pack("!H", len(wire)) + wire)

    def receive(self) -> dns.message.Message:
        (length,) = struct.unpack("!H", recv_exactly(self.sock, 2))
        return dns.message.from_wire(recv_exactly(self.sock, length))

    def transfer(self, query: dns.message.Message) -> list[dns.message.Message]:
        """Send an AXFR/IXFR and read messages until the closing SOA."""
        self.send(query)
        messages, soas, ctx = [], 0, None
        while True:
            (length,) = struct.unpack("!H", recv_exactly(self.sock, 2))
            wire = recv_exactly(self.sock, length)
            message = dns.message.from_wire(
                wire, keyring=KEYRING if query.had_tsig else None,
                request_mac=query.mac if query.had_tsig else b"",
                xfr=True, multi=True, tsig_ctx=ctx, origin=None,
            )
            ctx = message.tsig_ctx
            messages.append(message)
            if message.rcode() != dns.rcode.NOERROR:
                return messages
            for rrset in message.answer:
                if rrset.rdtype == dns.rdatatype.SOA:
                    soas += len(rrset)
            if soas >= 2:
                return messages

    def close(self) -> None:
        self.sock.close()


def axfr_query(signed=True) -> dns.message.Message:
    query = dns.message.make_query("example.com", "AXFR")
    if signed:
        query.use_tsig(KEYRING, keyname="xfr")
    return query


def records(messages) -> set[str]:
    return {
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rd}"
        for m in messages for rrset in m.answer for rd in rrset
    }


@pytest.fixture
def certs(tmp_path):
    return Authority(tmp_path / "pki")


def start(aliasd, upstream, config):
    upstream.set("lb.upstream.test", "A", ["203.0.113.10"], ttl=60)
    process = aliasd(config.replace("UPSTREAM", str(upstream.endpoint)), {"example.com.zone": ZONE})
    process.wait_for(lambda: process.addresses("example.com") == {"203.0.113.10"})
    return process


def test_dot_query_and_signed_axfr_over_tls(aliasd, upstream, certs):
    tls_port = free_port()
    process = start(aliasd, upstream, tls_config(certs, tls_port))
    for host in ("127.0.0.1", "::1"):
        client = TLSClient(tls_port, client_context(certs), host)
        try:
            assert client.sock.version() == "TLSv1.3"
            assert client.sock.selected_alpn_protocol() == "dot"  # RFC 9103 7.1
            # DNS over TLS: a plain query gets the flattened ALIAS.
            query = dns.message.make_query("example.com", "A")
            client.send(query)
            answer = client.receive()
            assert answer.id == query.id and answer.rcode() == dns.rcode.NOERROR
            assert {rd.address for rrset in answer.answer for rd in rrset} == {"203.0.113.10"}
            # XoT on the same connection: the signed AXFR carries the
            # flattened view, and every message's TSIG verifies (the
            # parser raises otherwise).
            messages = client.transfer(axfr_query())
            assert "example.com. A 203.0.113.10" in records(messages)
            assert not any(r.split()[1] == "TYPE65401" for r in records(messages))
            assert all(m.had_tsig for m in messages)
        finally:
            client.close()
    log = process.log()
    assert re.search(r"AXFR of example\.com\. serial \d+ to 127\.0\.0\.1 over TLSv1\.3: full", log)
    assert re.search(r"AXFR of example\.com\. serial \d+ to ::1 over TLSv1\.3: full", log)
    assert "TLS on 127.0.0.1, ::1 port" in log


def test_transfer_rules_still_apply_over_tls(aliasd, upstream, certs):
    tls_port = free_port()
    process = start(aliasd, upstream, tls_config(certs, tls_port))
    client = TLSClient(tls_port, client_context(certs))
    try:
        # TSIG still applies over TLS: an unsigned AXFR is refused.
        refused = client.transfer(axfr_query(signed=False))
        assert refused[-1].rcode() == dns.rcode.REFUSED
    finally:
        client.close()
    # RFC 9103 5.1: transfers need TLS 1.3; queries over TLS 1.2 still work.
    old = TLSClient(tls_port, client_context(certs, version=ssl.TLSVersion.TLSv1_2))
    try:
        assert old.sock.version() == "TLSv1.2"
        refused = old.transfer(axfr_query())
        assert refused[-1].rcode() == dns.rcode.REFUSED
        query = dns.message.make_query("ns1.example.com", "A")
        old.send(query)
        assert old.receive().answer[0][0].address == "192.0.2.53"
    finally:
        old.close()
    assert "RFC 9103 needs TLSv1.3" in process.log()


def test_transfer_tls_only_refuses_plain_tcp(aliasd, upstream, certs):
    tls_port = free_port()
    process = start(aliasd, upstream, tls_config(certs, tls_port, tls_only=True))
    # Plain TCP: refused, although address and key are right.
    with socket.create_connection(("127.0.0.1", process.port), timeout=5) as raw:
        query = axfr_query()
        wire = query.to_wire()
        raw.sendall(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", recv_exactly(raw, 2))
        answer = dns.message.from_wire(
            recv_exactly(raw, length), keyring=KEYRING, request_mac=query.mac, xfr=True
        )
        assert answer.rcode() == dns.rcode.REFUSED
    assert "transfer-tls-only: TLS required" in process.log()
    client = TLSClient(tls_port, client_context(certs))
    try:
        assert "example.com. A 203.0.113.10" in records(client.transfer(axfr_query()))
    finally:
        client.close()


def test_mutual_tls_needs_a_client_certificate_from_the_ca(aliasd, upstream, certs, tmp_path):
    tls_port = free_port()
    start(aliasd, upstream, tls_config(certs, tls_port, client_ca=True))
    stranger = Authority(tmp_path / "other-pki", name="some other CA")
    for cert in (None, stranger.client("stranger")):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            client = TLSClient(tls_port, client_context(certs, cert=cert))
            # TLS 1.3 reports a rejected client certificate at the first read.
            client.send(dns.message.make_query("example.com", "SOA"))
            client.receive()
    client = TLSClient(tls_port, client_context(certs, cert=certs.client()))
    try:
        assert "example.com. A 203.0.113.10" in records(client.transfer(axfr_query()))
    finally:
        client.close()


def test_tls_configuration_errors_are_reported_at_start(tmp_path, certs):
    (tmp_path / "example.com.zone").write_text("$ORIGIN example.com.\n@ 300 SOA ns1 h 1 2 3 4 5\n@ 300 NS ns1\n")
    cert, key = certs.server()
    _, other_key = certs.client()
    cases = {
        f'certificate = "{cert}"\nkey = "{other_key}"': "does not go with certificate",
        f'certificate = "{tmp_path}/missing.pem"\nkey = "{key}"': "[tls] certificate: cannot read",
        f'certificate = "{key}"\nkey = "{key}"': "no PEM certificate",
        f'certificate = "{cert}"': "[tls] key: is required with certificate",
    }
    for body, expected in cases.items():
        conf = tmp_path / "aliasd.toml"
        conf.write_text(f'[tls]\nport = {free_port()}\n{body}\n[zones."example.com"]\nfile = "example.com.zone"\n')
        result = run_twistd(["--config", str(conf)], tmp_path)
        assert result.returncode != 0
        assert expected in result.stderr, (expected, result.stderr)
        assert str(conf) in result.stderr


def test_reload_serves_a_renewed_certificate_and_keeps_a_good_one(aliasd, upstream, certs):
    tls_port = free_port()
    process = start(aliasd, upstream, tls_config(certs, tls_port))
    client = TLSClient(tls_port, client_context(certs))
    first = client.sock.getpeercert(binary_form=True)
    client.close()
    # Renewal: new certificate and key written over the configured files.
    renewed_cert, renewed_key = certs.server()  # same paths, new key pair
    process.proc.send_signal(signal.SIGHUP)
    process.wait_for(lambda: "TLS certificate" in process.log() and "loaded" in process.log())
    client = TLSClient(tls_port, client_context(certs))
    second = client.sock.getpeercert(binary_form=True)
    client.close()
    assert second != first and second == ssl.PEM_cert_to_DER_cert(renewed_cert.read_text())
    # A broken key on the next reload: the renewed certificate stays in use.
    renewed_key.write_text("not a key\n")
    process.proc.send_signal(signal.SIGHUP)
    process.wait_for(lambda: "TLS not reloaded, keeping the old certificate" in process.log())
    client = TLSClient(tls_port, client_context(certs))
    assert client.sock.getpeercert(binary_form=True) == second
    client.send(dns.message.make_query("ns1.example.com", "A"))
    assert client.receive().answer[0][0].address == "192.0.2.53"
    client.close()


def test_tls_connections_over_the_limit_are_closed(aliasd, upstream, certs):
    """The per-client limit holds over TLS too: a refused connection is
    closed at once (Twisted's TLS factory would wrap the refusal and leave
    the socket open)."""
    tls_port = free_port()
    upstream.set("lb.upstream.test", "A", ["203.0.113.10"], ttl=60)
    # Not a secondary's address: those are held to the total limit only.
    config = tls_config(certs, tls_port).replace("UPSTREAM", str(upstream.endpoint))
    config = config.replace('allow-transfer = ["127.0.0.1", "::1"]', 'allow-transfer = ["192.0.2.0/24"]')
    process = aliasd(config, {"example.com.zone": ZONE}, server="tcp-max-per-client = 2\n")
    kept = [TLSClient(tls_port, client_context(certs)) for _ in range(2)]
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", tls_port), timeout=3) as extra:
            assert extra.recv(100) == b""  # closed by the server, not left hanging
    for client in kept:  # the two within the limit are served
        client.send(dns.message.make_query("ns1.example.com", "A"))
        assert client.receive().answer[0][0].address == "192.0.2.53"
        client.close()
    log = process.log()
    assert "TCP connection from 127.0.0.1 refused" in log
    assert "Unhandled" not in log and "Traceback" not in log


def test_tls_connection_closes_after_a_message_it_cannot_answer(aliasd, upstream, certs):
    """RFC 7766: a message that gets no answer (here a response, QR set)
    closes the connection, over TLS as over TCP."""
    tls_port = free_port()
    start(aliasd, upstream, tls_config(certs, tls_port))
    client = TLSClient(tls_port, client_context(certs))
    response = dns.message.make_response(dns.message.make_query("example.com", "A")).to_wire()
    client.sock.sendall(struct.pack("!H", len(response)) + response)
    client.sock.settimeout(3)
    assert client.sock.recv(100) == b""  # TLS close_notify, then end of stream
    client.close()


def test_stalled_tls_handshake_is_closed_after_the_idle_timeout(aliasd, upstream, certs):
    tls_port = free_port()
    upstream.set("lb.upstream.test", "A", ["203.0.113.10"], ttl=60)
    aliasd(
        tls_config(certs, tls_port).replace("UPSTREAM", str(upstream.endpoint)),
        {"example.com.zone": ZONE},
        server="tcp-idle-timeout = 1\n",
    )
    with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as idle:
        started = time.monotonic()
        idle.sendall(b"\x16\x03\x01")  # the first octets of a ClientHello, then nothing
        try:
            assert idle.recv(100) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 3
