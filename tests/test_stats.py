"""Unit tests: the counters and gauges as prometheus_client exposes them."""

from __future__ import annotations

import ast
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from twisted.web.test.requesthelper import DummyRequest

from aliasd.base.metricsite import MetricsSite
from aliasd.base.stats import COUNTERS, Statistics

ALIASD = Path(__file__).resolve().parent.parent / "aliasd"


def samples(text: str) -> dict[tuple, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_and_gauges_in_the_text_format():
    stats = Statistics()
    key = stats.key("aliasd_queries_total", qtype="A", rcode="NOERROR", transport="udp")
    for _ in range(3):
        stats.counters[key] += 1  # the hot path: a dictionary increment
    stats.inc("aliasd_transfers_total", kind="AXFR-full", client="192.0.2.1")
    stats.inc("aliasd_rrl_dropped_total", 4)
    stats.gauge("aliasd_zone_serial", "Serials.", lambda: [({"zone": "example.com."}, 7), ({"zone": "a."}, 1)])
    stats.gauge("aliasd_zones", "Zones.", lambda: [({}, 2)])
    body, content_type = stats.render()
    text = body.decode()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert 'aliasd_queries_total{qtype="A",rcode="NOERROR",transport="udp"} 3' in text.splitlines()
    assert 'aliasd_transfers_total{client="192.0.2.1",kind="AXFR-full"} 1' in text.splitlines()
    got = samples(text)
    assert got[("aliasd_rrl_dropped_total", ())] == 4
    assert got[("aliasd_zone_serial", (("zone", "example.com."),))] == 7
    assert got[("aliasd_zones", ())] == 2
    # Every declared counter is described, counted or not; nothing is
    # exported with a creation time (one more series each).
    for metric, (help_text, _) in COUNTERS.items():
        assert f"# HELP {metric} {help_text}" in text
        assert f"# TYPE {metric} counter" in text
    assert "_created" not in text
    # The standard process metrics come along.
    assert got[("process_resident_memory_bytes", ())] > 0


def test_whole_values_are_written_as_integers():
    """Serials read as a secondary shows them, not 2.026120704e+09; other
    values keep their fractions, label values are left alone."""
    stats = Statistics()
    stats.gauge("aliasd_zone_serial", "Serials.", lambda: [({"zone": "ex ample} 1.0"}, 2026120704)])
    stats.gauge("aliasd_reactor_lag_seconds_max", "Lag.", lambda: [({}, 0.25)])
    stats.inc("aliasd_malformed_total", 3)
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        lines = stats.render(accept)[0].decode().splitlines()
        assert 'aliasd_zone_serial{zone="ex ample} 1.0"} 2026120704' in lines
        assert "aliasd_reactor_lag_seconds_max 0.25" in lines
        assert "aliasd_malformed_total 3" in lines
        assert not [line for line in lines if "e+" in line and line.startswith("aliasd_")]
        assert samples(stats.render(accept)[0].decode().replace("# EOF\n", ""))[
            ("aliasd_zone_serial", (("zone", "ex ample} 1.0"),))] == 2026120704


def test_label_values_are_escaped():
    stats = Statistics()
    client = 'a"b\\c\nd'
    stats.inc("aliasd_transfers_total", kind="AXFR-full", client=client)
    got = samples(stats.render()[0].decode())
    assert got[("aliasd_transfers_total", (("client", client), ("kind", "AXFR-full")))] == 1


def test_openmetrics_when_the_scraper_asks_for_it():
    stats = Statistics()
    stats.inc("aliasd_malformed_total")
    body, content_type = stats.render("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert b"aliasd_malformed_total 1" in body


def _get(site: MetricsSite, path: bytes, accept: bytes | None = None) -> tuple[DummyRequest, bytes]:
    request = DummyRequest(path.strip(b"/").split(b"/"))
    if accept is not None:
        request.requestHeaders.setRawHeaders(b"accept", [accept])
    body = site.getResourceFor(request).render(request)
    return request, body


def test_metrics_site_serves_only_metrics():
    stats = Statistics()
    stats.inc("aliasd_reloads_total", result="ok")
    site = MetricsSite(stats)
    request, body = _get(site, b"/metrics")
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"text/plain; version=0.0.4")
    assert b'aliasd_reloads_total{result="ok"} 1' in body
    request, body = _get(site, b"/metrics", accept=b"application/openmetrics-text; version=1.0.0")
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"application/openmetrics-text")
    request, _ = _get(site, b"/other")
    assert request.responseCode == 404


def _counted() -> dict[str, set[tuple[str, ...]]]:
    """Every counter aliasd counts (``stats.inc``/``stats.key`` with a
    literal name), with the label names it is counted with."""
    found: dict[str, set[tuple[str, ...]]] = {}
    for path in ALIASD.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("inc", "key")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith("aliasd_")
            ):
                labels = tuple(sorted(k.arg for k in node.keywords if k.arg != "amount"))
                found.setdefault(node.args[0].value, set()).add(labels)
    return found


def test_every_counter_counted_is_declared_with_its_labels():
    counted = _counted()
    assert "aliasd_queries_total" in counted and "aliasd_notify_total" in counted  # the scan works
    for metric, label_sets in counted.items():
        assert metric in COUNTERS, f"{metric} is counted but not declared in aliasd.base.stats.COUNTERS"
        assert label_sets == {COUNTERS[metric][1]}, metric
