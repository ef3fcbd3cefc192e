"""RRSIG records made straight from wire data.

Why: ``dns.dnssec.sign`` costs about 300 µs per RRset, of which the
signature itself (ECDSA P-256) is about 65 µs; the rest is building the
RRSIG template, the rdata objects and their canonical forms in Python.
Signing a 110,000-record zone was dominated by that overhead. aliasd
already holds every RRset as wire (aliasd.base.store), so the signed data
(RFC 4034 3.1.8.1) is put together from those bytes here and handed to
``cryptography`` directly.

The result is byte for byte ``dns.dnssec.sign(..., deterministic=True)
.to_wire()`` (dnspython 2.9; tests/test_rrsig.py holds it to that): the
same header, the signer's name as given in the rdata and lower-cased in
the signed data, a wildcard owner signed as ``*.<rest>`` with the ``*``
not counted in the labels field, the RRs in canonical order with
duplicates dropped, and embedded names lower-cased for exactly the types
whose dnspython ``to_digestable`` lower-cases them (``_CANONICAL``: not
NSEC, per RFC 6840 5.1; nor the obsolete MB, MD, MF, MG, MR, MINFO, A6
and NXT, which dnspython handles as opaque data). Every other type is
signed as its wire, which is its canonical form when the wire is what
dnspython writes (always the case for the store's records).
"""

from __future__ import annotations

import functools
import struct
from typing import Callable, Sequence

import dns.name
import dns.rdatatype
from dns.dnssectypes import Algorithm

from aliasd.base.store import CANONICAL as _CANONICAL
from aliasd.base.store import canonical_rdata
from aliasd.dnssec.keys import ZoneKey

__all__ = ["PreparedKey", "SUPPORTED_ALGORITHMS", "canonical_rdata", "sign_wires"]

#: Type covered, algorithm, labels, original TTL, expiration, inception, key tag.
_HEADER = struct.Struct("!HBBIIIH")
#: Type, class IN, original TTL: the fixed part of every RR in the signed data.
_RR_FIXED = struct.Struct("!HHI")
_IN = 1


def _ecdsa(private, hash_, octets: int):
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    algorithm = ec.ECDSA(hash_, deterministic_signing=True)  # RFC 6979

    def sign(data: bytes) -> bytes:  # RFC 6605 4: r and s, fixed width
        r, s = decode_dss_signature(private.sign(data, algorithm))
        return r.to_bytes(octets, "big") + s.to_bytes(octets, "big")

    return sign


def _rsa(private, hash_):
    from cryptography.hazmat.primitives.asymmetric import padding

    pkcs1 = padding.PKCS1v15()
    return lambda data: private.sign(data, pkcs1, hash_)  # RFC 3110, 5702


#: The algorithms of aliasd.dnssec.keys (cryptography, through dns.dnssec,
#: is imported by the first key prepared: an unsigned server never imports it).
SUPPORTED_ALGORITHMS = frozenset((Algorithm.ECDSAP256SHA256, Algorithm.ECDSAP384SHA384, Algorithm.ED25519,
                                  Algorithm.ED448, Algorithm.RSASHA256, Algorithm.RSASHA512))


@functools.cache
def _algorithms() -> dict[Algorithm, tuple[type, Callable]]:
    """Algorithm -> (cryptography key class, signing function maker)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    return {
        Algorithm.ECDSAP256SHA256: (ec.EllipticCurvePrivateKey, lambda k: _ecdsa(k, hashes.SHA256(), 32)),
        Algorithm.ECDSAP384SHA384: (ec.EllipticCurvePrivateKey, lambda k: _ecdsa(k, hashes.SHA384(), 48)),
        Algorithm.ED25519: (ed25519.Ed25519PrivateKey, lambda k: k.sign),  # RFC 8080
        Algorithm.ED448: (ed448.Ed448PrivateKey, lambda k: k.sign),
        Algorithm.RSASHA256: (rsa.RSAPrivateKey, lambda k: _rsa(k, hashes.SHA256())),
        Algorithm.RSASHA512: (rsa.RSAPrivateKey, lambda k: _rsa(k, hashes.SHA512())),
    }


class PreparedKey:
    """A ZoneKey made ready to sign many RRsets: built once per key.

    ``signer`` is the signer's name written in the RRSIG (``key.zone`` by
    default; aliasd's Signer passes its origin, the same name). Its case
    is kept in the rdata, as dnspython does, and lowered in the signed data.
    """

    __slots__ = ("algorithm", "tag", "signer_wire", "signer_canonical", "sign")

    def __init__(self, key: ZoneKey, signer: dns.name.Name | None = None):
        signer = key.zone if signer is None else signer
        if not signer.is_absolute():
            raise ValueError(f"signer name {signer} is not absolute")
        import dns.dnssec

        algorithm = Algorithm.make(key.dnskey.algorithm)
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"DNSSEC algorithm {dns.dnssec.algorithm_to_text(algorithm)} is not supported")
        key_class, maker = _algorithms()[algorithm]
        private = getattr(key.private, "key", key.private)  # a dns.dnssecalgs key wraps one
        if not isinstance(private, key_class):
            raise TypeError(f"a {type(private).__name__} cannot sign for {algorithm.name}")
        self.algorithm = int(algorithm)
        self.tag = dns.dnssec.key_id(key.dnskey)
        self.signer_wire = signer.to_wire()
        self.signer_canonical = signer.to_digestable()
        #: data -> signature, in the RRSIG's encoding.
        self.sign: Callable[[bytes], bytes] = maker(private)


def sign_wires(key: PreparedKey, owner_wire: bytes, rdtype: int, ttl: int, rdatas: Sequence[bytes],
               inception: int, expiration: int) -> bytes:
    """The RRSIG rdata wire (RFC 4034 3.1), class IN, of the RRset at
    ``owner_wire`` (uncompressed, absolute, any case, possibly a wildcard)
    of type ``rdtype`` and TTL ``ttl`` whose rdatas are ``rdatas``
    (uncompressed wire, any order; duplicates count once).
    ``inception`` and ``expiration`` are POSIX times (ints).
    """
    labels = 0
    offset = 0
    while owner_wire[offset]:
        labels += 1
        offset += owner_wire[offset] + 1
    if owner_wire[:2] == b"\x01*":
        labels -= 1  # RFC 4034 3.1.3; the owner is signed as '*.' + the rest (RFC 4035 5.3.2)
    header = _HEADER.pack(rdtype, key.algorithm, labels, ttl, expiration, inception, key.tag)
    canonical = _CANONICAL.get(rdtype)
    forms = sorted(set(rdatas) if canonical is None else set(map(canonical, rdatas)))
    rr = owner_wire.lower() + _RR_FIXED.pack(rdtype, _IN, ttl)
    data = [header, key.signer_canonical]
    for form in forms:
        data += (rr, len(form).to_bytes(2, "big"), form)
    return header + key.signer_wire + key.sign(b"".join(data))
