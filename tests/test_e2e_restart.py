"""End to end: serials across restarts never go backwards nor move needlessly.

The state directory keeps each zone's served serial with a digest of its
transfer view, and the last good ALIAS addresses.
"""

from __future__ import annotations

import dns.rcode
import pytest

from tests.test_e2e_transfer import ZONE, config

pytestmark = pytest.mark.e2e


def serial(p) -> int:
    return p.query("example.com", "SOA").answer[0][0].serial


def test_restart_keeps_serial_and_addresses_when_nothing_changed(aliasd, upstream, tmp_path):
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=30)
    first = aliasd(config(upstream), {"example.com.zone": ZONE})
    first.wait_for(lambda: first.addresses("example.com") == {"203.0.113.1"})
    served = serial(first)
    assert served > 100  # moved off the file's serial when the ALIAS resolved
    first.stop()

    upstream.behave("target.upstream.test", "drop")  # upstream down during the restart
    second = aliasd(config(upstream), {"example.com.zone": ZONE})
    # Straight away: the same serial and the last good addresses, not the fallback.
    assert serial(second) == served
    assert second.addresses("example.com") == {"203.0.113.1"}
    assert "restart, view unchanged" in second.log()
    second.stop()

    upstream.set("target.upstream.test", "A", ["203.0.113.2"], ttl=30)
    third = aliasd(config(upstream), {"example.com.zone": ZONE})
    assert serial(third) in (served, served + 1)  # it may have refreshed already
    third.wait_for(lambda: third.addresses("example.com") == {"203.0.113.2"})
    assert serial(third) == served + 1


def test_newer_zone_file_serial_is_taken_and_an_older_one_never_served(aliasd, upstream, tmp_path):
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=30)
    first = aliasd(config(upstream), {"example.com.zone": ZONE})
    first.wait_for(lambda: first.addresses("example.com") == {"203.0.113.1"})
    served = serial(first)
    first.stop()

    # The operator edits the file without raising its serial: we go forward.
    edited = ZONE.replace("mail  A   192.0.2.25", "mail  A   192.0.2.26")
    second = aliasd(config(upstream), {"example.com.zone": edited})
    assert serial(second) == served + 1
    second.stop()

    # A serial far ahead in the file wins (RFC 1982 "greater").
    third = aliasd(config(upstream), {"example.com.zone": edited.replace(" 100 ", " 2030010100 ")})
    assert serial(third) == 2030010100
    assert third.query("mail.example.com").answer[0][0].address == "192.0.2.26"
    assert third.query("example.com", "SOA").rcode() == dns.rcode.NOERROR
