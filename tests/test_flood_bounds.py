"""Client-triggered logging and counters stay bounded under a flood."""

from __future__ import annotations

import dns.message
import dns.tsigkeyring

from aliasd.answer.answers import QueryHandler
from aliasd.base.logthrottle import LogThrottle
from aliasd.service.authority import ZoneAuthority
from tests.helpers import zone_source


def test_burst_then_silence_then_one_summary(clock, log_events):
    throttle = LogThrottle("refused transfers", burst=3, interval=60, clock=clock.seconds)
    assert [throttle.allow() for _ in range(10)] == [True] * 3 + [False] * 7
    clock.advance(59)
    assert not throttle.allow()
    assert not [e for e in log_events if "were not logged" in e.get("log_format", "")]
    clock.advance(1)
    assert throttle.allow()  # a new interval: logged again, after the summary
    summaries = [e for e in log_events if "were not logged" in e.get("log_format", "")]
    assert len(summaries) == 1 and summaries[0]["count"] == 8
    assert summaries[0]["what"] == "refused transfers"


def test_spoofed_flood_of_refused_transfers_neither_floods_the_log_nor_grows_counters(log_events):
    authority = ZoneAuthority()
    authority.set_sources([zone_source("example.com", "$ORIGIN example.com.\n@ 300 SOA ns1 h 1 2 3 4 5\n@ 300 NS ns1\n")])
    handler = QueryHandler(authority)
    bad_key = dns.tsigkeyring.from_text({"nobody-knows": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"})
    for i in range(1000):
        client = f"10.{i >> 8}.{i & 255}.1"
        handler.handle(dns.message.make_query("example.com", "AXFR").to_wire(), client, over_udp=True)
        signed = dns.message.make_query("www.example.com", "A")
        signed.use_tsig(bad_key, keyname="nobody-knows")
        handler.handle(signed.to_wire(), client, over_udp=True)
    refused = [e for e in log_events if "refused to" in e.get("log_format", "")]
    tsig = [e for e in log_events if "TSIG error" in e.get("log_format", "")]
    assert len(refused) == 20 and len(tsig) == 20
    series = [k for k in handler.stats.counters if k[0] == "aliasd_transfers_refused_total"]
    assert len(series) == 1 and handler.stats.counters[series[0]] == 1000


def test_every_query_type_does_not_grow_the_query_counters():
    authority = ZoneAuthority()
    authority.set_sources([zone_source("example.com", "$ORIGIN example.com.\n@ 300 SOA ns1 h 1 2 3 4 5\n@ 300 NS ns1\n")])
    handler = QueryHandler(authority)
    for qtype in range(1, 5000):
        handler.handle(dns.message.make_query("example.com", qtype).to_wire(), "192.0.2.1", over_udp=True)
    labels = {dict(k[1]).get("qtype") for k in handler.stats.counters if k[0] == "aliasd_queries_total"}
    assert {"SOA", "NS", "A", "other"} <= labels and len(labels) <= 21
