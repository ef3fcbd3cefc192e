"""End to end through the HTTP API: what a zone created at runtime is, in a real ``twistd aliasd``.

Beside tests/test_e2e_api_changes.py (answers after each 201/204, tenancy,
a BIND catalog consumer): a zone deleted and created again starts above
its last serial under a new catalog member label; zones survive SIGHUP,
restarts and ``kill -9``; ``max-records`` and the refusals say why and
change nothing; an ALIAS added by PATCH answers within a second despite
serial-rate damping; concurrent PATCHes of one zone are all applied; and
DNS answers stay fast while zones are created one request after another.
"""

from __future__ import annotations

import signal
import socket
import statistics
import threading
import time

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import dns.zone
import pytest

from aliasd.zones.catalog import member_id
from tests.aliasd_process import free_port
from tests.test_e2e_api import ADMIN, SHOP_ZONE
from tests.test_e2e_api_changes import Client, created
from tests.test_e2e_catalog import CATALOG
from tests.test_e2e_update import OPS

pytestmark = pytest.mark.e2e

N = dns.name.from_text


def config(api_port: int, defaults: str = "") -> str:
    return f"""
        [zone-defaults]
        allow-transfer = ["127.0.0.1"]
        {defaults}
        [catalog]
        zone = "{CATALOG}"
        allow-transfer = ["127.0.0.1"]
        [api]
        listen = ["127.0.0.1:{api_port}"]
        default-soa = "ns1.example.net. hostmaster.@ 1 10800 3600 604800 3600"
        keys = [ {{ name = "admin", secret = "{ADMIN}" }} ]
        [zones."shop.test"]
        file = "shop.test.zone"
        """


@pytest.fixture
def api(aliasd):
    """start(defaults=..., server=...) -> (the aliasd process, an admin Client)."""
    def start(defaults: str = "", server: str = "serial-interval = 0\n", extra: str = ""):
        port = free_port()
        process = aliasd(config(port, defaults) + extra, {"shop.test.zone": SHOP_ZONE}, server=server)
        return process, Client(port, ADMIN)
    return start


def a_rrset(name: str, *addresses: str, changetype: str | None = "REPLACE") -> dict:
    rrset = {"name": name, "type": "A", "ttl": 60, "records": [{"content": a, "disabled": False} for a in addresses]}
    if changetype:
        rrset["changetype"] = changetype
    return rrset


def serial(process, zone: str) -> int:
    return process.query(zone, "SOA").answer[0][0].serial


def catalog_labels(process) -> dict[str, str]:
    """Member zone -> its label, from an AXFR of the catalog."""
    catalog = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", CATALOG, port=process.port, timeout=5))
    return {rds[0].target.to_text(): name.labels[0].decode()
            for name, node in catalog.nodes.items() for rds in node.rdatasets if rds.rdtype == dns.rdatatype.PTR}


def test_deleted_and_created_again_starts_above_its_last_serial_under_a_new_member_label(api):
    process, admin = api()
    created(admin, "again.test.", rrsets=[a_rrset("www.again.test.", "192.0.2.1", changetype=None)])
    assert catalog_labels(process)["again.test."] == member_id(N("again.test."))
    for address in ("192.0.2.2", "192.0.2.1"):  # back to the first records: the same view as at first
        assert admin("PATCH", "/zones/again.test.", {"rrsets": [a_rrset("www.again.test.", address)]})[0] == 204
    last = serial(process, "again.test")
    assert admin("DELETE", "/zones/again.test.") == (204, None)
    assert process.query("www.again.test", "A").rcode() == dns.rcode.REFUSED
    assert "again.test." not in catalog_labels(process)
    zone = created(admin, "again.test.", rrsets=[a_rrset("www.again.test.", "192.0.2.1", changetype=None)])
    assert zone["serial"] == serial(process, "again.test") > last
    assert catalog_labels(process)["again.test."] == member_id(N("again.test."), 1) != member_id(N("again.test."))


def test_api_zones_survive_a_reload_a_restart_and_kill_9(api, tmp_path):
    process, admin = api()
    created(admin, "kept.test.", rrsets=[
        {"name": "kept.test.", "type": "ALIAS", "ttl": 60, "records": [{"content": "ns1.shop.test.", "disabled": False}]}])
    assert admin("PATCH", "/zones/kept.test.", {"rrsets": [a_rrset("www.kept.test.", "192.0.2.9")]})[0] == 204
    kept = serial(process, "kept.test")
    process.proc.send_signal(signal.SIGHUP)
    process.wait_for(lambda: "reload done" in process.log())
    assert process.addresses("www.kept.test") == {"192.0.2.9"}
    process.proc.send_signal(signal.SIGKILL)  # no clean stop
    process.proc.wait(10)
    process.start()
    assert process.addresses("www.kept.test") == {"192.0.2.9"}
    assert process.addresses("kept.test") == {"192.0.2.54"}  # the ALIAS followed into shop.test.
    assert serial(process, "kept.test") == kept
    status, zone = admin("GET", "/zones/kept.test.")
    assert status == 200 and zone["serial"] == kept
    assert ["ns1.shop.test."] == [r["content"] for s in zone["rrsets"] if s["type"] == "ALIAS" for r in s["records"]]
    assert "kept.test." in catalog_labels(process)
    process.stop()
    process.start()
    assert process.addresses("www.kept.test") == {"192.0.2.9"}
    assert not list(tmp_path.glob("kept.test*"))  # no file anywhere: the store is its truth


def test_an_api_zone_takes_updates_under_the_zone_defaults_rules_and_keeps_them_through_kill_9(api):
    """[zone-defaults] update rules reach zones created through the API (the
    manual warns of it): an acknowledged UPDATE is kept across kill -9, and
    the API shows it."""
    process, admin = api(defaults='update = [{ key = "ops" }]',
                         extra=f'[keys.ops]\nsecret = "{OPS}"\n')
    created(admin, "upd.test.")
    before = serial(process, "upd.test")
    update = dns.update.UpdateMessage("upd.test.", keyring=dns.tsigkeyring.from_text({"ops.": OPS}), keyname="ops.")
    update.add("u", 60, "A", "192.0.2.99")
    assert dns.query.tcp(update, "127.0.0.1", port=process.port, timeout=5).rcode() == dns.rcode.NOERROR
    process.proc.send_signal(signal.SIGKILL)
    process.proc.wait(10)
    process.start()
    assert process.addresses("u.upd.test") == {"192.0.2.99"} and serial(process, "upd.test") == before + 1
    zone = admin("GET", "/zones/upd.test.")[1]
    assert [r["content"] for s in zone["rrsets"] if s["name"] == "u.upd.test." for r in s["records"]] == ["192.0.2.99"]


def test_refusals_say_why_and_change_nothing(api):
    process, admin = api(defaults="max-records = 5")
    status, body = admin("POST", "/zones", {"name": "big.test.", "kind": "Native", "nameservers": ["ns1.big.test."],
                                            "rrsets": [a_rrset(f"h{i}.big.test.", "192.0.2.1", changetype=None)
                                                       for i in range(4)]})
    assert status == 422 and "6 records would exceed its max-records (5)" in body["error"]
    assert admin("GET", "/zones/big.test.")[0] == 404 and process.query("big.test", "SOA").rcode() == dns.rcode.REFUSED
    created(admin, "small.test.", rrsets=[a_rrset("a.small.test.", "192.0.2.1", changetype=None)])
    before = serial(process, "small.test")
    for change, status, words in [
        ([a_rrset("b.small.test.", "192.0.2.2", "192.0.2.3", "192.0.2.4")], 422, "6 records would exceed"),
        ([{"name": "a.small.test.", "type": "CNAME", "ttl": 60, "changetype": "REPLACE",
           "records": [{"content": "elsewhere.test.", "disabled": False}]},
          {"name": "a.small.test.", "type": "A", "ttl": 60, "changetype": "DELETE"},
          {"name": "a.small.test.", "type": "TXT", "ttl": 60, "changetype": "REPLACE",
           "records": [{"content": '"x"', "disabled": False}]}], 422, "CNAME cannot stand beside other data (TXT)"),
        ([{"name": "small.test.", "type": "NS", "changetype": "DELETE"}], 422, "apex needs its NS"),
    ]:
        answer = admin("PATCH", "/zones/small.test.", {"rrsets": change})
        assert answer[0] == status and words in answer[1]["error"], answer
    assert serial(process, "small.test") == before and process.addresses("a.small.test") == {"192.0.2.1"}
    status, body = admin("PATCH", "/zones/shop.test.", {"rrsets": [a_rrset("x.shop.test.", "192.0.2.8")]})
    assert status == 422 and "its file is its source" in body["error"]
    status, body = admin("DELETE", "/zones/shop.test.")
    assert status == 422 and "remove it there and reload" in body["error"]
    assert process.query("x.shop.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_an_alias_added_by_patch_answers_within_a_second_despite_damping(api, upstream):
    for i in range(3):
        upstream.set(f"lb{i}.cdn.test.", "A", [f"198.51.100.{i + 1}"], ttl=60)
    process, admin = api(server="serial-interval = 60\nserial-burst = 1\n",
                         extra=f'[resolver]\nupstreams = ["{upstream.endpoint}"]\n')
    created(admin, "site.test.")
    for i in range(3):
        status, _ = admin("PATCH", "/zones/site.test.", {"rrsets": [{
            "name": f"web{i}.site.test.", "type": "ALIAS", "ttl": 60, "changetype": "REPLACE",
            "records": [{"content": f"lb{i}.cdn.test.", "disabled": False}]}]})
        answered = time.monotonic()
        assert status == 204
        process.wait_for(lambda i=i: process.addresses(f"web{i}.site.test") == {f"198.51.100.{i + 1}"},
                         timeout=1.0, interval=0.02)
        assert time.monotonic() - answered < 1.0


def test_concurrent_patches_of_one_zone_are_all_applied_none_interleaved(api):
    process, admin = api()
    created(admin, "busy.test.")
    start = serial(process, "busy.test")
    results = []

    def change(i):  # two names per PATCH: both or neither
        results.append(admin("PATCH", "/zones/busy.test.", {"rrsets": [
            a_rrset(f"a{i}.busy.test.", f"192.0.2.{i + 1}"), a_rrset(f"b{i}.busy.test.", f"192.0.2.{i + 101}")]}))

    threads = [threading.Thread(target=change, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [(204, None)] * 12
    for i in range(12):
        assert process.addresses(f"a{i}.busy.test") == {f"192.0.2.{i + 1}"}
        assert process.addresses(f"b{i}.busy.test") == {f"192.0.2.{i + 101}"}
    assert start < serial(process, "busy.test") <= start + 12


def test_dns_answers_stay_fast_while_zones_are_created_one_after_another(api):
    process, admin = api()
    query = dns.message.make_query("ns1.shop.test.", "A").to_wire()
    latencies, stop = [], threading.Event()

    def probe():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            while not stop.is_set():
                sent = time.perf_counter()
                s.sendto(query, ("127.0.0.1", process.port))
                s.recv(65535)
                latencies.append(time.perf_counter() - sent)
                time.sleep(0.005)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for i in range(300):
            created(admin, f"z{i}.test.", rrsets=[a_rrset(f"www.z{i}.test.", "192.0.2.1", changetype=None)])
    finally:
        stop.set()
        prober.join(10)
    assert process.addresses("www.z299.test") == {"192.0.2.1"}
    assert len(catalog_labels(process)) == 301  # and the file zone
    assert max(latencies) < 0.05, f"max {max(latencies):.3f} s, median {statistics.median(latencies):.4f} s"


def catalog_ixfr(process, since: int) -> list[tuple[str, str, str]]:
    """The catalog's IXFR from ``since``: (owner, type, rdata) in order, over TCP."""
    out = []
    for message in dns.query.xfr("127.0.0.1", CATALOG, rdtype=dns.rdatatype.IXFR, serial=since,
                                 port=process.port, timeout=5, relativize=False):
        out += [(r.name.to_text(), dns.rdatatype.to_text(r.rdtype), rd.to_text()) for r in message.answer for rd in r]
    return out


def catalog_serial_when(process, member: str, listed: bool = True) -> int:
    """The catalog's serial once it lists ``member`` (or no longer does), within 5 s."""
    deadline = time.monotonic() + 5
    while True:
        now = serial(process, CATALOG)
        if (member in catalog_labels(process)) == listed or time.monotonic() > deadline:
            return now if serial(process, CATALOG) == now else catalog_serial_when(process, member, listed)
        time.sleep(0.02)


def test_a_catalog_ixfr_after_one_create_or_delete_holds_exactly_that_member(api):
    """The catalog's difference is made from the member that changed: an
    IXFR after one create adds exactly its PTR, after one delete removes
    exactly it, among twenty other members."""
    process, admin = api()
    for i in range(20):
        created(admin, f"m{i}.test.")
    before = catalog_serial_when(process, "m19.test.")
    created(admin, "one.test.")
    after = catalog_serial_when(process, "one.test.")
    owner = f"{member_id(N('one.test.'))}.zones.{CATALOG}"
    soa = [r for r in catalog_ixfr(process, after) if r[1] == "SOA"]
    assert len(soa) == 1 and soa[0][2].split()[2] == str(after)  # up to date: the SOA alone
    records = catalog_ixfr(process, before)
    assert [(o, t) for o, t, _ in records] == [(CATALOG, "SOA"), (CATALOG, "SOA"), (CATALOG, "SOA"),
                                               (owner, "PTR"), (CATALOG, "SOA")]
    assert [rd.split()[2] for _, t, rd in records if t == "SOA"] == [str(after), str(before), str(after), str(after)]
    assert records[3][2] == "one.test."
    assert admin("DELETE", "/zones/m7.test.") == (204, None)
    gone = catalog_serial_when(process, "m7.test.", listed=False)
    records = catalog_ixfr(process, after)
    assert [(o, t, rd) for o, t, rd in records if t != "SOA"] == [
        (f"{member_id(N('m7.test.'))}.zones.{CATALOG}", "PTR", "m7.test.")]
    assert [rd.split()[2] for _, t, rd in records if t == "SOA"] == [str(gone), str(after), str(gone), str(gone)]
