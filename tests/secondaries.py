"""Real secondary servers for interop tests: BIND named, Knot knotd,
PowerDNS pdns_server (bind backend) and NSD.

Each runs in the foreground from a configuration written into the test's
directory, listens on a loopback high port and is stopped by its process id.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


def _find(program: str) -> str | None:
    for candidate in (shutil.which(program), f"/usr/sbin/{program}"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class Secondary:
    """A secondary DNS server process on 127.0.0.1:port."""

    name = "secondary"
    #: The program that must be installed for this kind.
    program = "secondary"
    #: Does it ask for IXFR once it has the zone (else it always pulls AXFR)?
    incremental = True
    #: Does ``transfers()`` tell AXFR from IXFR (else each is "XFR")?
    names_transfer_kinds = True

    def __init__(self, directory: Path, port: int):
        self.directory = directory
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.logfile = directory / f"{self.name}.log"

    def addresses(self, qname: str, rdtype: str = "A") -> set[str]:
        q = dns.message.make_query(qname, rdtype)
        try:
            r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=1)
        except (dns.exception.Timeout, OSError):
            return set()
        wanted = dns.rdatatype.from_text(rdtype)
        return {rd.to_text() for rrset in r.answer if rrset.rdtype == wanted for rd in rrset}

    def serial(self, zone: str) -> int | None:
        q = dns.message.make_query(zone, "SOA")
        try:
            r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=1)
        except (dns.exception.Timeout, OSError):
            return None
        return r.answer[0][0].serial if r.answer else None

    def serves(self, zone: str) -> bool:
        """Does the secondary answer the zone's SOA (it has transferred it)?"""
        rcode, answered = self._soa_rcode(zone)
        return rcode == dns.rcode.NOERROR and answered

    def refuses(self, zone: str) -> bool:
        """Has the secondary stopped serving the zone (REFUSED or no SOA)?"""
        rcode, answered = self._soa_rcode(zone)
        return rcode is not None and not (rcode == dns.rcode.NOERROR and answered)

    def _soa_rcode(self, zone: str) -> tuple[int | None, bool]:
        q = dns.message.make_query(zone, "SOA")
        try:
            r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=1)
        except (dns.exception.Timeout, OSError):
            return None, False
        return r.rcode(), any(rrset.rdtype == dns.rdatatype.SOA for rrset in r.answer)

    def log(self) -> str:
        return "".join(
            path.read_text(errors="replace") for path in dict.fromkeys((self.output, self.logfile)) if path.exists()
        )

    @property
    def output(self) -> Path:
        """Where the process's stdout and stderr go (its log, unless it
        writes that to a file itself)."""
        return self.logfile

    def transfers(self) -> list[str]:
        """The kinds of the incoming transfers this secondary completed, in order."""
        raise NotImplementedError

    def _spawn(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=self.output.open("w"), stderr=subprocess.STDOUT, cwd=self.directory
        )

    def wait_started(self, timeout: float = 20) -> None:
        wait_answering(self, timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Named(Secondary):
    """BIND 9 as a secondary of zones that aliasd serves."""

    name = "named"
    program = "named"

    def _options(self) -> str:
        """The start of the options block every configuration here shares
        (the caller adds its own options and the closing brace)."""
        d = self.directory
        return (
            f'options {{ directory "{d}"; pid-file "{d}/named.pid"; session-keyfile "{d}/session.key"; '
            f"listen-on port {self.port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; recursion no; "
            "notify no; dnssec-validation no; allow-query { any; };"
        )

    def start_many(self, zones: list[str], primary_port: int) -> "Named":
        """Secondary of every zone in ``zones``, refreshing quickly and
        transferring 16 at a time (thousands of zones)."""
        d = self.directory
        zone_conf = "".join(
            f'zone "{z}" {{ type secondary; primaries {{ 127.0.0.1 port {primary_port}; }}; '
            f'file "{d}/{z}.db"; allow-notify {{ 127.0.0.1; }}; }};\n'
            for z in zones
        )
        (d / "named.conf").write_text(
            self._options()
            + " serial-query-rate 10000; transfers-in 16; transfers-per-ns 16; };\n"
            "controls { };\n"
            "logging { channel out { stderr; severity warning; print-time yes; }; "
            "category default { out; }; };\n"
            + zone_conf
        )
        self._spawn([_find(self.program), "-g", "-c", str(d / "named.conf"), "-n", "2"])
        self.wait_started()
        return self

    def start(
        self,
        zone: str,
        primary_port: int,
        key: tuple[str, str, str] | None = None,
        tls: tuple[Path, str] | None = None,
    ) -> "Named":
        """Secondary of ``zone``; ``tls`` = (CA file, primary's certificate
        name) pulls it over TLS (RFC 9103) from ``primary_port``."""
        d = self.directory
        key_conf = key_clause = ""
        if key is not None:
            name, algorithm, secret = key
            key_conf = f'key "{name}" {{ algorithm {algorithm}; secret "{secret}"; }};'
            key_clause = f" key {name}"
        if tls is not None:
            ca_file, hostname = tls
            key_conf += f'\ntls primary-tls {{ ca-file "{ca_file}"; remote-hostname "{hostname}"; }};'
            key_clause += " tls primary-tls"
        (d / "named.conf").write_text(
            textwrap.dedent(
                f"""\
                {self._options()}
                }};
                controls {{ }};
                {key_conf}
                logging {{
                    channel out {{ stderr; severity info; print-time yes; print-category yes; }};
                    category default {{ out; }};
                    category xfer-in {{ out; }};
                    category notify {{ out; }};
                }};
                zone "{zone}" {{
                    type secondary;
                    primaries {{ 127.0.0.1 port {primary_port}{key_clause}; }};
                    file "{d}/{zone}.db";
                    allow-notify {{ 127.0.0.1; }};
                }};
                """
            )
        )
        # Debug level 1 makes named say which kind of transfer it requests.
        self._spawn([_find(self.program), "-g", "-d", "1", "-c", str(d / "named.conf")])
        self.wait_started()
        return self

    def start_catalog_consumer(self, catalog_zone: str, primary_port: int) -> "Named":
        """Secondary of the catalog ``catalog_zone`` and of every member zone it
        lists, each pulled from ``primary_port`` (``catalog-zones``); named adds
        and removes member zones itself."""
        d = self.directory
        (d / "catz").mkdir(exist_ok=True)
        catalog = catalog_zone.rstrip(".") + "."
        (d / "named.conf").write_text(
            textwrap.dedent(
                f"""\
                {self._options()}
                    catalog-zones {{
                        zone "{catalog}"
                            default-primaries {{ 127.0.0.1 port {primary_port}; }}
                            zone-directory "{d}/catz"
                            min-update-interval 1;
                    }};
                }};
                controls {{ }};
                logging {{
                    channel out {{ stderr; severity info; print-time yes; print-category yes; }};
                    category default {{ out; }};
                    category xfer-in {{ out; }};
                    category notify {{ out; }};
                }};
                zone "{catalog}" {{
                    type secondary;
                    primaries {{ 127.0.0.1 port {primary_port}; }};
                    file "{d}/catalog.db";
                    allow-notify {{ 127.0.0.1; }};
                }};
                """
            )
        )
        self._spawn([_find(self.program), "-g", "-d", "1", "-c", str(d / "named.conf")])
        self.wait_started()
        return self

    def transfers(self) -> list[str]:
        kinds = []
        for line in self.log().splitlines():
            if "requesting AXFR" in line or "falling back to axfr" in line.lower():
                kinds.append("AXFR")
            elif "requesting IXFR" in line:
                kinds.append("IXFR")
            elif "Transfer completed" in line and kinds and not kinds[-1].endswith("done"):
                kinds[-1] += " done"
        return [k.split()[0] for k in kinds if k.endswith("done")]


class Knot(Secondary):
    """Knot DNS as a secondary."""

    name = "knotd"
    program = "knotd"

    def start(self, zone: str, primary_port: int, key: tuple[str, str, str] | None = None) -> "Knot":
        d = self.directory
        keys = acl_key = remote_key = ""
        if key is not None:
            name, algorithm, secret = key
            keys = f"key:\n  - id: {name}\n    algorithm: {algorithm}\n    secret: {secret}\n"
            acl_key = f"\n    key: {name}"
            remote_key = f"\n    key: {name}"
        (d / "knot.conf").write_text(
            f"""\
server:
    rundir: "{d}"
    listen: 127.0.0.1@{self.port}
    pidfile: "{d}/knot.pid"
log:
  - target: stderr
    any: info
{keys}database:
    storage: "{d}/knotdb"
remote:
  - id: primary
    address: 127.0.0.1@{primary_port}{remote_key}
acl:
  - id: notify_from_primary
    address: 127.0.0.1
    action: notify{acl_key}
template:
  - id: default
    storage: "{d}"
    file: "%s.zone"
zone:
  - domain: {zone}
    master: primary
    acl: notify_from_primary
"""
        )
        (d / "knotdb").mkdir(exist_ok=True)
        self._spawn([_find(self.program), "-c", str(d / "knot.conf")])
        self.wait_started()
        return self

    def start_catalog_consumer(self, catalog_zone: str, primary_port: int) -> "Knot":
        """Secondary of the catalog ``catalog_zone`` (``catalog-role: interpret``);
        every member zone is configured from the ``catalog-member`` template."""
        d = self.directory
        (d / "knot.conf").write_text(
            f"""\
server:
    rundir: "{d}"
    listen: 127.0.0.1@{self.port}
    pidfile: "{d}/knot.pid"
log:
  - target: stderr
    any: info
database:
    storage: "{d}/knotdb"
remote:
  - id: primary
    address: 127.0.0.1@{primary_port}
acl:
  - id: notify_from_primary
    address: 127.0.0.1
    action: notify
template:
  - id: default
    storage: "{d}"
    file: "%s.zone"
  - id: catalog-member
    storage: "{d}"
    file: "%s.zone"
    master: primary
    acl: notify_from_primary
zone:
  - domain: {catalog_zone}
    master: primary
    acl: notify_from_primary
    catalog-role: interpret
    catalog-template: catalog-member
"""
        )
        (d / "knotdb").mkdir(exist_ok=True)
        self._spawn([_find(self.program), "-c", str(d / "knot.conf")])
        self.wait_started()
        return self

    def transfers(self) -> list[str]:
        kinds = []
        for line in self.log().splitlines():
            if "incoming" in line and "finished" in line:
                kinds.append("IXFR" if "IXFR, incoming" in line else "AXFR")
            elif "fallback to AXFR" in line and kinds:
                kinds[-1] = "IXFR failed"
        return kinds


class PowerDNS(Secondary):
    """PowerDNS Authoritative (``pdns_server``) with the bind backend as a
    secondary.

    The bind backend cannot apply an IXFR (it has no ``replaceRRSet``): with
    the zone's ``IXFR`` metadata set to 1, PowerDNS 4.7 asks for IXFR, logs
    "zone committed with serial N" and goes on serving the old records. So
    that metadata stays unset and PowerDNS pulls every new serial by AXFR.
    The TSIG key and the zone's ``AXFR-MASTER-TSIG`` live in the bind
    backend's ``bind-dnssec-db`` (an SQLite file written with ``pdnsutil``);
    a signed NOTIFY is checked against that key. NOTIFY is accepted from the
    zone's ``masters`` address (``allow-notify-from`` must cover it too).
    """

    name = "pdns"
    program = "pdns_server"
    incremental = False

    def local_settings(self) -> str:
        """pdns.conf lines for a test instance: in the foreground, its socket
        in its directory, no security poll, no caches (a change is served at
        once), few threads."""
        return textwrap.dedent(
            f"""\
            socket-dir={self.directory}
            guardian=no
            daemon=no
            security-poll-suffix=
            disable-syslog=yes
            loglevel=6
            cache-ttl=0
            query-cache-ttl=0
            negquery-cache-ttl=0
            distributor-threads=1
            receiver-threads=1
            """
        )

    def _pdnsutil(self, *args: str) -> None:
        done = subprocess.run(
            [_find("pdnsutil"), f"--config-dir={self.directory}", *args],
            capture_output=True, text=True, timeout=30,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pdnsutil {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def start(self, zone: str, primary_port: int, key: tuple[str, str, str] | None = None) -> "PowerDNS":
        d = self.directory
        zone = zone.rstrip(".")
        # The bind backend's named.conf takes a primary's port as ADDRESS:PORT
        # (BIND's "port N" is a syntax error there).
        (d / "named.conf").write_text(
            f'zone "{zone}" {{ type slave; masters {{ 127.0.0.1:{primary_port}; }}; file "{d}/{zone}.zone"; }};\n'
        )
        (d / "pdns.conf").write_text(
            textwrap.dedent(
                f"""\
                launch=bind
                bind-config={d}/named.conf
                bind-dnssec-db={d}/bind-dnssec.sqlite3
                secondary=yes
                local-address=127.0.0.1
                local-port={self.port}
                query-local-address=127.0.0.1
                allow-notify-from=127.0.0.0/8
                xfr-cycle-interval=1
                retrieval-threads=1
                """
            )
            + self.local_settings()
        )
        self._pdnsutil("create-bind-db", str(d / "bind-dnssec.sqlite3"))
        if key is not None:
            name, algorithm, secret = key
            self._pdnsutil("import-tsig-key", name, algorithm, secret)
            self._pdnsutil("set-meta", zone, "AXFR-MASTER-TSIG", name)
        self._spawn([_find(self.program), f"--config-dir={d}"])
        self.wait_started()
        return self

    def transfers(self) -> list[str]:
        kinds = []
        for line in self.log().splitlines():
            if "AXFR-in zone" in line and "retrieval finished" in line:
                kinds.append("AXFR")
            elif "IXFR-in zone" in line and "zone committed with serial" in line:
                kinds.append("IXFR")
            elif "IXFR turned into an AXFR" in line:
                kinds.append("IXFR failed")
        return kinds


class NSD(Secondary):
    """NSD as a secondary (``request-xfr``, ``allow-notify``).

    NSD writes its log to a file of its own (``logfile:``; without one it
    logs to syslog); its stdout and stderr go to ``nsd.out``.
    """

    name = "nsd"
    program = "nsd"
    names_transfer_kinds = False

    @property
    def output(self) -> Path:
        return self.directory / "nsd.out"

    def start(self, zone: str, primary_port: int, key: tuple[str, str, str] | None = None) -> "NSD":
        d = self.directory
        zone = zone.rstrip(".")
        keys = ""
        key_name = "NOKEY"
        if key is not None:
            key_name, algorithm, secret = key
            keys = f'key:\n    name: "{key_name}"\n    algorithm: {algorithm}\n    secret: "{secret}"\n'
        (d / "nsd.conf").write_text(
            f"""\
server:
    ip-address: 127.0.0.1
    port: {self.port}
    do-ip6: no
    server-count: 1
    reuseport: no
    username: ""
    chroot: ""
    zonesdir: "{d}"
    database: ""
    zonelistfile: "{d}/zone.list"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    pidfile: "{d}/nsd.pid"
    logfile: "{self.logfile}"
    verbosity: 2
    hide-version: no
    xfrd-reload-timeout: 0
remote-control:
    control-enable: no
{keys}zone:
    name: "{zone}"
    zonefile: "{zone}.zone"
    allow-notify: 127.0.0.1 {key_name}
    request-xfr: 127.0.0.1@{primary_port} {key_name}
"""
        )
        self._spawn([_find(self.program), "-d", "-c", str(d / "nsd.conf")])
        self.wait_started()
        return self

    def transfers(self) -> list[str]:
        """One "XFR" per incoming transfer NSD committed: its log (at any
        verbosity a packaged NSD has) does not say whether it was an AXFR or
        an IXFR, only "received update to serial N"."""
        return ["XFR" for line in self.log().splitlines() if "xfrd: zone" in line and " committed " in line]


def wait_answering(server, timeout: float = 20, interval: float = 0.1) -> None:
    """Wait until ``server`` (``proc``, ``port``, ``name``, ``log()``)
    answers a CHAOS query on 127.0.0.1; RuntimeError if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.log()}")
        q = dns.message.make_query("version.bind", "TXT", rdclass="CH")
        try:
            dns.query.udp(q, "127.0.0.1", port=server.port, timeout=0.3)
            return
        except (dns.exception.Timeout, OSError):
            time.sleep(interval)
    raise RuntimeError(f"{server.name} did not start:\n{server.log()}")


def available(program: str) -> bool:
    return _find(program) is not None
