"""Start a real ``twistd aliasd`` process on loopback, and talk to it."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

TWISTD = str(Path(sys.executable).with_name("twistd"))
REPO = Path(__file__).resolve().parent.parent


_HANDED_OUT: set[int] = set()



def _below_ephemeral() -> tuple[int, int]:
    """Ports below the kernel's ephemeral range (32768-60999 by default).

    No client socket of another process (dig, dnspython, a secondary's
    transfer) is given such a port, so none can take it between the check in
    ``free_port`` and the server's bind.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return (10000, low - 1) if low > 12000 else (low, 65535)


# Our own generator: tests that seed ``random`` must not make two concurrent
# test runs draw the same sequence of ports.
_PORTS = random.Random(os.urandom(16))
_PORT_RANGE = _below_ephemeral()


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 and ::1.

    Never the same port twice in one test run: two servers started in one
    test (aliasd and a secondary) must not be given the same number.
    """
    for _ in range(200):
        port = _PORTS.randint(*_PORT_RANGE)
        if port in _HANDED_OUT:
            continue
        try:
            for family, host, kind in (
                (socket.AF_INET, "127.0.0.1", socket.SOCK_STREAM),
                (socket.AF_INET, "127.0.0.1", socket.SOCK_DGRAM),
                (socket.AF_INET6, "::1", socket.SOCK_DGRAM),
                (socket.AF_INET6, "::1", socket.SOCK_STREAM),
            ):
                with socket.socket(family, kind) as s:
                    s.bind((host, port))
        except OSError:
            continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port found")


def run_twistd(
    args: list[str], cwd: Path, timeout: float = 20, uid_args: list[str] = ()
) -> subprocess.CompletedProcess:
    """Run ``twistd -n [UID_ARGS] aliasd ARGS`` expecting it to exit (start-up errors)."""
    if "--state-dir" not in args:
        args = [*args, "--state-dir", str(cwd / "state")]
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", *uid_args, "aliasd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class AliasdProcess:
    """One ``twistd -n aliasd`` child process, logging to a file."""

    def __init__(self, args: list[str], workdir: Path, port: int, host: str = "127.0.0.1"):
        if "--state-dir" not in args:  # never the default /var/lib/aliasd
            args = [*args, "--state-dir", str(workdir / "state")]
        self.args = args
        self.workdir = workdir
        self.port = port
        self.host = host
        self.logfile = workdir / "aliasd.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15) -> "AliasdProcess":
        self.proc = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", f"--logfile={self.logfile}", "aliasd", *self.args],
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read()
                raise RuntimeError(f"aliasd exited with {self.proc.returncode}: {out}\n{self.log()}")
            try:
                self.query(".", "SOA", timeout=0.3)
                return self
            except (dns.exception.Timeout, ConnectionError, OSError, dns.query.BadResponse):
                # (BadResponse: a late answer to an earlier probe, on a source port used again)
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"aliasd did not answer within {timeout}s\n{self.log()}")

    def log(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def query(
        self,
        name: str,
        rdtype: str = "A",
        *,
        tcp: bool = False,
        timeout: float = 2.0,
        host: str | None = None,
        **make_query_args,
    ) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, **make_query_args)
        q.flags &= ~dns.flags.RD
        send = dns.query.tcp if tcp else dns.query.udp
        return send(q, host or self.host, port=self.port, timeout=timeout)

    def addresses(self, name: str, rdtype: str = "A") -> set[str]:
        """The addresses in the answer section for ``name``/``rdtype``."""
        response = self.query(name, rdtype)
        wanted = dns.rdatatype.from_text(rdtype)
        return {r.to_text() for rrset in response.answer if rrset.rdtype == wanted for r in rrset}

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.2):
        """Poll ``predicate()`` until it returns a true value; return it."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout}s (last: {last!r})\n{self.log()}")
