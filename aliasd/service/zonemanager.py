"""The zones as the HTTP API sees them (issue 22's ZoneManager facade).

This is the read side only, enough for the API's GET routes, export,
cryptokeys and NOTIFY: the served zones, their records as their source has
them (ALIAS not flattened, no DNSSEC records) and their signing keys.
Creating, changing and deleting zones at runtime belongs to the zones
branch (issue 22 item 3), which brings the same facade with its write
methods; until then they refuse with 501.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import dns.dnssec
import dns.name
import dns.rdatatype
from twisted.internet import defer

from aliasd.base import store
from aliasd.base.config import Settings
from aliasd.dnssec.keys import ZoneKey
from aliasd.zones.zonefile import type_text


@dataclasses.dataclass(frozen=True)
class RRsetChange:
    """One rrset of a POST or PATCH: REPLACE with ``records`` (presentation
    form, absolute names) or DELETE."""

    name: dns.name.Name
    rdtype: int
    changetype: str
    ttl: int | None = None
    records: tuple[str, ...] = ()


class ZoneChangeError(Exception):
    """A change refused; nothing was changed. ``status`` is the HTTP status
    the API answers, ``str(e)`` the message (naming the record at fault)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class ZoneView:
    name: dns.name.Name
    kind: str  # "Native" or "Master"
    serial: int | None  # None while not served
    source: str  # "api" or "file"
    editable: bool
    signed: bool


class ZoneManager:
    """Answers the API's questions from the authority and the settings."""

    def __init__(self, authority, notifier, settings: Callable[[], Settings]):
        self.authority = authority
        self.notifier = notifier
        self.settings = settings  # the current settings (a reload replaces them)
        self.rollovers = None  # the key-rollover engine: each key's state and next event

    def _configured(self):
        return {z.name: z for z in self.settings().zones}

    def _view(self, zone) -> ZoneView:
        version = self.authority.versions.get(zone.name)
        return ZoneView(
            zone.name,
            "Master" if zone.notify else "Native",
            version.serial if version is not None else None,
            "file",
            bool(zone.update),
            zone.name in self.authority.signers,
        )

    def zones(self) -> list[ZoneView]:
        return [self._view(z) for z in sorted(self._configured().values(), key=lambda z: z.name)]

    def zone(self, name: dns.name.Name) -> ZoneView | None:
        zone = self._configured().get(name)
        return self._view(zone) if zone is not None else None

    def _source(self, name: dns.name.Name):
        source = self.authority.sources.get(name) if name in self._configured() else None
        if source is None:
            raise ZoneChangeError(404, f"Could not find domain '{name.to_text()}'")
        return source

    def rrsets(self, name: dns.name.Name) -> list[tuple[dns.name.Name, int, int, list[str]]]:
        """(owner, type, TTL, [content]) sorted by owner then type; the SOA
        with the serial served now. Safe in a thread: the source is immutable."""
        source = self._source(name)
        version = self.authority.versions.get(name)
        out = []
        serial = version.serial if version is not None else None
        for packed in source.records.values():
            owner = store.name_of(store.owner_of(packed))
            node = store.PackedNode(packed, owner, serial=serial)
            for rdtype in node:
                rrset = node[rdtype]
                out.append((owner, rdtype, rrset.ttl, sorted(rd.to_text() for rd in rrset)))
        out.sort(key=lambda r: (r[0], r[1]))
        return out

    def export(self, name: dns.name.Name) -> str:
        """Master-file text, absolute names, ALIAS as ALIAS (PowerDNS's form)."""
        lines = []
        for owner, rdtype, ttl, contents in self.rrsets(name):
            for content in contents:
                lines.append(f"{owner.to_text()}\t{ttl}\tIN\t{type_text(rdtype)}\t{content}")
        return "\n".join(lines) + "\n"

    def notify(self, name: dns.name.Name) -> None:
        self._source(name)
        version = self.authority.versions.get(name)
        if version is not None:
            self.notifier.notify_again([version])

    def cryptokeys(self, name: dns.name.Name) -> list[dict]:
        self._source(name)
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

    def create(self, name, changes, *, kind="Native", nameservers=(), default_soa=None, by: str):
        return defer.fail(ZoneChangeError(501, "Creating zones is not implemented in this build"))

    def patch(self, name, changes, *, by: str):
        return defer.fail(ZoneChangeError(501, "Changing zones is not implemented in this build"))

    def delete(self, name, *, by: str):
        return defer.fail(ZoneChangeError(501, "Deleting zones is not implemented in this build"))


def _cryptokey(key: ZoneKey, has_zsk: bool) -> dict:
    """One key as PowerDNS's cryptokeys route shows it."""
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
    if algorithm in (dns.dnssec.Algorithm.ECDSAP256SHA256, dns.dnssec.Algorithm.ED25519):
        return 256
    if algorithm == dns.dnssec.Algorithm.ECDSAP384SHA384:
        return 384
    key = dnskey.key  # RSA: exponent length, exponent, modulus (RFC 3110)
    skip = 3 if key[0] == 0 else 1
    exponent = int.from_bytes(key[1:3]) if key[0] == 0 else key[0]
    return (len(key) - skip - exponent) * 8
