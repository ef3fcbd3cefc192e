"""DNSSEC validation harness: validating resolvers (Unbound, BIND named) and
offline zone verifiers (``dnssec-verify``, ``ldns-verify-zone``).

Each resolver runs in the foreground from a configuration written into the
test's directory, listens on 127.0.0.1:<high port> and only ever talks to
the test's authoritative server for the zone under test (a stub zone on
loopback); every other name is sent to a dead loopback port, so nothing
(root priming, NS target look-ups) can reach the internet. Caches are
capped at one second, so a changed answer is seen at once.

Trust anchors are given as resource record text, DS or DNSKEY, with an
absolute owner name (the TTL and class may be left out), e.g. the lines of
a ``dsset-`` file written by ``dnssec-signzone``::

    example.test. IN DS 12345 13 2 0123ABCD...

Typical use against an authoritative server on ``port``::

    resolver = Unbound(tmp_path / "unbound").start("example.test", port, anchors)
    try:
        rcode, ad, answer = resolver.ad("www.example.test", "A")
        assert (rcode, ad) == (dns.rcode.NOERROR, True), resolver.log()
    finally:
        resolver.stop()
"""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rrset
import dns.zone
import dns.zonefile
import pytest

from tests.aliasd_process import free_port
from tests.secondaries import wait_answering


def _find(program: str) -> str | None:
    for candidate in (shutil.which(program), f"/usr/sbin/{program}", f"/usr/bin/{program}"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _need(program: str) -> str:
    """The program's path; fail the test (not skip) when it is missing."""
    path = _find(program)
    if path is None:
        pytest.fail(f"{program} is not installed; .ci/run installs it")
    return path


def _zone_name(zone: str) -> str:
    """``zone`` without its final dot (``example.test``)."""
    return zone.rstrip(".")


# --------------------------------------------------------------------------
# Trust anchors


def parse_anchors(trust_anchors: list[str] | str) -> list[dns.rrset.RRset]:
    """The DS and DNSKEY RRsets in ``trust_anchors`` (lines of RR text with
    absolute owner names; TTL and class optional). Anything else is an error."""
    if isinstance(trust_anchors, str):
        trust_anchors = [trust_anchors]
    text = "\n".join(line for line in trust_anchors if line.strip() and not line.lstrip().startswith(";"))
    rrsets = dns.zonefile.read_rrsets(
        text, rdclass=None, default_rdclass="IN", default_ttl=3600, origin=dns.name.root, relativize=False
    )
    if not rrsets:
        raise ValueError("no trust anchor given")
    for rrset in rrsets:
        if rrset.rdtype not in (dns.rdatatype.DS, dns.rdatatype.DNSKEY):
            raise ValueError(f"a trust anchor must be a DS or DNSKEY record, not {rrset.to_text()}")
    return rrsets


def ds_anchors(zone: str, dnskeys: list[str] | str, digest: str = "SHA256") -> list[str]:
    """DS trust anchor lines for the secure entry points (flags 257) among
    ``dnskeys`` (DNSKEY RR text, or just its rdata: ``257 3 13 base64``),
    or for every key when none has the SEP bit."""
    origin = dns.name.from_text(zone)
    if isinstance(dnskeys, str):
        dnskeys = [dnskeys]
    keys = []
    for line in dnskeys:
        if "DNSKEY" in line.upper().split():
            keys.extend(rd for rrset in parse_anchors([line]) for rd in rrset)
        else:
            keys.append(dns.rdata.from_text("IN", "DNSKEY", line))
    seps = [k for k in keys if k.flags & 1] or keys
    return [f"{origin} 3600 IN DS {dns.dnssec.make_ds(origin, k, digest).to_text()}" for k in seps]


def anchors_from_server(zone: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """DS trust anchor lines made from the DNSKEY RRset the authoritative
    server on ``host:port`` serves for ``zone`` (its keys with the SEP bit)."""
    q = dns.message.make_query(zone, "DNSKEY", want_dnssec=True)
    r = dns.query.tcp(q, host, port=port, timeout=3)
    keys = [rd.to_text() for rrset in r.answer if rrset.rdtype == dns.rdatatype.DNSKEY for rd in rrset]
    if not keys:
        raise RuntimeError(f"no DNSKEY for {zone} at {host}:{port}:\n{r}")
    return ds_anchors(zone, keys)


# --------------------------------------------------------------------------
# Validating resolvers


class Resolver:
    """A validating recursive resolver process on 127.0.0.1:port whose only
    source of data is the authoritative server on ``authority_port``."""

    name = "resolver"
    program = "resolver"

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        # Where every name outside the test zone is sent: a reserved
        # loopback port nothing listens on (the kernel answers "port
        # unreachable" at once).
        self.dead_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.output = self.directory / f"{self.name}.out"
        self.logfile = self.output
        self.zone: str | None = None
        self.authority_port: int | None = None
        self.trust_anchors: list[str] = []

    # -- life cycle ---------------------------------------------------------

    def start(self, zone: str, authority_port: int, trust_anchors: list[str]) -> "Resolver":
        """Write the configuration for ``zone`` served on 127.0.0.1:``authority_port``,
        anchored at ``trust_anchors`` (DS or DNSKEY lines), and start."""
        self.zone = _zone_name(zone)
        self.authority_port = authority_port
        self.trust_anchors = list(trust_anchors)
        self._configure(parse_anchors(self.trust_anchors))
        self._run()
        return self

    def restart(self, trust_anchors: list[str] | None = None) -> "Resolver":
        """Stop and start again with an empty cache (and new trust anchors
        if given); same port, same authoritative server."""
        self.stop()
        if trust_anchors is not None:
            self.trust_anchors = list(trust_anchors)
        self._configure(parse_anchors(self.trust_anchors))
        self._run()
        return self

    def flush(self) -> "Resolver":
        """Forget every cached answer, key and bogus mark. Remote control is
        not configured: this is a restart (well under a second)."""
        return self.restart()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "Resolver":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self) -> str:
        return "".join(
            f"==> {path.name} <==\n{path.read_text(errors='replace')}"
            for path in dict.fromkeys((self.output, self.logfile))
            if path.exists()
        )

    # -- queries ------------------------------------------------------------

    def query(self, name: str, rdtype: str | int = "A", timeout: float = 10, cd: bool = False) -> dns.message.Message:
        """Ask the resolver (RD and DO set; CD if ``cd``), over UDP then TCP
        if truncated."""
        q = dns.message.make_query(name, rdtype, want_dnssec=True, use_edns=0, payload=1232)
        q.flags |= dns.flags.RD
        if cd:
            q.flags |= dns.flags.CD
        r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=timeout)
        if r.flags & dns.flags.TC:
            r = dns.query.tcp(q, "127.0.0.1", port=self.port, timeout=timeout)
        return r

    def ad(self, name: str, rdtype: str | int = "A", timeout: float = 10) -> tuple[int, bool, list[dns.rrset.RRset]]:
        """(rcode, AD bit, answer section) of the resolver's answer."""
        r = self.query(name, rdtype, timeout)
        return r.rcode(), bool(r.flags & dns.flags.AD), list(r.answer)

    # -- internals ----------------------------------------------------------

    def _configure(self, anchors: list[dns.rrset.RRset]) -> None:
        raise NotImplementedError

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _run(self) -> None:
        with self.output.open("a") as out:
            out.write(f"---- {self.name} start {time.strftime('%H:%M:%S')} ----\n")
        with self.output.open("a") as out:
            self.proc = subprocess.Popen(self._argv(), stdout=out, stderr=subprocess.STDOUT, cwd=self.directory)
        self._wait_started()

    def _wait_started(self, timeout: float = 20) -> None:
        try:
            wait_answering(self, timeout, interval=0.05)
        except RuntimeError:
            self.stop()
            raise


class Unbound(Resolver):
    """Unbound as a validating resolver (``module-config: "validator iterator"``)
    with a ``stub-zone`` for the test zone and a trust anchor file.

    Everything outside the test zone is refused to clients
    (``local-zone: "." refuse``) and, for Unbound's own look-ups, sent to a
    dead loopback port (a ``stub-zone`` for "." replaces the built-in root
    hints, so there is no root priming). ``extra`` adds lines to the
    ``server:`` clause (e.g. ``"aggressive-nsec: yes"``). ``stubs`` maps
    zones below the test zone to the ports of their own servers (a child
    zone served elsewhere than its parent: glue carries no port).
    """

    name = "unbound"
    program = "unbound"

    def __init__(self, directory: Path, port: int | None = None, extra: str = "",
                 stubs: dict[str, int] | None = None):
        super().__init__(directory, port)
        self.logfile = self.directory / "unbound.log"
        self.extra = extra
        self.stubs = dict(stubs or {})

    def _configure(self, anchors: list[dns.rrset.RRset]) -> None:
        d = self.directory
        anchor_file = d / "trust-anchors"
        anchor_file.write_text("".join(rrset.to_text() + "\n" for rrset in anchors))
        extra = "".join(f"    {line.strip()}\n" for line in self.extra.splitlines() if line.strip())
        stubs = "".join(
            f'stub-zone:\n    name: "{_zone_name(zone)}."\n    stub-addr: 127.0.0.1@{port}\n'
            "    stub-prime: no\n    stub-first: no\n\n"
            for zone, port in {self.zone: self.authority_port, **self.stubs}.items()
        )
        (d / "unbound.conf").write_text(
            f"""\
server:
    interface: 127.0.0.1@{self.port}
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    chroot: ""
    username: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    logfile: "{self.logfile}"
    use-syslog: no
    log-time-ascii: yes
    verbosity: 1
    val-log-level: 2
    log-servfail: yes
    num-threads: 1
    so-reuseport: no
    module-config: "validator iterator"
    trust-anchor-file: "{anchor_file}"
    trust-anchor-signaling: no
    root-key-sentinel: no
    harden-dnssec-stripped: yes
    harden-below-nxdomain: yes
    val-permissive-mode: no
    val-clean-additional: yes
    # Each query goes to the authoritative server: nothing is answered from
    # a cache older than a second, nor synthesised from cached NSEC records.
    cache-min-ttl: 0
    cache-max-ttl: 1
    cache-max-negative-ttl: 1
    val-bogus-ttl: 1
    infra-host-ttl: 1
    infra-keep-probing: yes
    serve-expired: no
    prefetch: no
    prefetch-key: no
    aggressive-nsec: no
    qname-minimisation: no
    target-fetch-policy: "0 0 0 0 0"
    # test. is one of Unbound's default local zones (RFC 6761): answered
    # locally with NXDOMAIN unless the zone under test is made transparent.
    local-zone: "." refuse
    local-zone: "{self.zone}." transparent
{extra}
{stubs}stub-zone:
    name: "."
    stub-addr: 127.0.0.1@{self.dead_port}
    stub-prime: no

remote-control:
    control-enable: no
"""
        )
        checked = subprocess.run(
            [_need("unbound-checkconf"), str(d / "unbound.conf")], capture_output=True, text=True, timeout=30
        )
        if checked.returncode != 0:
            raise RuntimeError(f"unbound-checkconf failed:\n{checked.stdout}{checked.stderr}")

    def _argv(self) -> list[str]:
        return [_need(self.program), "-d", "-c", str(self.directory / "unbound.conf")]


class BindResolver(Resolver):
    """BIND named as a validating resolver (``dnssec-validation yes`` with
    only the test's ``trust-anchors``: no built-in root key).

    The test zone is a ``static-stub`` zone at 127.0.0.1. BIND 9.18's
    ``server-addresses`` take no port, so the global ``port`` option (the
    destination port of named's outgoing queries) is the authoritative
    server's port, while ``listen-on port`` sets the resolver's own port.
    Every other name is forwarded (``forward only``) to a dead loopback
    port, so there is no root priming. ``extra`` adds statements to the
    ``options`` block.
    """

    name = "named-resolver"
    program = "named"

    def __init__(self, directory: Path, port: int | None = None, extra: str = ""):
        super().__init__(directory, port)
        self.extra = extra

    @staticmethod
    def _anchor_conf(anchors: list[dns.rrset.RRset]) -> str:
        lines = []
        for rrset in anchors:
            for rd in rrset:
                if rrset.rdtype == dns.rdatatype.DS:
                    lines.append(
                        f'"{rrset.name}" static-ds {rd.key_tag} {rd.algorithm} {rd.digest_type} "{rd.digest.hex().upper()}";'
                    )
                else:
                    key = base64.b64encode(rd.key).decode()
                    lines.append(f'"{rrset.name}" static-key {rd.flags} {rd.protocol} {rd.algorithm} "{key}";')
        return "trust-anchors {\n    " + "\n    ".join(lines) + "\n};\n"

    def _options(self) -> list[str]:
        d = self.directory
        return [
            f'directory "{d}";',
            f'pid-file "{d}/named.pid";',
            f'session-keyfile "{d}/session.key";',
            f'managed-keys-directory "{d}";',
            f"port {self.authority_port};",
            f"listen-on port {self.port} {{ 127.0.0.1; }};",
            "listen-on-v6 { none; };",
            "query-source address 127.0.0.1;",
            "recursion yes;",
            "allow-recursion { 127.0.0.0/8; };",
            "allow-query { 127.0.0.0/8; };",
            "allow-query-cache { 127.0.0.0/8; };",
            "notify no;",
            "dnssec-validation yes;",
            "dnssec-accept-expired no;",
            "qname-minimization off;",
            "max-cache-size 32M;",
            "max-cache-ttl 1;",
            "max-ncache-ttl 1;",
            "servfail-ttl 0;",
            "lame-ttl 0;",
            "stale-answer-enable no;",
            "prefetch 0;",
            "trust-anchor-telemetry no;",
            "root-key-sentinel no;",
            "empty-zones-enable no;",
        ]

    def _configure(self, anchors: list[dns.rrset.RRset]) -> None:
        d = self.directory
        # A statement in ``extra`` replaces the default of the same name.
        overridden = {chunk.split()[0] for chunk in self.extra.split(";") if chunk.strip()}
        options = [line for line in self._options() if line.split()[0] not in overridden]
        if self.extra.strip():
            options.append(self.extra.strip())
        (d / "named.conf").write_text(
            "options {\n    " + "\n    ".join(options) + "\n};\ncontrols { };\n"
            + self._anchor_conf(anchors)
            + textwrap.dedent(
                f"""\
                zone "{self.zone}" {{
                    type static-stub;
                    server-addresses {{ 127.0.0.1; }};
                    forwarders {{ }};
                }};
                zone "." {{
                    type forward;
                    forward only;
                    forwarders {{ 127.0.0.1 port {self.dead_port}; }};
                }};
                """
            )
        )
        checked = subprocess.run(
            [_need("named-checkconf"), str(d / "named.conf")], capture_output=True, text=True, timeout=30
        )
        if checked.returncode != 0:
            raise RuntimeError(f"named-checkconf failed:\n{checked.stdout}{checked.stderr}")

    def _argv(self) -> list[str]:
        # -g: foreground, log to stderr (named ignores the logging statement).
        # -d 1 adds the validator's reasons ("validating ...: ...") to the log.
        return [_need(self.program), "-g", "-d", "1", "-n", "1", "-c", str(self.directory / "named.conf")]


RESOLVERS = (Unbound, BindResolver)


# --------------------------------------------------------------------------
# An authoritative BIND named serving a zone file (e.g. one signed by BIND)


class NamedAuthority:
    """BIND named as the primary of one zone file, on 127.0.0.1:port."""

    name = "named-authority"

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.logfile = self.directory / "named.log"

    def start(self, zone: str, zone_text: str, zone_options: str = "", statements: str = "") -> "NamedAuthority":
        """Serve ``zone_text``; ``zone_options`` adds to the zone's block
        (e.g. ``dnssec-policy``, ``allow-update``), ``statements`` adds
        top-level statements (e.g. the ``dnssec-policy`` it names)."""
        d = self.directory
        zone = _zone_name(zone)
        (d / f"{zone}.zone").write_text(zone_text)
        (d / "named.conf").write_text(
            f'options {{ directory "{d}"; pid-file "{d}/named.pid"; session-keyfile "{d}/session.key"; '
            f"listen-on port {self.port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; recursion no; "
            "notify no; dnssec-validation no; allow-query { any; }; allow-transfer { 127.0.0.0/8; }; };\n"
            "controls { };\n"
            f"{statements}\n"
            f'zone "{zone}" {{ type primary; file "{d}/{zone}.zone"; {zone_options} }};\n'
        )
        with self.logfile.open("w") as out:
            self.proc = subprocess.Popen(
                [_need("named"), "-g", "-n", "1", "-c", str(d / "named.conf")],
                stdout=out, stderr=subprocess.STDOUT, cwd=d,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"named exited with {self.proc.returncode}:\n{self.log()}")
            try:
                r = dns.query.udp(dns.message.make_query(zone, "SOA"), "127.0.0.1", port=self.port, timeout=0.3)
                if r.rcode() == dns.rcode.NOERROR and r.answer:
                    return self
            except (dns.exception.Timeout, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"named did not serve {zone}:\n{self.log()}")

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --------------------------------------------------------------------------
# Denial of existence in answers


def covers(rrset: dns.rrset.RRset, name: dns.name.Name) -> bool:
    """Does this NSEC or NSEC3 RRset prove that ``name`` does not exist: is
    it strictly inside its span (canonical order, or NSEC3 hash order; the
    last record of the chain wraps around)? Anything else covers nothing."""
    if rrset.rdtype == dns.rdatatype.NSEC:
        low, high, point = rrset.name, rrset[0].next, name
    elif rrset.rdtype == dns.rdatatype.NSEC3:
        rdata = rrset[0]
        low = rrset.name[0].decode().upper()
        high = base64.b32hexencode(rdata.next).decode()
        point = dns.dnssec.nsec3_hash(name, rdata.salt, rdata.iterations, rdata.algorithm)
    else:
        return False
    return low < point < high if low < high else (point > low or point < high)


# --------------------------------------------------------------------------
# Signing with BIND's tools (a reference to compare aliasd with)


@dataclass
class SignedZone:
    zone: str
    text: str
    #: DS lines of the KSK (digest SHA-256), usable as trust anchors.
    ds: list[str] = field(default_factory=list)
    #: DNSKEY lines of the KSK, usable as trust anchors too.
    dnskey: list[str] = field(default_factory=list)
    #: Denial of existence by NSEC3 (else NSEC).
    nsec3: bool = False


def make_keys(directory: Path, zone: str, algorithm: str = "ECDSAP256SHA256") -> Path:
    """A KSK and a ZSK for ``zone`` in ``directory`` (``dnssec-keygen``)."""
    directory.mkdir(parents=True, exist_ok=True)
    zone = _zone_name(zone)
    for extra in (["-f", "KSK"], []):
        done = subprocess.run(
            [_need("dnssec-keygen"), "-q", "-K", str(directory), "-a", algorithm, *extra, zone],
            capture_output=True, text=True, timeout=30,
        )
        if done.returncode != 0:
            raise RuntimeError(f"dnssec-keygen failed:\n{done.stdout}{done.stderr}")
    return directory


def bind_sign(directory: Path, zone: str, zone_text: str, nsec3: bool = False, keys: Path | None = None) -> SignedZone:
    """``zone_text`` signed by ``dnssec-signzone -S`` with the keys in ``keys``
    (made with :func:`make_keys` in ``directory/keys`` when not given):
    NSEC, or NSEC3 with no salt and 0 extra iterations (RFC 9276)."""
    directory.mkdir(parents=True, exist_ok=True)
    zone = _zone_name(zone)
    keys = keys or make_keys(directory / "keys", zone)
    unsigned = directory / f"{zone}.zone"
    unsigned.write_text(zone_text)
    signed = directory / f"{zone}.signed"
    argv = [_need("dnssec-signzone"), "-S", "-K", str(keys), "-d", str(directory), "-o", zone, "-f", str(signed)]
    if nsec3:
        argv += ["-3", "-", "-H", "0"]
    done = subprocess.run([*argv, str(unsigned)], capture_output=True, text=True, timeout=60, cwd=directory)
    if done.returncode != 0:
        raise RuntimeError(f"dnssec-signzone failed:\n{done.stdout}{done.stderr}")
    ds = [line for line in (directory / f"dsset-{zone}.").read_text().splitlines() if line.strip()]
    dnskey = []
    for key_file in sorted(keys.glob(f"K{zone}.+*.key")):
        for line in key_file.read_text().splitlines():
            if line.strip() and not line.startswith(";") and " 257 " in line:
                dnskey.append(line)
    return SignedZone(zone, signed.read_text(), ds, dnskey, nsec3)


# --------------------------------------------------------------------------
# Offline zone verification


def axfr_text(zone: str, port: int, host: str = "127.0.0.1") -> str:
    """The zone as served by ``host:port`` (AXFR), as master-file text with
    absolute names, for :func:`dnssec_verify` and :func:`ldns_verify`."""
    zone = _zone_name(zone) + "."
    z = dns.zone.from_xfr(dns.query.xfr(host, zone, port=port, timeout=10, lifetime=30, relativize=False), relativize=False)
    return z.to_text(relativize=False)


def _verify(argv: list[str], zone_text: str, filename: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="aliasd-verify-") as tmp:
        path = Path(tmp) / filename
        path.write_text(zone_text)
        done = subprocess.run([*argv, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp)
    output = f"$ {' '.join(argv)} {filename}\n(exit {done.returncode})\n{done.stdout}{done.stderr}"
    return done.returncode == 0, output


def dnssec_verify(zone_name: str, zone_text: str, extra: list[str] = ()) -> tuple[bool, str]:
    """(ok, output) of ``dnssec-verify -o ZONE FILE``: every RRset signed by
    every algorithm of the DNSKEY set, complete NSEC/NSEC3 chain. ``extra``
    adds options (``-x``: DNSKEY set signed by KSKs only; ``-z``: ignore the
    KSK flag)."""
    zone = _zone_name(zone_name)
    return _verify([_need("dnssec-verify"), *extra, "-o", zone], zone_text, f"{zone}.zone")


def ldns_verify(zone_text: str, origin: str | None = None, extra: list[str] = ()) -> tuple[bool, str]:
    """(ok, output) of ``ldns-verify-zone FILE``: every signature valid now,
    NSEC/NSEC3 chain complete. ``origin`` adds a ``$ORIGIN`` line for text
    with relative names."""
    if origin is not None:
        zone_text = f"$ORIGIN {_zone_name(origin)}.\n{zone_text}"
    return _verify([_need("ldns-verify-zone"), *extra], zone_text, "zone")
