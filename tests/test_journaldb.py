"""Unit tests: the zones' journals in the state store (aliasd.replicate.journaldb)
and what a dynamic zone serves at start and at reload (aliasd.update.dynamic)."""

from __future__ import annotations

import hashlib

import dns.name
import dns.rdata
import dns.rdatatype
import dns.rrset

from aliasd.base import store
from aliasd.base.db import StateDB
from aliasd.replicate import journaldb
from aliasd.replicate.journal import Journal, difference
from aliasd.update.dynamic import DynamicZones, master_file_text
from aliasd.zones.zone import Flattened, ZoneVersion
from aliasd.zones.zonefile import ZoneSource, parse_zone
from tests.helpers import zone_source

N = dns.name.from_text
ORIGIN = N("example.com.")
TEXT = """
$ORIGIN example.com.
$TTL 300
@ SOA ns1 hostmaster 10 3600 600 86400 300
@ NS ns1
@ ALIAS lb.example.net.
ns1 A 192.0.2.1
www A 192.0.2.10
"""


SOURCE = zone_source("example.com.", TEXT)


def version(serial, addresses):
    rrset = dns.rrset.from_text_list(ORIGIN, 60, "IN", "A", addresses)
    return ZoneVersion.build(SOURCE, {ORIGIN: Flattened({dns.rdatatype.A: rrset, dns.rdatatype.AAAA: None})},
                             serial=serial)


def journals(directory) -> journaldb.JournalStore:
    return journaldb.JournalStore(StateDB(directory))


def test_frames_cut_short_or_damaged_end_a_file_of_an_earlier_release():
    a, b, c = (journaldb.file_frame(journaldb.BASE, x * 32) for x in (b"a", b"b", b"c"))
    assert [p for _, p in journaldb.read_frames(a + b + c[:-5])[0]] == [b"a" * 32, b"b" * 32]
    damaged = bytearray(a + b)
    damaged[-1] ^= 0xFF  # the second frame's payload no longer matches its CRC
    frames, end = journaldb.read_frames(bytes(damaged))
    assert [p for _, p in frames] == [b"a" * 32] and end == len(a)


def test_each_zone_reads_its_own_records_in_order_across_rewrites(tmp_path):
    files = journals(tmp_path)
    one, other = store.key_of(ORIGIN), store.key_of(N("example.co"))  # a prefix of the other's text
    files.append(one, [journaldb.frame(journaldb.BASE, b"a" * 32)])
    files.append(other, [journaldb.frame(journaldb.BASE, b"x" * 32)])
    files.append(one, [journaldb.frame(journaldb.BASE, b"b" * 32), journaldb.frame(journaldb.UPDATE, b"u")])
    assert files.read(one) == [(b"B", b"a" * 32), (b"B", b"b" * 32), (b"U", b"u")]
    assert files.keys() == {one, other}
    files.rewrite(one, [journaldb.frame(journaldb.SNAPSHOT, b"s")])
    fresh = journaldb.JournalStore(files.db)  # as after a restart: sequence numbers read from the store
    fresh.append(one, [journaldb.frame(journaldb.UPDATE, b"v")])
    assert fresh.read(one) == [(b"S", b"s"), (b"U", b"v")]
    assert fresh.read(other) == [(b"B", b"x" * 32)]
    fresh.remove(one)
    assert not fresh.exists(one) and fresh.exists(other)


def test_history_is_used_only_when_it_ends_at_the_version_served(tmp_path):
    v10, v11, v12 = version(10, ["192.0.2.1"]), version(11, ["192.0.2.2"]), version(12, ["192.0.2.3"])
    files = journals(tmp_path)
    key = store.key_of(ORIGIN)
    files.append(key, [
        journaldb.frame(journaldb.DIFFERENCE, journaldb.encode_difference(difference(v10, v11), "d11")),
        journaldb.frame(journaldb.DIFFERENCE, journaldb.encode_difference(difference(v11, v12), "d12")),
    ])
    records = files.read_records(key)

    def load(record):
        return journaldb.decode_difference(files.get(record))[0]

    journal, unused = journaldb.history(records, 12, "d12", Journal(load=load))
    assert unused == []
    assert [d.new_serial for d in journal.since(10)] == [11, 12]
    added = journal.since(11)[0].added
    assert [rd.to_text() for rrset in added for rd in rrset] == ["192.0.2.3"]
    # Serial 12 recorded with another view (never served with these records): unused.
    journal, unused = journaldb.history(records, 12, "other", Journal(load=load))
    assert journal is None and unused == [r[0] for r in records]
    # 12 written but never recorded (a crash): the history ends at 11, which is served.
    journal, unused = journaldb.history(records, 11, "d11", Journal(load=load))
    assert [d.new_serial for d in journal.since(10)] == [11] and unused == [records[1][0]]
    # Bounded by octets: only the newest difference fits.
    journal, unused = journaldb.history(records, 12, "d12", Journal(max_usage=1, load=load))
    assert [d.new_serial for d in journal.since(11)] == [12] and unused == [records[0][0]]


def test_a_difference_recorded_but_never_served_does_not_cut_the_history(tmp_path):
    """Its version was replaced while it was being recorded, and the next
    one starts from the same served serial (10 -> 11 recorded, never
    served; 10 -> 11 again with other records, served): the history is the
    chain that ends at the served version, the other one is left out."""
    v9, v10 = version(9, ["192.0.2.9"]), version(10, ["192.0.2.1"])
    v11, v11b, v12 = version(11, ["192.0.2.2"]), version(11, ["192.0.2.4"]), version(12, ["192.0.2.3"])
    files = journals(tmp_path)
    key = store.key_of(ORIGIN)
    files.append(key, [
        journaldb.frame(journaldb.DIFFERENCE, journaldb.encode_difference(d, digest)) for d, digest in (
            (difference(v9, v10), "d10"), (difference(v10, v11), "never served"),
            (difference(v10, v11b), "d11"), (difference(v11b, v12), "d12"))
    ])
    records = files.read_records(key)

    def load(record):
        return journaldb.decode_difference(files.get(record))[0]

    journal, unused = journaldb.history(records, 12, "d12", Journal(load=load))
    assert unused == [records[1][0]]
    assert [d.new_serial for d in journal.since(9)] == [10, 11, 12]
    assert [rd.to_text() for d in journal.since(10) for rrset in d.added for rd in rrset] == [
        "192.0.2.4", "192.0.2.3"]


def source_text(extra=""):
    return TEXT + extra


def make(tmp_path, text):
    path = tmp_path / "example.com.zone"
    path.write_text(text)
    data = path.read_bytes()
    return parse_zone(ORIGIN, path, data), hashlib.sha256(data).digest()


def update(source: ZoneSource, name: str, address: str, serial: int) -> tuple[ZoneSource, bytes]:
    records = dict(source.records)
    owner = N(name)
    records[store.key_of(owner)] = store.pack(owner.to_wire(), [(1, 60, [dns.rdata.from_text("IN", "A", address).to_wire()])])
    apex = store.PackedNode(records[source.key], ORIGIN)
    soa = apex[dns.rdatatype.SOA]
    soa = dns.rrset.from_rdata(ORIGIN, soa.ttl, soa[0].replace(serial=serial))
    records[source.key] = store.pack(ORIGIN.to_wire(), [
        (t, apex[t].ttl, [rd.to_wire() for rd in (soa if t == dns.rdatatype.SOA else apex[t])]) for t in apex
    ])
    new = ZoneSource.of(ORIGIN, source.path, records)
    touched = {store.key_of(owner): records[store.key_of(owner)], source.key: records[source.key]}
    return new, journaldb.frame(journaldb.UPDATE, journaldb.encode_nodes(serial, touched))


class _Zone:
    name = ORIGIN
    dynamic = True

    def __init__(self, file):
        self.file = file

def started_with_one_update(tmp_path):
    """A dynamic zone started from its file, with one update (a.example.com.
    A 192.0.2.51, serial 11) recorded: (store, file source, DynamicZones,
    the source after the update)."""
    files = journals(tmp_path / "state")
    file_source, sha = make(tmp_path, source_text())
    dynamic = DynamicZones(files, [_Zone(file_source.path)])
    dynamic.start_source(file_source, sha)
    s1, u1 = update(file_source, "a.example.com.", "192.0.2.51", 11)
    files.append(file_source.key, [u1])
    return files, file_source, dynamic, s1



def _addresses(source, name):
    rrset = source.rrsets.get((N(name), dns.rdatatype.A))
    return None if rrset is None else {rd.to_text() for rd in rrset}


def test_the_truth_is_the_stores_and_a_file_aliasd_wrote_changes_nothing(tmp_path):
    files = journals(tmp_path / "state")
    file_source, sha = make(tmp_path, source_text())
    dynamic = DynamicZones(files, [_Zone(file_source.path)])
    assert dynamic.start_source(file_source, sha) is file_source  # first start: taken
    s1, u1 = update(file_source, "a.example.com.", "192.0.2.51", 11)
    files.append(file_source.key, [u1])
    s2, u2 = update(s1, "b.example.com.", "192.0.2.52", 12)
    files.append(file_source.key, [u2])
    dynamic.write_file(s2)  # F: the file and its records, then the file in place
    s3, u3 = update(s2, "c.example.com.", "192.0.2.53", 13)
    files.append(file_source.key, [u3])
    written, sha = make(tmp_path, (tmp_path / "example.com.zone").read_text())
    restarted = DynamicZones(files, [_Zone(written.path)]).start_source(written, sha)
    assert [_addresses(restarted, f"{n}.example.com.") for n in "abc"] == [
        {"192.0.2.51"}, {"192.0.2.52"}, {"192.0.2.53"}]
    assert restarted.serial == 13


def test_a_hand_edit_merges_with_updates_and_the_edit_wins_where_both_changed(tmp_path, log_events):
    files, file_source, dynamic, s1 = started_with_one_update(tmp_path)
    dynamic.write_file(s1)
    s2, u2 = update(s1, "b.example.com.", "192.0.2.52", 12)  # not in the file yet
    files.append(file_source.key, [u2])
    # The operator edits aliasd's file: a changed, a name added, www removed.
    text = (tmp_path / "example.com.zone").read_text()
    text = text.replace("192.0.2.51", "192.0.2.99").replace("www\t300\tIN\tA\t192.0.2.10\n", "")
    edited, sha = make(tmp_path, text + "byhand\t60\tIN\tA\t192.0.2.46\n")
    merged = DynamicZones(files, [_Zone(edited.path)]).start_source(edited, sha)
    assert _addresses(merged, "a.example.com.") == {"192.0.2.99"}
    assert _addresses(merged, "byhand.example.com.") == {"192.0.2.46"}
    assert _addresses(merged, "www.example.com.") is None
    assert _addresses(merged, "b.example.com.") == {"192.0.2.52"}  # the update stays
    warned = [e for e in log_events if "edited by hand" in e.get("log_format", "")]
    assert warned[-1]["lost"] == 0 and warned[-1]["changed"] == 3
    # The merge is the truth from now on: a restart serves it, edited file and all.
    again = DynamicZones(files, [_Zone(edited.path)]).start_source(edited, sha)
    assert dict(again.records) == dict(merged.records)
    # An update and an edit of the same RRset: the edit wins, the log names what went.
    s3, u3 = update(merged, "b.example.com.", "192.0.2.88", 14)
    files.append(file_source.key, [u3])
    conflict, sha = make(tmp_path, edited.path.read_text() + "b\t60\tIN\tA\t192.0.2.66\n")
    result = DynamicZones(files, [_Zone(conflict.path)]).start_source(conflict, sha)
    assert _addresses(result, "b.example.com.") == {"192.0.2.66"}
    warned = [e for e in log_events if "edited by hand" in e.get("log_format", "")]
    assert warned[-1]["lost"] == 1 and "b.example.com. 60 A 192.0.2.88" in warned[-1]["which"]


def test_a_hand_edit_not_reloaded_yet_is_never_written_over(tmp_path, log_events):
    """The file sync (every dynamic-file-sync seconds, and at a clean stop)
    finds the file edited by hand and not reloaded yet: it leaves it alone.
    Written over, the edit was lost; and a reload that had read the edited
    file just before took the file aliasd had just written as the edit's
    base, so the "edit" undid every update since the file was last
    written, without naming one as lost."""
    files, file_source, dynamic, s1 = started_with_one_update(tmp_path)
    # The operator adds a name to the file and sends SIGHUP; the reload reads
    # the file, and the file sync runs before the reload applies it.
    text = file_source.path.read_text() + "byhand\t60\tIN\tA\t192.0.2.46\n"
    edited, edited_sha = make(tmp_path, text)
    assert dynamic.write_all([s1]) == 0
    assert file_source.path.read_text() == text  # the edit is still there
    assert dynamic.stale({ORIGIN: s1}) == [s1]  # written once the edit is taken
    assert any("edited by hand and not reloaded" in e.get("log_format", "") for e in log_events)
    merged, frames = dynamic.reload_source(edited, edited_sha, s1)
    assert _addresses(merged, "byhand.example.com.") == {"192.0.2.46"}
    assert _addresses(merged, "a.example.com.") == {"192.0.2.51"}  # the update stays
    warned = [e for e in log_events if "was edited by hand since" in e.get("log_format", "")]
    assert warned[-1]["changed"] == 1 and warned[-1]["lost"] == 0
    files.append(file_source.key, frames)
    # Taken: the next sync writes the merged records over it.
    assert dynamic.write_all([merged]) == 1
    assert "byhand" in file_source.path.read_text() and "192.0.2.51" in file_source.path.read_text()


def test_a_journal_of_an_earlier_release_is_read_then_converted(tmp_path):
    files = journals(tmp_path / "state")
    file_source, sha = make(tmp_path, source_text())
    files.append(file_source.key, [journaldb.frame(journaldb.BASE, sha)])
    s1, u1 = update(file_source, "a.example.com.", "192.0.2.51", 11)
    files.append(file_source.key, [u1])
    started = DynamicZones(files, [_Zone(file_source.path)]).start_source(file_source, sha)
    assert _addresses(started, "a.example.com.") == {"192.0.2.51"}
    assert [kind for kind, _ in files.read(file_source.key)][-2:] == [journaldb.SNAPSHOT, journaldb.FILE]
    again = DynamicZones(files, [_Zone(file_source.path)]).start_source(file_source, sha)
    assert dict(again.records) == dict(started.records)


def test_a_compacted_journal_keeps_the_records_and_the_file_it_knows(tmp_path):
    files, file_source, dynamic, s1 = started_with_one_update(tmp_path)
    sha = hashlib.sha256(file_source.path.read_bytes()).digest()
    files.rewrite(file_source.key, dynamic.snapshot_frames(s1))
    s2, u2 = update(s1, "b.example.com.", "192.0.2.52", 12)
    files.append(file_source.key, [u2])
    restarted = DynamicZones(files, [_Zone(file_source.path)]).start_source(file_source, sha)
    assert restarted.serial == 12
    assert (N("a.example.com."), dns.rdatatype.A) in restarted.rrsets
    assert (N("b.example.com."), dns.rdatatype.A) in restarted.rrsets


def test_the_written_file_reads_back_as_the_same_records(tmp_path):
    source = zone_source("example.com.", TEXT + 'txt TXT "two words" "and \\"quotes\\""\n'
                                              "_srv._tcp SRV 1 2 3 target.example.net.\n")
    path = tmp_path / "z"
    path.write_text(master_file_text(source))
    again = parse_zone(ORIGIN, path, path.read_bytes())
    assert again.digest == source.digest and again.serial == source.serial
    assert again.aliases == source.aliases


class _CommitThread:
    """The authority's commit thread, run when the test says."""

    def __init__(self, clock):
        self.clock = clock
        self.pending = []

    def __call__(self, f, *args):
        from twisted.internet import defer

        d = defer.Deferred()
        self.pending.append((f, args, d))
        return d

    def finish_one(self):
        f, args, d = self.pending.pop(0)
        d.callback(f(*args))
        for _ in range(3):
            self.clock.advance(0)

    def finish_all(self):
        self.clock.advance(0)
        while self.pending:
            self.finish_one()


def _authority_with_commit_thread(tmp_path, clock):
    """(authority, dynamic zones, journals, the dynamic zone's source served,
    its commit thread): example.com. as a dynamic zone, on a state store."""
    from aliasd.base.state import StateStore
    from aliasd.service.authority import ZoneAuthority

    state = StateStore(tmp_path / "state")
    files = journaldb.JournalStore(state.db)
    commits = _CommitThread(clock)
    file_source, sha = make(tmp_path, source_text())
    dynamic = DynamicZones(files, [_Zone(file_source.path)])
    truth = dynamic.start_source(file_source, sha)
    authority = ZoneAuthority(state=state, clock=clock, run_in_thread=commits, journal_files=files,
                              snapshot_frames=dynamic.snapshot_frames)
    authority.set_sources([truth], wait=True)
    return authority, dynamic, files, truth, commits


def test_an_update_being_recorded_during_a_reload_that_merges_an_edit_is_applied_and_answered(tmp_path, clock):
    """The snapshot of the merge is written after the update's record, in the
    next batch, and the update is answered NOERROR once the merged version
    is served: applied and counted, and nothing answered SERVFAIL comes back."""
    authority, dynamic, files, truth, commits = _authority_with_commit_thread(tmp_path, clock)
    file_source = truth
    pending = commits.pending
    finish_recording = commits.finish_one
    updated, record = update(truth, "a.example.com.", "192.0.2.51", 11)
    answered = authority.update_source(updated, [record], [N("a.example.com.")])
    clock.advance(0)
    assert len(pending) == 1  # the update's batch is being recorded
    # The operator's edit is reloaded meanwhile.
    edited, sha = make(tmp_path, source_text("byhand A 192.0.2.46\n"))
    merged, frames = dynamic.reload_source(edited, sha, authority.sources[ORIGIN])
    authority.set_sources([merged], frames={ORIGIN: frames}, continued={ORIGIN})
    finish_recording()
    assert not answered.called  # not before the version holding it is served
    finish_recording()
    outcome = []
    answered.addBoth(outcome.append)
    assert outcome == [None]  # NOERROR
    served = authority.versions[ORIGIN].source
    assert _addresses(served, "a.example.com.") == {"192.0.2.51"}
    assert _addresses(served, "byhand.example.com.") == {"192.0.2.46"}
    kinds = [kind for kind, _ in files.read(file_source.key) if kind != journaldb.DIFFERENCE]
    assert kinds[-3:] == [journaldb.UPDATE, journaldb.SNAPSHOT, journaldb.FILE]
    restarted = DynamicZones(files, [_Zone(edited.path)]).start_source(edited, sha)
    assert dict(restarted.records) == dict(served.records)


def test_an_update_arriving_while_another_is_recorded_keeps_the_history_whole(tmp_path, clock):
    """The first update's version is recorded, then replaced by the second
    before it is served; the second starts again from the served serial.
    The difference recorded for the first is off the history's chain: the
    history read back at a restart still reaches every serial served, and
    the record is deleted once the zone serves a later version."""
    authority, dynamic, files, truth, commits = _authority_with_commit_thread(tmp_path, clock)
    file_source = truth
    pending, record_all = commits.pending, commits.finish_all
    s11, r11 = update(truth, "a.example.com.", "192.0.2.51", 11)
    authority.update_source(s11, [r11], [N("a.example.com.")])
    record_all()
    served = [authority.versions[ORIGIN].serial]
    s12, r12 = update(s11, "b.example.com.", "192.0.2.52", 12)
    first = authority.update_source(s12, [r12], [N("b.example.com.")])
    clock.advance(0)
    assert len(pending) == 1  # 12 is being recorded ...
    s13, r13 = update(s12, "c.example.com.", "192.0.2.53", 12)  # ... when the next update comes
    second = authority.update_source(s13, [r13], [N("c.example.com.")])
    record_all()
    assert first.called and second.called
    served.append(authority.versions[ORIGIN].serial)
    assert served == [11, 12]

    def differences():
        return [journaldb.difference_serials(p)[1:] for _, kind, p in files.read_records(file_source.key)
                if kind == journaldb.DIFFERENCE]

    assert differences() == [(10, 11), (11, 12), (11, 12)]  # the first 11 -> 12 was never served

    def restart_history():
        def load(record):
            return journaldb.decode_difference(files.get(record))[0]
        version = authority.versions[ORIGIN]
        return journaldb.history(files.read_records(file_source.key), version.serial,
                                 authority.numbering.digests[ORIGIN], Journal(load=load))

    journal, unused = restart_history()
    assert [(d.old_serial, d.new_serial) for d in journal.since(10)] == [(10, 11), (11, 12)]
    served_b = journal.since(11)[0].added
    assert {rd.to_text() for rrset in served_b for rd in rrset} == {"192.0.2.52", "192.0.2.53"}
    assert len(unused) == 1  # the one never served
    # The zone serves later versions: the record never served is deleted with the next batch.
    s14, r14 = update(s13, "d.example.com.", "192.0.2.54", 13)
    authority.update_source(s14, [r14], [N("d.example.com.")])
    record_all()
    assert differences() == [(10, 11), (11, 12), (12, 13)]
    journal, unused = restart_history()
    assert [d.new_serial for d in journal.since(10)] == [11, 12, 13] and unused == []


def test_a_zone_removed_and_added_again_while_its_version_is_recorded_keeps_its_history(tmp_path, clock):
    """A zone's version is being recorded when the zone is removed and added
    again (two reloads, or an API delete and create). The recorded version
    is the zone's state: the zone comes back with its serial and view, and
    its history read from the store ends at that version's difference. The
    difference is not deleted as if it had been replaced (never served):
    IXFR from every served serial stays incremental, now and after a
    restart."""
    authority, dynamic, files, truth, commits = _authority_with_commit_thread(tmp_path, clock)
    s11, r11 = update(truth, "a.example.com.", "192.0.2.51", 11)
    authority.update_source(s11, [r11], [N("a.example.com.")])
    commits.finish_all()
    s12, r12 = update(s11, "b.example.com.", "192.0.2.52", 12)
    authority.update_source(s12, [r12], [N("b.example.com.")])
    clock.advance(0)
    assert len(commits.pending) == 1  # 12 is being recorded ...
    authority.remove_sources([ORIGIN])  # ... when the zone is removed
    authority.add_sources([authority_source := s12])  # and added again with what it held
    commits.finish_all()
    version = authority.versions[ORIGIN]
    assert version.serial == 12 and version.source.records == authority_source.records
    s13, r13 = update(s12, "c.example.com.", "192.0.2.53", 13)  # the next batch deletes what is unused
    authority.update_source(s13, [r13], [N("c.example.com.")])
    commits.finish_all()
    served = [(10, 11), (11, 12), (12, 13)]
    assert [(d.old_serial, d.new_serial) for d in authority.journals[ORIGIN].since(10)] == served

    def load(record):
        return journaldb.decode_difference(files.get(record))[0]

    restarted, _ = journaldb.history(files.read_records(truth.key), 13, authority.numbering.digests[ORIGIN],
                                     Journal(load=load))
    assert restarted is not None and [(d.old_serial, d.new_serial) for d in restarted.since(13 - 3) or ()] == served, (
        "the history read at a restart lost the difference to 12")
