"""Pieces the benchmark scripts share: generated zones, targets, memory, an upstream."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def proc_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's memory from /proc (VmRSS now, VmHWM at its peak), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (aliasd's workers, PowerDNS has threads only)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def wait_workers(pid: int, workers: int | None, timeout: float = 60) -> None:
    """Until aliasd runs its workers (forked once the first load is served)."""
    wanted = 1 + (workers if workers and workers > 1 else 0)
    deadline = time.monotonic() + timeout
    while len(process_tree(pid)) < wanted and time.monotonic() < deadline:
        time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every descendant, reaped ones
    included (their times are added to the parent's cutime/cstime)."""
    ticks = 0
    for index, member in enumerate(process_tree(pid)):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[11:15] = utime, stime, cutime, cstime (stat fields 14-17)
        ticks += int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if index == 0 else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def pss_mib(pid: int) -> float:
    """Proportional set size of ``pid`` and its descendants together, in MiB:
    pages shared between them (forked workers) counted once."""
    kib = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    kib += int(line.split()[1])
        except OSError:
            continue
    return kib / 1024


def start_tree(tree: str, config: Path, workdir: Path, port: int, timeout: float):
    """``twistd aliasd --config CONFIG`` of the code tree ``tree`` (put
    first on its PYTHONPATH), started: an AliasdProcess."""
    from tests.aliasd_process import AliasdProcess

    env_before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = tree
    try:
        return AliasdProcess(["--config", str(config)], workdir, port).start(timeout=timeout)
    finally:
        if env_before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = env_before


def workers_list(text: str | None) -> list[int | None]:
    """``--workers 1,2`` -> [1, 2]; unset -> [None] (the configuration's default)."""
    return [None] if not text else [int(w) for w in text.split(",")]


def target_addresses(t: int) -> tuple[str, str]:
    """The A and AAAA address of generated ALIAS target number ``t``."""
    return f"198.51.{100 + t // 250}.{t % 250}", f"2001:db8::{t:x}"


def serve_targets(upstream, count: int, ttl: int) -> None:
    """Make a test upstream answer t0.cdn.test ... with their addresses."""
    for t in range(count):
        a, aaaa = target_addresses(t)
        upstream.set(f"t{t}.cdn.test", "A", [a], ttl=ttl)
        upstream.set(f"t{t}.cdn.test", "AAAA", [aaaa], ttl=ttl)


def zone_text(origin: str, records: int, aliases: int, targets: int) -> str:
    """A zone of ``records`` A records and ``aliases`` ALIAS over ``targets``."""
    lines = [f"$ORIGIN {origin}.", "$TTL 300", "@ SOA ns1 hostmaster 1 86400 600 864000 60", "@ NS ns1", "ns1 A 192.0.2.53"]
    lines += [f"h{i} A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(records)]
    lines += [f"a{i} ALIAS t{i % targets}.cdn.test." for i in range(aliases)]
    return "\n".join(lines) + "\n"


def bytecode(compiled: bool) -> str:
    """Compile aliasd's modules the way an install does (pip without -e, a
    distro package), or remove their bytecode to measure a source checkout
    (PYTHONDONTWRITEBYTECODE: every start compiles them, about 0.2 s).
    Returns which, for the report."""
    repo = Path(__file__).resolve().parent.parent
    packages = [repo / "aliasd", repo / "twisted" / "plugins"]
    if compiled:
        for package in packages:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
        return "aliasd's modules compiled (.pyc, as installed)"
    for package in packages:
        for cache in package.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
    return "aliasd's modules without .pyc (a source checkout under PYTHONDONTWRITEBYTECODE)"


def find_program(name: str) -> str | None:
    """The path of a program in PATH or /usr/sbin (named, pdns_server, knotd)."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def targets_zone_text(count: int, serial: int = 1, ttl: int = 300, override: dict | None = None) -> str:
    """cdn.test with t0 ... t{count-1}; ``override`` maps t -> (A, AAAA)."""
    lines = ["$ORIGIN cdn.test.", f"$TTL {ttl}", f"@ SOA ns1 h {serial} 3600 600 86400 60", "@ NS ns1", "ns1 A 192.0.2.53"]
    for t in range(count):
        a, aaaa = (override or {}).get(t) or target_addresses(t)
        lines += [f"t{t} A {a}", f"t{t} AAAA {aaaa}"]
    return "\n".join(lines) + "\n"


class UpstreamNamed:
    """BIND ``named`` on 127.0.0.1:port, authoritative for the ALIAS targets
    (cdn.test, ``targets_zone_text``); ``change`` rewrites the zone and reloads."""

    def __init__(self, directory: Path, port: int, targets: int, ttl: int = 300):
        self.directory, self.port, self.targets, self.ttl = directory, port, targets, ttl
        self.serial = 1
        self.override: dict = {}
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cdn.zone").write_text(targets_zone_text(targets, ttl=ttl))
        (directory / "upstream.conf").write_text(
            f'options {{ directory "{directory}"; pid-file "{directory}/named.pid";'
            f' session-keyfile "{directory}/session.key"; listen-on port {port} {{ 127.0.0.1; }};'
            f' listen-on-v6 {{ none; }}; recursion no; dnssec-validation no; notify no; }};\ncontrols {{ }};\n'
            f'zone "cdn.test" {{ type primary; file "{directory}/cdn.zone"; }};\n'
        )
        self.proc = subprocess.Popen(
            [find_program("named"), "-g", "-c", str(directory / "upstream.conf")],
            stdout=(directory / "upstream.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def change(self, t: int, a: str, aaaa: str) -> None:
        """Serve new addresses for target ``t`` (new serial, SIGHUP: named reloads)."""
        self.serial += 1
        self.override[t] = (a, aaaa)
        (self.directory / "cdn.zone").write_text(
            targets_zone_text(self.targets, self.serial, self.ttl, self.override)
        )
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
