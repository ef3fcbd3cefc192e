"""Interop: real secondaries (BIND named, Knot knotd, PowerDNS with the bind
backend, NSD) pull zones from aliasd.

The zone's SOA refresh is one day, so only NOTIFY can make a secondary pull
a new serial within the test: when the upstream answer of an apex ALIAS
target changes, the secondary must serve the new address within one
re-resolution interval plus a few seconds, by IXFR after its first AXFR
(PowerDNS's bind backend cannot apply an IXFR: it pulls every serial by AXFR).
"""

from __future__ import annotations

import base64
import re
import time

import pytest

from tests.aliasd_process import free_port
from tests.certs import SERVER_NAME, Authority
from tests.secondaries import NSD, Knot, Named, PowerDNS, available

pytestmark = pytest.mark.e2e

SECRET = base64.b64encode(b"interop transfer key, 32 octets!").decode()
ZONE = """\
    $ORIGIN example.com.
    $TTL 300
    @     SOA ns1 hostmaster 2026010101 86400 3600 864000 60
          NS  ns1
    @     30 ALIAS lb.upstream.test.
    ns1   A   192.0.2.53
    www   CNAME @
    """
RESOLUTION_INTERVAL = 2  # max-refresh below


def aliasd_config(upstream, secondary_port, with_key):
    key = f"""
        [keys.xfr]
        algorithm = "hmac-sha256"
        secret = "{SECRET}"
        """ if with_key else ""
    return f"""
        [resolver]
        upstreams = ["{upstream.endpoint}"]
        min-refresh = 1
        max-refresh = {RESOLUTION_INTERVAL}
        timeout = 0.5
        {key}
        [zones."example.com"]
        file = "example.com.zone"
        allow-transfer = ["127.0.0.1"]
        notify = ["127.0.0.1:{secondary_port}"]
        {'transfer-key = "xfr"' if with_key else ''}
        """


SECONDARIES = [
    pytest.param(Named, id="named"),
    pytest.param(Knot, id="knot"),
    pytest.param(PowerDNS, id="pdns"),
    pytest.param(NSD, id="nsd"),
]


@pytest.mark.parametrize("with_key", [False, True], ids=["plain", "tsig"])
@pytest.mark.parametrize("kind", SECONDARIES)
def test_secondary_follows_alias_rotation_by_notify_and_ixfr(aliasd, upstream, tmp_path, kind, with_key):
    if not available(kind.program):
        pytest.fail(f"{kind.program} is not installed; .ci/run installs it")
    upstream.set("lb.upstream.test", "A", ["203.0.113.10"], ttl=5)
    secondary_port = free_port()
    primary = aliasd(aliasd_config(upstream, secondary_port, with_key), {"example.com.zone": ZONE})
    primary.wait_for(lambda: primary.addresses("example.com") == {"203.0.113.10"})
    secondary_dir = tmp_path / kind.name
    secondary_dir.mkdir()
    key = ("xfr", "hmac-sha256", SECRET) if with_key else None
    secondary = kind(secondary_dir, secondary_port).start("example.com", primary.port, key)
    try:
        primary.wait_for(lambda: secondary.addresses("example.com") == {"203.0.113.10"}, timeout=20)
        first_serial = secondary.serial("example.com")
        upstream.set("lb.upstream.test", "A", ["203.0.113.20", "203.0.113.21"], ttl=5)
        changed = time.monotonic()
        primary.wait_for(
            lambda: secondary.addresses("example.com") == {"203.0.113.20", "203.0.113.21"},
            timeout=RESOLUTION_INTERVAL + 10,
        )
        elapsed = time.monotonic() - changed
        assert elapsed < RESOLUTION_INTERVAL + 5, elapsed
        assert secondary.serial("example.com") == first_serial + 1
        # The secondary never sees an ALIAS, only the addresses it stood for.
        assert secondary.addresses("www.example.com") == {"203.0.113.20", "203.0.113.21"}
        log = primary.log()
        assert "AXFR of example.com." in log or "IXFR of example.com." in log
        assert "acknowledged" in log
        kinds = secondary.transfers()
        if kind.incremental:
            assert (
                f"IXFR of example.com. serial {first_serial + 1} to 127.0.0.1 from {first_serial}: incremental" in log
            )
            if kind.names_transfer_kinds:
                # The secondary's own log: a first AXFR, then IXFR (no fallback).
                assert kinds[0] == "AXFR" and kinds[-1] == "IXFR", (kinds, secondary.log())
                assert "IXFR failed" not in kinds, (kinds, secondary.log())
            else:
                # Its log does not name the kind (NSD): aliasd's says IXFR, above.
                assert len(kinds) >= 2, (kinds, secondary.log())
        else:
            # An AXFR-only secondary (PowerDNS, bind backend) pulls the new serial whole.
            assert f"AXFR of example.com. serial {first_serial + 1} to 127.0.0.1: full" in log
            assert len(kinds) >= 2 and set(kinds) == {"AXFR"}, (kinds, secondary.log())
        print(f"{kind.name} ({'tsig' if with_key else 'plain'}): upstream change to secondary answer in {elapsed:.2f}s")
    finally:
        secondary.stop()


def test_named_pulls_over_tls_and_follows_alias_rotation(aliasd, upstream, tmp_path):
    """XoT (RFC 9103): BIND pulls the zone over TLS 1.3, verifying aliasd's
    certificate against a CA, signed with TSIG, then follows a rotation."""
    if not available("named"):
        pytest.fail("named is not installed; .ci/run installs it")
    certs = Authority(tmp_path / "pki")
    cert, key_file = certs.server()
    tls_port = free_port()
    upstream.set("lb.upstream.test", "A", ["203.0.113.10"], ttl=5)
    secondary_port = free_port()
    config = aliasd_config(upstream, secondary_port, with_key=True) + f"""
        [tls]
        listen = ["127.0.0.1"]
        port = {tls_port}
        certificate = "{cert}"
        key = "{key_file}"
        """
    config = config.replace('allow-transfer = ["127.0.0.1"]', 'allow-transfer = ["127.0.0.1"]\ntransfer-tls-only = true')
    primary = aliasd(config, {"example.com.zone": ZONE})
    primary.wait_for(lambda: primary.addresses("example.com") == {"203.0.113.10"})
    secondary_dir = tmp_path / "named"
    secondary_dir.mkdir()
    secondary = Named(secondary_dir, secondary_port).start(
        "example.com", tls_port, ("xfr", "hmac-sha256", SECRET), tls=(certs.ca_file, SERVER_NAME)
    )
    try:
        primary.wait_for(lambda: secondary.addresses("example.com") == {"203.0.113.10"}, timeout=20)
        first_serial = secondary.serial("example.com")
        upstream.set("lb.upstream.test", "A", ["203.0.113.30"], ttl=5)
        changed = time.monotonic()
        primary.wait_for(
            lambda: secondary.addresses("example.com") == {"203.0.113.30"},
            timeout=RESOLUTION_INTERVAL + 10,
        )
        elapsed = time.monotonic() - changed
        log = primary.log()
        assert f"AXFR of example.com. serial {first_serial} to 127.0.0.1 over TLSv1.3: full" in log
        assert (
            f"IXFR of example.com. serial {first_serial + 1} to 127.0.0.1 from {first_serial} "
            "over TLSv1.3: incremental" in log
        )
        # transfer-tls-only: no transfer went over plain TCP.
        assert not re.search(r"XFR of example\.com\. serial \d+ to 127\.0\.0\.1(?: from \d+)?: ", log)
        kinds = secondary.transfers()
        assert kinds[0] == "AXFR" and kinds[-1] == "IXFR", (kinds, secondary.log())
        print(f"named over TLS: upstream change to secondary answer in {elapsed:.2f}s")
    finally:
        secondary.stop()
