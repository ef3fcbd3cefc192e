"""Servers that speak the PowerDNS Authoritative HTTP API, for tests.

* ``PowerDNSApi``: the real thing, Debian's ``pdns_server`` 4.7 with a
  throwaway SQLite database (``pdns-backend-sqlite3``), its webserver and DNS
  port on loopback high ports. It is the reference the aliasd API is held to.
* ``AliasdApi``: ``twistd aliasd`` with the ``[api]`` section of issue 22
  (started through the ``aliasd`` fixture of tests/conftest.py).

Both offer the same small interface (``url``, ``key``, ``dns_port``,
``request()``, ``query()``, ``restart()``, ``log()``), so a test
parametrised over ``api_target`` runs the same requests and clients against
either.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import subprocess
import textwrap
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.aliasd_process import AliasdProcess, free_port
from tests.secondaries import PowerDNS, _find

API_KEY = "aliasd-api-test-key"
#: The SOA a zone created without one gets (PowerDNS: default-soa-content).
DEFAULT_SOA = "ns1.example.test. hostmaster.example.test. 1 10800 3600 604800 3600"
#: Where the routes live below the server's root.
BASE = "/api/v1/servers/localhost"
#: The most a request body may hold: aliasd's limit (issue 22); PowerDNS is
#: given the same with ``webserver-max-bodysize`` (in MB).
MAX_BODY = 1 << 20
SQLITE_SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")


@dataclasses.dataclass
class Response:
    status: int
    content_type: str
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


class ApiServer:
    """What the tests need from a server of the API (see the module
    docstring); a subclass adds ``log()``, ``restart()`` and ``stop()``."""

    kind = "api"
    http_port: int
    dns_port: int
    key = API_KEY

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def url(self) -> str:
        """The base URL of the routes (clients take it, or its root)."""
        return self.root + BASE

    def request(self, method: str, path: str, body=None, *, key: str | None = API_KEY,
                accept_json: bool = False, headers: dict[str, str] | None = None,
                timeout: float = 30) -> Response:
        """One request; ``path`` below ``BASE`` unless it starts with /api.
        ``body`` is JSON-encoded unless it is bytes already."""
        if not path.startswith("/api"):
            path = BASE + path
        sent = dict(headers or {})
        if key is not None:
            sent["X-API-Key"] = key
        if accept_json:
            sent["Accept"] = "application/json"
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return Response(response.status, response.getheader("Content-Type", ""), response.read())
        finally:
            connection.close()

    def query(self, name: str, rdtype: str, *, tcp: bool = False) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype)
        q.flags &= ~dns.flags.RD
        send = dns.query.tcp if tcp else dns.query.udp
        return send(q, "127.0.0.1", port=self.dns_port, timeout=2)

    def texts(self, name: str, rdtype: str) -> set[str]:
        """The presentation form of the answer's records of ``name``/``rdtype``."""
        wanted = dns.rdatatype.from_text(rdtype)
        response = self.query(name, rdtype)
        return {rd.to_text() for rrset in response.answer if rrset.rdtype == wanted for rd in rrset}

    def wait_http(self, timeout: float = 20) -> None:
        """Until ``GET /api`` answers 200 (the webserver may start after DNS)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.request("GET", "/api", timeout=1).status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind}: the API did not answer within {timeout}s\n{self.log()}")
            time.sleep(0.1)



class PowerDNSApi(PowerDNS, ApiServer):
    """``pdns_server`` with the gsqlite3 backend and its API on.

    ``expand-alias`` with ``resolver`` pointing at the tests' upstream makes
    it answer ALIAS owners with the target's addresses, as aliasd does. The
    caches are off so that a change through the API is served at once, and
    NOTIFY goes to no NS address (only to ``also-notify``, if given).
    ``_pdnsutil`` (from the secondary it extends) runs pdnsutil on its database;
    ``settings`` are more pdns.conf lines.
    """

    name = kind = "pdns"
    program = "pdns_server"

    def __init__(self, directory: Path, upstream: str | None = None, settings: str = ""):
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(directory, free_port())
        self.dns_port = self.port
        self.http_port = free_port()
        database = directory / "pdns.sqlite3"
        with SQLITE_SCHEMA.open() as schema:
            subprocess.run([_find("sqlite3") or "sqlite3", str(database)], stdin=schema, check=True, timeout=30)
        alias = f"expand-alias=yes\nresolver={upstream}\n" if upstream else ""
        (directory / "pdns.conf").write_text(
            textwrap.dedent(
                f"""\
                launch=gsqlite3
                gsqlite3-database={database}
                gsqlite3-dnssec=yes
                local-address=127.0.0.1
                local-port={self.dns_port}
                query-local-address=127.0.0.1
                api=yes
                api-key={API_KEY}
                webserver=yes
                webserver-address=127.0.0.1
                webserver-port={self.http_port}
                webserver-allow-from=127.0.0.0/8
                webserver-max-bodysize={MAX_BODY >> 20}
                default-soa-content={DEFAULT_SOA}
                zone-cache-refresh-interval=0
                only-notify=
                """
            )
            + self.local_settings()
            + alias
            + settings
        )
        self.start()

    def start(self) -> PowerDNSApi:
        """Start (again) on the same ports and database."""
        self._spawn([_find(self.program), f"--config-dir={self.directory}"])
        self.wait_started()
        self.wait_http()
        return self

    def restart(self) -> None:
        self.stop()
        self.start()


def api_config(http_port: int, upstream: str | None = None) -> str:
    """The aliasd configuration, after ``[server]``, of the shared contract
    (/work/notes/api-contract.md): the ``[api]`` section with one admin key
    and a default SOA, and the upstream that resolves ALIAS targets."""
    resolver = f'[resolver]\nupstreams = ["{upstream}"]\nmin-refresh = 1\n\n' if upstream else ""
    return resolver + textwrap.dedent(
        f"""\
        [api]
        listen = ["127.0.0.1:{http_port}"]
        keys = [ {{ name = "admin", secret = "{API_KEY}" }} ]
        default-soa = "{DEFAULT_SOA}"
        """
    )


class AliasdApi(ApiServer):
    """``twistd aliasd`` with the ``[api]`` section."""

    kind = "aliasd"

    def __init__(self, start_aliasd, upstream: str | None = None, config: str = "",
                 zones: dict[str, str] | None = None):
        self.http_port = free_port()
        self.process: AliasdProcess = start_aliasd(api_config(self.http_port, upstream) + config, zones)
        self.dns_port = self.process.port
        self.wait_http()

    def log(self) -> str:
        return self.process.log()

    def restart(self) -> None:
        """SIGTERM, then start again on the same ports and state."""
        self.process.stop()
        self.process.start()
        self.wait_http()

    def stop(self) -> None:
        self.process.stop()


def start_pdns(directory: Path, upstream: str | None = None) -> PowerDNSApi:
    if _find("pdns_server") is None or not SQLITE_SCHEMA.exists():
        pytest.fail("pdns_server with pdns-backend-sqlite3 is not installed; .ci/run installs it")
    return PowerDNSApi(directory, upstream)


@pytest.fixture
def pdns_api(tmp_path):
    """A running ``pdns_server`` with its API (``.url`` and ``.key``)."""
    server = start_pdns(tmp_path / "pdns")
    yield server
    server.stop()


TARGETS = ("pdns", "aliasd")


def signed_zone_file(zone: str) -> str:
    """A small zone (for aliasd, which signs zones from its configuration)."""
    return f"$ORIGIN {zone}\n@ 3600 SOA {DEFAULT_SOA}\n@ 3600 NS ns1.example.test.\nwww 300 A 192.0.2.80\n"


@pytest.fixture(params=TARGETS)
def api_target(request, tmp_path, aliasd):
    """Factory: ``api_target(upstream=None, signed=None)`` starts the server
    under test, PowerDNS or aliasd (the test's parameter), with the API on.
    ``signed`` names a zone that is there from the start, signed: made with
    the API and ``pdnsutil secure-zone`` in PowerDNS, a zone file with
    ``dnssec = true`` in aliasd."""
    started: list[ApiServer] = []

    def start(upstream: str | None = None, signed: str | None = None) -> ApiServer:
        if request.param == "pdns":
            server: ApiServer = start_pdns(tmp_path / "pdns", upstream)
            started.append(server)
            if signed:
                created = server.request("POST", "/zones", {"name": signed, "kind": "Native",
                                                             "nameservers": ["ns1.example.test."]})
                assert created.status == 201, created
                server._pdnsutil("secure-zone", signed)
            return server
        config = ""
        zones = {}
        if signed:
            config = f'[zones."{signed}"]\nfile = "{signed}zone"\ndnssec = true\n'
            zones[f"{signed}zone"] = signed_zone_file(signed)
        server = AliasdApi(aliasd, upstream, config, zones)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
