"""End to end: the Prometheus endpoint of a real process, scraped over HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.aliasd_process import free_port
from tests.test_e2e_notify import NotifyListener
from tests.test_e2e_transfer import ZONE

pytestmark = pytest.mark.e2e


def scrape(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    assert "# TYPE aliasd_queries_total counter" in body
    return values


def test_counters_follow_queries_transfers_notify_and_resolution(aliasd, upstream):
    upstream.set("target.upstream.test", "A", ["203.0.113.1"], ttl=30)
    listener = NotifyListener("127.0.0.1")
    metrics_port = free_port()
    try:
        p = aliasd(
            f"""
            [statistics]
            listen = "127.0.0.1:{metrics_port}"
            [resolver]
            upstreams = ["{upstream.endpoint}"]
            min-refresh = 1
            [zones."example.com"]
            file = "example.com.zone"
            allow-transfer = ["127.0.0.1"]
            notify = ["{listener.endpoint}"]
            """,
            {"example.com.zone": ZONE},
        )
        p.wait_for(lambda: p.addresses("example.com") == {"203.0.113.1"})
        for _ in range(5):
            p.query("www.example.com", "A")
        p.query("missing.example.com", "A")
        p.query("example.com", "AXFR", tcp=True)
        p.wait_for(lambda: "acknowledged" in p.log())
        m = scrape(metrics_port)
        www = 'aliasd_queries_total{qtype="A",rcode="NOERROR",transport="udp"}'
        assert m[www] >= 6  # five for www, and the test's own polling of the apex
        assert m['aliasd_queries_total{qtype="A",rcode="NXDOMAIN",transport="udp"}'] == 1
        assert m['aliasd_alias_answers_total'] >= 5
        assert m['aliasd_transfers_total{client="127.0.0.1",kind="AXFR-full"}'] == 1
        assert m['aliasd_notify_total{outcome="acknowledged"}'] >= 1
        assert m['aliasd_upstream_answers_total{outcome="addresses"}'] >= 1
        serial = p.query("example.com", "SOA").answer[0][0].serial
        assert m['aliasd_zone_serial{zone="example.com."}'] == serial
        assert m['aliasd_alias_targets{status="resolved"}'] == 1
        before = m[www]
        p.query("www.example.com", "A")
        assert scrape(metrics_port)[www] == before + 1
        assert m["process_resident_memory_bytes"] > 0  # prometheus_client's process metrics
        request = urllib.request.Request(
            f"http://127.0.0.1:{metrics_port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            assert response.read().endswith(b"# EOF\n")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/other", timeout=5)
        assert "GET /metrics" not in p.log()  # no access log line per scrape
    finally:
        listener.close()
