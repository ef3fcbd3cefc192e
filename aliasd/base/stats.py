"""Counters for operators, served in the Prometheus exposition format.

Counters carry no zone label: at a hundred thousand zones, zone times
query type times rcode times transport would be millions of series. The
one per-zone series is the served serial (a gauge), which is what an
operator compares with the secondaries'.

Statistics keeps the counters that the server, the resolver and the NOTIFY
sender increment as plain counts in a dictionary: a query costs one
dictionary increment with a key computed once (aliasd.answer.answers keeps it with
each cached answer), where a prometheus_client Counter costs a method call
and a lock on every increment. At scrape time Statistics acts as a
prometheus_client collector (the documented way to export values kept
elsewhere): it turns those counts, and the gauges read from the live
objects (serials, target states), into metric families, and
prometheus_client writes the text format (or OpenMetrics, when the scraper
asks for it), beside its standard process and Python metrics.

``MetricsSite`` (aliasd.base.metricsite) serves ``/metrics`` over HTTP with
twisted.web; it is only imported and started when ``[statistics] listen`` is
configured (loopback is the
sensible choice). It renders in the reactor thread: the collector reads
dictionaries that only the reactor thread changes. (prometheus_client's
own ``twisted.MetricsResource`` runs its WSGI application in the reactor's
thread pool, where it would read them while they change, and would wait
behind a reload or a state write running there.)

prometheus_client is imported only where statistics are served (by
``MetricsSite``), not by every process and test that counts.
"""

from __future__ import annotations

import collections
import functools
from typing import Callable, Iterable

#: counter name -> (help text, label names); every counter used must be
#: listed here with the labels it is counted with.
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "aliasd_queries_total": (
        "DNS queries answered, by query type, rcode and transport.", ("qtype", "rcode", "transport")),
    "aliasd_alias_answers_total": ("A/AAAA answers given at ALIAS owners.", ()),
    "aliasd_stale_answers_total": ("Answers at ALIAS owners whose upstream target is stale.", ()),
    "aliasd_malformed_total": ("Messages that could not be parsed (FORMERR or dropped).", ()),
    "aliasd_transfers_total": ("Zone transfers served, by kind and client.", ("client", "kind")),
    "aliasd_transfers_refused_total": ("Zone transfer requests refused.", ()),
    "aliasd_notify_total": ("NOTIFY messages, by outcome (sent, acknowledged, failed).", ("outcome",)),
    "aliasd_upstream_answers_total": ("Upstream resolution outcomes, by outcome.", ("outcome",)),
    "aliasd_reloads_total": ("Reloads, by result.", ("result",)),
    "aliasd_rrl_dropped_total": ("UDP answers dropped by response rate limiting.", ()),
    "aliasd_rrl_slipped_total": ("UDP answers replaced by a truncated answer (RRL slip).", ()),
    "aliasd_updates_total": ("Dynamic UPDATE requests answered, by rcode.", ("rcode",)),
    "aliasd_worker_queries_total": ("DNS queries answered by each worker process.", ("worker",)),
}

GaugeReader = Callable[[], Iterable[tuple[dict, float]]]


class Statistics:
    """Labelled counters, plus gauges computed when scraped."""

    def __init__(self):
        self.counters: collections.Counter = collections.Counter()
        self.gauges: dict[str, tuple[str, GaugeReader]] = {}
        # Counters kept elsewhere (another thread's), read when scraped.
        self.read_counters: dict[str, tuple[str, Callable[[], int]]] = {}
        # Called before a scrape renders; its Deferred fires once the
        # counters are current (worker processes' counts added: aliasd.service.workers).
        self.refresh: Callable[[], object] | None = None

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def key(metric: str, **labels: str) -> tuple:
        """The counter for these labels (keep it to count without sorting
        labels). One object per label set: every answer the fast path keeps
        holds its key, and a copy each was a third of a kept answer's memory."""
        return (metric, tuple(sorted(labels.items())))

    def inc(self, metric: str, amount: int = 1, **labels: str) -> None:
        self.counters[self.key(metric, **labels)] += amount

    def value(self, metric: str, **labels: str) -> int:
        return self.counters[(metric, tuple(sorted(labels.items())))]

    def gauge(self, metric: str, help_text: str, read: GaugeReader) -> None:
        """Register a gauge read at scrape time as (labels, value) pairs."""
        self.gauges[metric] = (help_text, read)

    def counter(self, metric: str, help_text: str, read: Callable[[], int]) -> None:
        """Register a counter without labels kept elsewhere, read at scrape time."""
        self.read_counters[metric] = (help_text, read)

    def collect(self) -> list:
        """The counters and gauges as prometheus_client metric families."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        by_metric: dict[str, list] = collections.defaultdict(list)
        for (metric, labels), value in list(self.counters.items()):
            by_metric[metric].append((labels, value))
        families = []
        for metric, (help_text, names) in COUNTERS.items():
            family = CounterMetricFamily(metric, help_text, labels=names)
            for labels, value in sorted(by_metric.pop(metric, [])):
                if tuple(name for name, _ in labels) != names:
                    raise ValueError(f"{metric} counted with labels {labels}, declared {names}")
                family.add_metric([v for _, v in labels], value)
            families.append(family)
        if by_metric:
            raise ValueError(f"counters not declared in aliasd.base.stats.COUNTERS: {sorted(by_metric)}")
        for metric, (help_text, read) in sorted(self.read_counters.items()):
            families.append(CounterMetricFamily(metric, help_text, value=read()))
        for metric, (help_text, read) in sorted(self.gauges.items()):
            samples = list(read())
            names = sorted(samples[0][0]) if samples else []
            family = GaugeMetricFamily(metric, help_text, labels=names)
            for labels, value in samples:
                family.add_metric([labels[name] for name in names], value)
            families.append(family)
        return families

    @functools.cached_property
    def registry(self):
        """A registry of these statistics and the process's standard metrics."""
        from prometheus_client import (
            CollectorRegistry,
            GCCollector,
            PlatformCollector,
            ProcessCollector,
        )

        registry = CollectorRegistry()
        registry.register(self)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        return registry

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition the ``Accept`` header asks for, and its content type."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept)
        return integral_values(encoder(self.registry)), content_type


def integral_values(body: bytes) -> bytes:
    """The exposition with whole-number sample values written as integers.

    prometheus_client writes every value as a float, the way Go does, so a
    serial reads ``2.026120704e+09`` and a count ``3.0``; an operator
    comparing serials with a secondary's wants ``2026120704``. Both forms
    are valid in the text format and in OpenMetrics."""
    lines = body.split(b"\n")
    for i, line in enumerate(lines):
        if not line or line.startswith(b"#"):
            continue
        # The value follows the labels' closing brace, or the name.
        cut = line.rfind(b"}") + 1 or line.find(b" ")
        if cut < 0:
            continue
        text, space, tail = line[cut:].lstrip(b" ").partition(b" ")
        try:
            value = float(text)
        except ValueError:
            continue
        if value.is_integer() and abs(value) < 2**53:
            lines[i] = line[:cut] + b" " + str(int(value)).encode() + space + tail
    return b"\n".join(lines)
