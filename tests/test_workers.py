"""Worker processes' parts, without processes: the frame codec, the change
stream replayed on another registry, the barrier, which messages go to the
main process. The processes themselves: tests/test_e2e_workers_smoke.py
(and W2's tests/test_e2e_workers.py)."""

from __future__ import annotations

import gc
import os
import signal
import socket

import dns.message
import dns.name
import dns.opcode
import dns.rdatatype as T
import dns.rrset
import dns.update
import pytest
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from aliasd.answer.answers import QueryHandler
from aliasd.base import store
from aliasd.base.stats import Statistics
from aliasd.listen import frames, mmsg
from aliasd.listen.transports import DNSDatagramProtocol
from aliasd.listen.worker import Worker, needs_main
from aliasd.service.authority import ZoneAuthority
from aliasd.service import workers
from aliasd.service.workers import WorkerPool, _Channel, _Worker
from aliasd.zones.zone import Flattened, ZoneVersion
from tests.helpers import reactor_turn, zone_source
from tests.test_fastpath import NAMES, SOURCE, TYPES, variants

OWNER = dns.name.from_text("example.com")


def flattened_version(address: str, serial: int, source=SOURCE, previous=None) -> ZoneVersion:
    flat = Flattened({T.A: dns.rrset.from_text(OWNER, 30, "IN", "A", address)})
    base = previous.base if previous is not None else None  # as the authority builds them
    return ZoneVersion.build(source, {OWNER: flat}, base=base, serial=serial, previous=previous)


# -- frames ---------------------------------------------------------------


def test_frames_are_cut_from_a_stream_however_it_is_split():
    sent = [(frames.ACK, 7, None), (frames.STATS, 0, {("a", ()): 3}), (frames.LOG, 0, ("info", "x", "é" * 300))]
    wire = b"".join(frames.encode(*f) for f in sent)
    for step in (1, 5, len(wire)):
        reader = frames.FrameReader()
        got = []
        for i in range(0, len(wire), step):
            got += reader.feed(wire[i:i + step])
        assert got == sent


def test_frames_cross_a_real_socket_pair():
    main, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with main, worker:
        payload = (0, ("127.0.0.1", 5300), b"\x00" * 70000)  # larger than one read
        worker.sendall(frames.encode(frames.FORWARD, 0, payload))
        reader, got = frames.FrameReader(), []
        while not got:
            got = reader.feed(main.recv(4096))
        assert got == [(frames.FORWARD, 0, payload)]


# -- the change stream ----------------------------------------------------


class Replica:
    """A worker's side of the stream: its own authority's registry, fed the frames."""

    def __init__(self, objects=None):
        self.authority = ZoneAuthority()
        self.objects = {} if objects is None else objects

    def apply(self, payload) -> None:
        """Apply a change frame's payload, after a trip through the codec."""
        ((_, _, payload),) = frames.FrameReader().feed(frames.encode(frames.CHANGES, 1, payload))
        frames.apply_changes(self.authority.registry, self.objects, payload)


@pytest.fixture
def streamed():
    """A main authority whose every registry change is recorded, and a
    shared-object table, as the pool has them."""
    main = ZoneAuthority()
    calls = []
    main.registry.listeners.append(lambda method, args: calls.append((method, args)))
    return main, calls, frames.SharedObjects()


def answers(authority) -> list[bytes]:
    handler = QueryHandler(authority)
    return [handler.handle(wire, "127.0.0.1", over_udp) for name in NAMES for rdtype in TYPES
            for wire, over_udp in variants(name, rdtype)]


def test_a_replayed_stream_answers_byte_for_byte_as_the_main_process(streamed):
    main, calls, shared = streamed
    main.set_sources([SOURCE])
    replica = Replica()
    replica.apply(frames.encode_changes(shared, calls))
    assert answers(replica.authority) == answers(main)
    calls.clear()
    main.serve(flattened_version("203.0.113.9", 2, previous=main.versions[OWNER]))
    replica.apply(frames.encode_changes(shared, calls))
    got = answers(replica.authority)
    assert got == answers(main)
    assert any(b"\xcb\x00\x71\x09" in a for a in got if a)  # 203.0.113.9 is served


def test_a_new_version_of_a_zone_sends_its_overlay_not_its_records(streamed):
    main, calls, shared = streamed
    big = zone_source("example.com", "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n"
                      "@ NS ns1\n@ ALIAS lb.example.net.\n" + "".join(f"h{i} A 10.0.{i // 256}.{i % 256}\n"
                                                                   for i in range(5000)))
    main.set_sources([big])
    replica = Replica()
    first = frames.encode_changes(shared, calls)
    replica.apply(first)
    calls.clear()
    main.serve(flattened_version("203.0.113.9", 2, source=big, previous=main.versions[OWNER]))
    second = frames.encode_changes(shared, calls)
    assert second[0][:2] == ([], [])  # nothing defined again: the file and its indexes go by token
    assert len(second[1]) < len(first[0][2]) / 50
    replica.apply(second)
    served = replica.authority.versions[OWNER]
    assert served.serial == 2 and served.source is replica.authority.registry.sources[OWNER]
    assert served.base.records is served.source.records  # one copy of the records in the worker


def _hosts_streamed(streamed, hosts: int):
    """A zone of ``hosts`` A records served by the main authority, and a
    replica that applied the first frame: (the zone's file, the replica, that frame)."""
    main, calls, shared = streamed
    big = zone_source("example.com", "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n"
                      "@ NS ns1\n" + "".join(f"h{i} A 10.0.{i // 256}.{i % 256}\n" for i in range(hosts)))
    main.set_sources([big])
    replica = Replica()
    first = frames.encode_changes(shared, calls)
    replica.apply(first)
    calls.clear()
    return big, replica, first


def test_a_dynamic_update_sends_the_owners_it_changed(streamed):
    main, calls, shared = streamed
    big, replica, first = _hosts_streamed(streamed, 5000)
    old = main.versions[OWNER]
    changed = {b"\x02h7" + big.key: store.pack(b"\x02h7" + big.key, [(T.A, 300, [bytes((192, 0, 2, 7))])]),
               b"\x02h8" + big.key: None}
    records = dict(big.records)
    records.update({k: v for k, v in changed.items() if v is not None})
    del records[b"\x02h8" + big.key]
    updated = big.updated(records, changed)
    main.registry.set_source(updated, big, set(changed))
    main.serve(ZoneVersion.build(updated, {}, base=old.base.updated(updated.records, set(changed)), serial=2))
    payload = frames.encode_changes(shared, calls)
    assert len(payload[0][2]) + len(payload[1]) < len(first[0][2]) / 20  # the indexes name the records
    replica.apply(payload)
    assert answers(replica.authority) == answers(main)
    worker_source = replica.authority.versions[OWNER].source
    assert worker_source.records == updated.records and worker_source.digest == updated.digest
    assert replica.authority.versions[OWNER].base.records is worker_source.records


def _updated(source, name: str, address: str | None):
    """``source`` with owner ``name`` given one A record (None: removed), as an update makes it."""
    key = store.key_of(dns.name.from_text(name, source.origin))
    packed = store.pack(key, [(T.A, 300, [bytes(map(int, address.split(".")))])]) if address else None
    records = dict(source.records)
    if packed is None:
        records.pop(key, None)
    else:
        records[key] = packed
    return source.updated(records, {key: packed}), {key}


def test_updates_answered_in_one_turn_reach_a_worker_as_one_derived_file(streamed):
    main, calls, shared = streamed
    big, replica, _ = _hosts_streamed(streamed, 2000)
    old, source = main.versions[OWNER], big
    for name, address in [("new1", "192.0.2.1"), ("h7", None), ("new1", "192.0.2.2"), ("h8", "192.0.2.8")]:
        updated, touched = _updated(source, name, address)
        main.registry.set_source(updated, source, touched)
        source = updated
    main.serve(ZoneVersion.build(source, {}, base=old.base.updated(source.records, set(source.records)), serial=2))
    payload = frames.encode_changes(shared, calls)
    derived = payload[0][0]
    assert len(derived) == 1  # one file derived from the one the worker has, not four in a row
    assert set(derived[0][2]) == {store.key_of(dns.name.from_text(n, OWNER)) for n in ("new1", "h7", "h8")}
    replica.apply(payload)
    assert answers(replica.authority) == answers(main)
    worker_source = replica.authority.registry.sources[OWNER]
    assert worker_source.records == source.records and worker_source.digest == source.digest
    assert replica.authority.versions[OWNER].source is worker_source


@pytest.mark.parametrize("served_between", [True, False])
def test_a_file_a_version_is_served_from_is_still_sent(streamed, served_between):
    main, calls, shared = streamed
    main.set_sources([SOURCE])
    replica = Replica()
    replica.apply(frames.encode_changes(shared, calls))
    calls.clear()
    first, touched = _updated(SOURCE, "new1", "192.0.2.1")
    main.registry.set_source(first, SOURCE, touched)
    version = flattened_version("203.0.113.9", 2, source=first, previous=main.versions[OWNER])
    if served_between:
        main.serve(version)
    second, touched = _updated(first, "new2", "192.0.2.2")
    main.registry.set_source(second, first, touched)
    if not served_between:
        main.serve(version)
    payload = frames.encode_changes(shared, calls)
    assert len(payload[0][0]) == 2  # the served version's file is derived too, not pickled whole
    replica.apply(payload)
    assert replica.authority.versions[OWNER].source.records == first.records
    assert replica.authority.registry.sources[OWNER].records == second.records


def test_a_zone_added_beside_many_sends_that_zone_not_the_set(streamed):
    main, calls, shared = streamed
    zones = [zone_source(f"z{i}.test", f"$ORIGIN z{i}.test.\n@ 300 SOA ns1 h 1 3600 600 86400 60\n@ 300 NS ns1\n")
             for i in range(300)]
    main.set_sources(zones[:-1])
    replica = Replica()
    first = frames.encode_changes(shared, calls)
    replica.apply(first)
    calls.clear()
    main.add_sources(zones[-1:])
    added = frames.encode_changes(shared, calls)
    assert len(added[1]) < len(first[1]) / 20
    replica.apply(added)
    calls.clear()
    # One file of the many changed (a reload): that file is sent.
    changed = zone_source("z7.test", "$ORIGIN z7.test.\n@ 300 SOA ns1 h 2 3600 600 86400 60\n@ 300 NS ns2\n")
    main.add_sources([changed])
    sent = frames.encode_changes(shared, calls)
    assert len(sent[1]) < len(first[1]) / 20
    replica.apply(sent)
    assert replica.authority.registry.sources[changed.origin].records == changed.records
    calls.clear()
    main.remove_sources([zones[0].origin])
    replica.apply(frames.encode_changes(shared, calls))
    assert replica.authority.registry.sources.keys() == main.registry.sources.keys()
    assert {o: v.serial for o, v in replica.authority.versions.items()} == \
        {o: v.serial for o, v in main.versions.items()}
    assert len(main.versions) == 299


def test_objects_the_main_process_frees_are_dropped_by_the_workers(streamed):
    main, calls, shared = streamed
    main.set_sources([zone_source("example.com", "$ORIGIN example.com.\n@ 300 SOA ns1 h 4 3600 600 86400 60\n"
                                  "@ 300 NS ns1\n")])
    replica = Replica()
    replica.apply(frames.encode_changes(shared, calls))
    tokens = set(replica.objects)
    assert len(tokens) == 2  # the file and its indexes
    calls.clear()
    other = zone_source("example.com", "$ORIGIN example.com.\n@ 300 SOA ns1 h 5 3600 600 86400 60\n@ 300 NS ns1\n")
    main.set_sources([other])
    replica.apply(frames.encode_changes(shared, calls))
    calls.clear()
    gc.collect()
    main.set_sources([other])  # nothing changes; a frame carries the drops
    replica.apply(frames.encode_changes(shared, calls))
    assert tokens.isdisjoint(replica.objects) and len(replica.objects) == 2
    assert replica.authority.versions[OWNER].serial == 5


def test_a_forked_worker_knows_the_inherited_objects_by_token(streamed):
    main, calls, shared = streamed
    main.set_sources([SOURCE])
    version = main.versions[OWNER]
    shared.add(version.source)
    shared.add(version.base)
    calls.clear()
    replica = Replica(shared.objects())  # as by fork: the same objects
    for method, args in [("configure", (main.registry.sources, False)), ("serve", (version,))]:
        getattr(replica.authority.registry, method)(*args)
    main.serve(flattened_version("203.0.113.9", 2, previous=version))
    payload = frames.encode_changes(shared, calls)
    assert payload[0][:2] == ([], [])
    replica.apply(payload)
    assert replica.authority.versions[OWNER].source is SOURCE


def test_a_forked_worker_holds_inherited_objects_only_once_named_or_displaced(streamed):
    """Holding them all at the fork wrote to every zone's objects (copied
    pages); one its registry lets go of is held until the token is dropped."""
    main, calls, shared = streamed
    main.set_sources([SOURCE])
    version = main.versions[OWNER]
    source_token, base_token = shared.add(version.source), shared.add(version.base)
    calls.clear()
    replica = Replica(shared.objects())  # as by fork: the same objects
    for method, args in [("configure", (main.registry.sources, False)), ("serve", (version,))]:
        getattr(replica.authority.registry, method)(*args)
    assert len(replica.objects) == 0
    other = zone_source("example.com", "$ORIGIN example.com.\n@ 300 SOA ns1 h 9 3600 600 86400 60\n@ 300 NS ns1\n")
    main.set_sources([other])  # the inherited file and indexes are replaced
    replica.apply(frames.encode_changes(shared, calls))
    # (get: only what the table holds; indexing would find it through the weak reference)
    assert replica.objects.get(source_token) is SOURCE and replica.objects.get(base_token) is version.base
    assert replica.authority.versions[OWNER].serial == 9
    calls.clear()
    main.set_sources([SOURCE])  # back to the inherited file: named by its token
    payload = frames.encode_changes(shared, calls)
    assert source_token not in payload[0][1]
    replica.apply(payload)
    assert replica.authority.registry.sources[OWNER] is SOURCE


# -- the barrier ----------------------------------------------------------


class _Port:
    """The main process's UDP port, as far as the pool uses it."""

    def __init__(self):
        self.reading = True
        self.transport = self

    def stopReading(self) -> None:
        self.reading = False


class Pool:
    """A WorkerPool with two pretend workers (channels on StringTransports)."""

    def __init__(self, authority):
        self.clock = task.Clock()
        self.port = _Port()
        self.pool = WorkerPool(2, self.clock, authority, [self.port], Statistics())
        self.pool.running = self.pool.started = True
        authority.registry.listeners.append(self.pool._changed)
        authority.synced = self.pool.synced
        self.workers = []
        for number in (1, 2):
            worker = _Worker(number, 2**22 + number, 0)  # above Linux's largest pid: no such process
            worker.stopping = True  # never restarted by a test
            channel = _Channel(self.pool, worker)
            channel.makeConnection(StringTransport())
            self.pool.workers[worker.pid] = worker
            self.workers.append(worker)

    def sent(self, worker) -> list[tuple]:
        return frames.FrameReader().feed(worker.channel.transport.value())

    def ack(self, worker, seq) -> None:
        self.pool.frame_received(worker, frames.ACK, seq, None)


def test_announcing_waits_until_every_worker_acknowledged():
    notified = []
    authority = ZoneAuthority(on_new_serial=notified.append)
    authority.set_sources([SOURCE])
    pools = Pool(authority)
    notified.clear()
    assert authority.synced().called  # nothing changed
    authority.set_sources([zone_source("example.com", "@ 300 SOA ns1 h 9 3600 600 86400 60\n@ 300 NS ns1\n")])
    served = authority.wait_served(OWNER)
    assert authority.versions[OWNER].serial == 9  # served here at once
    assert notified == [] and not served.called  # not announced: the workers do not serve it yet
    pools.clock.advance(0)  # the turn's changes go out as one frame
    for worker in pools.workers:
        assert [(kind, seq) for kind, seq, _ in pools.sent(worker)] == [(frames.CHANGES, 1)]
    pools.ack(pools.workers[0], 1)
    assert notified == [] and not served.called
    pools.ack(pools.workers[1], 1)
    assert [v.serial for v in notified] == [9] and served.called
    assert len(pools.pool.sync_seconds) == 1


def test_a_worker_that_is_gone_does_not_hold_the_barrier():
    authority = ZoneAuthority()
    authority.set_sources([SOURCE])
    pools = Pool(authority)
    authority.serve(flattened_version("203.0.113.9", 2, previous=authority.versions[OWNER]))
    waiting = authority.synced()
    pools.clock.advance(0)
    pools.ack(pools.workers[0], 1)
    assert not waiting.called
    pools.workers[1].channel.transport.loseConnection()
    pools.workers[1].channel.connectionLost(None)
    assert waiting.called


def test_a_scrape_waits_for_every_workers_counts():
    authority = ZoneAuthority()
    pools = Pool(authority)
    stats = pools.pool.stats
    scraped = pools.pool.collect()
    asked = [pools.sent(w)[-1] for w in pools.workers]
    assert [kind for kind, _, _ in asked] == [frames.COUNTS, frames.COUNTS]
    key = stats.key("aliasd_queries_total", qtype="A", rcode="NOERROR", transport="udp")
    pools.pool.frame_received(pools.workers[0], frames.STATS, asked[0][1], {key: 5})
    assert not scraped.called
    seen = []
    scraped.addCallback(lambda _: seen.append(stats.counters[key]))
    pools.pool.frame_received(pools.workers[1], frames.STATS, asked[1][1], {key: 2})
    assert seen == [7]  # the last worker's counts are in when the scrape renders
    assert stats.value("aliasd_worker_queries_total", worker="1") == 5
    late = pools.pool.collect()
    pools.clock.advance(1)  # a worker that does not answer does not hold a scrape for long
    assert late.called


def test_the_main_process_answers_until_every_worker_runs_and_a_stuck_worker_is_replaced(monkeypatch):
    signals = []
    monkeypatch.setattr(workers, "_signal", lambda pid, signum: signals.append((pid, signum)))
    authority = ZoneAuthority()
    authority.set_sources([SOURCE])
    pools = Pool(authority)
    first, second = pools.workers
    pools.pool.frame_received(first, frames.READY, 0, first.pid)
    assert pools.port.reading  # one worker is not reading yet: the main process still answers
    second.forked -= workers.ACK_TIMEOUT + 1
    pools.pool._check_acks()
    assert signals == [(second.pid, signal.SIGKILL)]  # (replaced when its death is seen)
    pools.pool.frame_received(second, frames.READY, 0, second.pid)
    assert not pools.port.reading
    signals.clear()
    authority.serve(flattened_version("203.0.113.9", 2, previous=authority.versions[OWNER]))
    pools.clock.advance(0)
    pools.ack(first, 1)
    pools.pool._check_acks()
    assert signals == []  # the other has had less than ACK_TIMEOUT
    changed, sent = pools.pool._sent_at[1]
    pools.pool._sent_at[1] = (changed, sent - workers.ACK_TIMEOUT - 1)
    second.stopping = False  # (one being replaced is not: it has its own deadline)
    pools.pool._check_acks()
    assert signals == [(second.pid, signal.SIGKILL)]


def test_the_workers_start_tokens_the_served_zones_in_slices_then_forks_with_every_zone(monkeypatch):
    """At ten thousand zones the tokens took 0.05-0.12 s of the reactor in
    one piece: they are given a slice at a time, and a zone served between
    two slices is known to the workers forked after them."""
    def source(i: int):
        return zone_source(f"z{i}.test", f"$ORIGIN z{i}.test.\n@ 300 SOA ns1 h 1 3600 600 86400 60\n@ 300 NS ns1\n")

    authority = ZoneAuthority()
    authority.set_sources([source(i) for i in range(5)])
    clock = task.Clock()
    pool = WorkerPool(2, clock, authority, [_Port()], Statistics())
    pool.slice_seconds = 0  # one object a slice
    forks = []
    monkeypatch.setattr(pool, "_fork", forks.append)
    pool.running = True
    pool._start()
    assert forks == []  # nothing at once
    reactor_turn(clock)
    assert forks == []  # fifteen objects (5 files and their versions' parts) take more than one turn
    authority.add_sources([source(5)])  # served between two slices
    turns = 1
    while not forks and turns < 100:
        reactor_turn(clock)
        turns += 1
    assert forks == [1, 2] and turns > 5
    registry = authority.registry
    assert len(registry.sources) == 6
    for part in [*registry.sources.values(), *(p for v in registry.versions.values() for p in (v.source, v.base))]:
        assert pool.shared.token(part) is not None
    pool._watch.stop()


def test_the_workers_fork_after_the_start_up_snapshot_is_written(monkeypatch):
    """The snapshot of what start-up parsed is written in a thread beside
    the reactor; workers forked before it ends kept the pages its entries
    freed afterwards (PSS +17-19 MiB at 10,000 zones): they fork after it."""
    authority = ZoneAuthority()
    authority.set_sources([zone_source("a.test", "$ORIGIN a.test.\n@ 300 SOA ns1 h 1 3600 600 86400 60\n@ 300 NS ns1\n")])
    clock = task.Clock()
    pool = WorkerPool(2, clock, authority, [_Port()], Statistics())
    forks = []
    monkeypatch.setattr(pool, "_fork", forks.append)
    pool.running = True
    saved = defer.Deferred()
    pool.fork_after.append(saved)
    pool._start_when_settled()
    for _ in range(20):
        reactor_turn(clock)
    assert forks == [] and not pool.started  # the zones are served, the snapshot not yet written
    saved.callback(None)
    for _ in range(20):
        reactor_turn(clock)
    assert forks == [1, 2]
    pool._watch.stop()


# -- what a worker hands to the main process -------------------------------


@pytest.mark.parametrize("message, main", [
    (dns.message.make_query("www.example.com", "A"), False),
    (dns.message.make_query("www.example.com", "AAAA", want_dnssec=True), False),
    (dns.message.make_query("example.com", "AXFR"), True),
    (dns.message.make_query("example.com", "IXFR"), True),
    (dns.message.make_query("aliases.aliasd", "TXT", rdclass="CH"), True),
    (dns.message.make_query("version.bind", "TXT", rdclass="CH"), True),
    (dns.update.UpdateMessage("example.com"), True),
    (dns.message.make_query("example.com", "SOA").__class__(), False),  # no question: answered here
])
def test_which_messages_go_to_the_main_process(message, main):
    assert needs_main(message.to_wire()) is main


def test_notify_goes_to_the_main_process_and_garbage_stays():
    notify = dns.message.make_query("example.com", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert needs_main(notify.to_wire())
    assert not needs_main(b"\x00\x01")
    response = dns.message.make_response(dns.message.make_query("example.com", "AXFR"))
    assert not needs_main(response.to_wire())


def test_shared_connection_counts_add_up_over_processes_and_a_dead_ones_row_is_cleared():
    """The TCP limits hold for the main process and its workers together:
    each writes its own row, every one reads the sum, a forked child's
    counts are seen by the parent, and a dead process's row is cleared."""
    from aliasd.listen.connections import ConnectionCounts, SharedConnectionCounts

    before = ConnectionCounts()
    before.opened("192.0.2.1")
    before.opened(None)
    counts = SharedConnectionCounts(3, before)  # the main's connections so far come along
    assert (counts.total(), counts.of("192.0.2.1"), counts.of("192.0.2.2")) == (2, 1, 0)
    pid = os.fork()
    if pid == 0:  # a worker: row 1
        counts.row = 1
        for _ in range(3):
            counts.opened("192.0.2.1")
        counts.closed("192.0.2.1")
        os._exit(0)
    os.waitpid(pid, 0)
    assert (counts.total(), counts.of("192.0.2.1")) == (4, 3)
    counts.closed("192.0.2.1")  # the main's own
    assert (counts.total(), counts.of("192.0.2.1")) == (3, 2)
    counts.clear_row(1)  # the worker died: its connections with it
    assert (counts.total(), counts.of("192.0.2.1")) == (1, 0)


# -- a worker's reading loop -------------------------------------------------


class _SocketTransport:
    def __init__(self, sock: socket.socket):
        self.socket = sock


BATCHED = [pytest.param(True, id="recvmmsg", marks=pytest.mark.skipif(mmsg.LIBC is None, reason="no recvmmsg")),
           pytest.param(False, id="recvfrom")]


@pytest.mark.parametrize("batched", BATCHED)
def test_a_worker_reads_until_the_socket_is_empty_answering_as_the_main_process_would(batched):
    authority = ZoneAuthority()
    authority.set_sources([SOURCE])
    stats = Statistics()
    handler = QueryHandler(authority, stats=stats)
    protocol = DNSDatagramProtocol(handler)
    main_end, worker_end = socket.socketpair()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client, main_end, worker_end:
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        client.bind(("127.0.0.1", 0))
        client.settimeout(2)
        protocol.transport = _SocketTransport(server)
        worker = Worker(1, worker_end, [protocol], authority.registry, {}, stats)
        worker.batched = batched
        query = dns.message.make_query("www.example.com", "A")
        notify = dns.message.make_query("example.com", "SOA")
        notify.set_opcode(dns.opcode.NOTIFY)
        wires = []
        for query_id in range(5):  # the full path, the fast path, then kept octets
            query.id = query_id
            wires.append(query.to_wire())
            client.sendto(wires[-1], server.getsockname())
        client.sendto(notify.to_wire(), server.getsockname())
        assert worker._read_socket(0, server, protocol) == 6  # read until EAGAIN
        answers = [client.recv(65535) for _ in wires]
        assert answers == [QueryHandler(authority).handle(w, "127.0.0.1", True) for w in wires]
        kind, _, (index, addr, data) = frames.FrameReader().feed(main_end.recv(65535))[0]
        assert (kind, index, addr, data) == (frames.FORWARD, 0, client.getsockname(), notify.to_wire())
        key = stats.key("aliasd_queries_total", qtype="A", rcode="NOERROR", transport="udp")
        assert stats.counters[key] == 5
        assert handler.exact_answer(wires[0]) is not None
        assert worker._read_socket(0, server, protocol) == 0  # a wake-up that found nothing
