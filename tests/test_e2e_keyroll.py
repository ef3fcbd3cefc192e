"""End to end: the rollover engine in a real ``twistd aliasd`` (issue 23).

Accelerated policies (a DNSKEY TTL of 3 s, lifetimes of seconds): a ZSK
rolls by pre-publication on its own, each step at its moment, the DNSKEY
RRset and the signers of the zone's records as RFC 7583 says, every AXFR
passing ``dnssec-verify``; a KSK rollover publishes the new key, switches
CDS/CDNSKEY to it when it is ready, waits for the DS steps the operator
confirms with aliasd-ctl (no parental agents) and removes the old key;
``kill -9`` in the middle and a restart carry on with the same step, keys
and times; going insecure publishes the CDS/CDNSKEY delete and keeps the
signatures while the DS may be there. The world with a real parent and
validator is tests/test_e2e_rollover.py's.
"""

from __future__ import annotations

import json
import re
import signal
import time

import dns.dnssec
import dns.rdatatype
import pytest

from tests import test_e2e_dnssec as signed_zone
from tests import test_e2e_rollover as rollover_world
from tests.test_e2e_api import ADMIN, call
from tests.test_e2e_ctl import ctl, ok
from tests.test_e2e_dnssec import (
    _dnskeys,
    _transferred_dnskeys,
    _www_signers,
    apex_a,
    verified,
)
from tests.test_e2e_statistics import scrape

pytestmark = pytest.mark.e2e

#: The signing tests' zone (a delegation, a wildcard, empty non-terminals)
#: with every TTL 2 s: the longest TTL of the zone is below the DNSKEY TTL.
ZONE = signed_zone.ZONE.replace("$TTL 300", "$TTL 2").replace("86400 60", "86400 2")


def config(upstream, keys: str, metrics_port: int | None = None, policy: str = "fast",
           api_port: int | None = None) -> str:
    """The world test's accelerated policy (Ipub = 1 + 3 + 1 = 5 s; a ZSK's
    Iret = 1 + 3 + 1 = 5 s; a KSK's Iret = 1 + 3 + 1 = 5 s after the old DS
    is gone) with these ``keys`` and no parental agents (the operator
    confirms the DS steps)."""
    fast = rollover_world.FAST.format(algorithm="ECDSAP256SHA256", parent_port=0)
    fast = re.sub(r"(?m)^keys = .*$", f"keys = {keys}", fast).replace('parental-agents = ["127.0.0.1:0"]\n', "")
    extra = f'[statistics]\nlisten = "127.0.0.1:{metrics_port}"\n' if metrics_port else ""
    if api_port:
        extra += f'[api]\nlisten = ["127.0.0.1:{api_port}"]\nkeys = [ {{ name = "admin", secret = "{ADMIN}" }} ]\n'
    return f"""
[resolver]
upstreams = ["{upstream.endpoint}"]
min-refresh = 1
{extra}{fast}
[zones."example.test"]
file = "example.test.zone"
allow-transfer = ["127.0.0.1"]
dnssec-policy = "{policy}"
"""


def _cds(server) -> set[int]:
    """Key tags of the CDS records (0 for the delete record)."""
    answer = server.query("example.test", "CDS").answer
    return {rd.key_tag for rrset in answer for rd in rrset}


def _ksks(server) -> set[int]:
    answer = server.query("example.test", "DNSKEY").answer
    return {dns.dnssec.key_id(rd) for rrset in answer for rd in rrset if rd.flags & 1}


def _steps(server) -> list[tuple[float, str]]:
    """(seconds since the epoch, line) of each rollover step logged."""
    out = []
    for line in server.log().splitlines():
        if "DNSSEC" in line and ("rollover" in line or "next:" in line):
            stamp = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", line)
            when = time.mktime(time.strptime(stamp.group(1), "%Y-%m-%dT%H:%M:%S")) if stamp else 0.0
            out.append((when, line))
    return out


def test_a_zsk_rolls_by_pre_publication_on_its_own(aliasd, upstream, tmp_path):
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"], ttl=2)
    server = aliasd(config(upstream, '[ { role = "ksk", lifetime = 0 }, { role = "zsk", lifetime = "20s" } ]'),
                    {"example.test.zone": ZONE}, server="serial-interval = 0\n")
    started = time.time()
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    first = _dnskeys(server)
    (ksk,) = _ksks(server)
    (old,) = first - {ksk}
    assert _www_signers(server) == {old} and _transferred_dnskeys(verified(server.port)) == first
    # The metric and zone-status say when the rollover starts (lifetime 20 s - Ipub 5 s - jitter 0..1 s).
    text, data = ok(tmp_path, "zone-status", "example.test")
    assert data["dnssec"]["policy"] == "fast" and data["dnssec"]["rollover"] is None
    assert f"DNSSEC policy fast: no rollover running; next: a ZSK rollover of key {old} at" in text

    # 1. The new ZSK is published, the old one still signs.
    new = server.wait_for(lambda: _dnskeys(server) - first, timeout=25, interval=0.2)
    published_at = time.time()
    (new,) = new
    # 20 s - 5 s - jitter after the key's Activate (made whole seconds before `started`, at start-up).
    assert 10 <= published_at - started <= 16
    assert _www_signers(server) == {old}
    assert _transferred_dnskeys(verified(server.port)) == {ksk, old, new}
    text, data = ok(tmp_path, "zone-status", "example.test")
    by_tag = {k["tag"]: k for k in data["dnssec"]["keys"]}
    assert by_tag[new]["state"] == "published" and by_tag[new]["next_event"].startswith("Activate ")
    assert by_tag[old]["state"] == "active" and by_tag[old]["next_event"].startswith("Inactive ")
    assert by_tag[new]["next_time"] == by_tag[new]["next_event"].split()[1]
    assert data["dnssec"]["rollover"]["step"] == "publish"

    # 2. Ipub (5 s) later the new key signs, the old one stops but stays published.
    server.wait_for(lambda: _www_signers(server) == {new}, timeout=8, interval=0.1)
    activated_at = time.time()
    assert 4 <= activated_at - published_at <= 6.5
    assert _dnskeys(server) == {ksk, old, new}
    assert _transferred_dnskeys(verified(server.port)) == {ksk, old, new}

    # 3. Iret (5 s) later the old key leaves; the rollover is done.
    server.wait_for(lambda: _dnskeys(server) == {ksk, new}, timeout=8, interval=0.1)
    done_at = time.time()
    assert 4 <= done_at - activated_at <= 6.5
    assert _www_signers(server) == {new}
    assert _transferred_dnskeys(verified(server.port)) == {ksk, new}
    steps = [line for _, line in _steps(server)]
    assert any("zsk rollover, step publish" in line and "next: the new key active at" in line for line in steps)
    assert any("zsk rollover, step retire" in line and "next: the old key removed at" in line for line in steps)
    done = [line for line in steps if "zsk rollover done in" in line]
    assert done and f"a ZSK rollover of key {new} at" in done[0]
    took = float(re.search(r"done in (\d+) s", done[0]).group(1))
    print(f"ZSK rollover: {took:.0f} s (minimum Ipub + Iret = 10 s); published->active "
          f"{activated_at - published_at:.1f} s, active->removed {done_at - activated_at:.1f} s")
    assert 10 <= took <= 12


def test_a_ksk_rollover_switches_cds_when_ready_and_survives_kill_9(aliasd, upstream, tmp_path):
    from tests.aliasd_process import free_port

    metrics, api = free_port(), free_port()
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"], ttl=2)
    conf = config(upstream, '[ { role = "ksk", lifetime = "30s" }, { role = "zsk", lifetime = 0 } ]', metrics,
                  api_port=api)
    server = aliasd(conf, {"example.test.zone": ZONE}, server="serial-interval = 0\n")
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    (old,) = _ksks(server)
    assert _cds(server) == {old}
    gauge = scrape(metrics)
    assert 'aliasd_dnssec_next_key_event_seconds{zone="example.test."}' in gauge

    # The new KSK is published and signs the DNSKEY RRset; CDS stays with the old key for Ipub.
    new = server.wait_for(lambda: _ksks(server) - {old}, timeout=35, interval=0.2)
    (new,) = new
    published_at = time.time()
    assert _cds(server) == {old}
    dnskey = server.query("example.test", "DNSKEY", want_dnssec=True)
    signers = {rd.key_tag for rrset in dnskey.answer if rrset.rdtype == dns.rdatatype.RRSIG for rd in rrset}
    assert {old, new} <= signers
    verified(server.port)

    # Ipub later: CDS and CDNSKEY name the new key only; the step waits for the parent (no agents: the operator).
    server.wait_for(lambda: _cds(server) == {new}, timeout=8, interval=0.1)
    assert 4 <= time.time() - published_at <= 6.5
    cdnskey = server.query("example.test", "CDNSKEY").answer
    assert [dns.dnssec.key_id(rd) for rrset in cdnskey for rd in rrset] == [new]
    _, data = ok(tmp_path, "zone-status", "example.test")
    assert data["dnssec"]["rollover"]["step"] == "ds-publish"
    assert data["dnssec"]["rollover"]["waiting_for"] == "aliasd-ctl dnssec-checkds example.test. published"
    assert 'aliasd_dnssec_next_key_event_seconds{zone="example.test."}' not in scrape(metrics)
    route = f"http://127.0.0.1:{api}/api/v1/servers/localhost/zones/example.test./cryptokeys"
    keys = {k["id"]: k for k in json.loads(call(route, "GET", "")[2])}
    assert keys[old]["state"] == "active" and keys[old]["next_event"] is None  # (SyncDelete passed: nothing to come)
    assert keys[new]["state"] == "active" and keys[new]["keytype"] == "ksk"
    before = (_dnskeys(server), _cds(server), server.query("example.test", "SOA").answer[0][0].serial)
    verified(server.port)

    # kill -9 and a restart: the same step, the same keys, CDS unchanged, the serial not back.
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(5)
    server.start()
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    after = (_dnskeys(server), _cds(server), server.query("example.test", "SOA").answer[0][0].serial)
    assert after[:2] == before[:2] and after[2] >= before[2]
    _, data = ok(tmp_path, "zone-status", "example.test")
    assert data["dnssec"]["rollover"]["step"] == "ds-publish"
    assert "DNSSEC ksk rollover carries on at step ds-publish" in server.log()
    verified(server.port)

    # The operator (no parental agents) confirms the new DS, then the old one gone:
    # Iret (5 s) later the old KSK leaves.
    done = ctl(tmp_path, "dnssec-checkds", "example.test", "published")  # (once: it is a step)
    assert "waiting for aliasd-ctl dnssec-checkds example.test. withdrawn" in done.stdout, done.stderr
    done = ctl(tmp_path, "dnssec-checkds", "example.test", "withdrawn")
    assert done.returncode == 0, done.stderr
    withdrawn_at = time.time()
    server.wait_for(lambda: _ksks(server) == {new}, timeout=10, interval=0.1)
    assert 4 <= time.time() - withdrawn_at <= 6.5
    assert _cds(server) == {new}
    verified(server.port)
    _, data = ok(tmp_path, "zone-status", "example.test")
    assert data["dnssec"]["rollover"] is None


def test_going_insecure_publishes_the_delete_and_keeps_signing_while_a_ds_may_be_there(aliasd, upstream, tmp_path):
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"], ttl=2)
    keys = '[ { role = "ksk", lifetime = 0 }, { role = "zsk", lifetime = 0 } ]'
    server = aliasd(config(upstream, keys), {"example.test.zone": ZONE}, server="serial-interval = 0\n")
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    signed = _dnskeys(server)
    (ksk,) = _ksks(server)
    assert _cds(server) == {ksk}
    (tmp_path / "aliasd.toml").write_text((tmp_path / "aliasd.toml").read_text().replace(
        'dnssec-policy = "fast"', 'dnssec-policy = "insecure"'))
    ok(tmp_path, "reload")
    server.wait_for(lambda: _cds(server) == {0}, timeout=10, interval=0.2)  # CDS 0 0 0 00
    cdnskey = server.query("example.test", "CDNSKEY").answer[0][0]
    assert (cdnskey.flags, cdnskey.protocol, cdnskey.algorithm, cdnskey.key) == (0, 3, 0, b"\0")
    assert _dnskeys(server) == signed and _www_signers(server)  # still signed: a DS may be there
    _, data = ok(tmp_path, "zone-status", "example.test")
    assert data["dnssec"]["rollover"]["step"] == "cds-delete"
    assert data["dnssec"]["rollover"]["waiting_for"] == "aliasd-ctl dnssec-checkds example.test. withdrawn"
    verified(server.port)
