"""Unit tests: differences between versions and the IXFR journal."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rdatatype as T
import dns.rrset

from aliasd.replicate.journal import Journal, difference
from aliasd.replicate.numbering import Journals
from aliasd.replicate.transfer import IXFR_RRSETS_PER_MESSAGE, ixfr_rrsets, transfer_messages
from aliasd.zones.zone import Flattened, ZoneVersion
from tests.helpers import zone_source

N = dns.name.from_text
SOURCE = zone_source(
    "example.com",
    """\
    $ORIGIN example.com.
    @   300 SOA ns1 h 10 3600 600 86400 60
    @   300 NS ns1
    @   60 ALIAS lb.example.net.
    ns1 300 A 192.0.2.53
    """,
)
APEX = N("example.com")


def version(serial, addresses, ttl=60):
    rrset = dns.rrset.from_text_list(APEX, ttl, "IN", "A", addresses) if addresses else None
    return ZoneVersion.build(SOURCE, {APEX: Flattened({T.A: rrset, T.AAAA: None})}, serial=serial)


def test_difference_lists_removed_and_added_records():
    diff = difference(version(10, ["192.0.2.1", "192.0.2.2"]), version(11, ["192.0.2.2", "192.0.2.3"]))
    assert (diff.old_serial, diff.new_serial) == (10, 11)
    assert [r.to_text() for r in diff.removed] == ["example.com. 60 IN A 192.0.2.1"]
    assert [r.to_text() for r in diff.added] == ["example.com. 60 IN A 192.0.2.3"]


def test_ttl_change_removes_and_adds_the_whole_rrset():
    diff = difference(version(10, ["192.0.2.1"], ttl=60), version(11, ["192.0.2.1"], ttl=30))
    assert [r.ttl for r in diff.removed] == [60] and [r.ttl for r in diff.added] == [30]


def test_served_serial_replaces_the_file_serial_in_the_soa():
    v = version(12345, ["192.0.2.1"])
    assert v.serial == 12345 and v.soa[0].serial == 12345
    assert v.lookup(APEX, T.SOA).answer[0][0].serial == 12345
    assert next(v.transfer_rrsets()) is v.soa


def test_journal_chains_and_is_bounded_by_depth():
    journal = Journal(depth=2)
    v10, v11, v12, v13 = (version(s, [f"192.0.2.{s}"]) for s in (10, 11, 12, 13))
    journal.add(difference(v10, v11))
    journal.add(difference(v11, v12))
    assert [d.new_serial for d in journal.since(10)] == [11, 12]
    journal.add(difference(v12, v13))
    assert journal.since(10) is None  # dropped: bounded to 2
    assert [d.new_serial for d in journal.since(11)] == [12, 13]
    assert journal.since(13) is None


def test_journal_is_bounded_by_octets_keeps_the_newest_and_names_what_it_dropped():
    versions = [version(s, [f"192.0.2.{s % 250}"]) for s in range(10, 40)]
    journal = Journal(max_usage=1000)
    dropped = []
    for i, (a, b) in enumerate(zip(versions, versions[1:])):
        dropped += journal.add(difference(a, b), size=300, key=b"k%d" % i)
    assert journal.usage == 900 and len(journal) == 3
    assert dropped == [b"k%d" % i for i in range(26)]
    assert [d.new_serial for d in journal.since(36)] == [37, 38, 39]
    huge = Journal(max_usage=1000)
    huge.add(difference(versions[0], versions[1]), size=5000, key=b"big")
    assert len(huge) == 1  # the newest difference is kept whatever its size


def _recorded_journal(versions):
    """(a journal of the differences between ``versions`` as if recorded in
    the store, those differences by record key, the keys read back so far)."""
    diffs = {b"k%d" % i: difference(a, b) for i, (a, b) in enumerate(zip(versions, versions[1:]))}
    loaded = []

    def load(key):
        loaded.append(key)
        return diffs[key]

    journal = Journal(load=load)
    for key, diff in diffs.items():
        journal.add(diff, size=100, key=key)
    return journal, diffs, loaded


def test_recorded_differences_are_read_back_when_an_ixfr_needs_them():
    """Only the newest stay decoded; older ones come from the store."""
    versions = [version(s, [f"192.0.2.{s}"]) for s in range(10, 20)]
    journal, diffs, loaded = _recorded_journal(versions)
    assert [d.new_serial for d in journal.since(17)] == [18, 19] and loaded == []
    assert [d.new_serial for d in journal.since(10)] == list(range(11, 20))
    assert loaded == [b"k%d" % i for i in range(9 - Journal.keep_decoded)]


def test_a_gap_in_the_chain_clears_the_journal():
    journal = Journal()
    journal.add(difference(version(10, ["192.0.2.1"]), version(11, ["192.0.2.2"])))
    journal.add(difference(version(20, ["192.0.2.1"]), version(21, ["192.0.2.2"])))
    assert journal.since(10) is None and len(journal) == 1


def test_ixfr_answer_kinds():
    v10, v11 = version(10, ["192.0.2.1"]), version(11, ["192.0.2.2"])
    journal = Journal()
    journal.add(difference(v10, v11))
    kind, rrsets = ixfr_rrsets(v11, journal, 11)
    assert kind == "current" and rrsets == [v11.soa]
    kind, rrsets = ixfr_rrsets(v11, journal, 12)  # a client ahead of us
    assert kind == "current"
    kind, rrsets = ixfr_rrsets(v11, journal, 10)
    rrsets = list(rrsets)  # (read a difference at a time as the messages go)
    assert kind == "incremental"
    assert [r.rdtype for r in rrsets] == [T.SOA, T.SOA, T.A, T.SOA, T.A, T.SOA]
    assert [r[0].serial for r in rrsets if r.rdtype == T.SOA] == [11, 10, 11, 11]
    kind, rrsets = ixfr_rrsets(v11, journal, 3)
    rrsets = list(rrsets)
    assert kind == "full" and rrsets[0] is v11.soa and rrsets[-1] is v11.soa
    assert T.A in {r.rdtype for r in rrsets} and 65401 not in {r.rdtype for r in rrsets}


def test_all_histories_together_are_bounded_and_the_biggest_lose_first():
    versions = [version(s, [f"192.0.2.{s}"]) for s in range(10, 30)]
    diffs = [difference(a, b) for a, b in zip(versions, versions[1:])]
    journals = Journals(total_max=2000)
    big, small = N("big.example"), N("small.example")
    dropped = []
    for i, diff in enumerate(diffs):  # 19 differences of 200 octets: 3,800
        dropped += journals.add(big, diff, size=200, key=b"b%d" % i)
    for i, diff in enumerate(diffs[:3]):  # 600
        dropped += journals.add(small, diff, size=200, key=b"s%d" % i)
    assert dropped == []  # no zone is past its own bound
    assert journals.usage == sum(j.usage for j in journals.values()) == 19 * 200 + 600  # kept as they change
    dropped = journals.trim_total()
    assert journals.usage <= 2000 and journals.usage == sum(j.usage for j in journals.values())
    assert len(journals[small]) == 3  # the churning zone paid for it
    assert dropped == [b"b%d" % i for i in range(12)] and len(journals[big]) == 7


def test_an_incremental_answer_reads_each_difference_when_the_messages_reach_it():
    """A secondary far behind is answered a message at a time: nothing of
    its history is read from the store before the answer starts."""
    versions = [version(s, [f"192.0.2.{s}"]) for s in range(10, 30)]
    journal, diffs, loaded = _recorded_journal(versions)
    kind, rrsets = ixfr_rrsets(versions[-1], journal, 10)
    assert kind == "incremental" and loaded == []
    first = [next(rrsets) for _ in range(5)]  # SOA, then the first difference: old SOA, A, new SOA, A
    assert [r[0].serial for r in first if r.rdtype == T.SOA] == [29, 10, 11] and loaded == [b"k0"]
    rest = list(rrsets)
    assert len(loaded) == len(diffs) - Journal.keep_decoded and rest[-1] is versions[-1].soa


def test_a_long_history_of_small_differences_goes_a_few_dozen_rrsets_a_message():
    """Each message of an incremental answer decodes and renders at most
    IXFR_RRSETS_PER_MESSAGE RRsets (a catalog's history of one member per
    difference filled 64 KiB messages: 0.1 s of one reactor turn each);
    the messages read back as the whole answer, in order."""
    versions = [version(s, [f"192.0.2.{s % 250}"]) for s in range(10, 110)]
    journal, diffs, loaded = _recorded_journal(versions)
    kind, rrsets = ixfr_rrsets(versions[-1], journal, 10)
    expected = list(ixfr_rrsets(versions[-1], journal, 10)[1])
    loaded.clear()
    query = dns.message.make_query("example.com", "IXFR")
    messages = transfer_messages(query, versions[-1], ("ixfr", kind, 10), rrsets)
    first = dns.message.from_wire(next(messages), xfr=True, origin=None)
    assert len(first.answer) == IXFR_RRSETS_PER_MESSAGE
    assert len(loaded) <= IXFR_RRSETS_PER_MESSAGE // 4 + 1  # the differences in it, no more
    rest = [dns.message.from_wire(w, xfr=True, origin=None) for w in messages]
    assert all(len(m.answer) <= IXFR_RRSETS_PER_MESSAGE for m in rest)
    assert len(rest) == (len(expected) - 1) // IXFR_RRSETS_PER_MESSAGE
    got = [rrset for m in [first, *rest] for rrset in m.answer]
    assert [(r.name, r.rdtype, sorted(rd.to_text() for rd in r)) for r in got] == [
        (r.name, r.rdtype, sorted(rd.to_text() for rd in r)) for r in expected]


def test_a_difference_compared_in_wire_form_is_the_record_sets_difference():
    """difference() compares and keeps records in wire form (nothing
    decoded); over random zone files and flattened ALIAS addresses, what it
    removes and adds is exactly the record sets' difference, records alike
    by dnspython's comparison (names in rdata regardless of case), a TTL
    change removing and adding the whole RRset: the served view, replayed
    from the old one through it, is the new one."""
    import random

    rng = random.Random(1995)
    owners = ["@", "www", "mail", "MAIL", "x.y"]
    lines = ["NS ns1", "NS NS1", "A 192.0.2.1", "A 192.0.2.2", "MX 10 mail", "MX 10 Mail", "MX 20 mail",
             "TXT \"a\"", "TXT \"A\"", "CNAME www"]

    def make(serial):
        body = []
        for owner in owners:
            for line in rng.sample(lines, rng.randint(0, 3)):
                if line.startswith("CNAME") or (owner == "@" and line.startswith("NS")):
                    continue
                body.append(f"{owner} {rng.choice([60, 300])} {line}")
        text = "$ORIGIN example.com.\n@ 300 SOA ns1 h 10 3600 600 86400 60\n@ 300 NS ns1\n@ 60 ALIAS lb.example.net.\n"
        source = zone_source("example.com", text + "\n".join(body) + "\n")
        addresses = rng.sample(["192.0.2.7", "192.0.2.8", "192.0.2.9"], rng.randint(0, 2))
        rrset = dns.rrset.from_text_list(APEX, rng.choice([30, 60]), "IN", "A", addresses) if addresses else None
        return ZoneVersion.build(source, {APEX: Flattened({T.A: rrset, T.AAAA: None})}, serial=serial)

    def view(v):  # (owner, type) -> (TTL, records), as served
        out = {}
        for rrset in v.transfer_rrsets():
            if rrset.rdtype not in (T.SOA, 65401) and len(rrset):
                out[(rrset.name, rrset.rdtype)] = (rrset.ttl, set(rrset))
        return out

    old = make(10)
    for serial in range(11, 111):
        new = make(serial)
        diff = difference(old, new)
        gone = {(r.name, r.rdtype, r.ttl): set(r) for r in diff.removed}
        for rrset in diff.added:  # nothing removed and added again, unless its TTL changed
            assert not gone.get((rrset.name, rrset.rdtype, rrset.ttl), set()) & set(rrset), serial
        replayed = view(old)
        for rrset in diff.removed:
            ttl, records = replayed[(rrset.name, rrset.rdtype)]
            assert ttl == rrset.ttl and set(rrset) <= records, serial
            records -= set(rrset)
            if not records:
                del replayed[(rrset.name, rrset.rdtype)]
        for rrset in diff.added:
            ttl, records = replayed.setdefault((rrset.name, rrset.rdtype), (rrset.ttl, set()))
            assert ttl == rrset.ttl and not records & set(rrset), serial
            records |= set(rrset)
        assert replayed == view(new), serial
        old = new
