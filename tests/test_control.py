"""Unit tests: the control protocol (StringTransport), the secondaries'
table and NOTIFY's outcomes (task.Clock). The commands themselves run
against a real server in tests/test_e2e_ctl.py."""

from __future__ import annotations

import json

import dns.name
import dns.rcode
import pytest
from twisted.internet import defer
from twisted.internet.testing import StringTransport

from aliasd.base.config import Endpoint, Settings, ZoneSettings
from aliasd.base.state import StateStore
from aliasd.replicate.journaldb import JournalStore
from aliasd.replicate.notify import NotifySender
from aliasd.replicate.secondaries import SecondaryTable
from aliasd.service.authority import ZoneAuthority
from aliasd.service.control import (
    COMMANDS,
    Command,
    CommandError,
    Controller,
    ControlProtocol,
)
from aliasd.update.dynamic import DynamicZones
from tests.helpers import zone_source
from tests.test_e2e_update import ZONE as TEXT
from tests.test_notify import reply

ZONE = dns.name.from_text("example.test.")
SECONDARY = Endpoint("127.0.0.1", 5399)


@pytest.fixture
def controller(clock, tmp_path):
    state = StateStore(tmp_path / "state")
    journal_files = JournalStore(state.db)
    authority = ZoneAuthority()
    authority.set_sources([zone_source("example.test.", TEXT)])
    settings = Settings(zones=(ZoneSettings(ZONE, tmp_path / "example.test.zone", notify=(SECONDARY,)),))
    sent = []
    notifier = NotifySender(clock, {ZONE: (SECONDARY,)}, send=lambda wire, target: sent.append(wire))
    made = Controller(
        clock, settings=settings, authority=authority, reloader=None, notifier=notifier, resolver=None,
        dynamic=DynamicZones(journal_files, settings.zones), secondaries=SecondaryTable(clock, notifier.retry_span),
        state=state, journal_files=journal_files,
    )
    made.sent = sent
    yield made
    state.db.close()


def ask(controller, *lines: bytes) -> list[dict]:
    proto = ControlProtocol(controller)
    transport = StringTransport()
    proto.makeConnection(transport)
    for line in lines:
        proto.dataReceived(line + b"\n")
    return [json.loads(line) for line in transport.value().splitlines()]


def test_replies_are_json_lines_in_the_order_asked(controller):
    status, zone, notify = ask(
        controller,
        b'{"command": "status"}',
        b'{"command": "zone-status", "args": ["example.test"]}',
        b'{"command": "notify", "args": ["example.test"]}',
    )
    assert status["ok"] and status["data"]["zones_served"] == 1 and status["data"]["zones_broken"] == 0
    assert status["text"].startswith("aliasd 0.1.0, up ")
    assert zone["ok"] and zone["data"]["serial"] == 1 and zone["data"]["dynamic"] is False
    assert zone["text"].splitlines()[0] == "zone example.test.: serial 1"
    assert notify["data"] == {"zone": "example.test.", "serial": 1, "secondaries": 1}
    assert len(controller.sent) == 1  # the NOTIFY went out


def test_bad_requests_get_an_error_naming_what_is_wrong(controller):
    garbage, unknown, usage, too_many = ask(
        controller, b"not json", b'{"command": "flush"}', b'{"command": "zone-status"}',
        b'{"command": "status", "args": ["x"]}',
    )
    assert not garbage["ok"] and "commands: status, zone-status, reload" in garbage["error"]
    assert not unknown["ok"] and "not a request of a known command" in unknown["error"]
    assert usage == {"ok": False, "error": "usage: zone-status ZONE"}
    assert too_many == {"ok": False, "error": "usage: status"}


def test_a_failed_command_answers_why_and_a_crash_is_logged(controller, log_events, monkeypatch):
    freeze, purge = ask(controller, b'{"command": "freeze", "args": ["example.test"]}',
                        b'{"command": "zone-purge", "args": ["example.test"]}')
    assert not freeze["ok"] and "is not dynamic" in freeze["error"]
    assert not purge["ok"] and "is still configured" in purge["error"]

    def broken(self):
        raise RuntimeError("boom")
    monkeypatch.setitem(COMMANDS, "status", Command("status", broken))
    [crashed] = ask(controller, b'{"command": "status"}')
    assert crashed == {"ok": False, "error": "status failed: boom (see the server's log)"}
    assert any(e.get("log_failure") is not None for e in log_events)


def test_a_slow_command_holds_back_the_replies_after_it(controller, monkeypatch):
    slow = defer.Deferred()
    monkeypatch.setitem(COMMANDS, "reload", Command("reload", lambda self, zone=None: slow, ("ZONE?",)))
    proto = ControlProtocol(controller)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b'{"command": "reload"}\n{"command": "status"}\n')
    assert transport.value() == b""
    slow.callback({"text": "reload done", "data": {}})
    first, second = (json.loads(line) for line in transport.value().splitlines())
    assert first == {"ok": True, "text": "reload done", "data": {}} and second["data"]["zones_served"] == 1


def test_command_errors_are_not_logged_as_crashes(controller, log_events, monkeypatch):
    def refuse(self):
        raise CommandError("not now")
    monkeypatch.setitem(COMMANDS, "status", Command("status", refuse))
    assert ask(controller, b'{"command": "status"}') == [{"ok": False, "error": "not now"}]
    assert not any(e.get("log_failure") is not None for e in log_events)


def test_a_secondary_is_behind_once_older_for_longer_than_the_notify_retries(clock):
    table = SecondaryTable(clock, retry_span=31.0)
    table.served(ZONE, 10)
    table.heard(ZONE, "192.0.2.53", None, 9, "IXFR")  # asks from 9 ...
    assert table.report(ZONE)[0]["serials_behind"] == 1
    table.heard(ZONE, "192.0.2.53", None, 10, "IXFR", complete=True)  # ... and gets 10
    clock.advance(5)
    table.served(ZONE, 12)
    clock.advance(31)
    [row] = table.report(ZONE)
    assert row["serial"] == 10 and row["serials_behind"] == 2 and row["seconds_behind"] == 31.0
    assert row["behind"] is False and table.behind() == 0
    clock.advance(1)
    assert table.report(ZONE)[0]["behind"] is True and table.behind() == 1
    # An AXFR leaves it with the served serial.
    table.heard(ZONE, "192.0.2.53", None, None, "AXFR")
    assert table.report(ZONE)[0]["serial"] == 10  # (not finished yet)
    table.heard(ZONE, "192.0.2.53", None, 12, "AXFR", complete=True)
    [row] = table.report(ZONE)
    assert row["serial"] == 12 and not row["behind"] and row["serials_behind"] == 0


def test_the_table_keeps_few_secondaries_a_zone_keyed_by_address_and_key(clock):
    table = SecondaryTable(clock, retry_span=31.0)
    table.served(ZONE, 5)
    table.heard(ZONE, "192.0.2.1", "xfr-key.", 5, "IXFR")
    table.heard(ZONE, "192.0.2.1", None, 4, "IXFR")
    assert {(r["address"], r["key"], r["serial"]) for r in table.report(ZONE)} == {
        ("192.0.2.1", "xfr-key.", 5), ("192.0.2.1", None, 4)}
    for n in range(table.per_zone + 10):
        table.heard(ZONE, f"10.0.{n // 256}.{n % 256}", None, 5, "IXFR")
    rows = table.report(ZONE)
    assert len(rows) == table.per_zone and rows[0]["address"] == "10.0.0.10"  # the oldest went first
    table.forget(ZONE)
    assert table.report(ZONE) == []


def test_notify_outcomes_per_secondary(clock):
    sent = []
    sender = NotifySender(clock, {ZONE: (SECONDARY,)}, send=lambda wire, target: sent.append(wire))
    assert sender.retry_span == 31.0  # 1 + 2 + 4 + 8 + 16 seconds
    assert sender.last_answers(ZONE) == [{"target": "127.0.0.1:5399", "state": "not sent", "serial": None}]
    authority = ZoneAuthority()
    authority.set_sources([zone_source("example.test.", TEXT)])
    sender.notify_again([authority.versions[ZONE]])
    assert sender.last_answers(ZONE)[0]["state"] == "waiting (try 1)"
    sender.response_received(reply(sent[0], rcode=dns.rcode.REFUSED), "127.0.0.1", 5399)
    assert sender.last_answers(ZONE) == [{"target": "127.0.0.1:5399", "state": "answered REFUSED after 1 tries",
                                          "serial": 1}]


class FakeRollovers:
    """The rollover engine's interface (aliasd.dnssec.rollover.Rollovers), as the contract fixes it."""

    def __init__(self):
        self.calls = []
        self.waiting = "published"

    def state(self, zone):
        return {"keys": [{"tag": 11111, "role": "ksk", "algorithm": 13, "state": "active",
                          "next_event": "retire", "next_time": "2026-12-07T15:00:00Z"},
                         {"tag": 22222, "role": "ksk", "algorithm": 13, "state": "published",
                          "next_event": "active", "next_time": None}],
                "policy": "fast",
                "rollover": {"kind": "KSK", "step": "ds-publish", "waiting_for": f"the DS {self.waiting}",
                             "ds_seen": {}},
                "next": f"waiting for the DS {self.waiting}", "next_time": None}

    def confirm_ds(self, zone, what):
        self.calls.append(("confirm_ds", zone, what))
        if what != self.waiting:
            raise ValueError(f"the rollover waits for the DS to be {self.waiting}, not {what}")
        return f"DS {what}: KSK 22222 becomes active"

    def rollover(self, zone, tag):
        self.calls.append(("rollover", zone, tag))
        if tag == 33333:
            raise ValueError("no key 33333 in this zone")
        return f"rollover of key {tag or 11111} started"


def test_dnssec_steps_go_to_the_rollover_engine(controller, log_events):
    unsigned = ask(controller, b'{"command": "dnssec-checkds", "args": ["example.test", "published"]}')
    assert unsigned == [{"ok": False, "error": "zone example.test. is not signed (no dnssec or dnssec-policy): "
                                                "it has no keys to roll"}]
    controller.authority.signers[ZONE] = object()
    [never] = ask(controller, b'{"command": "dnssec-rollover", "args": ["example.test"]}')
    assert never == {"ok": False, "error": "zone example.test. is signed with keys aliasd never rolls "
                                            "(dnssec = true): give it a dnssec-policy to roll them"}
    controller.rollovers = FakeRollovers()
    published, withdrawn, bad_word, roll, roll_key, no_key, not_tag, status, unknown = ask(
        controller,
        b'{"command": "dnssec-checkds", "args": ["example.test", "published"]}',
        b'{"command": "dnssec-checkds", "args": ["example.test", "withdrawn"]}',
        b'{"command": "dnssec-checkds", "args": ["example.test", "gone"]}',
        b'{"command": "dnssec-rollover", "args": ["example.test"]}',
        b'{"command": "dnssec-rollover", "args": ["example.test", "22222"]}',
        b'{"command": "dnssec-rollover", "args": ["example.test", "33333"]}',
        b'{"command": "dnssec-rollover", "args": ["example.test", "ksk"]}',
        b'{"command": "dnssec-status", "args": ["example.test"]}',
        b'{"command": "dnssec-rollover", "args": ["other.test"]}',
    )
    assert published["ok"] and published["text"] == "DS published: KSK 22222 becomes active"
    assert published["data"]["dnssec"]["rollover"]["step"] == "ds-publish"
    assert withdrawn == {"ok": False, "error": "zone example.test.: the rollover waits for the DS to be "
                                                "published, not withdrawn"}
    assert not bad_word["ok"] and "say published" in bad_word["error"]
    assert roll["text"] == "rollover of key 11111 started" and roll_key["text"] == "rollover of key 22222 started"
    assert no_key == {"ok": False, "error": "zone example.test.: no key 33333 in this zone"}
    assert not not_tag["ok"] and "is not a key tag" in not_tag["error"]
    assert unknown == {"ok": False, "error": "zone other.test. is not configured"}
    assert controller.rollovers.calls == [
        ("confirm_ds", ZONE, "published"), ("confirm_ds", ZONE, "withdrawn"),
        ("rollover", ZONE, None), ("rollover", ZONE, 22222), ("rollover", ZONE, 33333)]
    assert status["text"].splitlines() == [
        "zone example.test.: DNSSEC keys (policy fast)",
        "  key 11111 KSK alg 13: active, next retire at 2026-12-07T15:00:00Z",
        "  key 22222 KSK alg 13: published, next active",
        "  rollover: KSK, step ds-publish, waiting for the DS published",
        "  next: waiting for the DS published",
    ]
    steps = [e["line"] for e in log_events if e.get("log_format") == "control: zone {zone}: {line}"]
    assert steps == ["DS published: KSK 22222 becomes active", "rollover of key 11111 started",
                     "rollover of key 22222 started"]
    [usage] = ask(controller, b'{"command": "dnssec-checkds", "args": ["example.test"]}')
    assert usage == {"ok": False, "error": "usage: dnssec-checkds ZONE published|withdrawn"}
