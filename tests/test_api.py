"""Unit tests of the HTTP API (aliasd.service.api): raw HTTP requests
through the real Site and Request classes over a StringTransport, against
a fake ZoneManager. Routes, PowerDNS's shapes and status codes, keys,
tenancy, body limits, rates and the errors' words."""

from __future__ import annotations

import dataclasses
import json

import dns.name
import dns.rdatatype
import pytest
from twisted.internet import address, defer
from twisted.internet.testing import StringTransport

from aliasd.base import store
from aliasd.base.config import (
    ApiKey,
    ApiSettings,
    ConfigError,
    Endpoint,
    settings_from_dict,
)
import aliasd.service.api as api_module
from aliasd.service.api import MAX_BODY, ApiResource, ApiSite, zone_id, zone_name_of_id
from aliasd.service.zonemanager import ZoneChangeError, ZoneView

N = dns.name.from_text

ADMIN = ApiKey("admin", "admin-secret")
SHOP = ApiKey("shop", "shop-secret", frozenset({N("shop.example.")}), create=False)
LIMITED = ApiKey("limited", "limited-secret", rate=2)
SUMMARY_KEYS = {"account", "catalog", "dnssec", "edited_serial", "id", "kind", "last_check", "masters", "name",
                "notified_serial", "serial", "url"}
FULL_KEYS = SUMMARY_KEYS | {"api_rectify", "master_tsig_key_ids", "nsec3narrow", "nsec3param", "rrsets",
                            "slave_tsig_key_ids", "soa_edit", "soa_edit_api"}


class FakeManager:
    """The ZoneManager facade over a dict; records what it was asked."""

    def __init__(self):
        self.views = {}
        self.records = {}
        self.calls = []
        self.refuse = None  # a ZoneChangeError the next change fails with
        for zone in ("example.test.", "shop.example."):
            self.add(N(zone), "file")

    def add(self, name, source, kind="Native"):
        self.views[name] = ZoneView(name, kind, 2026120701, source, True, False)
        self.records[name] = [
            (name, dns.rdatatype.SOA, 3600, [f"ns1.{name} hostmaster.{name} 2026120701 10800 3600 604800 3600"]),
            (name, store.ALIAS_TYPE, 60, ["target.example.net."]),
            (N("www", name), dns.rdatatype.A, 300, ["192.0.2.1", "192.0.2.2"]),
        ]

    def zones(self):
        return list(self.views.values())

    def zone(self, name):
        return self.views.get(name)

    def created_count(self, names=None):
        return sum(1 for v in self.views.values() if v.source == "api" and (names is None or v.name in names))

    def rrsets(self, name):
        return self.records[name]

    def export(self, name):
        return "".join(f"{o}\t{t}\tIN\t{dns.rdatatype.to_text(r) if r != store.ALIAS_TYPE else 'ALIAS'}\t{c}\n"
                       for o, r, t, cs in self.records[name] for c in cs)

    def cryptokeys(self, name):
        return []

    def notify(self, name):
        self.calls.append(("notify", name))

    def _change(self, what, name, result, **kwargs):
        self.calls.append((what, name, kwargs))
        if self.refuse is not None:
            error, self.refuse = self.refuse, None
            return defer.fail(error)
        return defer.succeed(result() if callable(result) else result)

    def create(self, name, changes, *, kind="Native", nameservers=(), default_soa=None, by):
        if name in self.views:
            return defer.fail(ZoneChangeError(409, f"zone {name} exists"))

        def made():
            self.add(name, "api", kind)
            return self.views[name]

        return self._change("create", name, made, changes=changes, kind=kind, nameservers=nameservers,
                            default_soa=default_soa, by=by)

    def patch(self, name, changes, *, by):
        return self._change("patch", name, self.views[name], changes=changes, by=by)

    def delete(self, name, *, by):
        return self._change("delete", name, lambda: self.views.pop(name) and None, by=by)


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict
    body: bytes

    def json(self):
        assert self.headers.get("content-type") == "application/json", self.headers
        return json.loads(self.body)


class Api:
    """A site on a fake connection per request."""

    def __init__(self, keys=(ADMIN, SHOP, LIMITED), now=None):
        self.manager = FakeManager()
        self.now = now or [1000.0]
        settings = ApiSettings((Endpoint("127.0.0.1", 8081),), keys=tuple(keys),
                               default_soa="ns.example.net. hostmaster.@ 1 10800 3600 604800 3600")
        self.resource = ApiResource(self.manager, settings, catalog="catalog.test.", clock=lambda: self.now[0])
        self.site = ApiSite(self.resource)

    def raw(self, data: bytes, transport=None) -> bytes:
        peer = address.IPv4Address("TCP", "127.0.0.1", 40000)
        transport = transport or StringTransport(peerAddress=peer)
        protocol = self.site.buildProtocol(peer)
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        return transport.value()

    def request(self, method: str, path: str, body=None, key: str | None = "admin-secret",
                accept: str | None = None, headers: dict | None = None) -> Answer:
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        lines = [f"{method} {path} HTTP/1.0", "Host: 127.0.0.1"]
        if key is not None:
            lines.append(f"X-API-Key: {key}")
        if accept:
            lines.append(f"Accept: {accept}")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if data or method in ("POST", "PATCH"):
            lines.append(f"Content-Length: {len(data)}")
        return parse_answer(self.raw(("\r\n".join(lines) + "\r\n\r\n").encode() + data))


def parse_answer(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


ZONES = "/api/v1/servers/localhost/zones"


@pytest.fixture
def api():
    return Api()


# -- authentication ------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "wrong", "", "admin-secre", "admin-secretX"])
def test_missing_or_wrong_key_is_401_with_powerdns_body(api, key, log_events):
    answer = api.request("GET", "/api", key=key)
    assert (answer.status, answer.body) == (401, b"Unauthorized")
    assert answer.headers["content-type"].startswith("text/plain")
    assert api.request("GET", ZONES, key=key, accept="application/json").json() == {"error": "Unauthorized"}
    refused = [e for e in log_events if "refused" in e.get("log_format", "")]
    assert refused and refused[0]["client"] == "127.0.0.1"


def test_server_routes(api):
    assert api.request("GET", "/api").json() == [{"url": "/api/v1", "version": 1}]
    assert api.request("GET", "/api/v1").json() == [{"server_url": "/api/v1/servers{/server}", "api_features": []}]
    servers = api.request("GET", "/api/v1/servers").json()
    server = api.request("GET", "/api/v1/servers/localhost").json()
    assert servers == [server]
    assert set(server) == {"autoprimaries_url", "config_url", "daemon_type", "id", "type", "url", "version",
                           "zones_url"}
    major, minor = (int(x) for x in server["version"].split(".")[:2])  # as octodns-powerdns parses it
    assert (major, minor) >= (4, 7) and server["id"] == "localhost"
    assert api.request("GET", "/api/v1/servers/other").status == 404
    assert api.request("GET", "/api/v2").status == 404
    assert api.request("DELETE", "/api/v1/servers/localhost").status == 405


# -- reading zones ------------------------------------------------------------------------


def test_zone_list_and_filter(api):
    zones = api.request("GET", ZONES).json()
    assert {z["id"] for z in zones} == {"example.test.", "shop.example."}
    assert all(set(z) == SUMMARY_KEYS for z in zones)
    one = api.request("GET", ZONES + "?zone=example.test.").json()
    assert [z["url"] for z in one] == ["/api/v1/servers/localhost/zones/example.test."]
    assert one[0]["catalog"] == "catalog.test." and one[0]["serial"] == 2026120701
    assert api.request("GET", ZONES + "?zone=absent.test.").json() == []
    answer = api.request("GET", ZONES + "?zone=example.test")
    assert (answer.status, answer.json()) == (422, {"error": "DNS Name 'example.test' is not canonical"})


def test_zone_shape_with_alias_rrsets(api):
    zone = api.request("GET", ZONES + "/example.test.").json()
    assert set(zone) == FULL_KEYS
    assert zone["id"] == "example.test." and zone["kind"] == "Native"
    by_type = {(r["name"], r["type"]): r for r in zone["rrsets"]}
    assert by_type[("example.test.", "ALIAS")] == {
        "name": "example.test.", "type": "ALIAS", "ttl": 60, "comments": [],
        "records": [{"content": "target.example.net.", "disabled": False}]}
    assert [r["content"] for r in by_type[("www.example.test.", "A")]["records"]] == ["192.0.2.1", "192.0.2.2"]
    # Without the trailing dot, and without rrsets:
    assert api.request("GET", ZONES + "/example.test").json() == zone
    assert api.request("GET", ZONES + "/example%2Etest%2E").json() == zone  # percent-escaped, as some clients send
    assert set(api.request("GET", ZONES + "/example.test.?rrsets=false").json()) == FULL_KEYS - {"rrsets"}


def test_unknown_zone_is_404_in_powerdns_words(api):
    for method, suffix in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("PUT", "/notify"), ("GET", "/export"),
                           ("GET", "/cryptokeys")]:
        answer = api.request(method, ZONES + "/absent.test." + suffix, body={"rrsets": []} if method == "PATCH" else None)
        assert (answer.status, answer.body) == (404, b"Not Found"), (method, suffix)
    assert api.request("GET", ZONES + "/absent.test.", accept="application/json").json() == {"error": "Not Found"}
    assert api.request("POST", ZONES + "/example.test.").status == 405
    assert api.request("GET", ZONES + "/example.test./metadata").status == 404


def test_export_text_and_json(api):
    answer = api.request("GET", ZONES + "/example.test./export")
    assert answer.status == 200 and answer.headers["content-type"] == "text/plain; charset=us-ascii"
    assert "example.test.\t60\tIN\tALIAS\ttarget.example.net.\n" in answer.body.decode()
    as_json = api.request("GET", ZONES + "/example.test./export", accept="application/json").json()
    assert as_json == {"zone": answer.body.decode()}


def test_notify_and_cryptokeys(api):
    assert api.request("PUT", ZONES + "/example.test./notify").json() == {"result": "Notification queued"}
    assert api.manager.calls == [("notify", N("example.test."))]
    assert api.request("GET", ZONES + "/example.test./cryptokeys").json() == []


def test_zone_ids_escape_slashes():
    name = N("0/26.2.0.192.in-addr.arpa.")
    assert zone_id(name) == "0=2F26.2.0.192.in-addr.arpa."
    assert zone_name_of_id(zone_id(name)) == name
    assert zone_name_of_id("example.test") == N("example.test.")


# -- tenancy ------------------------------------------------------------------------


def test_a_key_with_zones_sees_and_changes_only_those(api):
    shop = "shop-secret"
    assert [z["id"] for z in api.request("GET", ZONES, key=shop).json()] == ["shop.example."]
    assert api.request("GET", ZONES + "?zone=example.test.", key=shop).json() == []
    for method, suffix, body in [("GET", "", None), ("PATCH", "", {"rrsets": []}), ("DELETE", "", None),
                                 ("PUT", "/notify", None), ("GET", "/export", None), ("GET", "/cryptokeys", None)]:
        other = api.request(method, ZONES + "/example.test." + suffix, key=shop, body=body)
        absent = api.request(method, ZONES + "/absent.test." + suffix, key=shop, body=body)
        assert (other.status, other.body) == (absent.status, absent.body) == (404, b"Not Found")
    assert api.manager.calls == []
    assert api.request("GET", ZONES + "/shop.example.", key=shop).status == 200


def test_create_false_forbids_post_and_delete(api):
    answer = api.request("POST", ZONES, key="shop-secret", body={"name": "shop.example.", "kind": "Native"},
                         accept="application/json")
    assert (answer.status, answer.json()) == (403, {"error": "Key 'shop' may not create zones"})
    assert api.request("DELETE", ZONES + "/shop.example.", key="shop-secret").status == 403
    assert api.manager.calls == []


def test_a_key_with_zones_and_create_may_only_create_its_own():
    api = Api(keys=[ApiKey("tenant", "t", frozenset({N("mine.test.")}), create=True)])
    assert api.request("POST", ZONES, key="t", body={"name": "other.test.", "nameservers": []}).status == 403
    assert api.request("POST", ZONES, key="t", body={"name": "mine.test.", "nameservers": []}).status == 201


def test_max_zones_counts_api_zones_of_the_key():
    api = Api(keys=[ApiKey("admin", "a", max_zones=1)])
    assert api.request("POST", ZONES, key="a", body={"name": "one.test."}).status == 201
    answer = api.request("POST", ZONES, key="a", body={"name": "two.test."})
    assert (answer.status, answer.json()) == (422, {"error": "Key 'admin' may have at most 1 zones"})
    assert api.request("DELETE", ZONES + "/one.test.", key="a").status == 204
    assert api.request("POST", ZONES, key="a", body={"name": "two.test."}).status == 201


# -- changes ------------------------------------------------------------------------


def test_post_creates_with_nameservers_and_default_soa(api):
    answer = api.request("POST", ZONES, body={
        "name": "new.test.", "kind": "Master", "nameservers": ["ns1.new.test.", "ns2.new.test."],
        "soa_edit_api": "", "rrsets": [{"name": "www.new.test.", "type": "A", "ttl": 60,
                                        "records": [{"content": "192.0.2.9", "disabled": False}]}]})
    assert answer.status == 201
    zone = answer.json()
    assert set(zone) == FULL_KEYS and zone["id"] == "new.test." and zone["kind"] == "Master"
    what, name, call = api.manager.calls[0]
    assert (what, name, call["by"], call["kind"]) == ("create", N("new.test."), "admin", "Master")
    assert call["nameservers"] == [N("ns1.new.test."), N("ns2.new.test.")]
    assert call["default_soa"] == "ns.example.net. hostmaster.new.test. 1 10800 3600 604800 3600"
    [change] = call["changes"]
    assert (change.name, change.rdtype, change.ttl, change.records) == (N("www.new.test."), 1, 60, ("192.0.2.9",))


def test_a_posts_rrsets_are_parsed_in_the_thread_pool_and_refused_in_order(api, monkeypatch):
    """A zone's records are parsed where the rest of its making is, away
    from the reactor (thousands of names); a key that may not create the
    zone still gets its 403 first, as PowerDNS answers."""
    inside, calls = [False], []

    def run(f, *args):
        inside[0] = True
        try:
            return defer.maybeDeferred(f, *args)
        finally:
            inside[0] = False
    api.resource.run = run
    real = api_module.parse_rrsets
    monkeypatch.setattr(api_module, "parse_rrsets", lambda *a, **kw: (calls.append(inside[0]), real(*a, **kw))[1])
    rrsets = [{"name": "www.new.test.", "type": "A", "ttl": 60, "records": [{"content": "192.0.2.9"}]}]
    assert api.request("POST", ZONES, body={"name": "new.test.", "rrsets": rrsets}).status == 201
    assert calls == [True]
    tenant = Api(keys=[ApiKey("t", "t", frozenset({N("t.test.")}), create=True)])
    bad = [{"name": "www.elsewhere.test.", "type": "A", "ttl": 60, "records": [{"content": "192.0.2.9"}]}]
    answer = tenant.request("POST", ZONES, key="t", body={"name": "other.test.", "rrsets": bad})
    assert answer.status == 403
    answer = tenant.request("POST", ZONES, key="t", body={"name": "t.test.", "rrsets": bad})
    assert (answer.status, answer.json()) == (422, {"error": "RRset www.elsewhere.test. IN A: Name is out of zone"})


def test_post_existing_zone_is_409(api):
    answer = api.request("POST", ZONES, body={"name": "example.test."})
    assert (answer.status, answer.body) == (409, b"Conflict")


@pytest.mark.parametrize("body, error", [
    ({}, "Key 'name' not present or not a String"),
    ({"name": "noname.test"}, "DNS Name 'noname.test' is not canonical"),
    ({"name": "n.test.", "nameservers": ["ns1.n.test"]}, "Nameserver is not canonical: 'ns1.n.test'"),
    ({"name": "n.test.", "nameservers": ["ns1.n.test."],
      "rrsets": [{"name": "n.test.", "type": "NS", "ttl": 60, "records": [{"content": "ns.n.test."}]}]},
     "Nameservers list MUST NOT be mixed with zone-level NS in rrsets"),
    ({"name": "n.test.", "rrsets": [{"name": "x.other.test.", "type": "A", "ttl": 60,
                                     "records": [{"content": "192.0.2.1"}]}]},
     "RRset x.other.test. IN A: Name is out of zone"),
    ({"name": "n.test.", "kind": "Slave"}, "Zone kind 'Slave' is not supported: aliasd serves Native and Master zones"),
])
def test_post_refusals_are_422_in_powerdns_words(api, body, error):
    answer = api.request("POST", ZONES, body=body)
    assert (answer.status, answer.json()) == (422, {"error": error})
    assert api.manager.calls == []


def test_patch_replace_delete_alias(api):
    answer = api.request("PATCH", ZONES + "/example.test.", body={"rrsets": [
        {"name": "example.test.", "type": "ALIAS", "ttl": 30, "changetype": "replace",
         "records": [{"content": "other.example.net.", "disabled": False}]},
        {"name": "www.example.test.", "type": "A", "changetype": "DELETE"},
        {"name": "old.example.test.", "type": "TXT", "changetype": "REPLACE", "ttl": 60, "records": []},
    ]})
    assert (answer.status, answer.body) == (204, b"")
    assert "content-type" not in answer.headers
    what, name, call = api.manager.calls[0]
    assert (what, name, call["by"]) == ("patch", N("example.test."), "admin")
    assert [(c.name.to_text(), c.rdtype, c.changetype, c.ttl, c.records) for c in call["changes"]] == [
        ("example.test.", store.ALIAS_TYPE, "REPLACE", 30, ("other.example.net.",)),
        ("www.example.test.", 1, "DELETE", None, ()),
        ("old.example.test.", 16, "DELETE", None, ()),  # PowerDNS: REPLACE without records deletes
    ]


@pytest.mark.parametrize("rrsets, error", [
    (None, "No rrsets given in update request"),
    ([], "No rrsets given in update request"),
    ([{"name": "www.example.test", "type": "A", "changetype": "DELETE"}], "DNS Name 'www.example.test' is not canonical"),
    ([{"name": "www.example.test.", "type": "A", "changetype": "MOVE"}], "Changetype not understood"),
    ([{"name": "www.example.test.", "type": "BOGUS", "changetype": "DELETE"}],
     "RRset www.example.test. IN BOGUS: unknown type given"),
    ([{"name": "a.example.test.", "type": "A", "changetype": "REPLACE", "ttl": 60}], "No change for RRset a.example.test. IN A"),
    ([{"name": "a.example.test.", "type": "A", "changetype": "REPLACE", "records": [{"content": "192.0.2.1"}]}],
     "Key 'ttl' not an Integer or not present"),
    ([{"name": "a.example.test.", "type": "A", "changetype": "REPLACE", "ttl": "sixty",
       "records": [{"content": "192.0.2.1"}]}], "Key 'ttl' not an Integer or not present"),
    ([{"name": "a.example.test.", "type": "A", "changetype": "DELETE"}] * 2,
     "Duplicate RRset a.example.test. IN A with changetype: DELETE"),
    ([{"name": "a.example.test.", "type": "A", "changetype": "REPLACE", "ttl": 60,
       "records": [{"content": "192.0.2.1", "disabled": True}]}],
     "Record a.example.test./A '192.0.2.1': disabled records are not supported"),
    ([{"name": "www.other.test.", "type": "A", "changetype": "DELETE"}], "RRset www.other.test. IN A: Name is out of zone"),
])
def test_patch_refusals_are_422_and_change_nothing(api, rrsets, error):
    body = {} if rrsets is None else {"rrsets": rrsets}
    answer = api.request("PATCH", ZONES + "/example.test.", body=body)
    assert (answer.status, answer.json()) == (422, {"error": error})
    assert api.manager.calls == []


def test_the_managers_refusal_names_the_record(api):
    api.manager.refuse = ZoneChangeError(422, "Record bad.example.test./A 'nope': not an IPv4 address")
    answer = api.request("PATCH", ZONES + "/example.test.", body={"rrsets": [
        {"name": "bad.example.test.", "type": "A", "ttl": 60, "changetype": "REPLACE",
         "records": [{"content": "nope"}]}]})
    assert (answer.status, answer.json()) == (422, {"error": "Record bad.example.test./A 'nope': not an IPv4 address"})
    api.manager.refuse = ZoneChangeError(503, "the state store is full")
    answer = api.request("DELETE", ZONES + "/example.test.", accept="application/json")
    assert (answer.status, answer.json()) == (503, {"error": "the state store is full"})


def test_a_failure_in_the_manager_is_500_and_logged(api, log_events):
    api.manager.zones = lambda: 1 / 0
    answer = api.request("GET", ZONES, accept="application/json")
    assert (answer.status, answer.json()) == (500, {"error": "Internal Server Error"})
    assert any(e.get("log_failure") and e["log_failure"].check(ZeroDivisionError) for e in log_events)


def test_delete_answers_204(api):
    answer = api.request("DELETE", ZONES + "/example.test.")
    assert (answer.status, answer.body) == (204, b"")
    assert api.request("GET", ZONES + "/example.test.").status == 404


@pytest.mark.parametrize("body", [b'{"rrsets":[', b"xx", b"[1, 2]", b"\xff\xfe"])
def test_malformed_json_is_400(api, body):
    answer = api.request("PATCH", ZONES + "/example.test.", body=body)
    assert (answer.status, answer.body) == (400, b"Bad Request")
    assert api.request("POST", ZONES, body=body, accept="application/json").json() == {"error": "Bad Request"}
    assert api.manager.calls == []


# -- limits ------------------------------------------------------------------------


def test_body_over_a_mebibyte_is_413_and_not_kept(api):
    big = b'{"rrsets": [' + b" " * MAX_BODY + b"]}"
    answer = api.request("PATCH", ZONES + "/example.test.", body=big)
    assert (answer.status, answer.body) == (413, f"Request body over {MAX_BODY} octets".encode())
    assert api.manager.calls == []
    # Chunked, with no Content-Length: counted as it arrives.
    chunk = b" " * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // len(chunk) + 1))
    raw = (f"PATCH {ZONES}/example.test. HTTP/1.1\r\nHost: x\r\nX-API-Key: admin-secret\r\nConnection: close\r\n"
           "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
    assert parse_answer(api.raw(raw)).status == 413
    # Just under the limit is read.
    fits = b'{"rrsets": [' + b" " * (MAX_BODY - 20) + b"]}"
    assert api.request("PATCH", ZONES + "/example.test.", body=fits).json() == {
        "error": "No rrsets given in update request"}


def test_rate_per_key_answers_429(api, log_events):
    statuses = [api.request("GET", "/api", key="limited-secret").status for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    assert api.request("GET", "/api").status == 200  # another key has its own budget
    api.now[0] += 0.5  # one more request's worth at 2 per second
    assert [api.request("GET", "/api", key="limited-secret").status for _ in range(2)] == [200, 429]
    assert any("over its rate" in e.get("log_format", "") and e["key"] == "limited" for e in log_events)


def test_keys_replaced_on_reload(api):
    api.resource.reconfigure(ApiSettings(api.resource.settings.listen, keys=(ApiKey("new", "new-secret"),)))
    assert api.request("GET", "/api").status == 401
    assert api.request("GET", "/api", key="new-secret").status == 200


def test_changes_are_logged_with_the_key(api, log_events):
    api.request("DELETE", ZONES + "/example.test.")
    assert any(e.get("key") == "admin" and "deletes zone" in e["log_format"] for e in log_events)


# -- configuration --------------------------------------------------------------------


def test_api_settings(tmp_path):
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "admin.secret").write_text("from-file\n")
    settings = settings_from_dict({"api": {
        "listen": ["127.0.0.1:8081", "[::1]:8082"],
        "keys": [{"name": "admin", "secret-file": "api/admin.secret"},
                 {"name": "shop", "secret": "s3cr3t", "zones": ["shop.example.", "shop.test"], "rate": 5},
                 {"name": "tenant", "secret": "t", "zones": ["t.test."], "create": True, "max-zones": 3}],
    }}, "a.toml", tmp_path).api
    assert [str(e) for e in settings.listen] == ["127.0.0.1:8081", "[::1]:8082"]
    admin, shop, tenant = settings.keys
    assert (admin.secret, admin.zones, admin.create) == ("from-file", None, True)
    assert (shop.zones, shop.create, shop.rate) == (frozenset({N("shop.example."), N("shop.test.")}), False, 5.0)
    assert (tenant.create, tenant.max_zones) == (True, 3)
    assert not settings_from_dict({}, "a.toml", tmp_path).api.enabled


@pytest.mark.parametrize("api, error", [
    ({"keys": [{"name": "a", "secret": "x"}]}, '[api] listen: needs at least one "address:port"'),
    ({"listen": ["127.0.0.1"], "keys": [{"name": "a", "secret": "x"}]}, "[api] listen: needs a port"),
    ({"listen": ["127.0.0.1:1"]}, "[api] keys: needs at least one key"),
    ({"listen": ["127.0.0.1:1"], "keys": [{"secret": "x"}]}, "[api] keys entry 1: name: is required"),
    ({"listen": ["127.0.0.1:1"], "keys": [{"name": "a"}]}, "give exactly one of secret and secret-file"),
    ({"listen": ["127.0.0.1:1"], "keys": [{"name": "a", "secret-file": "missing"}]}, "secret-file: cannot read"),
    ({"listen": ["127.0.0.1:1"], "keys": [{"name": "a", "secret": "x"}, {"name": "a", "secret": "y"}]},
     "two keys are named 'a'"),
    ({"listen": ["127.0.0.1:1"], "keys": [{"name": "a", "secret": "x"}, {"name": "b", "secret": "x"}]},
     "key 'b' has the secret of another key"),
    ({"listen": ["127.0.0.1:1"], "keys": [{"name": "a", "secret": "x", "rate": 0}]}, "rate: must be more than 0"),
    ({"listen": ["127.0.0.1:1"], "keys": [{"name": "a", "secret": "x", "zones": ["a..b"]}]}, "zones: bad zone name"),
    ({"listen": ["127.0.0.1:1"], "keys": [{"name": "a", "secret": "x", "admin": True}]}, "unknown key(s): admin"),
    ({"listen": ["127.0.0.1:1"], "keys": [{"name": "a", "secret": "x"}], "tls-certificate": "c.pem"},
     "tls-certificate: cannot read"),
    ({"listen": ["127.0.0.1:1"], "keys": [{"name": "a", "secret": "x"}], "default-soa": "ns1 only"},
     "[api] default-soa: not SOA data"),
])
def test_api_settings_errors(tmp_path, api, error):
    with pytest.raises(ConfigError) as e:
        settings_from_dict({"api": api}, "a.toml", tmp_path)
    assert error in str(e.value) and str(e.value).startswith("a.toml: [api]")


def test_dnssec_routes_are_aliasds_own_and_reach_the_rollover_engine(api, log_events):
    from tests.test_control import FakeRollovers

    zone = ZONES + "/example.test./dnssec"
    assert api.request("POST", zone + "/checkds", {"state": "published"}).json() == {
        "error": "zone example.test. is not signed (no dnssec or dnssec-policy): it has no keys to roll"}
    for name in (N("example.test."), N("shop.example.")):
        api.manager.views[name] = dataclasses.replace(api.manager.views[name], signed=True)
    assert "keys aliasd never rolls" in api.request("POST", zone + "/rollover", {}).json()["error"]
    api.resource.rollovers = rollovers = FakeRollovers()
    status = api.request("GET", zone).json()
    assert status["zone"] == "example.test." and [k["tag"] for k in status["keys"]] == [11111, 22222]
    done = api.request("POST", zone + "/checkds", {"state": "published"})
    assert done.status == 200 and done.json()["result"] == "DS published: KSK 22222 becomes active"
    refused = api.request("POST", zone + "/checkds", {"state": "withdrawn"})
    assert refused.status == 422 and refused.json() == {
        "error": "zone example.test.: the rollover waits for the DS to be published, not withdrawn"}
    assert api.request("POST", zone + "/rollover", {}).json()["result"] == "rollover of key 11111 started"
    assert api.request("POST", zone + "/rollover", {"key": 22222}).json()["result"] == "rollover of key 22222 started"
    assert "is not a key tag" in api.request("POST", zone + "/rollover", {"key": "ksk"}).json()["error"]
    assert rollovers.calls == [("confirm_ds", N("example.test."), "published"),
                               ("confirm_ds", N("example.test."), "withdrawn"),
                               ("rollover", N("example.test."), None), ("rollover", N("example.test."), 22222)]
    assert api.request("GET", zone + "/checkds").status == 405
    assert api.request("POST", zone + "/other", {}).status == 404
    assert api.request("POST", ZONES + "/shop.example./dnssec/rollover", {}, key="limited-secret").status == 200
    assert api.request("POST", ZONES + "/example.test./dnssec/rollover", {}, key="shop-secret").status == 404
    lines = [e["line"] for e in log_events if e.get("log_format", "").startswith("API: key {key}: zone")]
    assert lines[0] == "DS published: KSK 22222 becomes active" and len(lines) == 4
