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


def test_an_owners_text_in_the_view_digest_is_dnspythons_lowered():
    """The view digest kept in the state directory hashes each ALIAS owner's
    name as ``to_text().lower()``; the text joined from the labels must be
    that text for every name, escapes, relative names and the root included."""
    import random

    from aliasd.base import store

    rng = random.Random(1982)
    names = [dns.name.root, dns.name.from_text("c1.Example."), dns.name.from_text("a\\.b.example."),
             dns.name.from_text("x\\032y.example."), dns.name.from_text("\\@.example."),
             dns.name.from_text("*.Wild.example."), dns.name.from_text("q\\\"x.example."),
             dns.name.from_text("www", origin=None), dns.name.Name([b"\xc3\xa9", b"example", b""])]
    octets = list(range(256))
    for _ in range(5000):
        labels = [bytes(rng.choice(octets) if rng.random() < 0.2 else rng.choice(b"abXY09-_*")
                        for _ in range(rng.randrange(1, 10))) for _ in range(rng.randrange(1, 4))]
        names.append(dns.name.Name([*labels, b""]))
    for name in names:
        for form in (name, store.cached(name)):
            assert dependencies._lower_text(form) == form.to_text().lower(), form.labels
