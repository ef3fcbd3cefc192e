"""DNSSEC signing of a zone's served view, ALIAS addresses included.

Why a module of its own: signing is pure computation on a ZoneVersion (the
view the secondaries get: every ALIAS replaced by the addresses it
resolved to), and it is the costly part, so the authority runs it in its
commit thread. ``sign`` returns the DNSSEC records of a version as a
``Signed``: the denial chain (NSEC, or NSEC3 with no salt and no extra
iterations, RFC 9276), the apex DNSKEY, CDS and CDNSKEY (RFC 7344, 8078)
and NSEC3PARAM, and an RRSIG for every authoritative RRset. All of it is
kept packed (aliasd.store), like the zone's own records.

Only what changed is signed again: given the previous version's
``Signed``, the owners whose records differ (and, for NSEC, their
neighbours in the chain) get new signatures; the rest are shared.

Signatures are deterministic (RFC 6979 ECDSA, Ed25519, RSA) and their
validity window is a pure function of the zone and the time: each zone's
windows start at its own phase (a hash of its name), every ``validity -
refresh_before`` seconds. So a restart signs exactly the same records the
same way, and the serial need not move; and ten thousand zones refresh
their signatures spread over the refresh period instead of all at once.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import hashlib
import time
from typing import Iterable

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.NSEC3
import dns.rdtypes.ANY.NSEC3PARAM
import dns.rrset

from aliasd import store
from aliasd.dnssec_keys import ZoneKey, cdnskey_rrset, cds_rrset, dnskey_rrset
from aliasd.zonefile import ALIAS_TYPE

_IN = dns.rdataclass.IN
T = dns.rdatatype
#: Records signed with the key-signing key(s); the rest with the zone-signing key(s).
_KSK_TYPES = frozenset({T.DNSKEY, T.CDS, T.CDNSKEY})
#: Types the signer owns at the apex: never taken from the zone file.
DNSSEC_TYPES = frozenset({T.RRSIG, T.NSEC, T.NSEC3, T.NSEC3PARAM, T.DNSKEY, T.CDS, T.CDNSKEY})
_CLOCK_SKEW = 3600  # inception this far in the past


@dataclasses.dataclass(frozen=True)
class DnssecSettings:
    """``[dnssec]``: how signed zones are signed."""

    algorithm: str = "ECDSAP256SHA256"
    denial: str = "nsec3"  # or "nsec"
    signature_validity: int = 14 * 86400
    refresh_before: int = 7 * 86400

    @property
    def period(self) -> int:
        """Seconds between two signings of a zone's records."""
        return self.signature_validity - self.refresh_before


def window(origin: dns.name.Name, settings: DnssecSettings, now: float | None = None) -> tuple[int, int, int]:
    """(epoch, inception, expiration) of the zone's signatures at ``now``.

    Epoch ``e`` of a zone starts at ``phase + e * period``: the zone's
    phase spreads zones over the period, and everything in one epoch is
    signed with the same window, so signing again gives the same records.
    """
    now = time.time() if now is None else now
    period = settings.period
    phase = int.from_bytes(hashlib.sha256(store.key_of(origin)).digest()[:8], "big") % period
    epoch = int((now - phase) // period)
    start = phase + epoch * period
    return epoch, start - _CLOCK_SKEW, start + settings.signature_validity


def next_refresh(origin: dns.name.Name, settings: DnssecSettings, now: float | None = None) -> float:
    """When the zone's next epoch starts (its signatures are refreshed then)."""
    now = time.time() if now is None else now
    period = settings.period
    phase = int.from_bytes(hashlib.sha256(store.key_of(origin)).digest()[:8], "big") % period
    return phase + (int((now - phase) // period) + 1) * period


@dataclasses.dataclass(frozen=True)
class Signed:
    """The DNSSEC part of one zone version.

    ``records``: owner key -> packed DNSSEC RRsets at that owner (NSEC;
    DNSKEY, CDS, CDNSKEY and NSEC3PARAM at the apex; NSEC3 at the hashed
    owners, which exist only here). ``signatures``: owner key -> packed
    node whose entries are typed by the *covered* type and hold RRSIG
    rdatas. ``chain``: the keys in denial order (NSEC: canonical order of
    the authoritative names; NSEC3: hashed owners in hash order).
    ``hashed``: NSEC3 only, each name's key -> its hashed owner's key.
    ``state``: what the signatures depend on besides the records (keys,
    algorithm, denial, epoch): part of the view's digest.
    """

    records: dict
    signatures: dict
    chain: tuple
    hashed: dict
    nsec3: bool
    state: str
    epoch: int
    ttl: int  # of the denial records
    # Sort keys of ``chain`` (NSEC: canonical label tuples; NSEC3: hashes), for bisection.
    order: list = dataclasses.field(default_factory=list, repr=False)

    def signatures_at(self, key: bytes, owner: dns.name.Name, covered: int,
                      ttl: int | None = None) -> dns.rrset.RRset | None:
        """The RRSIG RRset covering ``covered`` at ``key``, owned by
        ``owner`` (a wildcard's expansion takes the query name), with
        ``ttl`` (that of the RRset it covers, as served) if given."""
        packed = self.signatures.get(key)
        if packed is None:
            return None
        for rdtype, stored_ttl, _, start, end in store.directory(packed):
            if rdtype == covered:
                rrset = dns.rrset.RRset(owner, _IN, T.RRSIG, covered)
                rrset.update_ttl(stored_ttl if ttl is None else ttl)
                for wire in store.rdata_wires(packed, start, end):
                    rrset.add(dns.rdata.from_wire(_IN, T.RRSIG, wire, 0, len(wire)))
                return rrset
        return None


    # -- denial of existence in answers (RFC 4035 3.1.3, RFC 5155 7.2) -------

    def _denial_at(self, owner_key: bytes) -> list[dns.rrset.RRset]:
        """The NSEC or NSEC3 record at ``owner_key`` and its signature."""
        packed = self.records.get(owner_key)
        if packed is None:
            return []
        rdtype = T.NSEC3 if self.nsec3 else T.NSEC
        node = store.PackedNode(packed)
        if rdtype not in node:
            return []
        rrset = node[rdtype]
        sig = self.signatures_at(owner_key, rrset.name, rdtype)
        return [rrset] + ([sig] if sig is not None else [])

    def matching(self, key: bytes) -> list[dns.rrset.RRset]:
        """The denial record of the name ``key`` itself (it exists)."""
        return self._denial_at(self.hashed.get(key, b"") if self.nsec3 else key)

    def covering(self, key: bytes) -> list[dns.rrset.RRset]:
        """The denial record whose span covers the name ``key``."""
        if not self.chain:
            return []
        if self.nsec3:
            point = hashlib.sha1(key).digest()
            position = bisect.bisect_left(self.order, point) - 1
        else:
            position = bisect.bisect_right(self.order, _canonical(key)) - 1
        return self._denial_at(self.chain[position])  # -1: the last covers the wrap


def _canonical(key: bytes) -> tuple:
    """A sort key giving RFC 4034 6.1 canonical order for lookup keys
    (lower-case wire names): labels compared from the root down."""
    labels = []
    i = 0
    while key[i]:
        labels.append(key[i + 1:i + 1 + key[i]])
        i += key[i] + 1
    labels.reverse()
    return tuple(labels)


def _authoritative(version) -> tuple[list[bytes], set[bytes]]:
    """(keys of the names that are signed, delegation points among them).

    Names below a delegation (glue) are neither signed nor in the chain.
    """
    base = version.base
    cut_keys = {store.key_of(c) for c in base.cuts}
    keys, delegations = [], set()
    for key in version.keys():
        parents = store.suffixes(key)
        next(parents)
        if cut_keys and any(parent in cut_keys for parent in parents):
            continue  # occluded
        if key in cut_keys:
            delegations.add(key)
        keys.append(key)
    return keys, delegations


def _served_types(node) -> list[int]:
    return [t for t in node if t != ALIAS_TYPE and t not in DNSSEC_TYPES]


def _nsec3_owner(key: bytes, origin_key: bytes) -> tuple[str, bytes]:
    """(base32hex hash, lookup key of the NSEC3 owner) of the name ``key``."""
    digest = hashlib.sha1(key).digest()  # iterations 0, no salt (RFC 9276)
    text = base64.b32hexencode(digest).decode().lower()
    return text, bytes((len(text),)) + text.encode() + origin_key


class Signer:
    """Signs versions of one zone with its keys (in the commit thread)."""

    def __init__(self, origin: dns.name.Name, keys: list[ZoneKey], settings: DnssecSettings):
        self.origin = origin
        self.keys = keys
        self.settings = settings
        self.nsec3 = settings.denial == "nsec3"

    def state(self, now: float | None = None) -> str:
        """What the signatures depend on besides the records: goes into the
        view's digest, so a new key, denial or epoch moves the serial."""
        epoch = window(self.origin, self.settings, now)[0]
        tags = ",".join(f"{k.algorithm}/{k.tag}/{k.flags}" for k in self.keys)
        return f"dnssec:{self.settings.denial}:{tags}:{epoch}"

    def _signing_keys(self, rdtype: int) -> list[ZoneKey]:
        active = [k for k in self.keys if k.active()]
        zsks = [k for k in active if k.is_zsk]
        ksks = [k for k in active if k.is_ksk]
        if rdtype in _KSK_TYPES or not zsks:
            return ksks or zsks
        return zsks

    def _sign(self, rrset: dns.rrset.RRset, inception: int, expiration: int) -> list[bytes]:
        return [
            dns.dnssec.sign(rrset, key.private, self.origin, key.dnskey,
                            inception=inception, expiration=expiration, deterministic=True).to_wire()
            for key in self._signing_keys(rrset.rdtype)
        ]

    def sign(self, version, previous=None, now: float | None = None) -> Signed:
        """The DNSSEC records of ``version``; with ``previous`` (the version
        it replaces, signed), only the owners that differ are signed again."""
        epoch, inception, expiration = window(self.origin, self.settings, now)
        state = self.state(now)
        old: Signed | None = getattr(previous, "signed", None) if previous is not None else None
        if old is not None and (old.state != state or old.nsec3 != self.nsec3):
            old = None  # new keys, denial or epoch: everything is signed again
        soa = version.soa
        ttl = min(soa.ttl, soa[0].minimum)
        origin_key = version.base.origin_key
        keys, delegations = _authoritative(version)
        changed = None if old is None else _changed(previous, version)
        records = dict(old.records) if old is not None else {}
        signatures = dict(old.signatures) if old is not None else {}

        def node_types(key):
            node = version.node_at(key)
            return node, _served_types(node)

        def sign_owner(key: bytes) -> None:
            """Sign every RRset at an owner (its DNSSEC records included)."""
            node, types = node_types(key)
            owner_wire = store.owner_of(version.source.records[key])
            owner = store.name_of(owner_wire)
            entries = []
            if key in delegations:
                types = [t for t in types if t == T.DS]  # NS and glue are the child's
            for rdtype in types:
                rrset = node[rdtype]
                entries.append((rdtype, rrset.ttl, self._sign(rrset, inception, expiration)))
            extra = records.get(key)
            if extra is not None:
                for rdtype, rrset in store.PackedNode(extra, owner).items():
                    entries.append((rdtype, rrset.ttl, self._sign(rrset, inception, expiration)))
            signatures[key] = store.pack(owner_wire, entries)

        # The apex's own DNSSEC records.
        apex_owner = store.name_of(store.owner_of(version.source.records[origin_key]))
        apex_records = [dnskey_rrset(apex_owner, self.keys, soa.ttl)]
        cds, cdnskey = cds_rrset(apex_owner, self.keys, soa.ttl), cdnskey_rrset(apex_owner, self.keys, soa.ttl)
        apex_records += [r for r in (cds, cdnskey) if r is not None and len(r)]
        if self.nsec3:
            param = dns.rdtypes.ANY.NSEC3PARAM.NSEC3PARAM(_IN, T.NSEC3PARAM, 1, 0, 0, b"")
            apex_records.append(dns.rrset.from_rdata(apex_owner, 0, param))

        if self.nsec3:
            chain, hashed, wanted = self._nsec3_chain(version, keys, delegations, ttl, apex_records)
            wanted[origin_key] = _pack_apex(apex_owner, apex_records)
            authoritative = set(keys)
            for key in [k for k in records if k not in wanted]:
                del records[key]
            for key in [k for k in signatures if k not in wanted and k not in authoritative]:
                del signatures[key]
            to_sign = set(keys) if changed is None else (changed & authoritative) | {origin_key}
            for key, packed in wanted.items():
                if records.get(key) == packed:
                    continue
                records[key] = packed
                if key == origin_key:
                    to_sign.add(key)
                else:
                    rrset = store.PackedNode(packed)[T.NSEC3]
                    signatures[key] = store.pack(store.owner_of(packed), [
                        (T.NSEC3, ttl, self._sign(rrset, inception, expiration))])
        else:
            chain = tuple(sorted(keys, key=_canonical))
            hashed = {}
            wanted: dict[bytes, bytes] = {}
            for i, key in enumerate(chain):
                node, types = node_types(key)
                if key in delegations:
                    types = [t for t in types if t in (T.NS, T.DS)]
                following = chain[(i + 1) % len(chain)]
                next_name = store.name_of(following)
                bitmap = set(types) | {T.NSEC, T.RRSIG}
                if key == origin_key:
                    bitmap |= {r.rdtype for r in apex_records}
                nsec = dns.rdtypes.ANY.NSEC.NSEC(_IN, T.NSEC, next_name,
                                                 dns.rdtypes.ANY.NSEC.Bitmap.from_rdtypes(sorted(bitmap)))
                owner_wire = store.owner_of(version.source.records[key])
                rrsets = [(T.NSEC, ttl, [nsec.to_wire()])]
                if key == origin_key:
                    rrsets = [(r.rdtype, r.ttl, [rd.to_wire() for rd in r]) for r in apex_records] + rrsets
                wanted[key] = store.pack(owner_wire, rrsets)
            to_sign = set()
            for key in set(records) - set(wanted):
                records.pop(key, None)
                signatures.pop(key, None)
            for key in list(signatures):
                if key not in wanted:
                    del signatures[key]
            for key, packed in wanted.items():
                if records.get(key) != packed:
                    records[key] = packed
                    to_sign.add(key)
            if changed is None:
                to_sign = set(keys)
            else:
                to_sign |= {k for k in changed if k in wanted}
        for key in to_sign:
            sign_owner(key)
        if self.nsec3:
            order = [base64.b32hexdecode(store.name_of(k).labels[0].upper()) for k in chain]
        else:
            order = [_canonical(k) for k in chain]
        return Signed(records, signatures, chain, hashed, self.nsec3, state, epoch, ttl, order)

    def _nsec3_chain(self, version, keys, delegations, ttl, apex_records):
        """(chain, hashed, packed NSEC3 nodes by owner key) for the names
        ``keys`` plus the empty non-terminals above them."""
        origin_key = version.base.origin_key
        names = set(keys)
        for key in keys:
            parents = store.suffixes(key)
            next(parents)
            for parent in parents:
                if parent == origin_key or len(parent) < len(origin_key) or parent in names:
                    break
                names.add(parent)  # an empty non-terminal (RFC 5155 7.1)
        hashes = {}
        for key in names:
            text, owner = _nsec3_owner(key, origin_key)
            hashes[key] = (text, owner)
        order = sorted(hashes.values())
        nsec3_records = {}
        types_of = {}
        for key in names:
            if key in version.source.records:
                node = version.node_at(key)
                types = _served_types(node)
                if key in delegations:
                    types = [t for t in types if t in (T.NS, T.DS)]
                bitmap = set(types)
                if key not in delegations or T.DS in bitmap:
                    bitmap.add(T.RRSIG)
                if key == origin_key:
                    bitmap |= {r.rdtype for r in apex_records}
                types_of[key] = bitmap
            else:
                types_of[key] = set()
        position = {text: i for i, (text, _) in enumerate(order)}
        for key, (text, owner) in hashes.items():
            following = order[(position[text] + 1) % len(order)][0]
            rdata = dns.rdtypes.ANY.NSEC3.NSEC3(
                _IN, T.NSEC3, 1, 0, 0, b"", base64.b32hexdecode(following.upper()),
                dns.rdtypes.ANY.NSEC3.Bitmap.from_rdtypes(sorted(types_of[key])),
            )
            nsec3_records[owner] = store.pack(owner, [(T.NSEC3, ttl, [rdata.to_wire()])])
        chain = tuple(owner for _, owner in order)
        hashed = {key: owner for key, (_, owner) in hashes.items()}
        return chain, hashed, nsec3_records


def _pack_apex(owner: dns.name.Name, rrsets: Iterable[dns.rrset.RRset]) -> bytes:
    return store.pack(owner.to_wire(), [(r.rdtype, r.ttl, [rd.to_wire() for rd in r]) for r in rrsets])


def _changed(previous, version) -> set[bytes]:
    """Owner keys whose served records differ between two versions (packed
    records compared as bytes, flattened addresses by identity)."""
    old_records, new_records = previous.source.records, version.source.records
    changed = set()
    if old_records is not new_records:
        for key, packed in new_records.items():
            if old_records.get(key) != packed:
                changed.add(key)
        changed.update(k for k in old_records if k not in new_records)
    old_overlay, new_overlay = previous.overlay, version.overlay
    for key in set(old_overlay) | set(new_overlay):
        if old_overlay.get(key) is not new_overlay.get(key):
            changed.add(key)
    changed.add(version.base.origin_key)  # the SOA's serial
    return changed
