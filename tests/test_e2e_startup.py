"""End to end: how twistd aliasd starts, and how it refuses to start.

A bad configuration must end the process non-zero with one line that names
the file, line or key, never a traceback. A bad zone file is that zone's
problem only: the process starts, logs one line naming file, line and
reason, and the zone answers SERVFAIL.
"""

from __future__ import annotations

import os
import subprocess
import sys

import dns.rcode
import pytest

from tests.aliasd_process import REPO, AliasdProcess, free_port, run_twistd

pytestmark = pytest.mark.e2e

GOOD_ZONE = """\
$ORIGIN example.com.
@ 300 SOA ns1 h 1 3600 600 86400 60
@ 300 A 192.0.2.1
"""


def _fails_with_one_line(result, *expected: str) -> str:
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output, output
    assert len(output.splitlines()) == 1, output
    for text in expected:
        assert text in output, output
    return output


def _starts_and_logs_one_line(tmp_path, args, *expected: str) -> str:
    """The process starts with a broken zone: example.com answers SERVFAIL,
    and one error line in the log names it with every ``expected`` text."""
    port = free_port()
    process = AliasdProcess([*args, "--port", str(port)], tmp_path, port).start()
    try:
        assert process.query("www.example.com").rcode() == dns.rcode.SERVFAIL
        log = process.log()
        errors = [line for line in log.splitlines() if "#error]" in line]
        assert len(errors) == 1 and "Traceback" not in log, log
        for text in expected:
            assert text in errors[0], errors[0]
        return errors[0]
    finally:
        process.stop()


def test_bundled_example_configuration_serves_the_apex_alias(tmp_path):
    """What the README's first command starts, on a free port."""
    port = free_port()
    process = AliasdProcess(
        ["--config", str(REPO / "etc" / "aliasd.toml"), "--port", str(port)], tmp_path, port
    ).start()
    try:
        # The apex ALIAS follows lb.cdn.example.net, served by the second zone.
        assert process.addresses("example.com") == {"198.51.100.10", "198.51.100.11"}
        assert process.addresses("example.com", "AAAA") == {"2001:db8::10"}
        assert process.addresses("example.com", "AAAA") == process.addresses("lb.cdn.example.net", "AAAA")
    finally:
        # twistd re-raises the SIGTERM it handled, after a clean shutdown.
        assert process.stop() in (0, -15)
        assert "Server Shut Down." in process.log()


def test_zone_and_listen_options_serve_without_a_config_file(tmp_path):
    (tmp_path / "z.zone").write_text(GOOD_ZONE)
    port = free_port()
    process = AliasdProcess(
        ["--zone", "example.com=z.zone", "--listen", "127.0.0.1", "--listen", "::1", "--port", str(port)],
        tmp_path,
        port,
    ).start()
    try:
        assert process.addresses("example.com") == {"192.0.2.1"}
        assert process.query("example.com", host="::1").answer[0][0].address == "192.0.2.1"
    finally:
        process.stop()


def test_an_unsigned_server_without_tls_loads_no_cryptography(tmp_path):
    """pyOpenSSL and cryptography (about 10 MiB of code and shared libraries
    in every process) are for TLS and signed zones only: a server with
    neither, asked and transferring, has not mapped cryptography's library."""
    from pathlib import Path

    (tmp_path / "z.zone").write_text(GOOD_ZONE)
    port = free_port()
    process = AliasdProcess(["--zone", "example.com=z.zone", "--port", str(port)], tmp_path, port).start()
    try:
        assert process.addresses("example.com") == {"192.0.2.1"}
        assert process.query("example.com", "SOA", want_dnssec=True).answer
        maps = Path(f"/proc/{process.proc.pid}/maps").read_text()
        assert "/cryptography/" not in maps and "/OpenSSL/" not in maps
    finally:
        process.stop()


def test_broken_zone_file_names_file_and_line(tmp_path):
    (tmp_path / "bad.zone").write_text(GOOD_ZONE + "www 300 A 192.0.2.300\n")
    _starts_and_logs_one_line(tmp_path, ["--zone", "example.com=bad.zone"],
                              "bad.zone:4: A record: '192.0.2.300' is not an IPv4 address")


@pytest.mark.parametrize(
    "zone_text, expected",
    [
        ("@ 300 ALIAS a.example.net.\n@ 300 ALIAS b.example.net.\n", ["z.zone:4:", "more than one ALIAS"]),
        ("w 300 CNAME x\nw 300 ALIAS b.example.net.\n", ["z.zone:4:", "beside a CNAME"]),
        ("other.example.org. 300 A 192.0.2.9\n", ["z.zone:3:", "outside the zone"]),
    ],
)
def test_zone_rules_are_checked_at_load(tmp_path, zone_text, expected):
    (tmp_path / "z.zone").write_text(GOOD_ZONE.replace("@ 300 A 192.0.2.1\n", "") + zone_text)
    _starts_and_logs_one_line(tmp_path, ["--zone", "example.com=z.zone"], *expected)


def test_missing_soa_is_reported(tmp_path):
    (tmp_path / "z.zone").write_text("$ORIGIN example.com.\n@ 300 A 192.0.2.1\n")
    _starts_and_logs_one_line(tmp_path, ["--zone", "example.com=z.zone"], "z.zone", "no SOA")


@pytest.mark.parametrize(
    "config, expected",
    [
        ('[server]\nport = "53"\n', ["[server] port", "expected an integer"]),
        ("[server]\nlisten = ['localhost']\n", ["[server] listen", "not an IP address"]),
        ("[resolver]\nbogus = 1\n", ["[resolver]", "unknown key(s): bogus"]),
        ("[resolver]\nmin-refresh = 60\nmax-refresh = 30\n", ["max-refresh", "smaller"]),
        ("[resolver]\nupstreams = ['127.0.0.1:99999']\n", ["[resolver] upstreams", "bad port"]),
        ('[zones."example.com"]\nfiles = "z.zone"\n', ['[zones."example.com"] file', "required"]),
        ("this is not toml\n", ["invalid TOML"]),
    ],
)
def test_configuration_errors_name_the_key(tmp_path, config, expected):
    (tmp_path / "z.zone").write_text(GOOD_ZONE)
    (tmp_path / "aliasd.toml").write_text(config)
    result = run_twistd(["--config", "aliasd.toml"], tmp_path)
    _fails_with_one_line(result, "aliasd.toml", *expected)


def test_missing_zone_file_names_zone_and_file(tmp_path):
    (tmp_path / "aliasd.toml").write_text('[zones."example.com"]\nfile = "nope.zone"\n')
    _starts_and_logs_one_line(tmp_path, ["--config", "aliasd.toml"],
                              "zone example.com.", str(tmp_path / "nope.zone"), "cannot read")


def test_missing_configuration_file_is_reported(tmp_path):
    result = run_twistd(["--config", "absent.toml"], tmp_path)
    _fails_with_one_line(result, "absent.toml", "cannot read")


def test_no_zones_is_an_error(tmp_path):
    result = run_twistd([], tmp_path)
    _fails_with_one_line(result, "no zones")


@pytest.mark.parametrize("include", ["/etc/passwd", "../secret.zone", "link.zone"])
def test_include_outside_the_zone_directory_is_refused(tmp_path, include):
    """Zone files are read as root: $INCLUDE may not reach outside the zone
    file's directory (symbolic links resolved), unless allowed."""
    zones = tmp_path / "zones"
    zones.mkdir()
    (tmp_path / "secret.zone").write_text("secret 300 TXT hidden\n")
    (zones / "link.zone").symlink_to(tmp_path / "secret.zone")
    (zones / "z.zone").write_text(GOOD_ZONE + f"$INCLUDE {include}\n")
    (tmp_path / "aliasd.toml").write_text('[zones."example.com"]\nfile = "zones/z.zone"\n')
    output = _starts_and_logs_one_line(
        tmp_path, ["--config", "aliasd.toml"],
        f"zone example.com.: {zones / 'z.zone'}:4: $INCLUDE {include} is outside the zone's directory",
        "set [server] allow-include-anywhere = true to allow it",
    )
    assert "root:" not in output and "hidden" not in output


def test_include_from_another_directory_when_allowed(tmp_path):
    zones, shared = tmp_path / "zones", tmp_path / "shared"
    zones.mkdir()
    shared.mkdir()
    (zones / "www.inc").write_text("www 300 A 192.0.2.80\n")  # relative to the zone file
    (shared / "mail.inc").write_text("mail 300 A 192.0.2.25\n")
    (zones / "z.zone").write_text(GOOD_ZONE + "$INCLUDE www.inc\n$INCLUDE ../shared/mail.inc\n")
    port = free_port()
    (tmp_path / "aliasd.toml").write_text(
        f'[server]\nlisten = ["127.0.0.1"]\nport = {port}\nallow-include-anywhere = true\n'
        '[zones."example.com"]\nfile = "zones/z.zone"\n'
    )
    process = AliasdProcess(["--config", str(tmp_path / "aliasd.toml")], tmp_path, port).start()
    try:
        assert process.addresses("www.example.com") == {"192.0.2.80"}
        assert process.addresses("mail.example.com") == {"192.0.2.25"}
    finally:
        process.stop()



REACTOR_IMPORT = """
import ssl as stdssl, socket, sys, threading
from aliasd.service import tap
reactor = tap.import_reactor(tls=sys.argv[1] == "tls")
print("OpenSSL" in sys.modules, "service_identity" in sys.modules)
# TLS is still imported and served afterwards: wrapped around a plain TCP
# port, as aliasd.listen.tls does.
from twisted.internet import protocol, ssl
from twisted.protocols.tls import TLSMemoryBIOFactory
class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)
pem = open(sys.argv[2], "rb").read() + open(sys.argv[3], "rb").read()
options = ssl.PrivateCertificate.loadPEM(pem).options()
port = reactor.listenTCP(0, TLSMemoryBIOFactory(options, False, protocol.Factory.forProtocol(Echo)),
                         interface="127.0.0.1")
def client():
    try:
        context = stdssl.create_default_context()
        context.check_hostname, context.verify_mode = False, stdssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as raw:
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"over TLS")
                print(tls.recv(100).decode())
    finally:
        reactor.callFromThread(reactor.stop)
threading.Thread(target=client).start()
reactor.run()
"""


@pytest.mark.parametrize("mode, imported", [("plain", "False False"), ("tls", "True True")])
def test_reactor_is_imported_without_pyopenssl_unless_tls_is_configured(tmp_path, mode, imported):
    """Twisted's reactor imports pyOpenSSL, cryptography and service_identity
    for startTLS and listenSSL, which aliasd does not use: a server without
    TLS gets the reactor without them (memory of every process), and TLS
    can still be imported and served afterwards."""
    from tests.certs import Authority

    cert, key = Authority(tmp_path).issue("server", "xot.test", server=True)
    result = subprocess.run([sys.executable, "-c", REACTOR_IMPORT, mode, str(cert), str(key)],
                            capture_output=True, text=True, timeout=60, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [imported, "over TLS"], result.stdout + result.stderr
