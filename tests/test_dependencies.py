"""Unit tests: what ALIAS owners of one target share when they are followed
(aliasd.resolve.dependencies: parts and served text made once per target)."""

from __future__ import annotations

import dns.name
import dns.rdatatype

from aliasd.resolve import dependencies
from aliasd.zones.zone import FlatRRsets, Flattened

A, AAAA = dns.rdatatype.A, dns.rdatatype.AAAA


def parts(a: str, aaaa: str, ttl: int = 300) -> tuple:
    return ((A, ttl, dependencies._rdatas(A, (a,))), (AAAA, ttl, dependencies._rdatas(AAAA, (aaaa,))))


def fresh_rdatas(a: str, aaaa: str, ttl: int = 300) -> tuple:
    """Equal rdatas, but not the very objects _rdatas keeps."""
    rdatas = dependencies._rdatas.__wrapped__
    return ((A, ttl, rdatas(A, (a,))), (AAAA, ttl, rdatas(AAAA, (aaaa,))))


def test_owners_of_one_target_share_one_parts_object_equal_ones_too():
    first = dependencies._shared_parts(parts("192.0.2.1", "2001:db8::1"))
    assert dependencies._shared_parts(parts("192.0.2.1", "2001:db8::1")) is first
    assert dependencies._shared_parts(fresh_rdatas("192.0.2.1", "2001:db8::1")) is first
    other = dependencies._shared_parts(parts("192.0.2.2", "2001:db8::1"))
    assert other is not first and other[0][2][0].to_text() == "192.0.2.2"
    assert dependencies._shared_parts(parts("192.0.2.1", "2001:db8::1", ttl=60)) is not first


def test_the_served_text_kept_per_parts_is_the_one_each_owner_would_get():
    shared = dependencies._shared_parts(parts("192.0.2.7", "2001:db8::7"))
    owners = [dns.name.from_text(f"c{i}.example") for i in range(3)]
    texts = [dependencies._served(None, o, Flattened(FlatRRsets(o, shared))) for o in owners]
    made = dependencies._served_text(None, owners[0], Flattened(FlatRRsets(owners[0], shared)))
    assert texts == [made] * 3 and "192.0.2.7" in made and "2001:db8::7" in made
    looped = dependencies._served(None, owners[0], Flattened(FlatRRsets(owners[0], shared), loop=True))
    assert looped != made and looped.startswith("(True")
    other = dependencies._shared_parts(parts("192.0.2.8", "2001:db8::7"))
    assert "192.0.2.8" in dependencies._served(None, owners[0], Flattened(FlatRRsets(owners[0], other)))
