"""The zone manager: zones created, changed and deleted at runtime (issue 22).

Why a module of its own: it is what the HTTP API (aliasd.service.api)
calls, and it makes each request a change like any other. A zone created
here lives in the state store only (aliasd.update.runtime notes it, its
records are a dynamic zone's journal), gets [zone-defaults] and joins the
catalog at once (aliasd.service.reload.Reloader.serve_runtime); a change
(aliasd.update.rrsets, all or nothing) goes to the authority as an UPDATE
does, and its Deferred fires only once the change is recorded durably and
served, with its serial step, its IXFR difference and its NOTIFY.
Requests are checked and applied on the reactor, one after another, so
two PATCHes of one zone never interleave; what grows with the zones
(writing, signing) runs in threads and in the authority's slices.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.dnssectypes import Algorithm
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from aliasd.base import store
from aliasd.dnssec.keys import ZoneKey
from aliasd.replicate import journaldb
from aliasd.service.authority import ZoneAuthority
from aliasd.service.reload import configured_zones, make_signers, with_runtime_zones
from aliasd.update.rrsets import (
    RRsetChange,
    ZoneChangeError,
    build_zone,
    check_max_records,
    patch_zone,
)
from aliasd.zones.zonefile import DNSSEC_TYPES, ZoneSource, type_text

__all__ = ["RRsetChange", "ZoneChangeError", "ZoneManager", "ZoneView"]

log = Logger()

KINDS = ("Native", "Master")


@dataclasses.dataclass(frozen=True)
class ZoneView:
    """What the API shows of a zone."""

    name: dns.name.Name
    kind: str  # "Native" or "Master" (as created; file zones: "Master" with notify targets)
    serial: int | None  # None while not served (held/loading)
    source: str  # "api" (created at runtime) or "file"
    editable: bool  # PATCH allowed: runtime zones, and file zones with update rules
    signed: bool


def _log_failed(failure, text: str, **fields) -> None:
    """A change that failed: the store's refusal (OSError) as one line, a
    bug with its traceback."""
    if failure.check(OSError):
        log.error(text, error=failure.getErrorMessage(), **fields)
    else:
        log.failure(text, failure, error=failure.getErrorMessage(), **fields)


def _not_found(name: dns.name.Name) -> ZoneChangeError:
    return ZoneChangeError(404, f"Could not find domain '{name.to_text()}'")


class ZoneManager:
    """The facade the HTTP API calls (the interface of issue 22)."""

    def __init__(self, authority, reloader, runtime, dynamic, notifier, state, run_in_thread=None):
        self.authority = authority
        self.reloader = reloader  # its settings are the configured ones; it serves runtime zones
        self.runtime = runtime  # aliasd.update.runtime.RuntimeZones
        self.dynamic = dynamic  # aliasd.update.dynamic.DynamicZones (journals, frozen zones)
        self.notifier = notifier
        self.state = state
        self.run_in_thread = run_in_thread or (lambda f, *args: defer.maybeDeferred(f, *args))
        self._busy: set[dns.name.Name] = set()  # zones being created or deleted
        self._to_serve: dict = {}  # created zones served at the next turn of the reactor: _serve_soon
        self._serving = None
        self.rollovers = None  # the key-rollover engine: each key's state and next event

    @classmethod
    def in_threads(cls, reactor, *args):
        return cls(*args, run_in_thread=lambda f, *a: threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *a))

    # -- what there is -------------------------------------------------------

    @property
    def settings(self):
        return self.reloader.settings

    def _zone_settings(self, name: dns.name.Name):
        """The served zone's settings (a runtime zone's: [zone-defaults]), or None."""
        settings = self.settings
        zone = configured_zones(settings).get(name)
        if zone is not None:
            return zone if zone is not settings.catalog else None
        if name in self.runtime.zones:
            return self.runtime.settings(settings.zone_defaults)[name]
        return None

    def _view(self, zone) -> ZoneView:
        runtime = self.runtime.zones.get(zone.name) if zone.file is None else None
        version = self.authority.versions.get(zone.name)
        return ZoneView(
            name=zone.name,
            kind=runtime.kind if runtime is not None else ("Master" if zone.notify else "Native"),
            serial=version.serial if version is not None else None,
            source="api" if zone.file is None else "file",
            editable=zone.file is None or zone.dynamic,
            signed=zone.name in self.authority.signers,
        )

    def zones(self) -> list[ZoneView]:
        """Every configured or runtime zone (not the catalog)."""
        return [self._view(z) for z in with_runtime_zones(self.settings, self.runtime).zones
                if z.name not in self._busy or z.name in self.authority.versions]

    def created_count(self, names=None) -> int:
        """How many zones created through the API zones() lists (of ``names``
        only, when given): what a key's max-zones counts, without a view of
        every zone (ten thousand zones, at every POST)."""
        runtime, versions = self.runtime.zones, self.authority.versions
        unlisted = {n for n in self._busy if n in runtime and n not in versions}
        if names is None:
            return len(runtime) - len(unlisted)
        return sum(1 for n in names if n in runtime and n not in unlisted)

    def zone(self, name: dns.name.Name) -> ZoneView | None:
        zone = self._zone_settings(name)
        return self._view(zone) if zone is not None else None

    def _served_source(self, name: dns.name.Name) -> ZoneSource:
        if self._zone_settings(name) is None:
            raise _not_found(name)
        source = self.authority.sources.get(name)
        if source is None:
            raise ZoneChangeError(503, f"zone {name.to_text()} is not served now (its file is broken, "
                                       "or it is still loading)")
        return source

    def rrsets(self, name: dns.name.Name) -> list[tuple[dns.name.Name, int, int, list[str]]]:
        """(owner, type, TTL, [content]) of the zone's records as its source
        has them (ALIAS as ALIAS, not flattened; no DNSSEC records of a
        signed zone; the SOA with the serial served now), sorted by owner,
        then type. Safe in a thread: the source is immutable."""
        source = self._served_source(name)
        signed = name in self.authority.signers
        version = self.authority.versions.get(name)
        serial = version.serial if version is not None else None
        out = []
        for packed in source.records.values():
            owner = store.name_of(store.owner_of(packed))
            node = store.PackedNode(packed, owner, serial=serial)
            for rdtype in node:
                if signed and rdtype in DNSSEC_TYPES:
                    continue
                rrset = node[rdtype]
                out.append((owner, int(rdtype), rrset.ttl, sorted(rd.to_text() for rd in rrset)))
        out.sort(key=lambda entry: (entry[0], entry[1]))
        return out

    def export(self, name: dns.name.Name) -> str:
        """Master-file text, absolute names, ALIAS as ALIAS (PowerDNS's form)."""
        lines = []
        for owner, rdtype, ttl, contents in self.rrsets(name):
            for content in contents:
                lines.append(f"{owner.to_text()}\t{ttl}\tIN\t{type_text(rdtype)}\t{content}")
        return "\n".join(lines) + "\n"

    def cryptokeys(self, name: dns.name.Name) -> list[dict]:
        """The signed zone's keys in PowerDNS's shape ([] when unsigned)."""
        if self._zone_settings(name) is None:
            raise _not_found(name)
        signer = self.authority.signers.get(name)
        if signer is None:
            return []
        keys = signer.keys
        has_zsk = any(k.is_zsk for k in keys)
        rolled = self.rollovers.state(name)["keys"] if self.rollovers is not None else []
        by_key = {(k["tag"], k["algorithm"]): k for k in rolled}
        out = []
        for key in keys:
            entry = _cryptokey(key, has_zsk)
            state = by_key.get((key.tag, int(key.algorithm)))
            if state is not None:  # aliasd's own fields: where the key stands in its rollovers
                entry.update(state=state["state"], next_event=state["next_event"], next_time=state["next_time"])
            out.append(entry)
        return out

    def notify(self, name: dns.name.Name) -> None:
        """NOTIFY the zone's secondaries of its serial now."""
        if self._zone_settings(name) is None:
            raise _not_found(name)
        version = self.authority.versions.get(name)
        if version is not None:
            self.notifier.notify_again([version])

    # -- changes -------------------------------------------------------------

    def _writable(self, name: dns.name.Name) -> None:
        if name in self._busy:
            raise ZoneChangeError(409, f"zone {name.to_text()} is being created or deleted")
        if self.authority.waiting_for_state:
            raise ZoneChangeError(503, "the state store refuses writes now (see the log); nothing was changed")

    def create(self, name: dns.name.Name, changes, *, kind: str = "Native", nameservers=(),
               default_soa: str | None = None, by: str) -> defer.Deferred:
        """Create a zone; fires with its ZoneView once it is recorded, served
        and in the catalog; errback ZoneChangeError (nothing changed). Its
        records are parsed and checked in a thread, as the rest of its
        making: parsing grows with the zone, and the reactor answers."""
        try:
            changes, nameservers = list(changes), list(nameservers)
            zone = self._new_zone_settings(name, kind)
            self._writable(name)
        except ZoneChangeError as e:
            return defer.fail(e)
        self._busy.add(name)
        made = []
        d = self.run_in_thread(self._prepare, name, kind, zone, changes, nameservers, default_soa)
        d.addCallback(lambda prepared: (made.append(prepared[2]), self._serve_new(prepared))[1])
        d.addCallback(lambda _: self.authority.wait_served(name))

        def done(_):
            self._busy.discard(name)
            view = self.zone(name)
            log.info("api: zone {zone} created by {by}: serial {serial}, {records} records, kind {kind}",
                     zone=name.to_text(), by=by, serial=view.serial, records=made[0].record_count(), kind=kind)
            return view

        def failed(failure):
            self._busy.discard(name)
            if failure.check(ZoneChangeError):
                return failure
            _log_failed(failure, "api: zone {zone} not created ({by}): {error}", zone=name.to_text(), by=by)
            raise ZoneChangeError(503, f"zone {name.to_text()} not created: {failure.getErrorMessage()}")

        return d.addCallbacks(done, failed)

    def _new_zone_settings(self, name, kind):
        """The new zone's settings, its name and kind checked (raises ZoneChangeError)."""
        if not isinstance(name, dns.name.Name) or not name.is_absolute() or name == dns.name.root:
            raise ZoneChangeError(422, f"zone name {name} must be absolute, and not the root")
        if kind not in KINDS:
            raise ZoneChangeError(422, f"kind {kind!r}: aliasd creates Native or Master zones")
        catalog = self.settings.catalog
        if self._zone_settings(name) is not None or (catalog is not None and catalog.name == name):
            raise ZoneChangeError(409, f"Domain '{name.to_text()}' already exists")
        return dataclasses.replace(self.settings.zone_defaults, name=name, file=None)

    @staticmethod
    def _new_source(name, zone, changes, nameservers, default_soa) -> ZoneSource:
        """The new zone's source, checked (raises ZoneChangeError; safe in a thread)."""
        given = {(c.name, c.rdtype) for c in changes}
        if default_soa is not None and (name, dns.rdatatype.SOA) not in given:
            changes.append(RRsetChange(name, dns.rdatatype.SOA, "REPLACE", 3600, (_soa_text(default_soa, name),)))
        if nameservers and (name, dns.rdatatype.NS) not in given:
            changes.append(RRsetChange(name, dns.rdatatype.NS, "REPLACE", 3600,
                                       tuple(_absolute(str(ns)) for ns in nameservers)))
        if any(c.changetype != "REPLACE" for c in changes):
            raise ZoneChangeError(422, "a new zone's RRsets are all REPLACE")
        source = build_zone(name, Path(f"<runtime zone {name.to_text()}>"), changes, zone.dnssec)
        check_max_records(source, zone.max_records)
        return source

    def _prepare(self, name, kind, zone, changes, nameservers, default_soa):
        """In a thread: the zone's records parsed and checked (nothing is
        written when they fail), then noted in the store, its signing keys
        made, and its book-keeping for the authority (ZoneAuthority.prepare)."""
        source = self._new_source(name, zone, changes, nameservers, default_soa)
        entry = self.runtime.add(name, kind, self.dynamic.files)
        signers = make_signers(dataclasses.replace(self.settings, zones=(zone,))) if zone.dnssec else {}
        return entry, signers, source, ZoneAuthority.prepare([source])

    def _rollovers_take(self, name: dns.name.Name) -> None:
        """Tell the key-rollover engine of a zone created or deleted here."""
        if self.rollovers is None:
            return
        signer = self.authority.signers.get(name)
        zone = self._zone_settings(name) if signer is not None else None
        policy = self.settings.policy_of(zone) if zone is not None else None
        self.rollovers.configure_zone(name, policy, signer.keys if signer is not None else [])

    def _serve_new(self, prepared) -> defer.Deferred:
        entry, signers, source, ready = prepared
        self.runtime.served(entry)
        if signers:
            self.authority.set_signers({**self.authority.signers, **signers})
            self._rollovers_take(entry.name)
        snapshot = journaldb.frame(journaldb.SNAPSHOT, journaldb.encode_snapshot(source.serial, source.records, b""))
        return self._serve_soon(entry.name, source, [snapshot], ready)

    def _serve_soon(self, name: dns.name.Name, source: ZoneSource, frames: list, ready: dict) -> defer.Deferred:
        """Serve the new zone together with the others whose creation ends
        in this turn of the reactor (one catalog change for all)."""
        d = defer.Deferred()
        self._to_serve[name] = (source, frames, ready, d)
        if self._serving is None:
            self._serving = self.reloader.reactor.callLater(0, self._serve_now)
        return d

    def _serve_now(self) -> None:
        pending, self._to_serve, self._serving = self._to_serve, {}, None
        prepared = {}
        for _, _, ready, _ in pending.values():
            prepared.update(ready)
        try:
            self.reloader.serve_runtime_many(
                {name: (source, frames) for name, (source, frames, _, _) in pending.items()}, prepared)
        except Exception:
            failure = Failure()
            for *_, d in pending.values():
                d.errback(failure)
            return
        for *_, d in pending.values():
            d.callback(None)

    def patch(self, name: dns.name.Name, changes, *, by: str) -> defer.Deferred:
        """Apply RRset changes, all or nothing; fires with the ZoneView once
        the change is recorded and served; errback ZoneChangeError."""
        try:
            view = self.zone(name)
            if view is None:
                raise _not_found(name)
            self._writable(name)
            if not view.editable:
                raise ZoneChangeError(
                    422, f"zone {name.to_text()} comes from a file without update rules: its file is its "
                         "source; edit the file and reload (or give the zone update rules)")
            if name in self.dynamic.frozen:
                raise ZoneChangeError(422, f"zone {name.to_text()} is frozen (aliasd-ctl thaw takes changes again)")
            source = self._served_source(name)
            served = self.authority.versions.get(name)
            if served is None:
                raise ZoneChangeError(503, f"zone {name.to_text()} is not loaded yet")
            patched = patch_zone(source, list(changes), view.signed, served.serial)
            if patched is None:
                return defer.succeed(view)
            check_max_records(patched.source, self._zone_settings(name).max_records)
        except ZoneChangeError as e:
            return defer.fail(e)
        frames = [journaldb.frame(journaldb.UPDATE, journaldb.encode_nodes(patched.source.serial, patched.touched))]
        d = self.authority.update_source(patched.source, frames, patched.names)

        def done(_):
            log.info("api: zone {zone} changed by {by}: serial {serial}, {count} name(s) changed",
                     zone=name.to_text(), by=by, serial=patched.source.serial, count=len(patched.names))
            return self.zone(name)

        def failed(failure):
            _log_failed(failure, "api: change of zone {zone} by {by} not applied: {error}", zone=name.to_text(),
                        by=by)
            raise ZoneChangeError(503, f"zone {name.to_text()}: change not applied: {failure.getErrorMessage()}")

        return d.addCallbacks(done, failed)

    def delete(self, name: dns.name.Name, *, by: str) -> defer.Deferred:
        """Delete a zone created at runtime; fires with None once it is no
        longer served, out of the catalog, and gone from the store."""
        try:
            zone = self._zone_settings(name)
            if zone is None:
                raise _not_found(name)
            if zone.file is not None:
                raise ZoneChangeError(422, f"zone {name.to_text()} comes from the configuration: remove it "
                                           "there and reload")
            self._writable(name)
        except ZoneChangeError as e:
            return defer.fail(e)
        self._busy.add(name)
        entry = self.runtime.unserved(name)
        source = self.authority.sources.get(name)
        serial = self.authority.versions[name].serial if name in self.authority.versions else None
        if name in self.authority.signers:
            self.authority.set_signers({o: s for o, s in self.authority.signers.items() if o != name})
            self._rollovers_take(name)
        self.reloader.serve_runtime(name, None, [])
        catalog = self.settings.catalog
        d = self.authority.wait_served(catalog.name) if catalog is not None else defer.succeed(None)
        d.addCallback(lambda _: self.run_in_thread(self.runtime.remove, name, self.dynamic, self.state))

        def done(_):
            self._busy.discard(name)
            log.info("api: zone {zone} deleted by {by} (last serial {serial}, kept for the next zone of that name)",
                     zone=name.to_text(), by=by, serial=serial)

        def failed(failure):
            self._busy.discard(name)
            _log_failed(failure, "api: zone {zone} not deleted ({by}): {error}; it is served again",
                        zone=name.to_text(), by=by)
            self.runtime.served(entry)
            if source is not None:
                self.reloader.serve_runtime(name, source, [])
            raise ZoneChangeError(503, f"zone {name.to_text()} not deleted: {failure.getErrorMessage()}")

        return d.addCallbacks(done, failed)



def _absolute(text: str) -> str:
    """A name as given in a setting or a nameservers list: absolute with or without its final dot."""
    return text if text.endswith(".") else text + "."


def _soa_text(default_soa: str, zone: dns.name.Name) -> str:
    """``[api] default-soa`` for ``zone``, as PowerDNS's default-soa-content:
    ``@`` is the zone, names are absolute with or without their final dot."""
    text = default_soa.replace("@", zone.to_text())
    try:
        return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, text, origin=dns.name.root,
                                   relativize=False).to_text()
    except (dns.exception.DNSException, ValueError) as e:
        raise ZoneChangeError(422, f"default SOA {default_soa!r}: not an SOA record: {e}") from None


def _cryptokey(key: ZoneKey, has_zsk: bool) -> dict:
    """One key as PowerDNS's cryptokeys route shows it."""
    import dns.dnssec  # (cryptography: imported by signed zones only, aliasd.dnssec.keys)

    dnskey = key.dnskey
    ds = []
    if key.is_ksk and not key.revoked:
        # SHA-1, SHA-256 and SHA-384, as PowerDNS lists them (SHA-1 only
        # listed, for parents that still want it: dnspython's policy refuses
        # to make it by default).
        ds = [dns.dnssec.make_ds(key.zone, dnskey, digest, policy=dns.dnssec.allow_all_policy).to_text()
              for digest in ("SHA1", "SHA256", "SHA384")]
    return {
        "type": "Cryptokey",
        "id": key.tag,
        "keytype": ("ksk" if has_zsk else "csk") if key.is_ksk else "zsk",
        "active": key.active(),
        "published": key.published(),
        "dnskey": dnskey.to_text(),
        "ds": ds,
        "algorithm": dns.dnssec.algorithm_to_text(dnskey.algorithm),
        "bits": _bits(dnskey),
        "flags": dnskey.flags,
    }


def _bits(dnskey) -> int:
    """The key's size in bits, as PowerDNS reports it."""
    algorithm = dnskey.algorithm
    if algorithm in (Algorithm.ECDSAP256SHA256, Algorithm.ED25519):
        return 256
    if algorithm == Algorithm.ECDSAP384SHA384:
        return 384
    key = dnskey.key  # RSA: exponent length, exponent, modulus (RFC 3110)
    skip = 3 if key[0] == 0 else 1
    exponent = int.from_bytes(key[1:3]) if key[0] == 0 else key[0]
    return (len(key) - skip - exponent) * 8
