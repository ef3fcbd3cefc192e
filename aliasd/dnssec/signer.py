"""DNSSEC signing of a zone's served view, ALIAS addresses included.

Why a module of its own: signing is pure computation on a ZoneVersion (the
view the secondaries get: every ALIAS replaced by the addresses it
resolved to), and it is the costly part, so the authority runs it in its
commit thread. ``sign`` returns the DNSSEC records of a version as a
``Signed``: the denial chain (NSEC, or NSEC3 with no salt and no extra
iterations, RFC 9276), the apex DNSKEY, CDS and CDNSKEY (RFC 7344, 8078)
and NSEC3PARAM, and an RRSIG for every authoritative RRset. All of it is
kept packed (aliasd.base.store), like the zone's own records.

Only what changed is signed again: given the previous version's
``Signed``, the owners whose records differ (and, for NSEC, their
neighbours in the chain) get new signatures; the rest are shared.

Signatures are deterministic (RFC 6979 ECDSA, Ed25519, RSA; written by
aliasd.dnssec.rrsig from the packed wire) and their validity window is a pure
function of the zone, the owner and the time: each zone's windows start
at its own phase (a hash of its name), every ``validity - refresh_before``
seconds, and a zone of thousands of owners is split into refresh buckets
whose phases are spread over that period (``window``). So a restart signs
exactly the same records the same way, and the serial need not move; ten
thousand zones refresh their signatures spread over the refresh period,
and a big zone a bucket at a time, each refresh a small IXFR.

Key timing (BIND's Publish, Activate, Inactive, Delete metadata) is read
as of the signing moment: only published keys are in the DNSKEY RRset and
only active ones sign. It is part of the signing state, so a key timing
event is a new serial, and ``KeyEvents`` has the zone signed again at
that very moment.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import hashlib
import heapq
import itertools
import math
import time
import zlib
from collections.abc import Callable, Iterable

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC3PARAM
import dns.rrset
from twisted.logger import Logger

from aliasd.base import store
from aliasd.base.config import DnssecSettings
from aliasd.base.timer import HeadTimer
from aliasd.dnssec.keys import (
    ZoneKey,
    cdnskey_rrset,
    cds_delete_rrsets,
    cds_rrset,
    dnskey_rrset,
    key_events,
    key_roles,
    next_key_event,
)
from aliasd.dnssec.rrsig import PreparedKey, sign_wires
from aliasd.zones.zone import parents_below
from aliasd.zones.zonefile import (  # the types the signer makes (never from the file)
    ALIAS_TYPE,
    DNSSEC_TYPES,
)

log = Logger()

_IN = dns.rdataclass.IN
T = dns.rdatatype
#: Records signed with the key-signing key(s); the rest with the zone-signing key(s).
_KSK_TYPES = frozenset({T.DNSKEY, T.CDS, T.CDNSKEY})
_CLOCK_SKEW = 3600  # inception this far in the past


#: A zone's owners are refreshed in buckets of about this many (at most
#: MAX_BUCKETS buckets, a power of two): see ``buckets_for``.
_BUCKET_OWNERS = 1000
MAX_BUCKETS = 64


def buckets_for(owners: int) -> int:
    """Into how many buckets a zone of ``owners`` owners is split: one below
    2,000 owners, then a power of two, up to MAX_BUCKETS."""
    buckets = 1
    while buckets < MAX_BUCKETS and buckets * 2 * _BUCKET_OWNERS <= owners:
        buckets *= 2
    return buckets


def bucket_of(key: bytes, buckets: int) -> int:
    """The refresh bucket of an owner (its lookup key, or its NSEC3 owner's)."""
    return zlib.crc32(key) % buckets if buckets > 1 else 0


def window(origin: dns.name.Name, settings: DnssecSettings, now: float | None = None,
           bucket: int = 0, buckets: int = 1) -> tuple[int, int, int]:
    """(epoch, inception, expiration) of the signatures of one bucket of
    the zone's owners at ``now``.

    Epoch ``e`` of a bucket starts at ``phase + e * period``: the zone's
    phase (a hash of its name) spreads zones over the period, and each
    bucket's phase is offset by its share of the period, so a big zone is
    refreshed a bucket at a time (BIND spreads its re-signing the same way,
    with jitter). Everything in one epoch of a bucket is signed with the
    same window, so signing again gives the same records.
    """
    now = time.time() if now is None else now
    period = settings.period
    zone_phase = int.from_bytes(hashlib.sha256(store.key_of(origin)).digest()[:8], "big") % period
    phase = (zone_phase + bucket * period // buckets) % period
    epoch = int((now - phase) // period)
    start = phase + epoch * period
    return epoch, start - _CLOCK_SKEW, start + settings.signature_validity


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
    algorithm, denial, buckets and their epochs): part of the view's digest;
    ``prefix`` is it without the epochs.
    """

    records: dict
    signatures: dict
    chain: tuple
    hashed: dict
    nsec3: bool
    state: str
    epochs: tuple  # each refresh bucket's epoch (``window``)
    ttl: int  # of the denial records
    # Sort keys of ``chain`` (NSEC: canonical label tuples; NSEC3: hashes), for bisection.
    order: list = dataclasses.field(default_factory=list, repr=False)
    authoritative: frozenset = frozenset()  # the signed names (not glue)
    delegations: frozenset = frozenset()  # the delegation points among them
    prefix: str = ""
    chain_names: tuple = ()  # NSEC3: the name at each place of ``chain``
    expires: int = 0  # when the earliest signature expires (POSIX time): the buckets' windows

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
                return store.decode_rrset(owner, T.RRSIG, stored_ttl if ttl is None else ttl,
                                          store.rdata_wires(packed, start, end), covered)
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

    def matching_owner(self, key: bytes) -> bytes:
        """The owner key of the denial record of the name ``key`` itself (it exists)."""
        return self.hashed.get(key, b"") if self.nsec3 else key

    def covering_owner(self, key: bytes) -> bytes | None:
        """The owner key of the denial record whose span covers the name ``key``."""
        if not self.chain:
            return None
        if self.nsec3:
            position = bisect.bisect_left(self.order, hashlib.sha1(key).digest()) - 1
        else:
            position = bisect.bisect_right(self.order, _canonical(key)) - 1
        return self.chain[position]  # -1: the last covers the wrap

    def matching(self, key: bytes) -> list[dns.rrset.RRset]:
        """The denial record of the name ``key`` itself (it exists)."""
        return self._denial_at(self.matching_owner(key))

    def covering(self, key: bytes) -> list[dns.rrset.RRset]:
        """The denial record whose span covers the name ``key``."""
        owner = self.covering_owner(key)
        return [] if owner is None else self._denial_at(owner)


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


def _authoritative(version) -> tuple[set[bytes], set[bytes]]:
    """(keys of the names that are signed, delegation points among them).

    Names below a delegation (glue) are neither signed nor in the chain.
    """
    cut_keys = {store.key_of(c) for c in version.base.cuts}
    vacant = version.vacant
    if not cut_keys:
        return {key for key in version.keys() if key not in vacant}, set()
    keys = {key for key in version.keys() if not _occluded(key, cut_keys) and key not in vacant}
    return keys, cut_keys & keys


def _served_types(node) -> list[int]:
    return [t for t in node if t != ALIAS_TYPE and t not in DNSSEC_TYPES]


def _nsec3_owner(key: bytes, origin_key: bytes) -> tuple[str, bytes]:
    """(base32hex hash, lookup key of the NSEC3 owner) of the name ``key``."""
    digest = hashlib.sha1(key).digest()  # iterations 0, no salt (RFC 9276)
    text = base64.b32hexencode(digest).decode().lower()
    return text, bytes((len(text),)) + text.encode() + origin_key


class Signer:
    """Signs versions of one zone with its keys (in the commit thread)."""

    def __init__(self, origin: dns.name.Name, keys: list[ZoneKey], settings: DnssecSettings,
                 cds_delete: bool = False):
        self.origin = origin
        self.keys = keys
        self.settings = settings
        # Going insecure: CDS and CDNSKEY say "delete the DS" (RFC 8078 section 4).
        self.cds_delete = cds_delete
        self.nsec3 = settings.denial == "nsec3"
        self._prepared: dict[int, PreparedKey] = {}  # id(ZoneKey) -> it, made on first use
        # (from, until, key_roles): the keys' roles, the same from one moment
        # until the next key timing event (one tuple: the commit thread reads it too).
        self._roles_kept: tuple = (math.inf, -math.inf, None)

    def state(self, now: float | None = None, owners: int = 0) -> str:
        """What the signatures of a zone of ``owners`` owners depend on
        besides the records: goes into the view's digest, so a new key,
        a key timing event (ZoneKey.published, active, syncing), denial or
        bucket epoch moves the serial."""
        now = time.time() if now is None else now
        return self._state(self._roles(now)[0], self._windows(now, buckets_for(owners)))[1]

    def _roles(self, now: float) -> tuple[tuple, float]:
        """((published, active, syncing) keys at ``now``, the moment of the
        next key timing event or inf), kept until that event: ``state`` is
        asked of every signed zone every minute (refresh_signatures)."""
        start, until, roles = self._roles_kept
        if not start <= now < until:
            roles = key_roles(self.keys, now)
            event = next_key_event(self.keys, now)
            until = math.inf if event is None else event.timestamp()
            self._roles_kept = (now, until, roles)
        return roles, until

    def next_key_event(self, now: float) -> float | None:
        """When the keys' timing next changes what is published or who
        signs (a UNIX time after ``now``), or None: the zone is signed
        again then (KeyEvents)."""
        until = self._roles(now)[1]
        return None if until == math.inf else until

    def key_events(self, start: float, end: float) -> list[str]:
        """The key timing events in [start, end], for the log."""
        return key_events(self.keys, start, end)

    def signs(self, now: float) -> bool:
        """Is one of the keys active at ``now``? (Key timing can leave none.)"""
        return bool(self._roles(now)[0][1])

    def _windows(self, now: float, buckets: int) -> list[tuple[int, int, int]]:
        return [window(self.origin, self.settings, now, b, buckets) for b in range(buckets)]

    def _state(self, roles: tuple, windows: list) -> tuple[str, str]:
        """(prefix, state). The prefix is what every signature depends on:
        denial, signing keys, buckets (a change signs the whole zone again).
        The state adds the epochs (their sum moves by one whenever a
        bucket's epoch does) and what only the apex depends on: keys
        published without signing, and KSKs that sign but are not in CDS
        (both left out when empty: zones whose keys all sign keep the state,
        and so the serial, they had before key timing counted)."""
        published, active, syncing = roles
        tags = ",".join(f"{k.algorithm}/{k.tag}/{k.flags}" for k in active)
        prefix = f"dnssec:{self.settings.denial}:{tags}:{len(windows)}"
        state = f"{prefix}:{sum(w[0] for w in windows)}"
        if len(published) != len(active):  # (active and syncing are sublists)
            signing = {id(k) for k in active}
            state += ":published:" + ",".join(f"{k.algorithm}/{k.tag}/{k.flags}" for k in published
                                              if id(k) not in signing)
        ksks = [k for k in active if k.is_ksk and not k.revoked]
        if len(ksks) != len(syncing):
            synced = {id(k) for k in syncing}
            state += ":unsynced:" + ",".join(str(k.tag) for k in ksks if id(k) not in synced)
        if self.settings.dnskey_ttl is not None:  # (a policy's; left out for [dnssec]'s zones)
            state += f":ttl:{self.settings.dnskey_ttl}"
        if self.cds_delete:
            state += ":cds-delete"
        return prefix, state

    def _active_keys(self, active: list[ZoneKey]) -> tuple[list[PreparedKey], list[PreparedKey]]:
        """(ZSKs, KSKs) among ``active``, ready to sign (once per ``sign``)."""
        prepared = []
        for key in active:
            ready = self._prepared.get(id(key))
            if ready is None:
                ready = self._prepared[id(key)] = PreparedKey(key, self.origin)
            prepared.append((key, ready))
        zsks = [ready for key, ready in prepared if key.is_zsk]
        ksks = [ready for key, ready in prepared if key.is_ksk]
        return zsks, (ksks or zsks)

    def _sign(self, owner_wire: bytes, rdtype: int, ttl: int, rdatas: list[bytes],
              inception: int, expiration: int) -> list[bytes]:
        """The RRSIG rdatas of one RRset, one per signing key (aliasd.dnssec.rrsig:
        the same bytes as dns.dnssec.sign, from the packed wire)."""
        zsks, ksks = self._keys_now
        keys = ksks if rdtype in _KSK_TYPES or not zsks else zsks
        return [sign_wires(key, owner_wire, rdtype, ttl, rdatas, inception, expiration) for key in keys]

    def sign(self, version, previous=None, now: float | None = None) -> Signed:
        """The DNSSEC records of ``version``; with ``previous`` (the version
        it replaces, signed), only the owners that differ, and the denial
        records around names that appeared or went, are made again.
        ``now`` is the moment signed as of (key timing, signature windows):
        the one the authority computed the zone's signing state at."""
        now = time.time() if now is None else now
        buckets = buckets_for(len(version.source.records))
        windows = self._windows(now, buckets)
        epochs = tuple(w[0] for w in windows)
        roles = self._roles(now)[0]
        prefix, state = self._state(roles, windows)
        published, active, _ = roles
        self._keys_now = self._active_keys(active)
        old: Signed | None = getattr(previous, "signed", None) if previous is not None else None
        if old is not None and (old.prefix != prefix or old.nsec3 != self.nsec3):
            old = None  # new keys, denial or buckets: everything is signed again
        # Buckets whose epoch moved on: their owners are signed again.
        stale = {b for b in range(buckets) if old.epochs[b] != epochs[b]} if old is not None else set()
        self._window_of = (lambda key: windows[bucket_of(key, buckets)]) if buckets > 1 else (lambda key: windows[0])
        self._stale_of = (lambda key: bucket_of(key, buckets) in stale) if stale else None
        soa = version.soa
        ttl = min(soa.ttl, soa[0].minimum)
        base = version.base
        origin_key = base.origin_key
        source_records = version.source.records
        apex_owner = store.name_of(store.owner_of(source_records[origin_key]))
        key_ttl = soa.ttl if self.settings.dnskey_ttl is None else self.settings.dnskey_ttl
        apex_records = self._apex_records(apex_owner, key_ttl, published, now)

        if old is None:
            auth, delegations = _authoritative(version)
            changed = set(auth)
            appeared, went = set(auth), set()
            records, signatures = {}, {}
        else:
            changed = _changed(previous, version)
            auth, delegations = set(old.authoritative), set(old.delegations)
            if base.cuts != previous.base.cuts:
                auth, delegations = _authoritative(version)
            else:
                cut_keys = {store.key_of(c) for c in base.cuts}
                vacant = version.vacant
                for key in changed:
                    if key in source_records and not _occluded(key, cut_keys) and key not in vacant:
                        auth.add(key)
                    else:
                        auth.discard(key)
            appeared, went = auth - old.authoritative, old.authoritative - auth
            records, signatures = dict(old.records), dict(old.signatures)
        for key in went:
            records.pop(key, None)
            signatures.pop(key, None)
        to_sign = (changed & auth) | appeared  # names uncovered by a delegation's removal too
        if old is not None:
            to_sign |= (delegations ^ old.delegations) & auth
        if self._stale_of is not None:
            to_sign |= {key for key in auth if self._stale_of(key)}

        if self.nsec3:
            chain, order, hashed, chain_names = self._nsec3(version, old, auth, delegations, changed | appeared | went,
                                                            records, signatures, ttl, apex_records)
            records[origin_key] = _pack_apex(apex_owner, apex_records)
        else:
            chain, order, hashed = self._nsec(version, old, auth, delegations, changed, appeared, went,
                                              records, to_sign, ttl, apex_records)
            chain_names = ()
        to_sign.add(origin_key)
        for key in to_sign:
            _, inception, expiration = self._window_of(key)
            self._sign_owner(version, key, key in delegations, records.get(key), signatures, inception, expiration)
        return Signed(records, signatures, chain, hashed, self.nsec3, state, epochs, ttl, order,
                      frozenset(auth), frozenset(delegations), prefix, chain_names,
                      min(w[2] for w in windows))

    def _apex_records(self, apex_owner: dns.name.Name, ttl: int, published: list[ZoneKey],
                      now: float) -> list[dns.rrset.RRset]:
        """The DNSKEY (of the keys ``published`` at ``now``, not every key
        file: a deleted key must not validate anything any more), CDS,
        CDNSKEY (and NSEC3PARAM) the signer puts at the apex."""
        dnskey = dnskey_rrset(apex_owner, published, ttl)
        if self.cds_delete:
            cds, cdnskey = cds_delete_rrsets(apex_owner, ttl)
        else:
            cds = cds_rrset(apex_owner, published, ttl, now=now)
            cdnskey = cdnskey_rrset(apex_owner, published, ttl, now=now)
        records = [r for r in (dnskey, cds, cdnskey) if len(r)]  # (key timing can leave none)
        if self.nsec3:
            param = dns.rdtypes.ANY.NSEC3PARAM.NSEC3PARAM(_IN, T.NSEC3PARAM, 1, 0, 0, b"")
            records.append(dns.rrset.from_rdata(apex_owner, 0, param))
        return records

    def _sign_owner(self, version, key, delegation, extra, signatures, inception, expiration) -> None:
        """Sign every RRset at an owner, its DNSSEC records included (at a
        delegation only the DS and the NSEC: NS and glue are the child's)."""
        owner_wire = store.owner_of(version.source.records[key])
        node = version.node_at(key)
        entries = []
        for rdtype in _served_types(node):
            if delegation and rdtype != T.DS:
                continue
            ttl, rdatas = node.wires(rdtype)
            entries.append((rdtype, ttl, self._sign(owner_wire, rdtype, ttl, rdatas, inception, expiration)))
        if extra is not None:
            for rdtype, ttl, rdatas in store.raw_rrsets(extra):
                entries.append((rdtype, ttl, self._sign(owner_wire, rdtype, ttl, rdatas, inception, expiration)))
        signatures[key] = store.pack(owner_wire, entries)

    def _bitmap(self, version, key, delegation, apex_records, nsec3: bool) -> list[int]:
        types = set(_served_types(version.node_at(key)))
        if delegation:
            types &= {T.NS, T.DS}
        if not nsec3:
            types |= {T.NSEC, T.RRSIG}  # the NSEC itself is signed there
        else:
            signed_here = types - {T.NS} if delegation else types
            if signed_here:
                types.add(T.RRSIG)  # only where something is signed (RFC 5155 3.2.1)
        if key == version.base.origin_key:
            types |= {r.rdtype for r in apex_records}
        return sorted(types)

    def _nsec(self, version, old, auth, delegations, changed, appeared, went, records, to_sign, ttl, apex_records):
        """The NSEC chain: made whole the first time, else kept, with the
        names that appeared or went inserted or removed (their predecessors'
        NSEC changes) and the changed owners' bitmaps made again."""
        if old is None:
            chain = sorted(auth, key=_canonical)
            order = [_canonical(k) for k in chain]
            dirty = set(chain)
        else:
            chain, order = list(old.chain), list(old.order)
            for key in went:
                i = bisect.bisect_left(order, _canonical(key))
                if i < len(chain) and chain[i] == key:
                    del chain[i], order[i]
            for key in appeared:
                sort_key = _canonical(key)
                i = bisect.bisect_left(order, sort_key)
                chain.insert(i, key)
                order.insert(i, sort_key)
            dirty = (changed & auth) | appeared
            for key in appeared | went:  # the name before each one now points elsewhere
                i = bisect.bisect_left(order, _canonical(key))
                dirty.add(chain[i - 1])
        source_records = version.source.records
        origin_key = version.base.origin_key
        for key in dirty:
            i = bisect.bisect_left(order, _canonical(key))
            following = chain[(i + 1) % len(chain)]
            nsec = following + type_bitmap(self._bitmap(version, key, key in delegations, apex_records, False))
            rrsets = [(T.NSEC, ttl, [nsec])]
            if key == origin_key:
                rrsets = [(r.rdtype, r.ttl, [rd.to_wire() for rd in r]) for r in apex_records] + rrsets
            packed = store.pack(store.owner_of(source_records[key]), rrsets)
            if records.get(key) != packed:
                records[key] = packed
                to_sign.add(key)
        return tuple(chain), order, {}

    def _nsec3(self, version, old, auth, delegations, changed, records, signatures, ttl, apex_records):
        """The NSEC3 chain over the authoritative names and the empty
        non-terminals above them, kept and patched like the NSEC chain."""
        base = version.base
        origin_key = base.origin_key
        cut_keys = {store.key_of(c) for c in base.cuts}

        vacant = version.vacant

        def exists(key):
            return key in auth or (key in base.empty_non_terminals and not _occluded(key, cut_keys)
                                   and key not in vacant)

        hashed = None
        if old is not None:
            hashed = dict(old.hashed)
            candidates = set()
            for key in changed:
                for name_key in (key, *parents_below(key, origin_key)):
                    candidates.add(name_key)
            appeared = {k for k in candidates if exists(k) and k not in hashed}
            went = {k for k in candidates if not exists(k) and k in hashed}
            if len(appeared) + len(went) > len(old.chain) // 16:
                old = None  # many names came or went: the chain is sorted again (a list insert is O(n))
        if old is None:
            if hashed is None:  # signed afresh
                names = set(auth)
                names.update(k for k in base.empty_non_terminals if not _occluded(k, cut_keys) and k not in vacant)
                hashed = {key: _nsec3_owner(key, origin_key)[1] for key in names}
            else:  # patched, then sorted again
                for key in went:
                    del hashed[key]
                for key in appeared:
                    hashed[key] = _nsec3_owner(key, origin_key)[1]
            triples = sorted((hashlib.sha1(key).digest(), owner, key) for key, owner in hashed.items())
            order = [digest for digest, _, _ in triples]
            chain = [owner for _, owner, _ in triples]
            chain_names = [key for _, _, key in triples]
            dirty = set(chain_names)
            for owner in set(records) - set(chain) - {origin_key}:
                records.pop(owner, None)  # the NSEC3 records of names that went
                signatures.pop(owner, None)
        else:
            chain, order, chain_names = list(old.chain), list(old.order), list(old.chain_names)
            for key in went:
                owner = hashed.pop(key)
                i = bisect.bisect_left(order, hashlib.sha1(key).digest())
                if i < len(chain) and chain[i] == owner:
                    del chain[i], order[i], chain_names[i]
                records.pop(owner, None)
                signatures.pop(owner, None)
            for key in appeared:
                hashed[key] = owner = _nsec3_owner(key, origin_key)[1]
                digest = hashlib.sha1(key).digest()
                i = bisect.bisect_left(order, digest)
                chain.insert(i, owner)
                order.insert(i, digest)
                chain_names.insert(i, key)
            dirty = ({k for k in changed if k in hashed}) | appeared
            for key in appeared | went:  # the name before each one now points elsewhere
                i = bisect.bisect_left(order, hashlib.sha1(key).digest())
                dirty.add(chain_names[i - 1])
        stale_of = self._stale_of
        refresh = set()
        if stale_of is not None:
            for i, owner in enumerate(chain):
                if stale_of(owner):
                    refresh.add(owner)
                    dirty.add(chain_names[i])
        for key in dirty:
            digest = hashlib.sha1(key).digest()
            i = bisect.bisect_left(order, digest)
            following = order[(i + 1) % len(order)]
            types = self._bitmap(version, key, key in delegations, apex_records, True) if key in auth else []
            # SHA-1, no opt-out, no extra iterations, no salt (RFC 9276); the next hash; the types.
            wire = b"\x01\x00\x00\x00\x00\x14" + following + type_bitmap(types)
            owner = hashed[key]
            packed = store.pack(owner, [(T.NSEC3, ttl, [wire])])
            if records.get(owner) != packed or owner in refresh:
                records[owner] = packed
                _, inception, expiration = self._window_of(owner)
                signatures[owner] = store.pack(
                    owner, [(T.NSEC3, ttl, self._sign(owner, T.NSEC3, ttl, [wire], inception, expiration))])
        return tuple(chain), order, hashed, tuple(chain_names)


class KeyEvents:
    """Calls ``due(origin)`` when a signed zone's keys' timing (Publish,
    Activate, Inactive, Delete, SyncPublish, SyncDelete) next changes what
    it publishes or who signs it, so that the zone is signed again at that
    moment rather than at its next signature epoch: a key whose Delete time
    has passed leaves the DNSKEY RRset then.

    One heap of (moment, zone) for every signed zone and one DelayedCall,
    for the earliest: a tick never walks the zones, and zones whose keys
    have no event to come cost nothing. ``clock`` is the reactor, or a
    twisted.internet.task.Clock in tests.
    """

    def __init__(self, clock, due: Callable[[dns.name.Name], None]):
        self.clock = clock
        self.due = due
        self.signers: dict = {}
        self._heap: list = []  # (moment, tie-breaker, origin, signer)
        self._order = itertools.count()
        self._timer = HeadTimer(clock, self._fire)

    def track(self, signers: dict) -> None:
        """Watch these zones' signers from now on (at start, after a
        reload). Only new signers are looked at; the entries of signers
        replaced or gone are dropped when they come up."""
        old, self.signers = self.signers, signers
        now = self.clock.seconds()
        for origin, signer in signers.items():
            if old.get(origin) is not signer:
                self._push(origin, signer, now)
        self._arm()

    def _push(self, origin: dns.name.Name, signer: Signer, now: float) -> None:
        if not signer.signs(now):
            log.error("zone {zone}: none of its DNSSEC keys is active now (see their timing metadata): "
                      "its records go unsigned and validators will find it bogus", zone=origin.to_text())
        when = signer.next_key_event(now)
        if when is not None:
            heapq.heappush(self._heap, (when, next(self._order), origin, signer))

    def _arm(self) -> None:
        """Have the DelayedCall due at the heap's earliest moment."""
        while self._heap and self.signers.get(self._heap[0][2]) is not self._heap[0][3]:
            heapq.heappop(self._heap)  # a signer replaced or gone
        self._timer.at(self._heap[0][0] if self._heap else None)

    def _fire(self) -> None:
        now = self.clock.seconds()
        while self._heap and self._heap[0][0] <= now:
            when, _, origin, signer = heapq.heappop(self._heap)
            if self.signers.get(origin) is not signer:
                continue
            log.info("zone {zone}: DNSSEC key timing event ({events})",
                     zone=origin.to_text(), events=", ".join(signer.key_events(when, now)))
            self.due(origin)
            self._push(origin, signer, now)
        self._arm()


def type_bitmap(types: Iterable[int]) -> bytes:
    """The type bit maps field of NSEC and NSEC3 (RFC 4034 4.1.2): per
    window of 256 types, its number, its length and the bits, trailing
    zero octets left out."""
    windows: dict[int, bytearray] = {}
    for rdtype in types:
        bits = windows.setdefault(rdtype >> 8, bytearray(32))
        low = rdtype & 0xFF
        bits[low >> 3] |= 0x80 >> (low & 7)
    out = bytearray()
    for number in sorted(windows):
        bits = bytes(windows[number]).rstrip(b"\0")
        out += bytes((number, len(bits))) + bits
    return bytes(out)


def _occluded(key: bytes, cut_keys: set) -> bool:
    """Is the name below a delegation (glue, or anything else the child owns)?"""
    if not cut_keys:
        return False
    parents = store.suffixes(key)
    next(parents)
    return any(parent in cut_keys for parent in parents)


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
    changed.update(previous.vacant ^ version.vacant)  # a name came into or went out of the view
    return changed
