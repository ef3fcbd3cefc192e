"""Keep dnspython's flag enums from growing with every odd header.

dnspython turns a message's flags word into ``dns.flags.Flag`` (and the
EDNS flags into ``dns.flags.EDNSFlag``); Python's ``enum`` caches a
pseudo-member for every distinct value it sees. Legitimate traffic uses a
handful of values, but a client sending all 65536 header words (opcode,
rcode and reserved bits included) makes each enum keep 65536 objects,
about 27 MiB each (measured with Python 3.11), for the life of the process.
``trim`` drops the cached pseudo-members beyond the real ones; they are
made again when needed and nothing compares flags by identity. A
TimerService runs it once a minute.
"""

from __future__ import annotations

import dns.flags
from twisted.application import internet

#: More cached values than this, and the cache is trimmed.
LIMIT = 1024
_ENUMS = (dns.flags.Flag, dns.flags.EDNSFlag)


def trim(limit: int = LIMIT) -> int:
    """Drop cached pseudo-members past ``limit``; returns how many went."""
    removed = 0
    for enum_class in _ENUMS:
        cache = getattr(enum_class, "_value2member_map_", None)
        if cache is None or len(cache) <= limit:
            continue
        members = {member.value for member in enum_class.__members__.values()}
        for value in [v for v in cache if v not in members]:
            del cache[value]
            removed += 1
    return removed


def service(interval: float = 60.0) -> internet.TimerService:
    return internet.TimerService(interval, trim)
