"""The control socket: what ``aliasd-ctl`` asks of the running server.

Why: an operator needs rndc's and knotc's verbs (status, zone-status,
reload of one zone, freeze/thaw/sync of a dynamic zone, NOTIFY again,
purge, backup) without signals or a restart. The server listens on a UNIX
stream socket in its state directory (``control.sock``, mode 0600, made
once twistd has dropped privileges, so it belongs to the user aliasd runs
as: whoever may touch the state may control the server, nobody else).

The protocol is one JSON object a line each way: a request
``{"command": "zone-status", "args": ["example.com"]}`` gets
``{"ok": true, "text": "...", "data": {...}}`` (``text`` for a person,
``data`` for ``--json``) or ``{"ok": false, "error": "..."}``. Commands
are the entries of ``COMMANDS``: a name, its arguments and a method of
``Controller``; the manual steps of key rollovers (``dnssec-checkds``,
``dnssec-rollover``, as ``rndc dnssec``) are entries there, carried out by
the rollover engine (``rollovers``: aliasd.dnssec.rollover's Rollovers).
Work that grows with a zone (writing its file, the backup) runs in a thread.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dns.exception
import dns.name
import dns.rdatatype
from twisted.application import service
from twisted.internet import defer, error, protocol, threads
from twisted.logger import Logger
from twisted.protocols import basic

from aliasd import __version__
from aliasd.base import store

log = Logger()

#: The socket's name in the state directory.
SOCKET_NAME = "control.sock"


class CommandError(Exception):
    """A command that cannot be done; the message says why (the CLI exits 1)."""


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    run: Callable  # Controller method: (controller, *args) -> dict or Deferred of one
    args: tuple[str, ...] = ()  # argument names; a trailing "?" marks an optional one
    help: str = ""

    @property
    def usage(self) -> str:
        """``reload [ZONE]``: the command with its arguments."""
        return " ".join([self.name, *(f"[{a[:-1]}]" if a.endswith("?") else a for a in self.args)])


def _when(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controller:
    """Carries out the commands on the running objects (reactor thread)."""

    def __init__(self, reactor, *, settings, authority, reloader, notifier, resolver, dynamic, secondaries,
                 state, journal_files, rollovers=None):
        self.reactor = reactor
        self._settings = settings
        self.authority = authority
        self.reloader = reloader
        self.notifier = notifier
        self.resolver = resolver
        self.dynamic = dynamic
        self.secondaries = secondaries
        self.state = state
        self.journal_files = journal_files
        self.rollovers = rollovers  # the key rollover engine (None: no signed zones)
        self.workers = None  # the worker processes (aliasd.service.workers), if any
        self.started = time.time()

    @property
    def settings(self):
        """The configuration now in use (a reload replaces it)."""
        return getattr(self.reloader, "settings", None) or self._settings

    def _thread(self, f, *args) -> defer.Deferred:
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)

    # -- zones --------------------------------------------------------------

    def _name(self, text: str) -> dns.name.Name:
        try:
            return dns.name.from_text(text)
        except dns.exception.DNSException as e:
            raise CommandError(f"{text!r} is not a zone name: {e}") from None

    def _configured(self, text: str):
        """(name, its ZoneSettings) of a configured zone, else CommandError."""
        name = self._name(text)
        zone = next((z for z in self.settings.zones if z.name == name), None)
        if zone is None and self.dynamic.is_dynamic(name):
            raise CommandError(f"zone {name.to_text()} was created at runtime (HTTP API): it has no file to "
                               "write or read, its records are in the state store alone; use the API for it")
        if zone is None:
            raise CommandError(f"zone {name.to_text()} is not configured")
        return name, zone

    def _dynamic(self, text: str):
        name, zone = self._configured(text)
        if not self.dynamic.is_dynamic(name):
            raise CommandError(f"zone {name.to_text()} is not dynamic (it has no update rules): its file is "
                               "its truth, edit it and reload")
        return name, zone

    def _errors(self) -> dict:
        return getattr(self.reloader, "errors", {})

    # -- commands -------------------------------------------------------------

    def status(self) -> dict:
        uptime = time.time() - self.started
        data = {
            "version": __version__,
            "uptime_seconds": round(uptime, 1),
            "zones_served": len(self.authority.versions),
            "zones_configured": len(self.settings.zones),
            "zones_broken": len(self._errors()),
            "workers": 1,
            "busy": self.authority.busy,
        }
        text = (f"aliasd {__version__}, up {_duration(uptime)}: {data['zones_served']} zone(s) served, "
                f"{data['zones_broken']} broken, ")
        pool = self.workers
        if pool is not None and pool.started:  # worker processes answer the queries (aliasd.service.workers)
            live = pool.describe()
            data["workers"] = len(live)
            data["worker_pids"] = [w["pid"] for w in live]
            text += f"{len(live)} workers (" + ", ".join(f"{w['number']}: pid {w['pid']}" for w in live) + ")"
        else:
            text += "1 worker"
        return {"text": text, "data": data}

    def zone_status(self, zone: str) -> dict:
        name = self._name(zone)
        configured = next((z for z in self.settings.zones if z.name == name), None)
        version = self.authority.versions.get(name)
        if configured is None and version is None:
            raise CommandError(f"zone {name.to_text()} is not configured")
        now = self.reactor.seconds()
        dynamic = self.dynamic.is_dynamic(name)
        source = self.authority.sources.get(name)
        data = {
            "zone": name.to_text(),
            "serial": version.serial if version is not None else None,
            "file": str(configured.file) if configured is not None else None,
            "source": ("state store (created at runtime; no file)" if dynamic and configured is None
                       else "state store (dynamic zone; its file is a copy)" if dynamic else "zone file"),
            "dynamic": dynamic,
            "frozen": name in self.dynamic.frozen,
            "error": self._errors().get(name),
            "aliases": self._aliases(name, version),
            "notify": self.notifier.last_answers(name),
            "secondaries": self.secondaries.report(name),
            "dnssec": self._dnssec(name, now),
            "dropped": [dict(zip(("owner", "ttl", "type", "data"), r))
                        for r in self.dynamic.dropped_by_edit(name, source)],
        }
        return {"text": _zone_text(data), "data": data}

    def _aliases(self, origin, version) -> list[dict]:
        if version is None:
            return []
        rows = []
        for owner, alias in sorted(version.source.aliases.items()):
            targets = []
            for target, rdtype in sorted(self.authority.graph.targets_of.get((origin, owner), ())):
                state = self.resolver.state(target, rdtype) if self.resolver is not None else None
                targets.append({
                    "target": target.to_text(),
                    "type": dns.rdatatype.to_text(rdtype),
                    "status": state.status.value if state is not None else "unknown",
                    "addresses": list(state.addresses) if state is not None else [],
                    "failure": state.failure if state is not None else "",
                    # [resolver] require-validated: what signed zones take from it
                    "validated": ({"status": state.secure.status.value, "addresses": list(state.secure.addresses),
                                   "failure": state.secure.failure}
                                  if state is not None and state.secure is not None else None),
                })
            rows.append({"owner": owner.to_text(), "target": alias.target.to_text(), "upstream": targets})
        return rows

    def _dnssec(self, origin, now: float) -> dict | None:
        signer = self.authority.signers.get(origin)
        if signer is None:
            return None
        keys = []
        for key in signer.keys:
            upcoming = sorted((when.timestamp(), tag) for tag, when in key.timing.items()
                              if when.timestamp() > now)
            keys.append({
                "tag": key.tag,
                "role": "KSK" if key.is_ksk else "ZSK",
                "algorithm": int(key.algorithm),
                "published": key.published(now),
                "active": key.active(now),
                "next_event": f"{upcoming[0][1]} {_when(upcoming[0][0])}" if upcoming else None,
            })
        data = {"keys": keys, "next_event": _when(signer.next_key_event(now))}
        engine = self.rollovers.state(origin) if self.rollovers is not None else {"policy": None}
        if engine["policy"] is not None:  # a zone under a dnssec-policy: each key's state, the rollover
            by_tag = {(k["tag"], k["algorithm"]): k for k in engine["keys"]}
            for key in keys:
                rolled = by_tag.get((key["tag"], key["algorithm"]), {})
                key["state"], key["next_time"] = rolled.get("state"), rolled.get("next_time")
            data.update(policy=engine["policy"], rollover=engine["rollover"], next=engine["next"])
        return data

    # -- DNSSEC key rollovers: the operator's hand steps ------------------------

    def _signed(self, text: str) -> dns.name.Name:
        """A zone the rollover engine signs, else CommandError saying why not."""
        name, _ = self._configured(text)
        if name not in self.authority.signers:
            raise CommandError(f"zone {name.to_text()} is not signed (no dnssec or dnssec-policy): "
                               "it has no keys to roll")
        if self.rollovers is None:
            raise CommandError(f"zone {name.to_text()} is signed with keys aliasd never rolls (dnssec = true): "
                               "give it a dnssec-policy to roll them")
        return name

    def _rollover_reply(self, name: dns.name.Name, line: str) -> dict:
        log.info("control: zone {zone}: {line}", zone=name.to_text(), line=line)
        return {"text": line, "data": {"zone": name.to_text(), "result": line, "dnssec": self.rollovers.state(name)}}

    def dnssec_checkds(self, zone: str, what: str) -> dict:
        name = self._signed(zone)
        return self._rollover_reply(name, checkds(self.rollovers, name, what))

    def dnssec_rollover(self, zone: str, key: str | None = None) -> dict:
        name = self._signed(zone)
        return self._rollover_reply(name, start_rollover(self.rollovers, name, key))

    def dnssec_status(self, zone: str) -> dict:
        name = self._signed(zone)
        state = self.rollovers.state(name)
        return {"text": _rollover_text(name, state), "data": {"zone": name.to_text(), "dnssec": state}}

    def reload(self, zone: str | None = None):
        if zone is None:
            d = self.reloader.reload_fresh()

            def done(ok):
                if not ok:
                    raise CommandError(self.reloader.summary or "reload failed: see the log")
                return {"text": self.reloader.summary, "data": {"ok": True, "summary": self.reloader.summary}}
            return d.addCallback(done)
        name, _ = self._configured(zone)
        d = self.reloader.reload_zone(name)

        def one(result):
            ok, summary = result
            if not ok:
                raise CommandError(summary)
            return {"text": summary, "data": {"ok": True, "summary": summary}}
        return d.addCallback(one)

    def notify(self, zone: str) -> dict:
        name, _ = self._configured(zone)
        version = self.authority.versions.get(name)
        if version is None:
            raise CommandError(f"zone {name.to_text()} is not served yet")
        if not self.notifier.targets.get(name):
            raise CommandError(f"zone {name.to_text()} has no secondaries to notify (its notify list is empty)")
        count = self.notifier.notify_again([version])
        log.info("control: NOTIFY of zone {zone} serial {serial} sent again to {count} secondaries",
                 zone=name.to_text(), serial=version.serial, count=count)
        return {"text": f"zone {name.to_text()}: NOTIFY serial {version.serial} queued for {count} secondaries",
                "data": {"zone": name.to_text(), "serial": version.serial, "secondaries": count}}

    @defer.inlineCallbacks
    def _write_file(self, name):
        """Write the zone's newest records to its file, once what is queued is served."""
        yield self.authority.when_idle()
        source = self.authority.sources.get(name)
        if source is None:
            raise CommandError(f"zone {name.to_text()} is not served")
        try:
            sha = yield self._thread(self.dynamic.write_file, source, True)
        except OSError as e:
            raise CommandError(f"zone {name.to_text()}: cannot write its file: {e}") from None
        if sha is None:
            raise CommandError(
                f"zone {name.to_text()}: its file was edited by hand and not read yet; not written over. "
                f"Read it first (aliasd-ctl reload {name.to_text()}), then try again")
        self.dynamic.written[name] = source
        return source

    @defer.inlineCallbacks
    def freeze(self, zone: str):
        name, zone_settings = self._dynamic(zone)
        was = name in self.dynamic.frozen
        yield self._thread(self.dynamic.set_frozen, name, True)  # updates are refused from here on
        try:
            source = yield self._write_file(name)
        except CommandError:
            if not was:
                yield self._thread(self.dynamic.set_frozen, name, False)
            raise
        log.info("control: zone {zone} frozen: {path} written at serial {serial}; updates refused until thaw",
                 zone=name.to_text(), path=str(zone_settings.file), serial=self.authority.versions[name].serial)
        return {"text": f"zone {name.to_text()} frozen: {zone_settings.file} written (serial "
                        f"{self.authority.versions[name].serial}); updates are refused until thaw",
                "data": {"zone": name.to_text(), "frozen": True, "file": str(zone_settings.file),
                         "serial": self.authority.versions[name].serial, "records": source.record_count()}}

    @defer.inlineCallbacks
    def thaw(self, zone: str):
        name, _ = self._dynamic(zone)
        ok, summary = yield self.reloader.reload_zone(name)
        if not ok:
            raise CommandError(f"{summary}; the zone stays frozen")
        yield self._thread(self.dynamic.set_frozen, name, False)
        log.info("control: zone {zone} thawed: {summary}; updates accepted", zone=name.to_text(), summary=summary)
        return {"text": f"{summary}; zone thawed, updates accepted",
                "data": {"zone": name.to_text(), "frozen": False, "serial": self.authority.versions[name].serial,
                         "summary": summary}}

    @defer.inlineCallbacks
    def sync(self, zone: str):
        name, zone_settings = self._dynamic(zone)
        yield self._write_file(name)
        serial = self.authority.versions[name].serial
        return {"text": f"zone {name.to_text()}: {zone_settings.file} written (serial {serial})",
                "data": {"zone": name.to_text(), "file": str(zone_settings.file), "serial": serial}}

    @defer.inlineCallbacks
    def zone_purge(self, zone: str):
        name = self._name(zone)
        if any(z.name == name for z in self.settings.zones) or name in self.authority.versions:
            raise CommandError(f"zone {name.to_text()} is still configured: remove it from the configuration "
                               "and reload first")
        key = store.key_of(name)
        records = yield self._thread(self._purge, name, key)
        self.secondaries.forget(name)
        for target in [t for t in self.notifier.outcomes if t[0] == name]:
            del self.notifier.outcomes[target]
        served = self.state.load_zone(name)
        kept = f"; its served serial {served.serial} is kept" if served is not None else ""
        log.info("control: state of removed zone {zone} purged: {records} journal record(s){kept}",
                 zone=name.to_text(), records=records, kept=kept)
        return {"text": f"zone {name.to_text()}: {records} journal record(s) and its notes deleted{kept}",
                "data": {"zone": name.to_text(), "journal_records": records,
                         "serial_kept": served.serial if served is not None else None}}

    def _purge(self, name, key) -> int:
        """(In a thread.) The zone's journal, notes and compiled file; never its serial."""
        records = len(self.journal_files.read_records(key))
        frozen = name in self.dynamic.frozen
        compiled = False
        db = self.journal_files.db
        with db.reading() as txn:
            compiled = txn.get(key, db=db.compiled) is not None
        if not records and not frozen and not compiled:
            raise CommandError(f"zone {name.to_text()}: no state kept for it (nothing to purge)")
        self.dynamic.purge(name)
        with db.write() as txn:
            txn.delete(key, db=db.compiled)
        return records

    @defer.inlineCallbacks
    def backup(self, directory: str):
        target = Path(directory)
        if not target.is_absolute():
            raise CommandError(f"{directory}: give an absolute path")
        copied = yield self._thread(self._backup, target)
        log.info("control: backup of the state store and keys written to {path}", path=str(target))
        return {"text": f"backup written to {target}: state store ({copied['store_bytes']} octets), "
                        f"{copied['key_files']} DNSSEC key file(s)", "data": {"path": str(target), **copied}}

    def _backup(self, target: Path) -> dict:
        """(In a thread.) A consistent copy of the store (LMDB's own copy,
        compacted) and of the key directory."""
        from aliasd.base.db import NAME
        if target.exists() and any(target.iterdir()):
            raise CommandError(f"{target}: exists and is not empty")
        try:
            target.mkdir(parents=True, exist_ok=True, mode=0o750)
            (target / NAME).mkdir(mode=0o750)
            self.journal_files.db.env.copy(str(target / NAME), compact=True)
            for path in (target / NAME).iterdir():
                path.chmod(0o640)  # as the store's own files
            keys = self.settings.server.state_dir / "keys"
            count = 0
            if keys.is_dir():
                shutil.copytree(keys, target / "keys")
                count = sum(1 for p in (target / "keys").iterdir() if p.is_file())
            size = sum(p.stat().st_size for p in (target / NAME).iterdir())
        except OSError as e:
            raise CommandError(f"{target}: {e.strerror or e}") from None
        return {"store_bytes": size, "key_files": count, "taken": _when(time.time())}


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    parts += [f"{hours}h"] if hours or days else []
    parts += [f"{minutes}m"] if minutes or hours or days else []
    return "".join(parts + [f"{seconds}s"])


def checkds(rollovers, name: dns.name.Name, what: str) -> str:
    """The operator saw the parent's DS ``published`` or ``withdrawn``: the
    rollover engine's line, or CommandError saying why not (also the API's)."""
    if what not in ("published", "withdrawn"):
        raise CommandError(f"{what!r}: say published (the parent shows the new DS) or withdrawn "
                           "(the parent no longer shows the old one)")
    return _rollover_step(rollovers.confirm_ds, name, what)


def start_rollover(rollovers, name: dns.name.Name, key: str | int | None) -> str:
    """Start a rollover of key ``key`` (a tag; None: the KSK or CSK) now."""
    tag = None
    if key is not None:
        if isinstance(key, bool) or not str(key).isdigit() or int(key) > 65535:
            raise CommandError(f"{key!r} is not a key tag (a number from 0 to 65535; see zone-status)")
        tag = int(key)
    return _rollover_step(rollovers.rollover, name, tag)


def _rollover_step(step: Callable, name: dns.name.Name, *args) -> str:
    try:
        line = step(name, *args)
    except ValueError as e:
        raise CommandError(f"zone {name.to_text()}: {e}") from None
    return line


def _rollover_text(name: dns.name.Name, state: dict) -> str:
    """The engine's state of a zone's keys, a line a key, then the rollover's step."""
    lines = [f"zone {name.to_text()}: DNSSEC keys" + (f" (policy {state['policy']})" if state.get("policy") else "")]
    for k in state.get("keys", ()):
        when = k.get("next_time")
        lines.append(f"  key {k.get('tag')} {k.get('role', '?').upper()} alg {k.get('algorithm')}: "
                     f"{k.get('state')}, next {k.get('next_event') or 'none'}" + (f" at {when}" if when else ""))
    rollover = state.get("rollover")
    if rollover:
        lines.append(f"  rollover: {rollover.get('kind')}, step {rollover.get('step')}"
                     + (f", waiting for {rollover['waiting_for']}" if rollover.get("waiting_for") else ""))
    if state.get("next"):
        lines.append(f"  next: {state['next']}")
    return "\n".join(lines)


def _zone_text(d: dict) -> str:
    """zone-status for a person: one line per fact."""
    lines = [
        f"zone {d['zone']}: serial {d['serial'] if d['serial'] is not None else 'none (not served)'}",
        f"  source: {d['source']}" + (f", file {d['file']}" if d["file"] else ""),
        f"  dynamic: {'yes' if d['dynamic'] else 'no'}, frozen: {'yes' if d['frozen'] else 'no'}",
        f"  last load error: {d['error'] or 'none'}",
    ]
    for alias in d["aliases"]:
        states = ", ".join(f"{t['type']} {t['status']}" + (f" {' '.join(t['addresses'])}" if t["addresses"] else "")
                           + (f" (validated: {t['validated']['status']})" if t.get("validated") else "")
                           for t in alias["upstream"]) or "in-zone or not followed yet"
        lines.append(f"  ALIAS {alias['owner']} -> {alias['target']}: {states}")
    for n in d["notify"]:
        serial = f" serial {n['serial']}" if n["serial"] is not None else ""
        lines.append(f"  NOTIFY {n['target']}: {n['state']}{serial}")
    for s in d["secondaries"]:
        key = f" key {s['key']}" if s["key"] else ""
        behind = (f"behind by {s['serials_behind']} serial(s) for {s['seconds_behind']:.0f}s"
                  if s["serials_behind"] else "up to date")
        if s["behind"]:
            behind += " (BEHIND)"
        lines.append(f"  secondary {s['address']}{key}: serial {s['serial']} ({s['kind']}, "
                     f"{s['seen_seconds_ago']:.0f}s ago), {behind}")
    if d["dnssec"] is not None:
        for k in d["dnssec"]["keys"]:
            state = "active" if k["active"] else "published" if k["published"] else "not published"
            state = k.get("state") or state
            lines.append(f"  DNSSEC key {k['tag']} {k['role']} alg {k['algorithm']}: {state}, "
                         f"next event {k['next_event'] or 'none'}")
        lines.append(f"  DNSSEC next event: {d['dnssec']['next_event'] or 'none'}")
        if d["dnssec"].get("policy"):
            roll = d["dnssec"]["rollover"]
            step = f"{roll['kind']} rollover at step {roll['step']}" if roll else "no rollover running"
            lines.append(f"  DNSSEC policy {d['dnssec']['policy']}: {step}; next: {d['dnssec']['next']}")
    if d["dropped"]:
        lines.append(f"  dropped by the last hand edit ({len(d['dropped'])} record(s)):")
        lines += [f"    {r['owner']} {r['ttl']} {r['type']} {r['data']}" for r in d["dropped"]]
    return "\n".join(lines)


#: Every command: its name on the command line, its arguments, what it does.
COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("status", Controller.status, (), "version, uptime, zones served and broken"),
    Command("zone-status", Controller.zone_status, ("ZONE",),
            "serial, source, dynamic/frozen, load error, ALIAS targets, NOTIFY, secondaries, DNSSEC keys"),
    Command("reload", Controller.reload, ("ZONE?",), "the configuration and changed files, or one zone's file"),
    Command("notify", Controller.notify, ("ZONE",), "send NOTIFY to the zone's secondaries again"),
    Command("freeze", Controller.freeze, ("ZONE",), "write a dynamic zone's file and refuse updates"),
    Command("thaw", Controller.thaw, ("ZONE",), "read a frozen zone's file again and accept updates"),
    Command("sync", Controller.sync, ("ZONE",), "write a dynamic zone's file now"),
    Command("zone-purge", Controller.zone_purge, ("ZONE",), "delete the kept state of a removed zone"),
    Command("backup", Controller.backup, ("DIR",), "a hot copy of the state store and the DNSSEC keys"),
    Command("dnssec-status", Controller.dnssec_status, ("ZONE",),
            "every key of a signed zone with its state and next event, the rollover's step"),
    Command("dnssec-checkds", Controller.dnssec_checkds, ("ZONE", "published|withdrawn"),
            "tell a rollover the parent shows the new DS (or no longer the old one)"),
    Command("dnssec-rollover", Controller.dnssec_rollover, ("ZONE", "KEY?"),
            "roll that key now (without KEY: the zone's KSK or CSK)"),
)}


class ControlProtocol(basic.LineReceiver):
    """One JSON request a line, one JSON reply a line, in order."""

    delimiter = b"\n"
    MAX_LENGTH = 64 * 1024

    def __init__(self, controller: Controller):
        self.controller = controller
        self._queue: defer.Deferred = defer.succeed(None)

    def lineReceived(self, line: bytes) -> None:
        self._queue.addCallback(lambda _: self._run(line)).addCallback(self._send)

    def _run(self, line: bytes) -> defer.Deferred:
        try:
            request = json.loads(line)
            command = COMMANDS[request["command"]]
            args = [str(a) for a in request.get("args", [])]
        except (ValueError, KeyError, TypeError):
            names = ", ".join(COMMANDS)
            return defer.succeed({"ok": False, "error": f"not a request of a known command (commands: {names})"})
        wanted = len([a for a in command.args if not a.endswith("?")])
        if not wanted <= len(args) <= len(command.args):
            return defer.succeed({"ok": False, "error": f"usage: {command.usage}"})
        d = defer.maybeDeferred(command.run, self.controller, *args)
        d.addCallback(lambda result: {"ok": True, **result})
        d.addErrback(self._failed, command.name)
        return d

    @staticmethod
    def _failed(failure, name: str) -> dict:
        if failure.check(CommandError):
            return {"ok": False, "error": failure.getErrorMessage()}
        log.failure("control: {command} failed", failure, command=name)
        return {"ok": False, "error": f"{name} failed: {failure.getErrorMessage()} (see the server's log)"}

    def _send(self, reply: dict) -> None:
        if self.transport is not None:
            self.transport.write(json.dumps(reply).encode() + b"\n")

    def lineLengthExceeded(self, line):
        self._send({"ok": False, "error": "request too long"})
        self.transport.loseConnection()


class ControlFactory(protocol.Factory):
    noisy = False

    def __init__(self, controller: Controller):
        self.controller = controller

    def buildProtocol(self, addr):
        return ControlProtocol(self.controller)


class ControlService(service.Service):
    """Listens on the control socket once privileges are dropped, so the
    socket is the running user's; a socket left by a process that died is
    replaced. Without it the server still serves (logged)."""

    def __init__(self, path: Path, factory: ControlFactory, reactor):
        self.path = path
        self.factory = factory
        self.reactor = reactor
        self._port = None

    def startService(self) -> None:
        super().startService()
        if self.path.exists() and not _in_use(self.path):
            self.path.unlink()
        old = os.umask(0o177)  # never reachable by others, not even before the chmod
        try:
            self._port = self.reactor.listenUNIX(str(self.path), self.factory, mode=0o600)
        except error.CannotListenError as e:
            log.error("control socket {path} not opened: {error}; aliasd-ctl cannot reach this server",
                      path=str(self.path), error=str(e))
        finally:
            os.umask(old)

    def stopService(self):
        super().stopService()
        if self._port is not None:
            port, self._port = self._port, None
            return port.stopListening()
        return None


def _in_use(path: Path) -> bool:
    """Does a process answer on this socket (another aliasd on the same state directory)?"""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()
