"""Pieces the benchmark scripts share: generated zones, targets, memory."""

from __future__ import annotations

from pathlib import Path


def proc_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's memory from /proc (VmRSS now, VmHWM at its peak), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


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
