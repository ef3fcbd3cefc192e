"""End to end: the PowerDNS-compatible HTTP API of a real ``twistd aliasd``
with an ``[api]`` section, over real HTTP on loopback: keys, the server
routes, zones from files (ALIAS as ALIAS), export, cryptokeys of a signed
zone, 404s, tenancy, TLS and keys replaced by a reload."""

from __future__ import annotations

import json
import signal
import ssl
import urllib.error
import urllib.request

import dns.dnssec
import dns.rcode
import dns.rdatatype
import pytest

from tests.aliasd_process import free_port
from tests.certs import Authority
from tests.test_e2e_tls import client_context

pytestmark = pytest.mark.e2e

ADMIN, SHOP = "admin-secret", "s3cr3t"

EXAMPLE = """\
    $ORIGIN example.test.
    $TTL 300
    @     SOA ns1 hostmaster 7 86400 600 864000 120
          NS  ns1
    @     60 ALIAS target.upstream.test.
    ns1   A   192.0.2.53
    www   A   192.0.2.80
    txt   TXT "hello world"
    """
SHOP_ZONE = """\
    $ORIGIN shop.test.
    $TTL 300
    @     SOA ns1 hostmaster 3 86400 600 864000 120
          NS  ns1
    ns1   A   192.0.2.54
    """


def api_config(port: int, extra_keys: str = "", tls: str = "") -> str:
    return f"""
        [api]
        listen = ["127.0.0.1:{port}"]
        {tls}
        keys = [
          {{ name = "admin", secret-file = "admin.secret" }},
          {{ name = "shop", secret = "{SHOP}", zones = ["shop.test."] }},
          {extra_keys}
        ]
        [zones."example.test"]
        file = "example.test.zone"
        dnssec = true
        [zones."shop.test"]
        file = "shop.test.zone"
        notify = ["127.0.0.1:9"]
        """


def call(base: str, method: str, path: str, key: str | None = ADMIN, accept: str | None = None,
         context: ssl.SSLContext | None = None, body: bytes | None = None):
    """(status, content type, body) of one request."""
    request = urllib.request.Request(base + path, data=body, method=method)
    if key is not None:
        request.add_header("X-API-Key", key)
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return answer.status, answer.headers.get("Content-Type"), answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


@pytest.fixture
def started(aliasd, tmp_path):
    (tmp_path / "admin.secret").write_text(ADMIN + "\n")
    port = free_port()
    process = aliasd(api_config(port), {"example.test.zone": EXAMPLE, "shop.test.zone": SHOP_ZONE})
    return process, f"http://127.0.0.1:{port}"


def test_keys_server_routes_and_file_zones(started):
    process, base = started
    for key in (None, "wrong", ADMIN + "x"):
        assert call(base, "GET", "/api", key=key)[::2] == (401, b"Unauthorized")
    assert json.loads(call(base, "GET", "/api/v1/servers/localhost/zones", key="x", accept="application/json")[2]) \
        == {"error": "Unauthorized"}
    assert "refused GET /api from 127.0.0.1" in process.log()
    status, _, body = call(base, "GET", "/api")
    assert (status, json.loads(body)) == (200, [{"url": "/api/v1", "version": 1}])
    server = json.loads(call(base, "GET", "/api/v1/servers/localhost")[2])
    assert server["id"] == "localhost" and server["daemon_type"] == "authoritative"
    assert tuple(int(x) for x in server["version"].split(".")[:2]) >= (4, 7)
    assert json.loads(call(base, "GET", "/api/v1/servers")[2]) == [server]

    zones = "/api/v1/servers/localhost/zones"
    listed = {z["id"]: z for z in json.loads(call(base, "GET", zones)[2])}
    assert set(listed) == {"example.test.", "shop.test."}
    serial = process.query("example.test", "SOA").answer[0][0].serial
    assert listed["example.test."]["serial"] == serial and listed["example.test."]["dnssec"] is True
    assert listed["shop.test."]["kind"] == "Master" and listed["example.test."]["kind"] == "Native"

    status, kind, body = call(base, "GET", zones + "/example.test.")
    zone = json.loads(body)
    assert (status, kind) == (200, "application/json")
    rrsets = {(r["name"], r["type"]): r for r in zone["rrsets"]}
    assert rrsets[("example.test.", "ALIAS")]["records"] == [{"content": "target.upstream.test.", "disabled": False}]
    assert rrsets[("example.test.", "ALIAS")]["ttl"] == 60
    assert rrsets[("txt.example.test.", "TXT")]["records"][0]["content"] == '"hello world"'
    soa = rrsets[("example.test.", "SOA")]["records"][0]["content"].split()
    assert int(soa[2]) == serial  # the served serial, not the file's 7
    assert not any(t in ("RRSIG", "NSEC3", "DNSKEY", "NSEC3PARAM") for _, t in rrsets)  # the source, unsigned
    assert json.loads(call(base, "GET", zones + "/example.test")[2]) == zone

    status, kind, text = call(base, "GET", zones + "/example.test./export")
    assert (status, kind) == (200, "text/plain; charset=us-ascii")
    assert "example.test.\t60\tIN\tALIAS\ttarget.upstream.test.\n" in text.decode()
    assert "www.example.test.\t300\tIN\tA\t192.0.2.80\n" in text.decode()
    assert json.loads(call(base, "GET", zones + "/example.test./export", accept="application/json")[2]) \
        == {"zone": text.decode()}

    for method, path in [("GET", "/absent.test."), ("GET", "/absent.test./export"),
                         ("PUT", "/absent.test./notify"), ("GET", "/absent.test./cryptokeys")]:
        assert call(base, method, zones + path)[::2] == (404, b"Not Found")
    assert call(base, "GET", "/api/v1/servers/elsewhere")[0] == 404


def test_cryptokeys_of_a_signed_zone_match_its_dnskeys(started):
    process, base = started
    zones = "/api/v1/servers/localhost/zones"
    served = process.query("example.test", "DNSKEY", tcp=True).answer[0]
    keys = json.loads(call(base, "GET", zones + "/example.test./cryptokeys")[2])
    assert {k["dnskey"] for k in keys if k["published"]} == {rd.to_text() for rd in served}
    ksk = next(k for k in keys if k["flags"] & 1)
    dnskey = next(rd for rd in served if rd.to_text() == ksk["dnskey"])
    assert dns.dnssec.make_ds("example.test.", dnskey, "SHA256").to_text() in ksk["ds"]
    assert ksk["keytype"] in ("ksk", "csk") and ksk["type"] == "Cryptokey" and ksk["active"] is True
    assert ksk["id"] == dns.dnssec.key_id(dnskey) and ksk["algorithm"] == "ECDSAP256SHA256" and ksk["bits"] == 256
    assert json.loads(call(base, "GET", zones + "/shop.test./cryptokeys")[2]) == []


def test_the_shop_key_learns_of_no_other_zone(started):
    process, base = started
    zones = "/api/v1/servers/localhost/zones"
    assert [z["id"] for z in json.loads(call(base, "GET", zones, key=SHOP)[2])] == ["shop.test."]
    assert json.loads(call(base, "GET", zones + "?zone=example.test.", key=SHOP)[2]) == []
    for method, path in [("GET", ""), ("GET", "/export"), ("GET", "/cryptokeys"), ("PUT", "/notify"),
                         ("DELETE", ""), ("PATCH", "")]:
        other = call(base, method, zones + "/example.test." + path, key=SHOP)
        absent = call(base, method, zones + "/absent.test." + path, key=SHOP)
        assert other == absent and other[0] == 404, (method, path)
    assert call(base, "DELETE", zones + "/shop.test.", key=SHOP)[0] == 403  # create = false without zones
    status, _, body = call(base, "PUT", zones + "/shop.test./notify", key=SHOP)
    assert (status, json.loads(body)) == (200, {"result": "Notification queued"})
    process.wait_for(lambda: "API: key shop asks for NOTIFY of zone shop.test." in process.log())
    assert process.query("example.test", "SOA").answer  # DNS still answers


def test_reload_replaces_the_keys(started, tmp_path):
    process, base = started
    conf = tmp_path / "aliasd.toml"
    conf.write_text(conf.read_text().replace(f'secret = "{SHOP}"', 'secret = "renewed"'))
    process.proc.send_signal(signal.SIGHUP)
    process.wait_for(lambda: call(base, "GET", "/api", key="renewed")[0] == 200)
    assert call(base, "GET", "/api", key=SHOP)[0] == 401
    assert call(base, "GET", "/api", key=ADMIN)[0] == 200


def test_api_over_tls(aliasd, tmp_path):
    (tmp_path / "admin.secret").write_text(ADMIN)
    certs = Authority(tmp_path / "pki")
    cert, key = certs.server()
    port = free_port()
    aliasd(api_config(port, tls=f'tls-certificate = "{cert}"\ntls-key = "{key}"'),
           {"example.test.zone": EXAMPLE, "shop.test.zone": SHOP_ZONE})
    context = client_context(certs, alpn=False)
    context.check_hostname = False
    status, _, body = call(f"https://127.0.0.1:{port}", "GET", "/api/v1/servers/localhost/zones", context=context)
    assert status == 200 and {z["name"] for z in json.loads(body)} == {"example.test.", "shop.test."}
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP is not spoken there
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=5).read()


def test_with_the_api_aliasd_starts_without_zones(aliasd):
    port = free_port()
    process = aliasd(f"""
        [api]
        listen = ["127.0.0.1:{port}"]
        keys = [ {{ name = "admin", secret = "{ADMIN}" }} ]
        """)
    assert call(f"http://127.0.0.1:{port}", "GET", "/api/v1/servers/localhost/zones")[::2] == (200, b"[]")
    assert process.query("example.test", "SOA").rcode() == dns.rcode.REFUSED
