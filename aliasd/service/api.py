"""The PowerDNS-compatible HTTP API (issue 22), served by Twisted Web.

The routes, JSON shapes, status codes and error texts are PowerDNS 4.7's
(docs/api.md), so that lego, octoDNS, external-dns and the other clients
that speak that API manage aliasd's zones. Each request is checked in this
order: the key (401), its request rate (429), the route (404/405), whether
the key may see the zone (404, as if it did not exist: a key learns of no
zone outside its ``zones``), whether it may create or delete zones (403),
then the body (400, 413, 422). The zones themselves are the ZoneManager's
(aliasd.service.zonemanager): this module only translates.

The reactor does little per request: bodies are parsed and answers
encoded in the API's own thread pool (a big zone's JSON takes a while),
and creating or changing a zone is the ZoneManager's Deferred.
"""

from __future__ import annotations

import hmac
import io
import json
import re
import time
import urllib.parse
from collections.abc import Callable

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from twisted.application import internet, service
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web import resource, server

from aliasd.base import store
from aliasd.base.config import ApiKey, ApiSettings
from aliasd.base.logthrottle import LogThrottle
from aliasd.service.control import CommandError, checkds, start_rollover
from aliasd.service.zonemanager import RRsetChange, ZoneChangeError, ZoneView
from aliasd.zones.zonefile import type_text

log = Logger()

#: The largest request body accepted (issue 22: 413 over 1 MiB).
MAX_BODY = 1024 * 1024
#: Past this many octets of a refused body the connection is closed
#: instead of being read to its end for the 413.
DRAIN_LIMIT = 16 * MAX_BODY

#: The ALPN tokens the API's TLS listener offers.
API_ALPN = (b"http/1.1",)

#: The PowerDNS release whose API this one follows; clients parse it
#: (octodns-powerdns reads major.minor to pick its behaviour).
PDNS_VERSION = "4.7.3"
SERVER_ID = "localhost"
SERVER_URL = f"/api/v1/servers/{SERVER_ID}"

#: PowerDNS's words for the errors its web server answers itself.
REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large", 422: "Unprocessable Entity",
    429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
}


class ApiError(Exception):
    """An answer other than success: ``status`` and the words for it."""

    def __init__(self, status: int, message: str | None = None):
        super().__init__(message or REASONS.get(status, "Error"))
        self.status = status


# -- zone ids and JSON shapes --------------------------------------------------


def zone_id(name: dns.name.Name) -> str:
    """PowerDNS's zone id: the name with its trailing dot, "/" as "=2F"."""
    return re.sub(r"[^A-Za-z0-9.\-_\\]", lambda m: "".join(f"={b:02X}" for b in m.group().encode()),
                  name.to_text())


def zone_name_of_id(text: str) -> dns.name.Name:
    """The zone an id names (a missing trailing dot is allowed, as PowerDNS allows it)."""
    raw = re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes((int(m.group(1), 16),)), text.encode("latin-1"))
    try:
        return dns.name.from_text(raw.decode("utf-8", "replace"))
    except dns.exception.DNSException:
        raise ApiError(404) from None


def canonical_name(text, refusal: str = "DNS Name '{}' is not canonical") -> dns.name.Name:
    """A name given in JSON: a string ending in a dot, else 422 (PowerDNS's words)."""
    if not isinstance(text, str) or not text.endswith("."):
        raise ApiError(422, refusal.format(text))
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as e:
        raise ApiError(422, f"DNS Name '{text}' is not valid: {e}") from None


def server_object() -> dict:
    return {
        "type": "Server",
        "id": SERVER_ID,
        "daemon_type": "authoritative",
        "version": PDNS_VERSION,
        "url": SERVER_URL,
        "config_url": SERVER_URL + "/config{/config_setting}",
        "zones_url": SERVER_URL + "/zones{/zone}",
        "autoprimaries_url": SERVER_URL + "/autoprimaries{/autoprimary}",
    }


def zone_summary(view: ZoneView, catalog: str) -> dict:
    """A zone as PowerDNS lists it (GET …/zones)."""
    serial = view.serial or 0
    zid = zone_id(view.name)
    return {
        "id": zid,
        "name": view.name.to_text(),
        "url": f"{SERVER_URL}/zones/{zid}",
        "kind": view.kind,
        "serial": serial,
        "edited_serial": serial,
        "notified_serial": serial,
        "masters": [],
        "dnssec": view.signed,
        "account": "",
        "catalog": catalog,
        "last_check": 0,
    }


def zone_object(view: ZoneView, catalog: str, rrsets=None) -> dict:
    """A zone as PowerDNS shows one (GET …/zones/{id}); ``rrsets``: the
    ZoneManager's tuples, None for ``?rrsets=false``."""
    zone = zone_summary(view, catalog)
    zone.update({
        "api_rectify": False,
        "nsec3param": "",
        "nsec3narrow": False,
        "soa_edit": "",
        "soa_edit_api": "DEFAULT" if view.source == "api" else "",
        "master_tsig_key_ids": [],
        "slave_tsig_key_ids": [],
    })
    if rrsets is not None:
        zone["rrsets"] = [
            {
                "name": owner.to_text(),
                "type": type_text(rdtype),
                "ttl": ttl,
                "records": [{"content": content, "disabled": False} for content in contents],
                "comments": [],
            }
            for owner, rdtype, ttl, contents in rrsets
        ]
    return zone


# -- request bodies ---------------------------------------------------------------


def parse_json(body: bytes) -> dict:
    """The body as a JSON object, else 400 (PowerDNS: "Bad Request")."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400) from None
    if not isinstance(data, dict):
        raise ApiError(400)
    return data


def _parse_create(body: bytes) -> tuple[dict, tuple | None]:
    """A POST's body and its rrsets parsed (in the API's thread: a zone of
    thousands of records is thousands of names to parse): (the JSON object,
    (zone, its changes or the ApiError they raise) or None when the zone's
    name is not usable). The errors are raised on the reactor, after the
    checks that come first (a key that may not create the zone: 403)."""
    data = parse_json(body)
    try:
        name = canonical_name(data.get("name"))
    except ApiError:
        return data, None
    return data, (name, _rrsets_or_error(name, data))


def _rrsets_or_error(name: dns.name.Name, data: dict):
    try:
        return parse_rrsets(name, data.get("rrsets", []), patch=False)
    except ApiError as e:
        return e


def _rdtype(text, name_text: str) -> int:
    if isinstance(text, str) and text.upper() == "ALIAS":
        return store.ALIAS_TYPE
    try:
        if not isinstance(text, str):
            raise dns.rdatatype.UnknownRdatatype
        return dns.rdatatype.from_text(text)
    except dns.exception.DNSException:
        raise ApiError(422, f"RRset {name_text} IN {text}: unknown type given") from None


def parse_rrsets(zone: dns.name.Name, items, *, patch: bool) -> list[RRsetChange]:
    """The ``rrsets`` of a POST or PATCH as changes, checked for shape (the
    records' data is the ZoneManager's to check); 422 naming the rrset."""
    if patch and (not isinstance(items, list) or not items):
        raise ApiError(422, "No rrsets given in update request")
    if not isinstance(items, list):
        raise ApiError(422, "Key 'rrsets' is not a list")
    changes, seen = [], set()
    for item in items:
        if not isinstance(item, dict):
            raise ApiError(422, "rrsets: expected objects")
        name = canonical_name(item.get("name"))
        rdtype = _rdtype(item.get("type"), name.to_text())
        where = f"RRset {name.to_text()} IN {type_text(rdtype)}"
        if not name.is_subdomain(zone):
            raise ApiError(422, f"{where}: Name is out of zone")
        changetype = item.get("changetype", "REPLACE") if patch else "REPLACE"
        changetype = changetype.upper() if isinstance(changetype, str) else changetype
        if changetype not in ("REPLACE", "DELETE"):
            raise ApiError(422, "Changetype not understood")
        if (name, rdtype) in seen:
            raise ApiError(422, f"Duplicate RRset {name.to_text()} IN {type_text(rdtype)} with changetype: {changetype}")
        seen.add((name, rdtype))
        if changetype == "DELETE":
            changes.append(RRsetChange(name, rdtype, "DELETE"))
            continue
        if "records" not in item:
            raise ApiError(422, f"No change for {where}")
        records = item["records"]
        if not isinstance(records, list):
            raise ApiError(422, f"{where}: Key 'records' is not a list")
        if not records:  # PowerDNS: REPLACE with no records deletes the rrset
            changes.append(RRsetChange(name, rdtype, "DELETE"))
            continue
        ttl = item.get("ttl")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= 2**31 - 1:
            raise ApiError(422, "Key 'ttl' not an Integer or not present")
        contents = []
        for record in records:
            content = record.get("content") if isinstance(record, dict) else None
            if not isinstance(content, str):
                raise ApiError(422, f"{where}: Key 'content' not present or not a String")
            if record.get("disabled", False) is not False:
                # aliasd serves every record it keeps: a disabled one cannot be honoured.
                raise ApiError(422, f"Record {name.to_text()}/{type_text(rdtype)} '{content}': "
                                    "disabled records are not supported")
            contents.append(content)
        changes.append(RRsetChange(name, rdtype, "REPLACE", ttl, tuple(contents)))
    return changes


def default_soa_for(template: str, zone: dns.name.Name) -> str:
    """``[api] default-soa`` for ``zone`` ("@" is the zone), names absolute."""
    text = template.replace("@", zone.to_text())
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, text, origin=dns.name.root, relativize=False)
    return rdata.to_text()


# -- keys and rates ------------------------------------------------------------------


class Keys:
    """The configured keys: who a secret belongs to, and each key's request budget."""

    def __init__(self, settings: ApiSettings, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # key name -> (tokens, when)
        self.set(settings)

    def set(self, settings: ApiSettings) -> None:
        """New keys (a reload); the rates' state is kept for keys that stay."""
        self.keys = [(k, k.secret.encode()) for k in settings.keys]
        self.buckets = {k: v for k, v in self.buckets.items() if any(key.name == k for key, _ in self.keys)}

    def find(self, given: bytes | None) -> ApiKey | None:
        """The key whose secret is ``given``; every secret is compared, in constant time."""
        found = None
        for key, secret in self.keys:
            if hmac.compare_digest(secret, given or b"") and given:
                found = key
        return found

    def allow(self, key: ApiKey) -> bool:
        """May ``key`` make one more request now? (A token bucket of one second's requests.)"""
        if key.rate is None:
            return True
        now = self.clock()
        tokens, when = self.buckets.get(key.name, (key.rate, now))
        tokens = min(max(key.rate, 1.0), tokens + (now - when) * key.rate)
        if tokens < 1:
            self.buckets[key.name] = (tokens, now)
            return False
        self.buckets[key.name] = (tokens - 1, now)
        return True


# -- the site ----------------------------------------------------------------------


class ApiRequest(server.Request):
    """A request whose body is counted as it arrives and kept only up to
    MAX_BODY: a bigger one is answered 413 without being held in memory
    (and past DRAIN_LIMIT, without being read further)."""

    body_size = 0
    too_large = False

    def gotLength(self, length):
        self.content = io.BytesIO()
        self.too_large = length is not None and length > MAX_BODY

    def handleContentChunk(self, data):
        self.body_size += len(data)
        if self.body_size > MAX_BODY:
            self.too_large = True
            self.content = io.BytesIO()
        if self.too_large:
            if self.body_size > DRAIN_LIMIT:
                self.channel.transport.loseConnection()
            return
        self.content.write(data)


def wants_json(request) -> bool:
    accept = request.getHeader(b"accept") or b""
    return b"application/json" in accept.lower()


class ApiResource(resource.Resource):
    """Every route under /api: authentication, rates, dispatch, answers."""

    isLeaf = True

    def __init__(self, manager, settings: ApiSettings, *, catalog: str = "",
                 run: Callable[..., defer.Deferred] = defer.maybeDeferred,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.manager = manager
        self.settings = settings
        self.keys = Keys(settings, clock)
        self.catalog = catalog  # the [catalog] zone every zone belongs to ("" if none)
        self.rollovers = None  # the key rollover engine (aliasd.dnssec.rollover), for the dnssec routes
        self.run = run  # runs a function away from the reactor: the API's thread pool
        self._refused_log = LogThrottle("refused API requests")
        self._limited_log = LogThrottle("rate-limited API requests")

    def reconfigure(self, settings: ApiSettings, catalog: str = "") -> None:
        """New keys and default SOA (a reload); the listeners stay."""
        self.settings = settings
        self.keys.set(settings)
        self.catalog = catalog

    def render(self, request):
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("latin-1")
        key = self.keys.find(request.getHeader(b"x-api-key"))
        client = request.getClientAddress()
        peer = getattr(client, "host", "?")
        if key is None:
            if self._refused_log.allow():
                log.warn("API: refused {method} {path} from {client}: missing or wrong X-API-Key",  # noqa: G010
                         method=method, path=path, client=peer)
            return self._error(request, ApiError(401))
        if not self.keys.allow(key):
            if self._limited_log.allow():
                log.warn("API: key {key} over its rate of {rate:g} requests per second: {method} {path} refused",  # noqa: G010
                         key=key.name, rate=key.rate, method=method, path=path)
            return self._error(request, ApiError(429))
        if request.too_large:
            return self._error(request, ApiError(413, f"Request body over {MAX_BODY} octets"))
        try:
            result = self._dispatch(request, method, path, key)
        except ApiError as e:
            return self._error(request, e)
        except ZoneChangeError as e:
            return self._error(request, _from_change_error(e))
        except Exception:  # noqa: BLE001 (a bug: answered 500 in the API's form, logged with its traceback)
            log.failure("API: {method} {path} by key {key} failed", method=method, path=path, key=key.name)
            return self._error(request, ApiError(500))
        if not isinstance(result, defer.Deferred):
            return result
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def done(body):
            if not gone:
                if body is not None:
                    request.write(body)
                request.finish()

        def failed(failure: Failure):
            if failure.check(ApiError):
                error = failure.value
            elif failure.check(ZoneChangeError):
                error = _from_change_error(failure.value)
            else:
                log.failure("API: {method} {path} by key {key} failed", failure,
                            method=method, path=path, key=key.name)
                error = ApiError(500)
            return self._error(request, error)

        result.addErrback(failed).addCallback(done)
        return server.NOT_DONE_YET

    # -- answers

    def _error(self, request, error: ApiError) -> bytes:
        """PowerDNS's error answer: JSON for 422 and when JSON is accepted, else text."""
        request.setResponseCode(error.status)
        if error.status == 422 or wants_json(request):
            return self._json(request, {"error": str(error)}, error.status)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return str(error).encode()

    def _json(self, request, data, status: int = 200) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(data).encode()

    def _json_later(self, request, make: Callable[[], object], status: int = 200) -> defer.Deferred:
        """``make()``'s JSON, made and encoded in the API's thread pool."""
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return self.run(lambda: json.dumps(make()).encode())

    # -- routes

    def _dispatch(self, request, method: str, path: str, key: ApiKey):
        parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
        if parts[:1] != ["api"]:
            raise ApiError(404)
        rest = parts[1:]
        if not rest:
            return self._only(method, "GET") or self._json(request, [{"url": "/api/v1", "version": 1}])
        if rest == ["v1"]:
            return self._only(method, "GET") or self._json(
                request, [{"server_url": "/api/v1/servers{/server}", "api_features": []}])
        if rest[:2] != ["v1", "servers"]:
            raise ApiError(404)
        rest = rest[2:]
        if not rest:
            return self._only(method, "GET") or self._json(request, [server_object()])
        if rest[0] != SERVER_ID:
            raise ApiError(404)
        rest = rest[1:]
        if not rest:
            return self._only(method, "GET") or self._json(request, server_object())
        if rest[0] != "zones":
            raise ApiError(404)
        rest = rest[1:]
        if not rest:
            if method == "GET":
                return self._list(request, key)
            if method == "POST":
                return self._create(request, key)
            raise ApiError(405)
        if len(rest) > 2 and not (len(rest) == 3 and rest[1] == "dnssec"):
            raise ApiError(404)
        name = zone_name_of_id(rest[0])
        view = self.manager.zone(name)
        if view is None or not key.sees(view.name):
            raise ApiError(404)
        action = "/".join(rest[1:]) or None
        routes = {
            (None, "GET"): self._show,
            (None, "PATCH"): self._patch,
            (None, "DELETE"): self._delete,
            ("notify", "PUT"): self._notify,
            ("export", "GET"): self._export,
            ("cryptokeys", "GET"): self._cryptokeys,
            # aliasd's own (PowerDNS has none): the hand steps of key rollovers
            ("dnssec", "GET"): self._dnssec_status,
            ("dnssec/checkds", "POST"): self._dnssec_checkds,
            ("dnssec/rollover", "POST"): self._dnssec_rollover,
        }
        handler = routes.get((action, method))
        if handler is None:
            raise ApiError(405 if action in {a for a, _ in routes} else 404)
        return handler(request, key, view)

    @staticmethod
    def _only(method: str, allowed: str) -> None:
        if method != allowed:
            raise ApiError(405)

    def _list(self, request, key: ApiKey):
        views = [v for v in self.manager.zones() if key.sees(v.name)]
        wanted = request.args.get(b"zone")
        if wanted:
            name = canonical_name(wanted[0].decode("utf-8", "replace"))
            views = [v for v in views if v.name == name]
        catalog = self.catalog
        return self._json_later(request, lambda: [zone_summary(v, catalog) for v in views])

    def _show(self, request, key: ApiKey, view: ZoneView):
        catalog = self.catalog
        if request.args.get(b"rrsets", [b"true"])[0].lower() == b"false":
            return self._json(request, zone_object(view, catalog))
        return self._json_later(request, lambda: zone_object(view, catalog, self.manager.rrsets(view.name)))

    def _body(self, request) -> defer.Deferred:
        """The request's JSON object, parsed in the thread pool."""
        body = request.content.getvalue()
        return self.run(parse_json, body)

    def _create(self, request, key: ApiKey) -> defer.Deferred:
        if not key.create:
            raise ApiError(403, f"Key '{key.name}' may not create zones")
        body = request.content.getvalue()
        return self.run(_parse_create, body).addCallback(lambda parsed: self._create_zone(*parsed, request, key))

    def _create_zone(self, data: dict, parsed, request, key: ApiKey) -> defer.Deferred:
        name_text = data.get("name")
        if not isinstance(name_text, str):
            raise ApiError(422, "Key 'name' not present or not a String")
        name = canonical_name(name_text)
        if not key.sees(name):
            raise ApiError(403, f"Key '{key.name}' may not create zone {name.to_text()}")
        if key.max_zones is not None:
            # The API-created zones this key can see: for a key with ``zones``
            # those of its list, else every zone created through the API.
            made = self.manager.created_count(key.zones)
            if made >= key.max_zones:
                raise ApiError(422, f"Key '{key.name}' may have at most {key.max_zones} zones")
        kind = data.get("kind", "Native")
        kind = {"native": "Native", "master": "Master", "primary": "Master"}.get(str(kind).lower(), kind)
        if kind in ("Slave", "Secondary", "Consumer", "Producer"):
            raise ApiError(422, f"Zone kind '{kind}' is not supported: aliasd serves Native and Master zones")
        if kind not in ("Native", "Master"):
            kind = "Native"  # PowerDNS too takes an unknown kind as Native
        servers = data.get("nameservers", [])
        if not isinstance(servers, list):
            raise ApiError(422, "Key 'nameservers' is not a list")
        nameservers = [canonical_name(s, "Nameserver is not canonical: '{}'") for s in servers]
        if parsed is None or parsed[0] != name:
            parsed = (name, _rrsets_or_error(name, data))
        if isinstance(parsed[1], ApiError):
            raise parsed[1]
        changes = parsed[1]
        if nameservers and any(c.name == name and c.rdtype == dns.rdatatype.NS for c in changes):
            raise ApiError(422, "Nameservers list MUST NOT be mixed with zone-level NS in rrsets")
        d = self.manager.create(
            name, changes, kind=kind, nameservers=nameservers,
            default_soa=default_soa_for(self.settings.default_soa, name), by=key.name,
        )
        log.info("API: key {key} creates zone {zone} ({count} rrsets)", key=key.name, zone=name.to_text(),
                 count=len(changes))
        catalog = self.catalog

        def created(view: ZoneView) -> defer.Deferred:
            return self._json_later(request, lambda: zone_object(view, catalog, self.manager.rrsets(view.name)),
                                    201)

        return d.addCallback(created)

    def _patch(self, request, key: ApiKey, view: ZoneView) -> defer.Deferred:
        def apply(data: dict):
            changes = parse_rrsets(view.name, data.get("rrsets"), patch=True)
            log.info("API: key {key} changes {count} rrsets of zone {zone}", key=key.name, count=len(changes),
                     zone=view.name.to_text())
            return self.manager.patch(view.name, changes, by=key.name)

        return self._body(request).addCallback(apply).addCallback(lambda _: self._no_content(request))

    def _delete(self, request, key: ApiKey, view: ZoneView) -> defer.Deferred:
        if not key.create:
            raise ApiError(403, f"Key '{key.name}' may not delete zones")
        log.info("API: key {key} deletes zone {zone}", key=key.name, zone=view.name.to_text())
        return self.manager.delete(view.name, by=key.name).addCallback(lambda _: self._no_content(request))

    @staticmethod
    def _no_content(request) -> None:
        request.setResponseCode(204)

    def _notify(self, request, key: ApiKey, view: ZoneView):
        self.manager.notify(view.name)
        log.info("API: key {key} asks for NOTIFY of zone {zone}", key=key.name, zone=view.name.to_text())
        return self._json(request, {"result": "Notification queued"})

    def _export(self, request, key: ApiKey, view: ZoneView) -> defer.Deferred:
        if wants_json(request):
            return self._json_later(request, lambda: {"zone": self.manager.export(view.name)})
        request.setHeader(b"content-type", b"text/plain; charset=us-ascii")
        return self.run(lambda: self.manager.export(view.name).encode("ascii", "backslashreplace"))

    def _cryptokeys(self, request, key: ApiKey, view: ZoneView) -> defer.Deferred:
        return self._json_later(request, lambda: self.manager.cryptokeys(view.name))


    # -- aliasd's DNSSEC routes: what aliasd-ctl's dnssec- commands do

    def _rollovers(self, view: ZoneView):
        if not view.signed:
            raise ApiError(422, f"zone {view.name.to_text()} is not signed (no dnssec or dnssec-policy): "
                                "it has no keys to roll")
        rollovers = self.rollovers or getattr(self.manager, "rollovers", None)  # (set on either)
        if rollovers is None:
            raise ApiError(422, f"zone {view.name.to_text()} is signed with keys aliasd never rolls "
                                "(dnssec = true): give it a dnssec-policy to roll them")
        return rollovers

    def _dnssec_status(self, request, key: ApiKey, view: ZoneView):
        return self._json(request, {"zone": view.name.to_text(), **self._rollovers(view).state(view.name)})

    def _dnssec_step(self, request, key: ApiKey, view: ZoneView, step: Callable) -> defer.Deferred:
        rollovers = self._rollovers(view)

        def apply(data: dict):
            try:
                line = step(rollovers, view.name, data)
            except CommandError as e:
                raise ApiError(422, str(e)) from None
            log.info("API: key {key}: zone {zone}: {line}", key=key.name, zone=view.name.to_text(), line=line)
            return self._json(request, {"zone": view.name.to_text(), "result": line,
                                        "dnssec": rollovers.state(view.name)})

        return self._body(request).addCallback(apply)

    def _dnssec_checkds(self, request, key: ApiKey, view: ZoneView) -> defer.Deferred:
        return self._dnssec_step(request, key, view, lambda r, name, data: checkds(r, name, data.get("state")))

    def _dnssec_rollover(self, request, key: ApiKey, view: ZoneView) -> defer.Deferred:
        return self._dnssec_step(request, key, view, lambda r, name, data: start_rollover(r, name, data.get("key")))


def _from_change_error(error: ZoneChangeError) -> ApiError:
    """The ZoneManager's refusal as an answer: 404 and 409 in PowerDNS's
    words (a 404 says no more than "Not Found"), the others with the reason."""
    if error.status in (404, 409):
        return ApiError(error.status)
    return ApiError(error.status, str(error))


class ApiSite(server.Site):
    """The API's site: /api and below; no access log line per request (the
    changes are logged with the key's name)."""

    noisy = False
    requestFactory = ApiRequest

    def __init__(self, api: ApiResource):
        self.api = api
        super().__init__(api)
        self.displayTracebacks = False

    def log(self, request) -> None:
        pass


#: Threads of the API's own pool: JSON of big zones is made there, never in
#: the reactor, and never in the pool that records zone versions.
API_THREADS = 2


class ApiService(service.MultiService):
    """The API's listeners and its thread pool, started and stopped together."""

    def __init__(self, settings: ApiSettings, manager, reactor, *, tls_options=None, catalog: str = ""):
        super().__init__()
        self.pool = ThreadPool(0, API_THREADS, name="aliasd-api")
        self.resource = ApiResource(
            manager, settings, catalog=catalog, clock=reactor.seconds,
            run=lambda f, *args: threads.deferToThreadPool(reactor, self.pool, f, *args),
        )
        self.site = ApiSite(self.resource)
        for endpoint in settings.listen:
            if tls_options is not None:
                listener = internet.SSLServer(endpoint.port, self.site, tls_options, interface=endpoint.host)
            else:
                listener = internet.TCPServer(endpoint.port, self.site, interface=endpoint.host)
            listener.setServiceParent(self)

    def startService(self) -> None:
        self.pool.start()
        super().startService()

    def stopService(self):
        d = defer.maybeDeferred(super().stopService)
        d.addBoth(lambda result: (self.pool.stop(), result)[1])
        return d
