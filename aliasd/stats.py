"""Counters for operators, served in the Prometheus text format.

Counters carry no zone label: at a hundred thousand zones, zone times
query type times rcode times transport would be millions of series. The
one per-zone series is the served serial (a gauge), which is what an
operator compares with the secondaries'.

Statistics is a plain in-memory set of labelled counters that the server,
the resolver and the NOTIFY sender increment; gauges (serials, target
states) are read from the live objects when scraped. ``MetricsSite`` serves
``/metrics`` over HTTP with twisted.web; it is only started when
``[statistics] listen`` is configured (loopback is the sensible choice).
"""

from __future__ import annotations

import collections
from typing import Callable, Iterable

from twisted.web import resource, server

#: metric name -> help text; every counter used must be listed here.
COUNTERS = {
    "aliasd_queries_total": "DNS queries answered, by query type, rcode and transport.",
    "aliasd_alias_answers_total": "A/AAAA answers given at ALIAS owners.",
    "aliasd_stale_answers_total": "Answers at ALIAS owners whose upstream target is stale.",
    "aliasd_malformed_total": "Messages that could not be parsed (FORMERR or dropped).",
    "aliasd_transfers_total": "Zone transfers served, by kind and client.",
    "aliasd_transfers_refused_total": "Zone transfer requests refused.",
    "aliasd_notify_total": "NOTIFY messages, by outcome (sent, acknowledged, failed).",
    "aliasd_upstream_answers_total": "Upstream resolution outcomes, by outcome.",
    "aliasd_reloads_total": "Reloads, by result.",
    "aliasd_rrl_dropped_total": "UDP answers dropped by response rate limiting.",
    "aliasd_rrl_slipped_total": "UDP answers replaced by a truncated answer (RRL slip).",
}


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + text + "}" if text else ""


class Statistics:
    """Labelled counters, plus gauges computed when scraped."""

    def __init__(self):
        self.counters: collections.Counter = collections.Counter()
        self.gauges: dict[str, tuple[str, Callable[[], Iterable[tuple[dict, float]]]]] = {}

    @staticmethod
    def key(metric: str, **labels: str) -> tuple:
        """The counter for these labels (keep it to count without sorting labels)."""
        return (metric, tuple(sorted(labels.items())))

    def inc(self, metric: str, amount: int = 1, **labels: str) -> None:
        self.counters[self.key(metric, **labels)] += amount

    def value(self, metric: str, **labels: str) -> int:
        return self.counters[(metric, tuple(sorted(labels.items())))]

    def gauge(self, metric: str, help_text: str, read: Callable[[], Iterable[tuple[dict, float]]]) -> None:
        """Register a gauge read at scrape time as (labels, value) pairs."""
        self.gauges[metric] = (help_text, read)

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines = []
        by_metric: dict[str, list] = collections.defaultdict(list)
        for (metric, labels), value in self.counters.items():
            by_metric[metric].append((labels, value))
        for metric, help_text in COUNTERS.items():
            lines.append(f"# HELP {metric} {help_text}")
            lines.append(f"# TYPE {metric} counter")
            for labels, value in sorted(by_metric.get(metric, [])):
                lines.append(f"{metric}{_labels(labels)} {value}")
        for metric, (help_text, read) in sorted(self.gauges.items()):
            lines.append(f"# HELP {metric} {help_text}")
            lines.append(f"# TYPE {metric} gauge")
            for labels, value in read():
                lines.append(f"{metric}{_labels(sorted(labels.items()))} {value}")
        return "\n".join(lines) + "\n"


class _Metrics(resource.Resource):
    isLeaf = True

    def __init__(self, statistics: Statistics):
        super().__init__()
        self.statistics = statistics

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return self.statistics.render().encode()


class MetricsSite(server.Site):
    """``/metrics`` only; no access log line per scrape."""

    noisy = False

    def __init__(self, statistics: Statistics):
        root = resource.Resource()
        root.putChild(b"metrics", _Metrics(statistics))
        super().__init__(root)

    def log(self, request) -> None:
        pass
