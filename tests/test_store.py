"""Unit tests: packed records (aliasd.base.store) and the zone snapshot (aliasd.zones.snapshot)."""

from __future__ import annotations

from pathlib import Path

import dns.name
import dns.rdatatype as T
import dns.rrset

from aliasd.base import store
from aliasd.zones.snapshot import Snapshot, stamp_of
from aliasd.zones.zonefile import read_with_dnspython
from tests.helpers import zone_source

N = dns.name.from_text


def rrsets():
    return [
        dns.rrset.from_text("Www.Example.com.", 300, "IN", "A", "192.0.2.1", "192.0.2.2"),
        dns.rrset.from_text("www.example.com.", 60, "IN", "MX", "10 Mail.Example.com."),
        dns.rrset.from_text("b.example.com.", 30, "IN", "TXT", '"one" "two"'),
    ]


def test_packed_rrsets_decode_to_the_same_rrsets_with_the_case_as_written():
    records = store.pack_rrsets(rrsets())
    assert list(records) == [store.key_of(N("www.example.com")), store.key_of(N("b.example.com"))]
    node = store.PackedNode(records[store.key_of(N("www.example.com"))])
    assert list(node) == [T.A, T.MX] and len(node) == 2 and T.TXT not in node
    a, mx = node[T.A], node.get(T.MX)
    original = rrsets()
    assert a == original[0] and a.ttl == 300 and a.name.to_text() == "Www.Example.com."
    assert mx == original[1] and mx.ttl == 60 and mx[0].exchange.to_text() == "Mail.Example.com."
    assert node.get(T.TXT) is None


def test_overrides_replace_remove_and_add_types():
    packed = store.pack_rrsets(rrsets()[:2])[store.key_of(N("www.example.com"))]
    flat = dns.rrset.from_text("www.example.com.", 5, "IN", "AAAA", "2001:db8::1")
    node = store.PackedNode(packed, None, {T.A: None, T.AAAA: flat})
    assert list(node) == [T.MX, T.AAAA] and node[T.AAAA] is flat and node.get(T.A) is None
    plain = store.PackedNode(packed)
    assert plain.same_as(store.PackedNode(packed), T.MX)  # equal bytes, nothing decoded
    assert not node.same_as(plain, T.A)  # removed on one side
    assert node.same_as(store.PackedNode(packed, None, {T.AAAA: flat}), T.AAAA)  # the same object


def test_suffixes_and_names_from_wire():
    key = store.key_of(N("a.b.example"))
    assert [store.name_of(s) for s in store.suffixes(key)] == [N("a.b.example"), N("b.example"), N("example"), N(".")]
    assert store.name_end(key + b"tail") == len(key)


def test_source_digest_ignores_the_serial_and_the_order_but_not_a_ttl():
    text = "$ORIGIN example.com.\n@ 300 SOA ns h {serial} 1 2 3 4\n@ 300 NS ns\nns 300 A 192.0.2.1\nb 300 TXT x\n"
    one = zone_source("example.com", text.format(serial=1))
    assert zone_source("example.com", text.format(serial=99)).digest == one.digest
    reordered = "$ORIGIN example.com.\n@ 300 SOA ns h 5 1 2 3 4\nb 300 TXT x\n@ 300 NS ns\nns 300 A 192.0.2.1\n"
    assert zone_source("example.com", reordered).digest == one.digest
    assert zone_source("example.com", text.format(serial=1).replace("b 300", "b 301")).digest != one.digest
    assert zone_source("example.com", text.format(serial=1).replace(" 1 2 3 4", " 1 2 3 5")).digest != one.digest



def test_source_digest_is_the_one_recorded_by_earlier_releases():
    """The content digest is kept in the state directory and compared at
    each start: a new way of computing it must give the very same value
    (this one from the release before the digest read packed nodes
    directly), for names in rdata lowered, rdatas sorted, the SOA serial
    left out, and single and multi-record RRsets alike."""
    text = ("$ORIGIN X.Test.\n$TTL 60\n@ SOA NS1.X.Test. Host.X.test. 7 1 1 1 1\n@ NS NS2.x.test.\n"
            "@ NS ns1.X.TEST.\n@ MX 20 Mail.X.Test.\n@ MX 10 b.x.test.\n@ TXT \"b\" \"c\"\n@ TXT \"a\"\n"
            "_s._tcp SRV 1 2 3 T.X.test.\n_s._tcp SRV 0 2 3 a.X.test.\na A 192.0.2.2\na A 192.0.2.1\n"
            "c CNAME Other.X.Test.\nh HINFO \"x\" \"y\"\n")
    expected = "bf67ec5414b5cc46a2508860af905f176f45d2d1a3a6976f3d31277ca51a7259"
    assert zone_source("X.Test", text).digest == expected
    assert read_with_dnspython(N("X.Test"), Path("x"), text).digest == expected

D1, D2 = b"1" * 32, b"2" * 32  # file digests (SHA-256)
C = "c" * 64  # a content digest


def test_snapshot_round_trip_in_the_state_store(tmp_path):
    source = zone_source("example.com", "$ORIGIN example.com.\n@ 300 SOA ns h 1 1 2 3 4\n@ 300 NS ns\n")
    key = N("Example.com").to_wire()
    snap = Snapshot(tmp_path)
    snap.put(key, D1, dict(source.records), source.digest)
    snap.save()
    for path in (snap.db.path, *snap.db.path.iterdir()):  # every zone's data: not for everyone
        assert path.stat().st_mode & 0o007 == 0, path
    again = _fresh(tmp_path)
    assert again.get(key, D1) == (D1, dict(source.records), source.digest, None)
    assert again.get(key, D2) is None  # another file content
    assert again.get(N("example.com").to_wire(), D1) is None  # the name's case shows in answers
    again.put(key, D2, {}, C)
    again.keep_only([key])
    again.save()
    assert _fresh(tmp_path).get(key, D2) == (D2, {}, C, None)
    again.keep_only([])
    again.save()  # no longer served: gone from the store
    assert _fresh(tmp_path).get(key, D2) is None


def test_a_snapshot_entry_keeps_its_files_stamp_and_is_found_by_it(tmp_path):
    """A restart takes a file whose stamp is the one kept without reading it
    (aliasd.service.reload.ZoneFiles); another stamp finds nothing."""
    fields = (512, 1_700_000_000_123_456_789, -5, 2**63 + 1, 2049)
    key, stamp = b"\x07example\x03com\x00", stamp_of(*fields)
    snap = Snapshot(tmp_path)
    snap.put(key, D1, {b"\0": b"x" * 40}, C, stamp)
    snap.save()
    again = _fresh(tmp_path)
    assert again.stamped(key, stamp) == (D1, {b"\0": b"x" * 40}, C, stamp)
    assert again.stamped(key, stamp_of(513, *fields[1:])) is None
    assert again.stamped(b"\x03org\x00", stamp) is None
    moved = stamp_of(*fields[:4], 2050)
    again.restamp(key, moved)  # read again, same digest, another device (a remount)
    again.save()
    assert _fresh(tmp_path).stamped(key, moved) is not None and _fresh(tmp_path).stamped(key, stamp) is None
    again.restamp(key, None)  # not settled yet: the kept stamp stays
    assert again.stamped(key, moved) is not None


def test_snapshot_lets_go_of_written_records_and_reads_them_back(tmp_path):
    """A parsed zone's records are a copy (the served ones change in place
    with updates): once written they are not kept twice in memory."""
    source = zone_source("example.com", "$ORIGIN example.com.\n@ 300 SOA ns h 1 1 2 3 4\n@ 300 NS ns\n")
    key = N("example.com").to_wire()
    snap = Snapshot(tmp_path)
    snap.put(key, D1, dict(source.records), source.digest)
    assert snap.entries[key][1] == dict(source.records)  # not written yet: kept
    snap.save()
    assert snap.entries[key] == (D1, None, source.digest, None)
    assert snap.get(key, D1) == (D1, dict(source.records), source.digest, None)
    assert snap.latest(key) == (D1, dict(source.records), source.digest, None)
    assert snap.get(key, D2) is None
    # Stamped again once settled (aliasd.service.reload): written with its records, found by the stamp.
    stamp = stamp_of(40, 1_700_000_000_000_000_000, 1_700_000_000_000_000_000, 7, 2049)
    snap.restamp(key, stamp)
    snap.save()
    assert snap.stamped(key, stamp) == (D1, dict(source.records), source.digest, stamp)
    assert _fresh(tmp_path).stamped(key, stamp) == (D1, dict(source.records), source.digest, stamp)


def _fresh(directory) -> Snapshot:
    """What another process would read (a new Snapshot reads the store again)."""
    return Snapshot(directory)


def test_entries_of_another_version_or_damaged_are_dropped_and_parsed_again(tmp_path, monkeypatch):
    from aliasd.zones import snapshot as snapshot_module

    snap = Snapshot(tmp_path)
    for i in range(3):
        snap.put(bytes([1, 65 + i, 0]), D1, {b"\0": bytes([i]) * 40}, C)
    snap.save()
    with snap.db.write() as txn:
        txn.put(bytes([1, 66, 0]), b"damaged", db=snap.db.compiled)
    damaged = _fresh(tmp_path)
    assert damaged.get(bytes([1, 65, 0]), D1) is not None and damaged.get(bytes([1, 66, 0]), D1) is None
    damaged.save()  # the damaged entry goes
    with snap.db.reading() as txn:
        assert txn.get(bytes([1, 66, 0]), db=snap.db.compiled) is None
    monkeypatch.setattr(snapshot_module, "_HEADER", b"aliasd zone snapshot 3 aliasd 9.9 dnspython 9.9")
    foreign = _fresh(tmp_path)
    assert foreign.get(bytes([1, 65, 0]), D1) is None
    foreign.put(bytes([1, 70, 0]), D2, {}, C)
    foreign.save()  # the other version's entries are dropped
    with snap.db.reading() as txn:
        assert [k for k, _ in txn.cursor(db=snap.db.compiled)] == [bytes([1, 70, 0])]
    assert _fresh(tmp_path).get(bytes([1, 70, 0]), D2) is not None


def test_cached_names_compare_as_dnspython_names_do():
    """CachedName compares its labels in C (dnspython's hash collides for
    names alike, and each collision was a comparison in Python), with
    dnspython's answers: case-insensitive, absolute apart from relative."""
    a, b = store.cached(dns.name.from_text("z1029.test.")), store.cached(dns.name.from_text("z1030.test."))
    assert hash(a) == hash(b) and a != b and not a == b  # (the collision)
    upper = store.cached(dns.name.from_text("Z1029.TEST."))
    pairs = [(a, upper), (a, b), (a, dns.name.from_text("z1029.test.")), (a, dns.name.from_text("z1029.TEST.")),
             (a, dns.name.from_text("z1029.test", origin=None)), (a, "z1029.test."),
             (store.cached(dns.name.from_text("z1029.test", origin=None)), dns.name.from_text("Z1029.test", origin=None))]
    for x, y in pairs:
        plain = dns.name.Name(x.labels)
        assert (x == y, x != y) == (plain == y, plain != y), (x, y)
    assert len({a: 1, b: 2, upper: 3}) == 2
