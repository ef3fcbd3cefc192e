"""Open TCP connections, counted for the connection limits.

Why a module of its own: with worker processes (aliasd.service.workers)
the main process and every worker accept connections on the same sockets,
and ``tcp-max-connections`` and ``tcp-max-per-client`` hold for the server
as a whole, not for each process. ``SharedConnectionCounts`` keeps the
counts in memory mapped before the fork: each process writes only its own
row (no lock, so a process killed at any moment blocks no one), and a
reader adds the rows up. Clients are counted by a hash of their address
into a fixed number of buckets: two clients in one bucket share a limit,
which a limit of connections per client (RFC 7766 6.2.2) tolerates.
"""

from __future__ import annotations

import collections
import mmap
import zlib


class ConnectionCounts:
    """Open connections in one process: in all and by client address."""

    def __init__(self):
        self.by_client: collections.Counter = collections.Counter()
        self._total = 0

    def total(self) -> int:
        return self._total

    def of(self, host: str) -> int:
        return self.by_client.get(host, 0)

    def opened(self, host: str | None) -> None:
        self._total += 1
        if host is not None:
            self.by_client[host] += 1

    def closed(self, host: str | None) -> None:
        self._total -= 1
        if host is not None:
            self.by_client[host] -= 1
            if self.by_client[host] <= 0:
                del self.by_client[host]


class SharedConnectionCounts:
    """Open connections of several processes (row 0: the main process, row
    N: worker N), readable by all of them; made before they are forked."""

    BUCKETS = 16384

    def __init__(self, rows: int, start: ConnectionCounts | None = None):
        self.rows = rows
        self.width = self.BUCKETS + 1  # the buckets, then the row's total
        self._memory = mmap.mmap(-1, rows * self.width * 4)  # anonymous and shared: seen across fork()
        self._counts = memoryview(self._memory).cast("i")
        self.row = 0  # the row this process writes
        if start is not None:  # the main process's connections so far
            for host, count in start.by_client.items():
                self._add(host, count)
            self._counts[self.width - 1] = start.total()

    def _bucket(self, host: str) -> int:
        return zlib.crc32(host.encode()) % self.BUCKETS

    def total(self) -> int:
        counts, width = self._counts, self.width
        return sum(counts[row * width + width - 1] for row in range(self.rows))

    def of(self, host: str) -> int:
        counts, width, bucket = self._counts, self.width, self._bucket(host)
        return sum(counts[row * width + bucket] for row in range(self.rows))

    def opened(self, host: str | None) -> None:
        self._counts[self.row * self.width + self.width - 1] += 1
        if host is not None:
            self._add(host, 1)

    def closed(self, host: str | None) -> None:
        self._counts[self.row * self.width + self.width - 1] -= 1
        if host is not None:
            self._add(host, -1)

    def _add(self, host: str, count: int) -> None:
        self._counts[self.row * self.width + self._bucket(host)] += count

    def clear_row(self, row: int) -> None:
        """Forget a dead process's connections (the kernel closed them)."""
        start = row * self.width
        self._counts[start:start + self.width] = memoryview(bytes(self.width * 4)).cast("i")
