"""Unit tests: packed records (aliasd.base.store) and the zone snapshot (aliasd.zones.snapshot)."""

from __future__ import annotations

import dns.name
import dns.rdatatype as T
import dns.rrset

from aliasd.base import store
from aliasd.zones.snapshot import Snapshot
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


D1, D2 = b"1" * 32, b"2" * 32  # file digests (SHA-256)
C = "c" * 64  # a content digest


def test_snapshot_round_trip_append_and_rewrite(tmp_path):
    source = zone_source("example.com", "$ORIGIN example.com.\n@ 300 SOA ns h 1 1 2 3 4\n@ 300 NS ns\n")
    key = N("Example.com").to_wire()
    snap = Snapshot(tmp_path)
    snap.put(key, D1, dict(source.records), source.digest)
    snap.save()
    assert snap.path.stat().st_mode & 0o777 == 0o640  # every zone's data: not for everyone
    again = Snapshot(tmp_path)
    assert again.get(key, D1) == (D1, dict(source.records), source.digest)
    assert again.get(key, D2) is None  # another file content
    assert again.get(N("example.com").to_wire(), D1) is None  # the name's case shows in answers
    again.put(key, D2, {}, C)
    again.save()  # appended: the later frame wins
    assert Snapshot(tmp_path).get(key, D2) == (D2, {}, C)
    assert Snapshot(tmp_path).get(key, D1) is None


def test_a_damaged_or_foreign_snapshot_is_ignored_from_there_on_and_rewritten(tmp_path):
    snap = Snapshot(tmp_path)
    for i in range(3):
        snap.put(bytes([1, 65 + i, 0]), D1, {b"\0": bytes([i]) * 40}, C)
    snap.save()
    data = snap.path.read_bytes()
    frame = (len(data) - data.index(b"\n") - 1) // 3
    flipped = bytearray(data)
    flipped[-frame - 10] ^= 1  # one octet of the second frame's records
    snap.path.write_bytes(bytes(flipped))
    damaged = Snapshot(tmp_path)
    assert damaged.get(bytes([1, 65, 0]), D1) is not None
    assert damaged.get(bytes([1, 66, 0]), D1) is None and damaged.get(bytes([1, 67, 0]), D1) is None
    damaged.save()  # nothing new, but the file is rewritten whole
    assert Snapshot(tmp_path).get(bytes([1, 65, 0]), D1) is not None
    snap.path.write_bytes(data[:-3])  # the last frame cut short by a crash
    cut = Snapshot(tmp_path)
    assert cut.get(bytes([1, 66, 0]), D1) is not None and cut.get(bytes([1, 67, 0]), D1) is None
    cut.put(bytes([1, 68, 0]), D1, {}, C)
    cut.save()  # a rewrite, not an append behind the broken frame
    assert Snapshot(tmp_path).get(bytes([1, 68, 0]), D1) is not None
    snap.path.write_bytes(b"aliasd zone snapshot 1 python 3.11\n" + data.split(b"\n", 1)[1])
    foreign = Snapshot(tmp_path)
    assert foreign.get(bytes([1, 65, 0]), D1) is None
    foreign.put(bytes([1, 65, 0]), D2, {}, C)
    foreign.save()
    assert Snapshot(tmp_path).get(bytes([1, 65, 0]), D2) is not None


def test_snapshot_rewrites_when_mostly_outdated(tmp_path):
    snap = Snapshot(tmp_path)
    snap.slack = 0
    for round in range(3):
        for i in range(600):
            snap.put(i.to_bytes(2, "big"), bytes([round]) * 32, {}, C)
        snap.save()
    size = snap.path.stat().st_size
    reread = Snapshot(tmp_path)
    reread.load()
    assert reread._frames == 600  # rewritten at the third round, not 1,800 frames
    assert reread.get((5).to_bytes(2, "big"), bytes([2]) * 32) is not None
    reread.keep_only([(5).to_bytes(2, "big")])
    reread._rewrite(reread.entries)
    assert reread.path.stat().st_size < size / 100


def _digest_as_before(source) -> str:
    """The digest aliasd recorded in its state directory before the packed
    store (per RRset, dnspython's canonical forms): an upgrade must find
    the same value, or every zone's serial moves at the first restart."""
    import hashlib

    total = 0
    for (name, rdtype), rrset in source.rrsets.items():
        if rdtype == T.SOA:
            rdatas = [rrset[0].replace(serial=0).to_digestable()]
        else:
            rdatas = sorted(r.to_digestable() for r in rrset)
        h = hashlib.sha256(name.canonicalize().to_wire())
        h.update(rdtype.to_bytes(2, "big") + rrset.ttl.to_bytes(4, "big"))
        for rdata in rdatas:
            h.update(len(rdata).to_bytes(2, "big") + rdata)
        total = (total + int.from_bytes(h.digest(), "big")) % 2**256
    return f"{total:064x}"


def test_the_digest_is_the_one_recorded_before_and_tells_apart_what_framing_could_not():
    text = """\
        $ORIGIN Example.com.
        @ 300 SOA NS1 h 1 1 2 3 4
        @ 300 NS NS1
        @ 300 MX 10 Mail.Example.com.
        @ 60 TXT "v=spf1 -all"
        www 300 CNAME @
        NS1 300 A 192.0.2.1
        x 300 SPF ""
        x 300 SPF "" "" "," "" "\\009abcdefghi"
        srv 300 SRV 1 2 3 Target.Example.com.
        """
    source = zone_source("example.com", text)
    assert source.digest == _digest_as_before(source)
    # Two different contents whose records would run together in one
    # stream per owner: one hash per RRset keeps them apart.
    other = zone_source("example.com", text.replace('x 300 SPF "" "" "," "" "\\009abcdefghi"', 'x 300 TXT "abcdefghi"'))
    assert other.digest != source.digest and other.digest == _digest_as_before(other)
    # RRsets of one owner written in another order: the same content.
    lines = text.splitlines()
    swapped = "\n".join(lines[:3] + [lines[4], lines[3]] + lines[5:]) + "\n"
    assert zone_source("example.com", swapped).digest == source.digest


def test_the_digest_shortcuts_agree_with_dnspythons_canonical_form():
    """The digest lower-cases names in rdata without decoding for common
    types; dnspython's to_digestable is the oracle for each of them."""
    text = """\
        $ORIGIN Ex.COM.
        @ 300 SOA Ns.Ex.COM. HostMaster.Ex.COM. 7 1 2 3 4
        @ 300 NS NS1.Other.NET.
        @ 300 MX 65 MAIL.Ex.COM.
        @ 300 ALIAS LB.Cdn.NET.
        c 300 CNAME Target.EX.com.
        p 300 PTR Host.EX.com.
        d 300 DNAME New.EX.com.
        _s._tcp 300 SRV 65 90 80 Srv.EX.com.
        h 300 HINFO "Pc" "Linux"
        """
    source = zone_source("Ex.COM", text)
    assert source.digest == _digest_as_before(source)
    lower = zone_source("Ex.COM", text.replace("LB.Cdn.NET.", "lb.cdn.net."))
    assert lower.digest != source.digest  # ALIAS targets are kept as written (dnspython does)
    assert lower.digest == _digest_as_before(lower)
