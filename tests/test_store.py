"""Unit tests: packed records (aliasd.store) and the zone snapshot (aliasd.snapshot)."""

from __future__ import annotations

import dns.name
import dns.rdatatype as T
import dns.rrset

from aliasd import store
from aliasd.snapshot import Snapshot
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


def test_snapshot_round_trip_append_and_rewrite(tmp_path):
    source = zone_source("example.com", "$ORIGIN example.com.\n@ 300 SOA ns h 1 1 2 3 4\n@ 300 NS ns\n")
    snap = Snapshot(tmp_path)
    snap.put(source.key, b"d1", dict(source.records), source.digest)
    snap.save()
    again = Snapshot(tmp_path)
    assert again.get(source.key, b"d1") == (b"d1", dict(source.records), source.digest)
    assert again.get(source.key, b"other digest") is None
    assert again.get(store.key_of(N("example.net")), b"d1") is None
    again.put(source.key, b"d2", {}, "x")
    again.save()  # appended: the later frame wins
    assert Snapshot(tmp_path).get(source.key, b"d2") == (b"d2", {}, "x")
    assert Snapshot(tmp_path).get(source.key, b"d1") is None


def test_a_damaged_or_foreign_snapshot_is_ignored(tmp_path):
    snap = Snapshot(tmp_path)
    for i in range(3):
        snap.put(bytes([i]), b"d", {b"k": b"v"}, "c")
    snap.save()
    data = snap.path.read_bytes()
    snap.path.write_bytes(data[:-3])  # the last frame cut short
    cut = Snapshot(tmp_path)
    assert cut.get(bytes([0]), b"d") is not None and cut.get(bytes([2]), b"d") is None
    snap.path.write_bytes(b"aliasd zone snapshot 0 python 2.7\n" + data.split(b"\n", 1)[1])
    assert Snapshot(tmp_path).get(bytes([0]), b"d") is None


def test_snapshot_rewrites_when_mostly_outdated(tmp_path):
    snap = Snapshot(tmp_path)
    snap.slack = 0
    for round in range(3):
        for i in range(600):
            snap.put(i.to_bytes(2, "big"), bytes([round]), {}, "c")
        snap.save()
    size = snap.path.stat().st_size
    reread = Snapshot(tmp_path)
    reread.load()
    assert reread._frames == 600  # rewritten at the third round, not 1,800 frames
    assert reread.get((5).to_bytes(2, "big"), bytes([2])) is not None
    reread.keep_only([(5).to_bytes(2, "big")])
    reread._rewrite()
    assert reread.path.stat().st_size < size / 100
