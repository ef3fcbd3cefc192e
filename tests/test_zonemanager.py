"""The zone manager (issue 22), in process: zones created, changed and deleted at runtime.

A real ZoneAuthority on a real state store (LMDB in tmp_path), assembled
from ``twistd aliasd``'s own Options as makeService does, driven by a test
clock; queries go through a real QueryHandler as wire. Restarts are a
second Options on the same state directory. The HTTP routes that call this
facade are tested end to end once they land (aliasd.service.api).
"""

from __future__ import annotations

import textwrap
import time

import dns.dnssec
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from twisted.internet import defer
from twisted.logger import formatEvent
from twisted.python.failure import Failure

from aliasd.answer.answers import QueryHandler
from aliasd.base import store
from aliasd.replicate.secondaries import SecondaryTable
from aliasd.resolve.resolution import AliasResolver
from aliasd.service.authority import ZoneAuthority
from aliasd.service.control import CommandError, Controller
from aliasd.service.reload import Reloader, with_runtime_zones
from aliasd.service.tap import Options
from aliasd.service.zonemanager import RRsetChange, ZoneChangeError, ZoneManager
from aliasd.update.runtime import RuntimeZones
from aliasd.zones.catalog import member_id
from aliasd.zones.zonefile import ALIAS_TYPE, parse_zone
from tests.helpers import ManualUpstream
from tests.test_e2e_update import OPS, ZONE

N = dns.name.from_text
A, NS, SOA, CNAME, TXT = (dns.rdatatype.A, dns.rdatatype.NS, dns.rdatatype.SOA, dns.rdatatype.CNAME,
                          dns.rdatatype.TXT)
SOA_TEXT = "ns1.example.test. hostmaster.example.test. 1 10800 3600 604800 3600"

FILE_ZONE = ZONE  # example.test.: SOA, NS, ns1 A, www A A, mail A

CONFIG = """\
[keys.ops]
secret = "{ops}"
[zone-defaults]
notify = ["127.0.0.1:5399"]
allow-transfer = ["127.0.0.1"]
{defaults}
[zones."example.test"]
file = "example.test.zone"
{file_zone}
[zones."dyn.test"]
file = "dyn.test.zone"
update = [{{ key = "ops" }}]
[catalog]
zone = "catalog.invalid"
"""


class Notifier:
    """Records the versions NOTIFY would announce (the sender is unit-tested elsewhere)."""

    def __init__(self):
        self.targets, self.keys, self.sent = {}, {}, []

    def zone_changed(self, version):
        self.sent.append((version.origin, version.serial))

    def notify_again(self, versions):
        for version in versions:
            self.zone_changed(version)

    def last_answers(self, origin):
        return []


class ThreadsNow:
    """The reactor's thread pool for the reload's reading, run at once (a test clock has none)."""

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        d = defer.maybeDeferred(f, *args, **kwargs)
        d.addCallbacks(lambda result: on_result(True, result), lambda failure: on_result(False, failure))


class Server:
    """aliasd's objects as makeService assembles them, on a test clock."""

    def __init__(self, directory, clock):
        self.clock = clock
        if clock.seconds() < 1:
            # DNSSEC keys are made as of the wall clock (Publish: its second),
            # later than now, and the first key made imports cryptography
            # (aliasd.dnssec.keys): a clock a few seconds ahead signs with them.
            clock.advance(time.time() + 5)
        clock.getThreadPool = ThreadsNow
        clock.callFromThread = lambda f, *args, **kwargs: f(*args, **kwargs)
        options = self.options = Options()
        options.parseOptions(["--config", str(directory / "aliasd.toml"), "--state-dir", str(directory / "state")])
        self.notifier = Notifier()
        self.authority = ZoneAuthority(
            state=options.state, clock=clock, serial_interval=60, journal_files=options.journal_files,
            snapshot_frames=options.dynamic.snapshot_frames, signers=options.signers,
            on_new_serial=self.notifier.zone_changed,
        )
        self.authority.set_sources(options.sources, wait=True, held=options.held)
        self.handler = QueryHandler(self.authority)
        self.reloader = Reloader(options, self.authority, self.handler, self.notifier,
                                 AliasResolver(ManualUpstream(), clock), None, reactor=clock)
        served = with_runtime_zones(options.settings, options.runtime)
        self.reloader._apply_zone_settings(served, [])
        self.manager = ZoneManager(self.authority, self.reloader, options.runtime, options.dynamic,
                                   self.notifier, options.state)

    def settle(self):
        """Run the authority's slices until nothing is due."""
        for _ in range(10000):
            if not any(call.getTime() <= self.clock.seconds() for call in self.clock.getDelayedCalls()):
                return
            self.clock.advance(0)
        raise AssertionError("the authority never settles")

    def done(self, d: defer.Deferred):
        """The result of ``d`` once the work settles (raises its failure)."""
        self.settle()
        out = []
        d.addBoth(out.append)
        assert out, "the Deferred did not fire"
        if isinstance(out[0], Failure):
            out[0].raiseException()
        return out[0]

    def ask(self, name: str, rdtype="A", dnssec=False) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, want_dnssec=dnssec)
        wire = self.handler.handle(query.to_wire(), "127.0.0.1", over_udp=True)
        return dns.message.from_wire(wire)

    def values(self, name: str, rdtype="A") -> set[str]:
        return {rd.to_text() for rrset in self.ask(name, rdtype).answer if rrset.rdtype == dns.rdatatype.from_text(rdtype)
                for rd in rrset}

    def serial(self, zone: str) -> int:
        return self.ask(zone, "SOA").answer[0][0].serial

    def members(self) -> dict[str, str]:
        """Catalog member zone -> its label, as the catalog zone answers them."""
        version = self.authority.versions[N("catalog.invalid")]
        found = {}
        for (owner, rdtype), rrset in version.source.rrsets.items():
            if rdtype == dns.rdatatype.PTR:
                found[rrset[0].target.to_text()] = owner.labels[0].decode()
        return found


@pytest.fixture
def write(tmp_path):
    def write(defaults: str = "", file_zone: str = ""):
        (tmp_path / "example.test.zone").write_text(FILE_ZONE)
        (tmp_path / "dyn.test.zone").write_text(FILE_ZONE.replace("example.test.", "dyn.test."))
        (tmp_path / "aliasd.toml").write_text(CONFIG.format(defaults=textwrap.dedent(defaults), file_zone=file_zone, ops=OPS))
        return tmp_path
    return write


@pytest.fixture
def server(write, clock):
    return Server(write(), clock)


def rr(name, rdtype, *records, ttl=300, change="REPLACE"):
    return RRsetChange(N(name), rdtype, change, ttl if change == "REPLACE" else None, tuple(records))


def create(server, name="new.test.", *changes, **kw):
    kw.setdefault("nameservers", [N("ns1.new.test.")])
    kw.setdefault("default_soa", SOA_TEXT)
    base = [rr("ns1." + name, A, "192.0.2.53")]
    return server.done(server.manager.create(N(name), base + list(changes), by="admin", **kw))


def refused(server, d) -> ZoneChangeError:
    with pytest.raises(ZoneChangeError) as caught:
        server.done(d)
    return caught.value


def test_a_created_zone_is_served_with_the_defaults_and_joins_the_catalog(server, log_events):
    view = create(server, "new.test.", rr("www.new.test.", A, "192.0.2.80", "192.0.2.81"))
    assert (view.source, view.kind, view.editable, view.signed) == ("api", "Native", True, False)
    assert server.values("www.new.test.") == {"192.0.2.80", "192.0.2.81"}
    assert server.values("new.test.", "NS") == {"ns1.new.test."}
    assert view.serial == server.serial("new.test.")
    # [zone-defaults]: its secondaries are notified, the catalog lists it.
    assert [str(t) for t in server.notifier.targets[N("new.test.")]] == ["127.0.0.1:5399"]
    assert (N("new.test."), view.serial) in server.notifier.sent
    assert server.members()["new.test."] == member_id(N("new.test."))
    assert N("new.test.") in RuntimeZones(server.options.state.db)
    assert {v.name.to_text(): v.source for v in server.manager.zones()} == {
        "example.test.": "file", "dyn.test.": "file", "new.test.": "api"}
    assert any("zone new.test. created by admin" in e.get("log_format", "").format(**e)
               for e in log_events if "log_format" in e and "by" in e)


def test_a_patch_is_all_or_nothing_and_one_serial_step_with_its_difference(server):
    start = create(server).serial
    bad = [rr("a.new.test.", A, "192.0.2.1"), rr("www.new.test.", CNAME, "a.new.test."),
           rr("www.new.test.", TXT, '"beside"')]
    error = refused(server, server.manager.patch(N("new.test."), bad, by="admin"))
    assert error.status == 422 and "www.new.test. CNAME" in str(error) and "beside other data" in str(error)
    assert server.values("a.new.test.") == set() and server.serial("new.test.") == start
    view = server.done(server.manager.patch(N("new.test."), [
        rr("a.new.test.", A, "192.0.2.1"), rr("ns1.new.test.", A, change="DELETE"),
        rr("ns1.new.test.", dns.rdatatype.AAAA, "2001:db8::53")], by="admin"))
    assert view.serial == start + 1 == server.serial("new.test.")
    assert server.values("a.new.test.") == {"192.0.2.1"} and server.values("ns1.new.test.") == set()
    # IXFR from the serial before: the difference, as a secondary gets it.
    query = dns.message.make_query("new.test.", "IXFR")
    query.authority.append(dns.rrset.from_text("new.test.", 0, "IN", "SOA", SOA_TEXT))
    reply = dns.message.from_wire(server.handler.handle(query.to_wire(), "127.0.0.1", over_udp=True),
                                  one_rr_per_rrset=True)
    records = [(r.name.to_text(), dns.rdatatype.to_text(r.rdtype), rd.to_text()) for r in reply.answer for rd in r]
    serials = [rd.split()[2] for _, t, rd in records if t == "SOA"]
    assert serials == [str(start + 1), str(start), str(start + 1), str(start + 1)]
    assert ("a.new.test.", "A", "192.0.2.1") in records and ("ns1.new.test.", "A", "192.0.2.53") in records
    assert server.notifier.sent[-1] == (N("new.test."), start + 1)


def test_changes_of_one_zone_asked_at_once_apply_one_after_the_other(server):
    start = create(server).serial
    first = server.manager.patch(N("new.test."), [rr("a.new.test.", A, "192.0.2.1")], by="admin")
    second = server.manager.patch(N("new.test."), [rr("b.new.test.", A, "192.0.2.2")], by="admin")
    server.settle()
    # Both on the zone's newest records: the second builds on the first, one version serves both.
    assert server.done(first).serial == server.done(second).serial == start + 2
    assert server.values("a.new.test.") == {"192.0.2.1"} and server.values("b.new.test.") == {"192.0.2.2"}


@pytest.mark.parametrize("changes, status, words", [
    ([rr("x.new.test.", A, "192.0.2.300")], 422, "record x.new.test. A '192.0.2.300': does not parse as A"),
    ([rr("x.other.test.", A, "192.0.2.3")], 422, "x.other.test. A: name is out of zone"),
    ([rr("x.new.test.", CNAME, "relative")], 422, "must be absolute"),
    ([rr("x.new.test.", ALIAS_TYPE, "a.example.", "b.example.")], 422, "only one ALIAS record per name"),
    ([rr("new.test.", CNAME, "elsewhere.example.")], 422, "new.test. CNAME: a CNAME cannot stand beside"),
    ([rr("new.test.", NS, change="DELETE")], 422, "the zone apex needs its NS records"),
    ([rr("x.new.test.", A, "192.0.2.1"), rr("x.new.test.", A, "192.0.2.2")], 422, "given twice"),
    ([rr("x.new.test.", A, "192.0.2.1", ttl=None)], 422, "a TTL"),
])
def test_bad_changes_are_refused_naming_the_record(server, changes, status, words):
    start = create(server).serial
    error = refused(server, server.manager.patch(N("new.test."), changes, by="admin"))
    assert error.status == status and words in str(error)
    assert server.serial("new.test.") == start


def test_a_new_zone_takes_the_default_soa_as_powerdns_does(server):
    """``@`` is the zone, names absolute with or without their final dot
    (PowerDNS's default-soa-content); nameservers become the apex NS."""
    view = server.done(server.manager.create(
        N("soa.test."), [], nameservers=["ns1.example.test", N("ns2.example.test.")],
        default_soa="ns1.example.test hostmaster.@ 7 10800 3600 604800 3600", by="admin"))
    soa = server.ask("soa.test.", "SOA").answer[0][0]
    assert (soa.mname.to_text(), soa.rname.to_text(), view.serial) == ("ns1.example.test.", "hostmaster.soa.test.", 7)
    assert server.values("soa.test.", "NS") == {"ns1.example.test.", "ns2.example.test."}
    error = refused(server, server.manager.create(N("bad.test."), [], nameservers=["ns1.example.test."],
                                                  default_soa="not an soa", by="admin"))
    assert error.status == 422 and "default SOA 'not an soa'" in str(error)


def test_who_may_change_what(server):
    create(server)
    cases = [
        (server.manager.patch(N("nowhere.test."), [], by="admin"), 404, "Could not find domain 'nowhere.test.'"),
        (server.manager.create(N("new.test."), [], default_soa=SOA_TEXT, by="admin"), 409, "already exists"),
        (server.manager.create(N("example.test."), [], default_soa=SOA_TEXT, by="admin"), 409, "already exists"),
        (server.manager.create(N("catalog.invalid."), [], default_soa=SOA_TEXT, by="admin"), 409, "already exists"),
        (server.manager.create(N("nosoa.test."), [rr("nosoa.test.", NS, "ns1.example.test.")], by="admin"),
         422, "no SOA record"),
        (server.manager.patch(N("example.test."), [rr("x.example.test.", A, "192.0.2.1")], by="admin"),
         422, "its file is its source"),
        (server.manager.delete(N("example.test."), by="admin"), 422, "remove it there and reload"),
        (server.manager.delete(N("nowhere.test."), by="admin"), 404, "Could not find domain"),
    ]
    for d, status, words in cases:
        error = refused(server, d)
        assert (error.status, words in str(error)) == (status, True), str(error)
    assert server.values("x.example.test.") == set()
    # A file zone with update rules takes a PATCH, its truth in the store as for an UPDATE.
    before = server.serial("dyn.test.")
    view = server.done(server.manager.patch(N("dyn.test."), [rr("x.dyn.test.", A, "192.0.2.9")], by="admin"))
    assert (view.source, view.editable, view.serial) == ("file", True, before + 1)
    assert server.values("x.dyn.test.") == {"192.0.2.9"}


def test_an_alias_follows_its_target_at_once(server):
    create(server, "new.test.", rr("new.test.", ALIAS_TYPE, "www.example.test."))
    assert server.values("new.test.") == {"192.0.2.10", "192.0.2.11"}
    server.done(server.manager.patch(N("new.test."), [rr("web.new.test.", ALIAS_TYPE, "ns1.example.test.")],
                                     by="admin"))
    assert server.values("web.new.test.") == {"192.0.2.1"}
    assert (N("web.new.test."), ALIAS_TYPE, 300, ["ns1.example.test."]) in server.manager.rrsets(N("new.test."))


def test_delete_then_create_again_starts_above_the_last_serial_with_a_new_member_label(server):
    first = create(server).serial
    server.done(server.manager.patch(N("new.test."), [rr("a.new.test.", A, "192.0.2.1")], by="admin"))
    server.done(server.manager.patch(N("new.test."), [rr("a.new.test.", A, change="DELETE")], by="admin"))
    last = server.serial("new.test.")  # the records are the first version's again
    assert last == first + 2
    assert server.done(server.manager.delete(N("new.test."), by="admin")) is None
    assert server.ask("ns1.new.test.").rcode() == dns.rcode.REFUSED
    assert "new.test." not in server.members()
    assert server.manager.zone(N("new.test.")) is None
    assert not server.options.journal_files.exists(store.key_of(N("new.test.")))
    assert N("new.test.") not in RuntimeZones(server.options.state.db)
    again = create(server)  # the same records as the first time, serial 1 in its SOA
    assert again.serial == server.serial("new.test.") == last + 1
    assert server.values("ns1.new.test.") == {"192.0.2.53"}
    label = server.members()["new.test."]
    assert label == member_id(N("new.test."), 1) != member_id(N("new.test."))


def test_runtime_zones_survive_a_restart_and_a_reload(write, clock, tmp_path):
    directory = write()
    server = Server(directory, clock)
    create(server, "new.test.", rr("www.new.test.", A, "192.0.2.80"))
    server.done(server.manager.patch(N("new.test."), [rr("www.new.test.", A, "192.0.2.81")], by="admin"))
    serial = server.serial("new.test.")
    # A reload (SIGHUP) keeps it: it is not in the configuration file.
    assert server.done(server.reloader.reload()) is True
    assert server.values("www.new.test.") == {"192.0.2.81"}
    # A new process on the same store serves it, with its last serial.
    again = Server(directory, clock)
    assert again.values("www.new.test.") == {"192.0.2.81"} and again.serial("new.test.") == serial
    assert again.members()["new.test."] == member_id(N("new.test."))
    assert again.manager.zone(N("new.test.")).source == "api"
    view = again.done(again.manager.patch(N("new.test."), [rr("b.new.test.", A, "192.0.2.2")], by="admin"))
    assert view.serial == serial + 1


def test_max_records_refuses_a_change_that_grows_the_zone_past_it(write, clock):
    server = Server(write(defaults="max-records = 4"), clock)
    create(server)  # SOA, NS, ns1 A: 3 records
    error = refused(server, server.manager.patch(
        N("new.test."), [rr("a.new.test.", A, "192.0.2.1", "192.0.2.2")], by="admin"))
    assert error.status == 422 and "5 records would exceed its max-records (4)" in str(error)
    server.done(server.manager.patch(N("new.test."), [rr("a.new.test.", A, "192.0.2.1")], by="admin"))
    error = refused(server, server.manager.create(
        N("big.test."), [rr(f"h{i}.big.test.", A, "192.0.2.1") for i in range(3)],
        nameservers=[N("ns1.example.test.")], default_soa=SOA_TEXT, by="admin"))
    assert error.status == 422 and "max-records" in str(error)
    assert server.manager.zone(N("big.test.")) is None


def test_export_reads_back_as_the_same_zone_and_signed_zones_list_their_keys(write, clock):
    server = Server(write(defaults="dnssec = true", file_zone="dnssec = false"), clock)
    view = create(server, "new.test.", rr("new.test.", ALIAS_TYPE, "www.example.test."),
                  rr("txt.new.test.", TXT, '"hello world"'))
    assert view.signed
    text = server.manager.export(N("new.test."))
    assert "\tALIAS\twww.example.test." in text
    source = server.authority.sources[N("new.test.")]
    assert parse_zone(N("new.test."), "<export>", text.encode()).digest == source.digest
    keys = server.manager.cryptokeys(N("new.test."))
    ksk = [k for k in keys if k["keytype"] in ("ksk", "csk")]
    assert ksk and all(k["type"] == "Cryptokey" and k["active"] for k in keys)
    dnskeys = server.ask("new.test.", "DNSKEY", dnssec=True).get_rrset(
        dns.message.ANSWER, N("new.test."), dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    served = {dns.dnssec.make_ds(N("new.test."), rd, "SHA256").to_text() for rd in dnskeys if rd.flags & 1}
    assert {ds for k in ksk for ds in k["ds"]} >= served and served
    assert server.manager.cryptokeys(N("example.test.")) == []
    # No DNSSEC records among what the zone's source has.
    assert not {t for _, t, _, _ in server.manager.rrsets(N("new.test."))} & {dns.rdatatype.RRSIG,
                                                                               dns.rdatatype.DNSKEY}


def test_control_tool_commands_on_a_runtime_zone_say_it_has_no_file(server):
    create(server)
    assert N("new.test.") not in server.options.dynamic.paths  # never written to a file
    assert server.options.dynamic.stale(server.authority.sources) == []
    controller = Controller(
        server.clock, settings=server.options.settings, authority=server.authority, reloader=server.reloader,
        notifier=server.notifier, resolver=None, dynamic=server.options.dynamic,
        secondaries=SecondaryTable(server.clock, 31), state=server.options.state,
        journal_files=server.options.journal_files)
    for command in (controller.freeze, controller.thaw, controller.sync):
        with pytest.raises(CommandError, match="created at runtime .HTTP API.: it has no file"):
            server.done(command("new.test."))
    assert controller.zone_status("new.test.")["data"]["source"] == "state store (created at runtime; no file)"


def test_a_notify_request_notifies_the_current_serial(server):
    view = create(server)
    server.notifier.sent.clear()
    server.manager.notify(N("new.test."))
    assert server.notifier.sent == [(N("new.test."), view.serial)]
    with pytest.raises(ZoneChangeError) as caught:
        server.manager.notify(N("nowhere.test."))
    assert caught.value.status == 404





def test_a_runtime_zone_that_becomes_configured_is_the_configurations(write, clock, log_events):
    directory = write()
    server = Server(directory, clock)
    create(server, "new.test.", rr("www.new.test.", A, "192.0.2.80"))
    (directory / "new.test.zone").write_text(ZONE.replace("example.test.", "new.test."))
    with open(directory / "aliasd.toml", "a") as config:
        config.write('[zones."new.test"]\nfile = "new.test.zone"\nupdate = [{ key = "ops" }]\n')
    assert server.done(server.reloader.reload()) is True
    assert server.values("www.new.test.") == {"192.0.2.10", "192.0.2.11"}  # the file's
    assert server.manager.zone(N("new.test.")).source == "file"
    assert N("new.test.") not in RuntimeZones(server.options.state.db)
    server.done(server.manager.patch(N("new.test."), [rr("x.new.test.", A, "192.0.2.7")], by="admin"))
    again = Server(directory, clock)  # a restart keeps what was changed since (its journal is the file zone's)
    assert again.values("x.new.test.") == {"192.0.2.7"} and again.values("www.new.test.") == {"192.0.2.10", "192.0.2.11"}


def test_what_the_api_threads_read_is_never_changed_under_them(server):
    """rrsets, export and cryptokeys run in the API's threads while the
    reactor creates and deletes zones: the mappings they read are replaced
    whole, never changed in place (changed in place, 22 of 1,000 creates by
    4 clients at a time failed with "dictionary changed size during
    iteration")."""
    runtime = server.manager.runtime
    defaults = server.manager.settings.zone_defaults
    create(server, "one.test.")
    zones, made = runtime.zones, runtime.settings(defaults)
    create(server, "two.test.")
    assert set(zones) == set(made) == {N("one.test.")}
    assert set(runtime.settings(defaults)) == {N("one.test."), N("two.test.")}
    zones, made = runtime.zones, runtime.settings(defaults)
    server.done(server.manager.delete(N("one.test."), by="admin"))
    assert set(zones) == set(made) == {N("one.test."), N("two.test.")}
    assert set(runtime.settings(defaults)) == {N("two.test.")}


def test_a_zone_created_or_deleted_changes_the_settings_as_a_full_reload_would(write, clock):
    """Creates and deletes change one zone's transfer, update, NOTIFY and
    history settings (thousands of zones are not gone over each time): what
    they leave is what setting every zone again gives."""
    server = Server(write(defaults="""
        transfer-key = "ops"
        update = [{ key = "ops", types = ["TXT"] }]
        max-records = 50
        journal-max-usage = "2M"
    """), clock)
    for name in ("one.test.", "two.test.", "three.test."):
        create(server, name)
    server.done(server.manager.delete(N("two.test."), by="admin"))

    def taken():
        handler, notifier, journals = server.handler, server.notifier, server.authority.journals
        return (dict(handler.access._rules), handler.access._all_networks, dict(handler.updates.rules),
                dict(handler.updates.max_records), dict(notifier.targets), dict(notifier.keys),
                dict(journals.max_usage_for))

    incremental = taken()
    assert N("one.test.") in incremental[2] and N("two.test.") not in incremental[0]
    assert incremental[6][N("three.test.")] == 2 * 1024**2
    server.reloader._apply_zone_settings(with_runtime_zones(server.manager.settings, server.manager.runtime), [])
    assert taken() == incremental


def test_creates_and_deletes_cost_their_zones_and_the_catalog_difference_their_members(server, monkeypatch,
                                                                                      log_events):
    """No pass over the served zones (set_sources, CatalogMaker.add_to) for
    a create or a delete, alone or several in one turn of the reactor; the
    catalog's IXFR difference is computed over the changed members' owners
    only, and holds exactly their records."""
    for name in ("one", "two", "three"):
        create(server, f"{name}.test.")
    passes, compared = [], []
    for target, method in ((server.authority, "set_sources"), (server.reloader.catalog, "add_to")):
        real = getattr(target, method)
        monkeypatch.setattr(target, method, lambda *a, _real=real, _m=method, **kw: (passes.append(_m), _real(*a, **kw))[1])
    import aliasd.service.authority as authority_module

    def difference(old, new, names=None, keys=None):
        diff = real_difference(old, new, names, keys)
        if new.origin == N("catalog.invalid"):
            if keys is not None:  # (the owners an update touched, by key)
                names = [store.name_of(k) for k in keys]
            compared.append((None if names is None else sorted(n.to_text() for n in names), diff))
        return diff
    real_difference = authority_module.difference
    monkeypatch.setattr(authority_module, "difference", difference)

    made = [server.manager.create(N(f"{name}.test."), [rr(f"ns1.{name}.test.", A, "192.0.2.53")], by="admin",
                                  nameservers=[N(f"ns1.{name}.test.")], default_soa=SOA_TEXT)
            for name in ("four", "five")]
    for d in made:
        server.done(d)
    server.done(server.manager.delete(N("two.test."), by="admin"))
    assert passes == []
    owners = {m: f"{label}.zones.catalog.invalid." for m, label in server.members().items()}
    assert [names for names, _ in compared] == [sorted([owners["four.test."], owners["five.test."]]),
                                                [f"{member_id(N('two.test.'))}.zones.catalog.invalid."]]
    (_, created), (_, deleted) = compared
    assert sorted((r.name.to_text(), r[0].target.to_text()) for r in created.added) == sorted(
        [(owners["four.test."], "four.test."), (owners["five.test."], "five.test.")])
    assert created.removed == () and deleted.added == ()
    assert [(r.name.to_text(), r[0].target.to_text()) for r in deleted.removed] == [
        (f"{member_id(N('two.test.'))}.zones.catalog.invalid.", "two.test.")]
    assert set(server.members()) == {"example.test.", "dyn.test.", "one.test.", "three.test.", "four.test.",
                                     "five.test."}
    serial = server.serial("catalog.invalid.")
    assert any(f"zone catalog.invalid. serial {serial} (members changed)" in formatEvent(e) for e in log_events)


def test_created_count_is_what_the_zone_list_shows_of_api_zones(server):
    """A key's max-zones counts the zones created through the API that it
    sees, as zones() lists them (one being created is not listed yet)."""
    create(server, "one.test.")
    create(server, "two.test.")
    pending = server.manager.create(N("three.test."), [rr("ns1.three.test.", A, "192.0.2.53")], by="admin",
                                    nameservers=[N("ns1.three.test.")], default_soa=SOA_TEXT)

    def listed(names=None):
        return sum(1 for v in server.manager.zones() if v.source == "api" and (names is None or v.name in names))

    for names in (None, {N("one.test."), N("example.test."), N("three.test.")}, set()):
        assert server.manager.created_count(names) == listed(names)
    assert server.manager.created_count() == 2
    server.done(pending)
    assert server.manager.created_count() == listed() == 3
    server.done(server.manager.delete(N("one.test."), by="admin"))
    assert server.manager.created_count({N("one.test."), N("two.test.")}) == listed({N("two.test.")}) == 1
