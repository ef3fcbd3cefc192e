"""End to end: a real twistd aliasd flattening ALIAS through a real upstream.

The upstream is tests.upstream.UpstreamServer on loopback; each test changes
its answers and watches aliasd's answers follow.
"""

from __future__ import annotations

import time

import dns.rcode
import dns.rdatatype
import pytest

pytestmark = pytest.mark.e2e

ZONE = """\
    $ORIGIN example.com.
    $TTL 300
    @     SOA ns1 hostmaster 100 3600 600 86400 120
          NS  ns1
          MX  10 mail
    @     60 ALIAS target.upstream.test.
    @     A   192.0.2.1          ; fallback until the first resolution
    ns1   A   192.0.2.53
    mail  A   192.0.2.25
    www   ALIAS target.upstream.test.
    v6    ALIAS v6.upstream.test.
    chain ALIAS www              ; ALIAS to an in-zone ALIAS
    cn    ALIAS alias-cname.upstream.test.
    """


def config(upstream, serve_stale: int = 4) -> str:
    return f"""
        [resolver]
        upstreams = ["{upstream.endpoint}"]
        min-refresh = 1
        max-refresh = 2
        serve-stale = {serve_stale}
        timeout = 0.3
        [zones."example.com"]
        file = "example.com.zone"
        """


@pytest.fixture
def started(aliasd, upstream):
    upstream.set("target.upstream.test", "A", ["203.0.113.1", "203.0.113.2"], ttl=30)
    upstream.set("target.upstream.test", "AAAA", ["2001:db8::1"], ttl=30)
    upstream.set("v6.upstream.test", "AAAA", ["2001:db8::6"], ttl=30)
    return aliasd(config(upstream), {"example.com.zone": ZONE})


def test_apex_alias_answers_target_addresses_beside_soa_ns_mx(started):
    p = started
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.1", "203.0.113.2"})
    response = p.query("example.com", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    (rrset,) = response.answer
    assert rrset.name.to_text() == "example.com."
    assert rrset.ttl == 30  # min(ALIAS TTL 60, target TTL 30)
    assert p.addresses("example.com", "AAAA") == {"2001:db8::1"}
    # Other types at the apex answer from the zone as usual.
    assert p.query("example.com", "MX").answer[0][0].exchange.to_text() == "mail.example.com."
    # The served serial starts at the file's and moves as the view changes.
    assert p.query("example.com", "SOA").answer[0][0].serial >= 100
    assert len(p.query("example.com", "NS").answer[0]) == 1


def test_alias_ttl_is_the_alias_ttl_when_target_ttl_is_longer(started, upstream):
    upstream.set("target.upstream.test", "A", ["203.0.113.9"], ttl=3600)
    p = started
    p.wait_for(lambda: p.addresses("www.example.com") == {"203.0.113.9"})
    assert p.query("www.example.com").answer[0].ttl == 300  # zone $TTL for www's ALIAS
    assert p.query("example.com").answer[0].ttl == 60


def test_answer_follows_when_the_target_rotates(started, upstream):
    p = started
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.1", "203.0.113.2"})
    upstream.set("target.upstream.test", "A", ["203.0.113.7"], ttl=1)
    changed_at = time.monotonic()
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.7"}, timeout=8)
    # Within one refresh interval (max-refresh 2s) plus a little slack.
    assert time.monotonic() - changed_at < 4
    assert p.addresses("www.example.com") == {"203.0.113.7"}
    assert p.addresses("chain.example.com") == {"203.0.113.7"}


def test_one_upstream_query_per_target_and_type_however_many_owners(started, upstream):
    p = started
    p.wait_for(lambda: p.addresses("www.example.com"))
    # Three owners (apex, www, chain) share target.upstream.test; the first
    # refresh round asks once per type.
    assert upstream.count("target.upstream.test", "A") == 1
    assert upstream.count("target.upstream.test", "AAAA") == 1
    assert upstream.count("www.example.com", "A") == 0  # in-zone: never asked upstream


def test_servfail_and_timeout_serve_stale_then_drop_to_fallback(aliasd, upstream):
    upstream.set("target.upstream.test", "A", ["203.0.113.1", "203.0.113.2"], ttl=30)
    p = aliasd(config(upstream, serve_stale=6), {"example.com.zone": ZONE})
    p.wait_for(lambda: p.addresses("www.example.com") == {"203.0.113.1", "203.0.113.2"})
    upstream.behave("target.upstream.test", "servfail")
    asked = upstream.count("target.upstream.test", "A")
    # Two refreshes answered SERVFAIL (serve-stale is 6s, refresh 1-2s).
    p.wait_for(lambda: upstream.count("target.upstream.test", "A") >= asked + 2)
    time.sleep(0.2)
    assert p.addresses("www.example.com") == {"203.0.113.1", "203.0.113.2"}
    upstream.behave("target.upstream.test", "drop")
    # Past serve-stale the apex drops to its file fallback, www to nothing:
    # an ALIAS owner with nothing else is then absent from the transfer
    # view, and absent here too (NXDOMAIN, as a secondary answers).
    p.wait_for(lambda: p.addresses("example.com") == {"192.0.2.1"}, timeout=10)
    response = p.query("www.example.com", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN and not response.answer
    log = p.log()
    assert log.count("target.upstream.test. A: stale (SERVFAIL)") == 1
    assert "target.upstream.test. A: expired" in log
    assert p.alive()


def test_nxdomain_and_nodata_upstream_mean_no_addresses(started, upstream):
    p = started
    p.wait_for(lambda: p.addresses("example.com"))
    upstream.behave("target.upstream.test", "nxdomain")
    p.wait_for(lambda: not p.query("example.com", "A").answer)
    response = p.query("example.com", "A")
    assert response.rcode() == dns.rcode.NOERROR  # NODATA, not NXDOMAIN
    assert response.authority[0].rdtype == dns.rdatatype.SOA
    # NODATA for AAAA at v6's target: v6 has AAAA only.
    assert not p.query("v6.example.com", "A").answer
    assert p.addresses("v6.example.com", "AAAA") == {"2001:db8::6"}


def test_cname_chain_upstream_gives_final_addresses_and_minimum_ttl(aliasd, upstream):
    upstream.set("alias-cname.upstream.test", "CNAME", ["final.upstream.test."], ttl=7)
    upstream.set("final.upstream.test", "A", ["203.0.113.50"], ttl=40)
    p = aliasd(config(upstream), {"example.com.zone": ZONE})
    p.wait_for(lambda: p.addresses("cn.example.com") == {"203.0.113.50"})
    assert p.query("cn.example.com").answer[0].ttl == 7


def test_fallback_records_until_first_resolution(aliasd, upstream):
    upstream.behave("target.upstream.test", "drop")
    p = aliasd(config(upstream), {"example.com.zone": ZONE})
    assert p.addresses("example.com") == {"192.0.2.1"}
    upstream.set("target.upstream.test", "A", ["203.0.113.77"], ttl=1)
    p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.77"}, timeout=8)


def test_in_zone_target_needs_no_upstream(aliasd, tmp_path):
    """The bundled example: the ALIAS target lives in another served zone."""
    p = aliasd(
        """
        [zones."example.com"]
        file = "a.zone"
        [zones."cdn.example.net"]
        file = "cdn.zone"
        """,
        {
            "a.zone": """\
                $ORIGIN example.com.
                @ 300 SOA ns1 h 1 3600 600 86400 60
                @ 300 ALIAS lb.cdn.example.net.
                """,
            "cdn.zone": """\
                $ORIGIN cdn.example.net.
                @ 60 SOA ns1 h 1 3600 600 86400 60
                lb 20 A 198.51.100.10
                """,
        },
    )
    assert p.addresses("example.com") == {"198.51.100.10"}
    assert p.query("example.com").answer[0].ttl == 20
