"""The flag-enum caches that parsing odd headers fills are trimmed."""

from __future__ import annotations

import struct

import dns.flags
import dns.message

from aliasd.base import enumcache


def test_odd_headers_fill_the_flag_cache_and_trim_empties_it():
    query = dns.message.make_query("example.com", "A", use_edns=0).to_wire()
    for flags in range(0, 65536, 7):  # every kind of header word, reserved bits too
        wire = bytearray(query)
        struct.pack_into("!H", wire, 2, flags & ~0x8000)
        try:
            dns.message.from_wire(bytes(wire))
        except Exception:
            pass
    cache = dns.flags.Flag._value2member_map_
    assert len(cache) > enumcache.LIMIT  # what a flood leaves behind
    assert enumcache.trim() > 0
    assert len(cache) <= len(dns.flags.Flag.__members__)
    # Parsing and flag arithmetic still work after a trim.
    message = dns.message.from_wire(query)
    assert message.flags & dns.flags.RD and dns.flags.Flag(0x0100 | 0x0010) == dns.flags.RD | dns.flags.CD
