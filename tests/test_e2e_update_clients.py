"""End to end: real automation clients change zones in aliasd with RFC 2136
UPDATE, signed with TSIG.

* certbot with its ``certbot-dns-rfc2136`` plugin obtains a certificate for
  ``*.example.test`` and ``example.test`` from pebble (Let's Encrypt's ACME
  test server, Debian package ``pebble``), which resolves the dns-01
  challenges through aliasd (``pebble -dnsserver``). The key certbot uses may
  only change TXT records at and below ``_acme-challenge.example.test.``.
* octoDNS with ``octodns-bind``'s ``Rfc2136Provider`` reads the zone by AXFR
  (TSIG), syncs a YAML zone into aliasd with one UPDATE (adds, a replaced
  RRset, deleted ones), and later runs plan no changes, also after aliasd
  restarted.

The clients live in their own virtualenv, ``.venv-clients`` beside ``.venv``
(``bash tests/clients/setup.sh`` makes it and installs pebble with apt-get),
so the project's dependencies stay few; ``ALIASD_CLIENTS_VENV`` names another
one. Without them these tests skip, saying what is missing.

Everything stays on 127.0.0.1 and high ports: certbot talks only to pebble
(``--server``), pebble only asks aliasd (``-dnsserver``), and the challenge
names live in aliasd's zone.

``ALIASD_UPDATE_SERVER=named`` runs the same tests against BIND ``named``
(``update-policy``), to tell a fault of the harness or the clients from one
of aliasd.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import textwrap
import time
import urllib.request
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest
from cryptography import x509

from tests.aliasd_process import REPO, AliasdProcess, free_port
from tests.certs import Authority

pytestmark = pytest.mark.e2e

ZONE = "example.test."
CHALLENGE = "_acme-challenge.example.test."
ACME_SECRET = base64.b64encode(b"aliasd acme update key, 32 bytes").decode()
OPS_SECRET = base64.b64encode(b"aliasd ops update key, 32 bytes!").decode()

CLIENTS_VENV = Path(os.environ.get("ALIASD_CLIENTS_VENV") or REPO / ".venv-clients")
SERVER_KIND = os.environ.get("ALIASD_UPDATE_SERVER", "aliasd")
SETUP_HINT = "bash tests/clients/setup.sh installs it"


def client(program: str, plugin: str) -> str:
    """The path of an automation client in the clients' virtualenv, after
    checking that its ``plugin`` package is there too; or skip."""
    path = CLIENTS_VENV / "bin" / program
    if not path.exists():
        pytest.skip(f"{program} is not installed in {CLIENTS_VENV}; {SETUP_HINT}")
    if not list(CLIENTS_VENV.glob(f"lib/python3*/site-packages/{plugin}/__init__.py")):
        pytest.skip(f"{plugin} is not installed in {CLIENTS_VENV}; {SETUP_HINT}")
    return str(path)


def program(name: str) -> str:
    """The path of a system program, or skip."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip(f"{name} is not installed (Debian package {name}); {SETUP_HINT}")


def loopback_env(**extra: str) -> dict[str, str]:
    """The environment for a client: no proxy, so nothing leaves loopback."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", **extra)
    return env


# ---------------------------------------------------------------------------
# The DNS server under test: aliasd, or BIND named to check the harness.


class _Server:
    port: int
    directory: Path

    def query(self, name: str, rdtype: str) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype)
        q.flags &= ~dns.flags.RD
        return dns.query.udp(q, "127.0.0.1", port=self.port, timeout=2)

    def rrset(self, name: str, rdtype: str):
        """(rcode, the answer's RRset for name/rdtype or None)."""
        response = self.query(name, rdtype)
        wanted = dns.rdatatype.from_text(rdtype)
        for rrset in response.answer:
            if rrset.rdtype == wanted and rrset.name == dns.name.from_text(name):
                return response.rcode(), rrset
        return response.rcode(), None

    def texts(self, name: str, rdtype: str) -> set[str]:
        return {rd.to_text() for rd in (self.rrset(name, rdtype)[1] or ())}


class AliasdServer(_Server):
    """``twistd aliasd`` with the configuration this feature is built for."""

    kind = "aliasd"

    def __init__(self, directory: Path, zone_text: str, keys: dict[str, str], update: list[dict],
                 transfer_key: str | None = None):
        self.directory = directory
        self.port = free_port()
        (directory / "example.test.zone").write_text(zone_text)
        key_conf = "".join(
            f'[keys.{name}]\nalgorithm = "hmac-sha256"\nsecret = "{secret}"\n\n' for name, secret in keys.items()
        )
        rules = ", ".join(
            "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in rule.items()) + " }" for rule in update
        )
        transfer = (
            f'allow-transfer = ["127.0.0.1"]\ntransfer-key = "{transfer_key}"\n' if transfer_key else ""
        )
        config = directory / "aliasd.toml"
        config.write_text(
            textwrap.dedent(
                f"""\
                [server]
                listen = ["127.0.0.1"]
                port = {self.port}
                state-dir = "state"

                """
            )
            + key_conf
            + f'[zones."example.test"]\nfile = "example.test.zone"\n{transfer}update = [ {rules} ]\n'
        )
        self.process = AliasdProcess(["--config", str(config)], directory, self.port).start()

    def log(self) -> str:
        return self.process.log()

    def alive(self) -> bool:
        return self.process.alive()

    def restart(self) -> None:
        """Stop (SIGTERM) and start again on the same port and state."""
        self.process.stop()
        self.process = AliasdProcess(self.process.args, self.directory, self.port).start()

    def stop(self) -> None:
        self.process.stop()


class NamedServer(_Server):
    """BIND named as the primary, with the same keys and rules as update-policy."""

    kind = "named"

    def __init__(self, directory: Path, zone_text: str, keys: dict[str, str], update: list[dict],
                 transfer_key: str | None = None):
        self.directory = directory
        self.port = free_port()
        d = directory
        (d / "example.test.zone").write_text(zone_text)
        grants = []
        for rule in update:
            types = " ".join(rule.get("types", ["ANY"]))
            if "name" in rule:
                how = "subdomain" if rule.get("subdomains") else "name"
                grants.append(f"grant {rule['key']} {how} {rule['name']} {types};")
            else:
                grants.append(f"grant {rule['key']} zonesub {types};")
        transfer = f"allow-transfer {{ key {transfer_key}; }};" if transfer_key else "allow-transfer { none; };"
        (d / "named.conf").write_text(
            f'options {{ directory "{d}"; pid-file "{d}/named.pid"; session-keyfile "{d}/session.key"; '
            f"listen-on port {self.port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; recursion no; "
            "notify no; dnssec-validation no; allow-query { any; }; };\n"
            "controls { };\n"
            + "".join(f'key "{n}" {{ algorithm hmac-sha256; secret "{s}"; }};\n' for n, s in keys.items())
            + "logging { channel out { stderr; severity info; print-time yes; print-category yes; }; "
            "category default { out; }; category update { out; }; category update-security { out; }; };\n"
            f'zone "example.test" {{ type primary; file "{d}/example.test.zone"; '
            f"update-policy {{ {' '.join(grants)} }}; {transfer} }};\n"
        )
        self.logfile = d / "named.log"
        self.logfile.write_text("")
        self.start()

    def start(self) -> None:
        d = self.directory
        self.proc = subprocess.Popen(
            [program("named"), "-g", "-c", str(d / "named.conf")],
            stdout=self.logfile.open("a"), stderr=subprocess.STDOUT, cwd=d,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"named exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.query(ZONE, "SOA").answer:
                    break
            except (dns.exception.Timeout, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"named did not start:\n{self.log()}")
            time.sleep(0.1)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def dns_server(tmp_path):
    """Factory: ``dns_server(zone_text, keys, update, transfer_key)`` starts
    aliasd (or named, with ALIASD_UPDATE_SERVER=named) serving example.test."""
    started = []
    kinds = {"aliasd": AliasdServer, "named": NamedServer}
    if SERVER_KIND not in kinds:
        pytest.fail(f"ALIASD_UPDATE_SERVER={SERVER_KIND!r}: expected one of {sorted(kinds)}")

    def start(*args, **kwargs):
        directory = tmp_path / "dns"
        directory.mkdir()
        server = kinds[SERVER_KIND](directory, *args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# ---------------------------------------------------------------------------
# certbot + certbot-dns-rfc2136 against pebble.

CERTBOT_ZONE = """\
$ORIGIN example.test.
$TTL 300
@    SOA  ns1 hostmaster 1 3600 600 86400 60
@    NS   ns1
ns1  A    127.0.0.1
@    A    192.0.2.1
www  A    192.0.2.2
"""


class Pebble:
    """pebble on 127.0.0.1 high ports, resolving through ``dns_port``."""

    def __init__(self, directory: Path, dns_port: int):
        directory.mkdir()
        # Debian's pebble ships no test certificate: make one for 127.0.0.1.
        authority = Authority(directory / "tls", name="pebble test CA")
        cert, key = authority.issue("pebble", "localhost", server=True)
        self.ca_file = authority.ca_file
        self.port = free_port()
        config = directory / "pebble.json"
        config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"127.0.0.1:{self.port}",
                        "managementListenAddress": f"127.0.0.1:{free_port()}",
                        "certificate": str(cert),
                        "privateKey": str(key),
                        "httpPort": free_port(),
                        "tlsPort": free_port(),
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        self.logfile = directory / "pebble.log"
        self.proc = subprocess.Popen(
            [program("pebble"), "-config", str(config), "-dnsserver", f"127.0.0.1:{dns_port}"],
            stdout=self.logfile.open("w"), stderr=subprocess.STDOUT, cwd=directory,
            env=loopback_env(PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0"),
        )
        self.directory_url = f"https://127.0.0.1:{self.port}/dir"
        context = ssl.create_default_context(cafile=str(self.ca_file))
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pebble exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.directory_url, context=context, timeout=1) as response:
                    json.load(response)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pebble did not start:\n{self.log()}")
                time.sleep(0.1)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def run_watching(argv: list[str], env: dict[str, str], look, errors: tuple, timeout: float):
    """Run a client to its end (killed after ``timeout`` seconds), calling
    ``look()`` every 50 ms meanwhile: (exit status, output, each different
    value ``look`` returned, in order; an exception in ``errors`` counts as
    a value holding its text)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen: list = []
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            values = look()
        except errors as e:
            values = (frozenset([f"({e!r})"]),)
        if not seen or seen[-1] != values:
            seen.append(values)
        time.sleep(0.05)
    try:
        out, _ = proc.communicate(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out, seen


@pytest.fixture
def pebble(tmp_path):
    started = []

    def start(dns_port: int) -> Pebble:
        p = Pebble(tmp_path / "pebble", dns_port)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def run_certbot(tmp_path, server, acme, domains: list[str], watch: list[str]):
    """certbot ``certonly`` for ``domains`` through aliasd's UPDATE; returns
    (exit status, the TXT RRsets seen at the ``watch`` names while it ran,
    the details for a failed assertion, its configuration directory)."""
    credentials = tmp_path / "rfc2136.ini"
    credentials.write_text(
        textwrap.dedent(
            f"""\
            dns_rfc2136_server = 127.0.0.1
            dns_rfc2136_port = {server.port}
            dns_rfc2136_name = acme
            dns_rfc2136_secret = {ACME_SECRET}
            dns_rfc2136_algorithm = HMAC-SHA256
            """
        )
    )
    credentials.chmod(0o600)
    certbot_dir = tmp_path / "certbot"
    argv = [
        client("certbot", "certbot_dns_rfc2136"), "certonly", "--non-interactive", "--agree-tos",
        "--register-unsafely-without-email", "--server", acme.directory_url,
        "--config-dir", str(certbot_dir / "config"), "--work-dir", str(certbot_dir / "work"),
        "--logs-dir", str(certbot_dir / "logs"),
        "--authenticator", "dns-rfc2136", "--preferred-challenges", "dns",
        "--dns-rfc2136-credentials", str(credentials),
        # certbot adds every TXT record, then waits this long before telling
        # pebble to validate: the window in which the test sees them.
        "--dns-rfc2136-propagation-seconds", "3",
        "--cert-name", "example.test", *[arg for domain in domains for arg in ("-d", domain)],
    ]
    # each different set of TXT RRsets seen while certbot ran
    returncode, out, seen = run_watching(
        argv, loopback_env(REQUESTS_CA_BUNDLE=str(acme.ca_file)),
        lambda: tuple(frozenset(server.texts(name, "TXT")) for name in watch),
        (dns.exception.Timeout, OSError), timeout=60,
    )
    certbot_log = (certbot_dir / "logs" / "letsencrypt.log")
    details = (
        f"certbot exited with {returncode}:\n{out}\n--- certbot log (tail):\n"
        + (certbot_log.read_text()[-6000:] if certbot_log.exists() else "")
        + f"\n--- {server.kind} log:\n{server.log()[-6000:]}\n--- pebble log:\n{acme.log()[-3000:]}"
        + f"\n--- TXT RRsets seen: {seen}"
    )
    return returncode, seen, details, certbot_dir


def certificate_names(certbot_dir: Path) -> set[str]:
    pem = (certbot_dir / "config" / "live" / "example.test" / "fullchain.pem").read_bytes()
    certificate = x509.load_pem_x509_certificate(pem)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(names.get_values_for_type(x509.DNSName))


def acme_update(server, name: str, rdtype: str, value: str) -> int:
    """The rcode of adding one record, signed with the key certbot holds."""
    ring = dns.tsigkeyring.from_text({"acme.": (dns.tsig.HMAC_SHA256, ACME_SECRET)})
    update = dns.update.Update(ZONE, keyring=ring, keyname="acme.")
    update.add(name, 60, rdtype, value)
    return dns.query.tcp(update, "127.0.0.1", port=server.port, timeout=5).rcode()


def test_certbot_gets_a_wildcard_certificate_through_update(tmp_path, dns_server, pebble):
    client("certbot", "certbot_dns_rfc2136")
    program("pebble")
    server = dns_server(
        CERTBOT_ZONE,
        keys={"acme": ACME_SECRET},
        update=[{"key": "acme", "name": CHALLENGE, "subdomains": True, "types": ["TXT"]}],
    )
    acme = pebble(server.port)
    returncode, seen, details, certbot_dir = run_certbot(
        tmp_path, server, acme, ["*.example.test", "example.test"], [CHALLENGE])
    assert returncode == 0, details

    # Both challenges (the wildcard's and the bare name's) were in the zone
    # together while pebble validated: two distinct 43-character key
    # authorization digests (RFC 8555 8.4), quoted in the TXT presentation.
    both = [values for (values,) in seen if len(values) == 2]
    assert both, details
    for value in both[0]:
        assert len(value.strip('"')) == 43, details
    # ... and none is left afterwards.
    rcode, rrset = server.rrset(CHALLENGE, "TXT")
    assert rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) and rrset is None, details
    # Each change took a new serial (RFC 2136 3.6); the rest of the zone is untouched.
    assert server.rrset(ZONE, "SOA")[1][0].serial > 1
    assert server.texts("www.example.test.", "A") == {"192.0.2.2"}
    assert server.texts(ZONE, "A") == {"192.0.2.1"}

    # The certificate covers both names.
    assert certificate_names(certbot_dir) == {"*.example.test", "example.test"}

    # The key certbot holds may change nothing but TXT below _acme-challenge.
    for name, rdtype, value in (
        ("www", "TXT", "not allowed"),          # outside the name
        ("_acme-challenge", "A", "192.0.2.66"),  # not TXT
    ):
        rcode = acme_update(server, name, rdtype, value)
        assert rcode == dns.rcode.REFUSED, (name, rdtype, dns.rcode.to_text(rcode))
    assert server.texts("www.example.test.", "TXT") == set()
    assert server.texts(CHALLENGE, "A") == set()
    assert server.alive(), server.log()


WWW_CHALLENGE = "_acme-challenge.www.example.test."


def test_certbot_through_the_acme_pattern_rules(tmp_path, dns_server, pebble):
    """The README's pair of rules: ``_acme-challenge.*`` for each host's
    challenge, ``_acme-challenge`` for the apex's (and its wildcard's)."""
    if SERVER_KIND != "aliasd":
        pytest.skip("BIND's update-policy has no pattern with * inside a name")
    client("certbot", "certbot_dns_rfc2136")
    program("pebble")
    server = dns_server(
        CERTBOT_ZONE,
        keys={"acme": ACME_SECRET},
        update=[
            {"key": "acme", "name": "_acme-challenge.*.example.test.", "types": ["TXT"]},
            {"key": "acme", "name": "_acme-challenge", "types": ["TXT"]},
        ],
    )
    acme = pebble(server.port)
    returncode, seen, details, certbot_dir = run_certbot(
        tmp_path, server, acme, ["www.example.test", "*.example.test"], [WWW_CHALLENGE, CHALLENGE])
    assert returncode == 0, details
    # Both challenges were served while pebble validated, one at each name.
    assert [values for values in seen if all(len(v) == 1 for v in values)], details
    assert certificate_names(certbot_dir) == {"www.example.test", "*.example.test"}
    assert server.texts(WWW_CHALLENGE, "TXT") == set() and server.texts(CHALLENGE, "TXT") == set(), details

    # Names outside the two rules are refused: two labels for the one *,
    # a name below the challenge, the host itself, another type.
    for name, rdtype in (("_acme-challenge.a.b", "TXT"), ("x._acme-challenge.www", "TXT"),
                         ("www", "TXT"), ("_acme-challenge.www", "A")):
        rcode = acme_update(server, name, rdtype, "192.0.2.66" if rdtype == "A" else "no")
        assert rcode == dns.rcode.REFUSED, (name, rdtype, dns.rcode.to_text(rcode))
    assert server.texts("_acme-challenge.a.b.example.test.", "TXT") == set()
    assert server.texts("www.example.test.", "TXT") == set()
    assert re.search(r"update of zone example\.test\. from 127\.0\.0\.1\S* \(key acme\.?\): REFUSED",
                     server.log()), server.log()


# ---------------------------------------------------------------------------
# octoDNS + octodns-bind's Rfc2136Provider.

OCTODNS_ZONE = """\
$ORIGIN example.test.
$TTL 300
@    SOA  ns1 hostmaster 1 3600 600 86400 60
@    NS   ns1
ns1  A    127.0.0.1
www  A    192.0.2.50
old  A    192.0.2.99
old  TXT  "to be deleted"
"""

# The apex NS and ns1 keep the zone file's TTL: octoDNS refuses to change a
# root NS without --force. The rest is created, replaced (www) or deleted (old).
LONG_TEXT = "k=rsa; p=" + "A" * 300  # more than one 255-octet string
LONG_TEXT_YAML = LONG_TEXT.replace(";", "\\;")  # octoDNS wants ; escaped

OCTODNS_YAML = f"""\
---
'':
  - ttl: 300
    type: NS
    value: ns1.example.test.
  - type: A
    values: [192.0.2.1, 192.0.2.2]
  - type: MX
    value: {{exchange: mail.example.test., preference: 10}}
  - type: TXT
    value: v=spf1 mx -all
  - type: CAA
    value: {{flags: 0, tag: issue, value: ca.example.test}}
ns1:
  ttl: 300
  type: A
  value: 127.0.0.1
www:
  ttl: 600
  type: A
  values: [192.0.2.5, 192.0.2.6]
mail:
  - type: A
    value: 192.0.2.25
  - type: AAAA
    value: 2001:db8::25
ftp:
  type: CNAME
  value: www.example.test.
_imaps._tcp:
  type: SRV
  value: {{port: 993, priority: 0, target: mail.example.test., weight: 5}}
sel._domainkey:
  type: TXT
  value: {LONG_TEXT_YAML}
"""

# What aliasd must serve afterwards: (name, type) -> (TTL, presentation values).
OCTODNS_EXPECTED = {
    ("example.test.", "A"): (3600, {"192.0.2.1", "192.0.2.2"}),
    ("example.test.", "MX"): (3600, {"10 mail.example.test."}),
    ("example.test.", "TXT"): (3600, {'"v=spf1 mx -all"'}),
    ("example.test.", "CAA"): (3600, {'0 issue "ca.example.test"'}),
    ("example.test.", "NS"): (None, {"ns1.example.test."}),
    ("www.example.test.", "A"): (600, {"192.0.2.5", "192.0.2.6"}),
    ("mail.example.test.", "A"): (3600, {"192.0.2.25"}),
    ("mail.example.test.", "AAAA"): (3600, {"2001:db8::25"}),
    ("ftp.example.test.", "CNAME"): (3600, {"www.example.test."}),
    ("_imaps._tcp.example.test.", "SRV"): (3600, {"0 5 993 mail.example.test."}),
}


def octodns_project(directory: Path, zone_yaml: str, target: str) -> Path:
    """An octoDNS project in ``directory``: example.test. from ``zone_yaml``
    (YamlProvider, default TTL 3600) synced into the provider ``target`` (the
    YAML of its settings, ``class`` first)."""
    (directory / "config").mkdir(parents=True)
    (directory / "config" / "example.test.yaml").write_text(zone_yaml)
    (directory / "octodns.yaml").write_text(
        textwrap.dedent(
            f"""\
            ---
            providers:
              config:
                class: octodns.provider.yaml.YamlProvider
                directory: {directory / "config"}
                default_ttl: 3600
                enforce_order: false
              target:
            """
        )
        + textwrap.indent(textwrap.dedent(target), " " * 4)
        + "zones:\n  example.test.:\n    sources: [config]\n    targets: [target]\n"
    )
    return directory


def octodns_sync(directory: Path, *args: str, plugin: str = "octodns_bind") -> subprocess.CompletedProcess:
    return subprocess.run(
        [client("octodns-sync", plugin), "--config-file", str(directory / "octodns.yaml"), *args],
        capture_output=True, text=True, timeout=60, cwd=directory, env=loopback_env(), check=False,
    )


def run_details(label: str, result: subprocess.CompletedProcess, server, tail: int = 4000) -> str:
    """A client's output and the server's log, for an assertion message."""
    return f"--- {label}:\n{result.stdout}\n{result.stderr}\n--- {server.kind} log:\n{server.log()[-tail:]}"


def plan_summary(result: subprocess.CompletedProcess) -> dict[str, int] | None:
    """The counts in octoDNS's plan summary (its PlanLogger prints
    ``*   Summary: Creates=9, Updates=1, Deletes=2, Existing=5, Meta=False``),
    or None when it planned nothing."""
    for line in (result.stdout + result.stderr).splitlines():
        match = re.search(r"Summary: Creates=(\d+), Updates=(\d+), Deletes=(\d+)", line)
        if match:
            return dict(zip(("Creates", "Updates", "Deletes"), map(int, match.groups())))
    return None


def test_octodns_syncs_a_yaml_zone_and_then_sees_no_changes(tmp_path, dns_server):
    client("octodns-sync", "octodns_bind")
    server = dns_server(
        OCTODNS_ZONE, keys={"ops": OPS_SECRET}, update=[{"key": "ops"}], transfer_key="ops"
    )
    octo = octodns_project(
        tmp_path / "octodns", OCTODNS_YAML,
        f"""\
        class: octodns_bind.Rfc2136Provider
        host: 127.0.0.1
        port: {server.port}
        timeout: 10
        key_name: ops
        key_secret: {OPS_SECRET}
        key_algorithm: hmac-sha256
        """,
    )

    first = octodns_sync(octo, "--doit")
    details = run_details("octodns-sync", first, server, 6000)
    assert first.returncode == 0, details
    # 9 new RRsets (apex A, MX, TXT, CAA; mail A, AAAA; ftp; SRV; DKIM TXT),
    # www replaced, old's A and TXT deleted; the NS and ns1 are unchanged.
    assert plan_summary(first) == {"Creates": 9, "Updates": 1, "Deletes": 2}, details

    for (name, rdtype), (ttl, values) in OCTODNS_EXPECTED.items():
        rcode, rrset = server.rrset(name, rdtype)
        assert rrset is not None and {rd.to_text() for rd in rrset} == values, (name, rdtype, rcode, rrset, details)
        if ttl is not None:
            assert rrset.ttl == ttl, (name, rdtype, rrset.ttl)
    _, dkim = server.rrset("sel._domainkey.example.test.", "TXT")
    assert dkim is not None and b"".join(dkim[0].strings).decode() == LONG_TEXT, (dkim, details)
    rcode, rrset = server.rrset("old.example.test.", "A")
    assert rcode == dns.rcode.NXDOMAIN and rrset is None, (rcode, rrset, details)
    assert server.rrset(ZONE, "SOA")[1][0].serial > 1

    second = octodns_sync(octo)
    details = run_details("second octodns-sync", second, server)
    assert second.returncode == 0, details
    assert plan_summary(second) is None, details
    assert "No changes were planned" in second.stdout + second.stderr, details

    # The updates outlive a restart: the same records are served, and octoDNS
    # still sees nothing to change.
    assert server.alive(), server.log()
    server.restart()
    for (name, rdtype), (ttl, values) in OCTODNS_EXPECTED.items():
        _, rrset = server.rrset(name, rdtype)
        assert rrset is not None and {rd.to_text() for rd in rrset} == values, (name, rdtype, rrset, server.log())
    assert server.rrset("old.example.test.", "A") == (dns.rcode.NXDOMAIN, None), server.log()
    third = octodns_sync(octo)
    details = run_details("octodns-sync after restart", third, server)
    assert third.returncode == 0 and plan_summary(third) is None, details
    assert server.alive(), server.log()
