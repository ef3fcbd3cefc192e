"""End to end: ``kill -9`` of a real ``twistd aliasd`` at random moments of a mixed load (issue 20).

One process serves:

- two dynamic zones (``dyn1.test``, ``dyn2.test``) that a client thread
  changes with signed UPDATEs (adds, replacements, deletes), as fast as
  aliasd answers;
- hand edits of ``dyn1.test``'s file, taken by SIGHUP: names no update
  touches (``hand-N``: added, changed, removed), and now and then a name an
  update added, which the edit then takes over (aliasd must log the
  update's record as lost);
- ALIAS churn: ``alias.test`` (static) and the zones of a
  ``[zone-directory]`` flatten ``lb.cdn.test``, whose addresses the
  upstream changes every few hundred milliseconds, so re-resolutions move
  their serials;
- zones added and removed by reloads: ``dyn2.test`` comes and goes from
  the configuration's ``[zones]`` tables, files come and go in the zone
  directory.

The process is killed with SIGKILL 20 times (a seeded RNG picks the
moments: in the middle of the load, just after a SIGHUP, or during a clean
stop) and started again. After each start, with the client paused:

- every acknowledged change is served: NOERROR adds and replacements with
  their address, NOERROR deletes absent, refused adds absent (an update
  whose answer was lost to the kill may or may not have been applied, and
  is not checked); a name a hand edit took over serves the edit, and the
  log names the update's record as lost; no other record is ever named
  lost;
- every hand edit written so far is served (written and reloaded, or
  merged at this start);
- the served zones are the configured ones, and no zone's SOA serial went
  back (RFC 1982) from the last one seen before the kill, the ALIAS zones
  included; one serial never stands for two different zone contents;
- IXFR from serials served earlier, applied to the zone as it was at that
  serial (an AXFR taken then), gives the zone as an AXFR gives it now; it
  is incremental whenever the history reaches that serial (a zone's
  history starts again only where the log says it restarted with a
  changed view);
- the log holds no traceback.
"""

from __future__ import annotations

import collections
import os
import random
import re
import signal
import threading
import time
from pathlib import Path

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.serial
import dns.update
import dns.xfr
import dns.zone
import pytest

from tests.test_e2e_update import OPS, ring

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("ALIASD_CRASH_SEED", "20"))  # (another seed, another run of moments)
KILLS = 20
LOAD_SECONDS = (0.6, 1.6)  # load between a start and the next kill
TARGET = "lb.cdn.test."
ALWAYS = ("dyn1.test.", "alias.test.")
EXTRAS = tuple(f"x{i}.test." for i in range(4))  # files in the zone directory
ALL_ZONES = ("dyn1.test.", "dyn2.test.", "alias.test.", *EXTRAS)
DYNAMIC = ("dyn1.test.", "dyn2.test.")


def zone_text(origin: str, alias: bool) -> str:
    text = (f"$ORIGIN {origin}\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\n"
            "ns1 A 192.0.2.1\nwww A 192.0.2.10\n")
    if alias:
        text += f"@ 60 ALIAS {TARGET}\nshop ALIAS {TARGET}\n"
    return text


def zones_config(with_dyn2: bool) -> str:
    """The configuration after [server] (the fixture writes that)."""
    dyn2 = '[zones."dyn2.test"]\nfile = "dyn2.test.zone"\nupdate = [{ key = "ops" }]\n' if with_dyn2 else ""
    return (
        f'[keys.ops]\nsecret = "{OPS}"\n'
        '[zone-defaults]\nallow-transfer = ["127.0.0.1"]\n'
        '[zone-directory]\npath = "extra"\n'
        '[zones."dyn1.test"]\nfile = "dyn1.test.zone"\nupdate = [{ key = "ops" }]\n'
        '[zones."alias.test"]\nfile = "alias.test.zone"\n'
        + dyn2
    )


def resolver_config(upstream) -> str:
    return f'[resolver]\nupstreams = ["{upstream.endpoint}"]\nmin-refresh = 1\nmax-refresh = 1\ntimeout = 0.5\n'


def atomic_write(path: Path, text: str) -> None:
    """As an editor saves: a new file renamed into place (a reload never reads half of it)."""
    tmp = path.with_name(f".{path.name}.edit")
    tmp.write_text(text)
    os.replace(tmp, path)


def canonical(zone: dns.zone.Zone) -> str:
    """A zone's records, one per line, sorted: equal texts, equal zones (TTLs included)."""
    return "\n".join(sorted(zone.to_text().splitlines()))


def axfr(port: int, origin: str) -> dns.zone.Zone:
    return dns.zone.from_xfr(dns.query.xfr("127.0.0.1", origin, port=port, timeout=5, lifetime=20))


def ixfr_onto(port: int, origin: str, text: str) -> tuple[dns.zone.Zone, bool]:
    """The zone ``text`` (as it was at its SOA serial) with an IXFR from
    that serial applied, and whether the answer was incremental (or "you
    are up to date") rather than the whole zone."""
    zone = dns.zone.from_text(text, origin=origin, relativize=True)
    serial = zone.get_soa().serial
    with dns.xfr.Inbound(zone, dns.rdatatype.IXFR, serial) as inbound:
        for message in dns.query.xfr("127.0.0.1", origin, rdtype=dns.rdatatype.IXFR, serial=serial,
                                     port=port, timeout=5, lifetime=20):
            if inbound.process_message(message):
                break
    return zone, inbound.incremental


def soa_serial(server, origin: str, loading: bool = False) -> int | None:
    """The served SOA serial, or None when the zone is not served (REFUSED;
    ``loading``: or SERVFAIL, a zone a reload is adding)."""
    for _ in range(20):
        try:
            response = server.query(origin, "SOA", timeout=1)
        except dns.exception.Timeout:
            continue
        if response.rcode() == dns.rcode.REFUSED or loading and response.rcode() == dns.rcode.SERVFAIL:
            return None
        assert response.rcode() == dns.rcode.NOERROR, (origin, dns.rcode.to_text(response.rcode()))
        return response.answer[0][0].serial
    raise AssertionError(f"no answer for {origin} SOA")


class Updater(threading.Thread):
    """Sends UPDATEs to the dynamic zones and keeps what was acknowledged.

    Only NOERROR counts. An update whose answer was lost (the process was
    killed) may or may not have been applied: its name becomes uncertain
    and is checked no more. An update answered with another rcode (the
    zone was removed meanwhile: NOTAUTH, SERVFAIL) was not applied.
    """

    def __init__(self, port: int, seed: int):
        super().__init__(daemon=True)
        self.port = port
        self.rng = random.Random(seed)
        self.lock = threading.Lock()  # guards the tables below
        self.present = {z: {} for z in DYNAMIC}  # name -> its one address, acknowledged
        self.absent = {z: set() for z in DYNAMIC}  # acknowledged deletes, refused adds
        self.uncertain = {z: set() for z in DYNAMIC}
        self.inflight: tuple[str, str] | None = None
        self.counts = collections.Counter()
        self.go = threading.Event()
        self.busy = threading.Lock()  # held while an update is on its way
        self.stopping = False

    def pause(self) -> None:
        self.go.clear()
        with self.busy:
            pass

    def resume(self) -> None:
        self.go.set()

    def stop(self) -> None:
        self.stopping = True
        self.go.set()
        self.join(10)

    def claim(self, rng: random.Random) -> tuple[str, str] | None:
        """Hand an acknowledged dyn1 name over to a hand edit: never updated again."""
        with self.lock:
            names = sorted(n for n in self.present["dyn1.test."] if self.inflight != ("dyn1.test.", n))
            if not names:
                return None
            name = rng.choice(names)
            return name, self.present["dyn1.test."].pop(name)

    def run(self) -> None:
        i = 0
        while True:
            self.go.wait()
            with self.busy:
                if self.stopping:
                    return
                if self.go.is_set():
                    self.one(i)
                    i += 1

    def one(self, i: int) -> None:
        rng = self.rng
        zone = "dyn1.test." if rng.random() < 0.7 else "dyn2.test."
        address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        with self.lock:
            names = self.present[zone]
            r = rng.random()
            deletes = 0.12 if len(names) < 300 else 0.5  # (the zones stay small: transfers stay quick)
            kind = "add" if not names or r >= deletes + 0.13 else "delete" if r < deletes else "replace"
            name = f"u{i}" if kind == "add" else rng.choice(sorted(names))
            self.inflight = (zone, name)
        update = dns.update.UpdateMessage(zone, keyring=ring(), keyname="ops.")
        if kind == "delete":
            update.delete(name)
        elif kind == "replace":
            update.replace(name, 60, "A", address)
        else:
            update.add(name, 60, "A", address)
        try:
            rcode = dns.query.tcp(update, "127.0.0.1", port=self.port, timeout=3).rcode()
        except (OSError, EOFError, dns.exception.DNSException):
            rcode = None
        with self.lock:
            self.inflight = None
            self.counts[(kind, dns.rcode.to_text(rcode) if rcode is not None else "lost")] += 1
            if rcode is None:  # killed meanwhile: applied or not
                self.present[zone].pop(name, None)
                self.absent[zone].discard(name)
                self.uncertain[zone].add(name)
            elif rcode == dns.rcode.NOERROR:
                if kind == "delete":
                    del self.present[zone][name]
                    self.absent[zone].add(name)
                else:
                    self.present[zone][name] = address
            elif kind == "add":
                self.absent[zone].add(name)
        if rcode is None:
            time.sleep(0.02)  # the server is down: do not spin


class Churn(threading.Thread):
    """Changes the ALIAS target's addresses every few hundred milliseconds."""

    def __init__(self, upstream, seed: int):
        super().__init__(daemon=True)
        self.upstream = upstream
        self.rng = random.Random(seed)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.rng.uniform(0.2, 0.4)):
            count = self.rng.randint(1, 2)
            self.upstream.set(TARGET, "A", [f"198.51.100.{self.rng.randrange(1, 255)}" for _ in range(count)],
                              ttl=1)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


class Crashes:
    """The test's driver: actions, kills, restarts, and what must hold after each."""

    def __init__(self, server, tmp_path: Path, rng: random.Random, updater: Updater):
        self.server = server
        self.dir = tmp_path
        self.rng = rng
        self.updater = updater
        self.conf = tmp_path / "aliasd.toml"
        self.header = self.conf.read_text().split("[keys.ops]")[0]  # [server] and [resolver]
        self.dyn2 = True
        self.extras = {z: (tmp_path / "extra" / f"{z[:-1]}.zone").exists() for z in EXTRAS}
        self.last: dict[str, int] = {}  # zone -> the last serial seen
        # zone -> serial -> the zone's canonical text at that serial (an AXFR then)
        self.copies: dict[str, dict[int, str]] = collections.defaultdict(dict)
        self.unchecked: set[tuple[str, int]] = set()  # copies not yet used for an IXFR check
        # zone -> the serial from which its IXFR history must reach (it restarted with a changed view there)
        self.history_from: dict[str, int] = {}
        self.hand: dict[str, str | None] = {}  # dyn1 name -> its address in the file (None: removed)
        self.hand_count = 0
        self.lost: dict[str, str] = {}  # dyn1 name taken over by an edit -> the update's address lost
        self.taken: set[str] = set()  # every name a hand edit took over
        self.log_seen = 0  # octets of the log already scanned for history restarts
        self.stats = collections.Counter()

    # -- observations -------------------------------------------------------

    def configured(self) -> set[str]:
        zones = set(ALWAYS) | {z for z, on in self.extras.items() if on}
        return zones | {"dyn2.test."} if self.dyn2 else zones

    def saw(self, origin: str, serial: int) -> None:
        """Serials never go back (RFC 1982), across kills and removals too."""
        last = self.last.get(origin)
        assert last is None or not dns.serial.Serial(serial) < dns.serial.Serial(last), (
            f"zone {origin}: serial {serial} after {last}")
        self.last[origin] = serial

    def sample_serials(self) -> None:
        for origin in ALL_ZONES:
            serial = soa_serial(self.server, origin, loading=True)
            if serial is not None:
                self.saw(origin, serial)

    def copy(self, origin: str) -> tuple[int, str] | None:
        """An AXFR of the zone now, kept as the zone at its serial."""
        try:
            zone = axfr(self.server.port, origin)
        except dns.xfr.TransferError:  # removed meanwhile (REFUSED), or being added (SERVFAIL)
            return None
        serial, text = zone.get_soa().serial, canonical(zone)
        self.saw(origin, serial)
        known = self.copies[origin].get(serial)
        assert known is None or known == text, f"zone {origin}: serial {serial} served for two contents"
        if known is None:
            self.copies[origin][serial] = text
            self.unchecked.add((origin, serial))
        return serial, text

    # -- actions --------------------------------------------------------------

    def reload(self) -> None:
        self.server.proc.send_signal(signal.SIGHUP)

    def hand_edit(self) -> None:
        """Edit dyn1's file as an operator would, then SIGHUP."""
        rng = self.rng
        path = self.dir / "dyn1.test.zone"
        lines = path.read_text().splitlines()
        changes: dict[str, str | None] = {}
        for _ in range(rng.randint(1, 2)):
            self.hand_count += 1
            newest = f"hand-{self.hand_count}"
            changes[newest] = f"10.200.{self.hand_count >> 8 & 255}.{self.hand_count & 255}"
        present = sorted(n for n, a in self.hand.items() if a is not None and n not in changes)
        if present and rng.random() < 0.3:  # change a hand name's address
            self.hand_count += 1
            changes[rng.choice(present)] = f"10.201.{self.hand_count >> 8 & 255}.{self.hand_count & 255}"
        if present and rng.random() < 0.2:  # remove one
            changes.setdefault(rng.choice(present), None)
        if rng.random() < 0.3:  # take over a name an update made: the edit wins
            claimed = self.updater.claim(rng)
            if claimed is not None:
                name, acknowledged = claimed
                if file_addresses(lines, name) != {acknowledged}:  # the file aliasd wrote does not hold the update: lost
                    self.lost[name] = acknowledged
                self.taken.add(name)
                self.hand_count += 1
                changes[name] = f"10.250.{self.hand_count >> 8 & 255}.{self.hand_count & 255}"
        kept = [line for line in lines if owner(line) not in changes]
        kept += [f"{name} 300 IN A {address}" for name, address in changes.items() if address is not None]
        atomic_write(path, "\n".join(kept) + "\n")
        self.hand.update(changes)
        self.stats["hand edits"] += 1
        self.reload()
        if rng.random() < 0.5:  # wait for the reload that takes it, and look
            self.server.wait_for(lambda: self.server.addresses(f"{newest}.dyn1.test.") == {changes[newest]},
                                 timeout=10, interval=0.05)
            self.check_hand(axfr(self.server.port, "dyn1.test."))

    def toggle_dyn2(self) -> None:
        self.dyn2 = not self.dyn2
        self.conf.write_text(self.header + zones_config(self.dyn2))
        self.stats["dyn2 " + ("added" if self.dyn2 else "removed")] += 1
        self.reload()

    def toggle_extra(self) -> None:
        origin = self.rng.choice(EXTRAS)
        path = self.dir / "extra" / f"{origin[:-1]}.zone"
        if self.extras[origin]:
            path.unlink()
        else:
            atomic_write(path, zone_text(origin, alias=True))
        self.extras[origin] = not self.extras[origin]
        self.stats["extra zones toggled"] += 1
        self.reload()

    def load(self) -> None:
        """Random actions for a random while, under the client's updates."""
        rng = self.rng
        end = time.monotonic() + rng.uniform(*LOAD_SECONDS)
        while time.monotonic() < end:
            time.sleep(rng.uniform(0.05, 0.3))
            action = rng.choices(["hand", "dyn2", "extra", "sample", "copy"], [3, 1, 2, 3, 2])[0]
            if action == "hand":
                self.hand_edit()
            elif action == "dyn2":
                self.toggle_dyn2()
            elif action == "extra":
                self.toggle_extra()
            elif action == "sample":
                self.sample_serials()
            else:
                self.copy(rng.choice(sorted(self.configured())))

    def kill(self) -> str:
        """SIGKILL now, just after a SIGHUP, or during a clean stop."""
        rng = self.rng
        self.sample_serials()  # the last serials seen before the kill
        r = rng.random()
        if r < 0.2:
            how = "during a clean stop"
            self.server.proc.send_signal(signal.SIGTERM)
            time.sleep(rng.uniform(0, 0.4))
        elif r < 0.5:
            how = "during a reload"
            self.reload()
            time.sleep(rng.uniform(0, 0.3))
        else:
            how = "under load"
        self.server.proc.kill()
        self.server.proc.wait()
        self.stats[f"killed {how}"] += 1
        return how

    # -- what must hold ---------------------------------------------------------

    def check_hand(self, dyn1: dns.zone.Zone) -> None:
        for name, address in self.hand.items():
            assert served(dyn1, name) == ({address} if address is not None else set()), (
                f"hand edit of {name}: {served(dyn1, name)} served, {address} written")

    def check(self, full: bool) -> None:
        """After a start (client paused): every zone, every acknowledged change, IXFR."""
        server = self.server
        configured = self.configured()
        self.note_history_restarts(full_log(self.dir))  # (before the serials served now are seen)
        for origin in ALL_ZONES:
            serial = soa_serial(server, origin)
            assert (serial is not None) == (origin in configured), (origin, serial, sorted(configured))
            if serial is not None:
                self.saw(origin, serial)
        zones = {}
        for origin in sorted(configured):
            serial, text = self.copy(origin)
            zones[origin] = dns.zone.from_text(text, origin=origin, relativize=True)
        with self.updater.lock:
            for origin in DYNAMIC:
                if origin not in zones:
                    continue
                zone = zones[origin]
                for name, address in self.updater.present[origin].items():
                    assert served(zone, name) == {address}, f"acknowledged {name}.{origin} A {address} not served"
                for name in self.updater.absent[origin]:
                    assert zone.get_node(name) is None, f"{name}.{origin}: deleted or refused, yet served"
        self.check_hand(zones["dyn1.test."])
        log = full_log(self.dir)
        for name, address in self.lost.items():
            assert f"{name}.dyn1.test. 60 A {address}" in log, f"the edit of {name} lost {address}; not logged"
        for line in re.findall(r"record\(s\) of updates lost where the edit changed the same RRset: (.*)", log):
            for record in line.split("; "):
                assert record.split(".", 1)[0] in self.taken, f"an update's record lost, no edit took it: {record}"
        for bad in ("Traceback", "Unhandled", "reload failed", "cannot record"):
            assert bad not in log, f"{bad!r} in the log:\n{context(log, bad)}"
        self.note_history_restarts(log)  # (a version after a change of view since, a zone added again)
        self.check_ixfr(full)

    def note_history_restarts(self, log: str) -> None:
        """Where a zone restarted with a changed view, its history starts
        again. A restart with the view unchanged may say its serial has no
        history: the version was recorded with a changed view by a process
        stopped before it served it (a reload that added the zone back
        during a stop), which is fine only for a serial never seen served."""
        for origin, serial, view, none in re.findall(
                r"zone (\S+) serial (\d+) \((?:restart, view (changed|unchanged)|first load)\)[^\n]*?(no IXFR history)?$",
                log[self.log_seen:], re.M):
            serial = int(serial)  # (a first load begins a history too: view "")
            if view == "unchanged" and none and self.history_from.get(origin) != serial:
                last = self.last.get(origin)
                assert last is None or dns.serial.Serial(serial) > dns.serial.Serial(last), (
                    f"zone {origin}: history lost at serial {serial}, served before; its log:\n"
                    f"{zone_lines(log, origin)}")
                self.stats["history begun by an unseen version"] += 1
            elif view == "unchanged":
                continue
            self.history_from[origin] = serial
        self.log_seen = len(log)

    def check_ixfr(self, full: bool) -> None:
        """IXFR from every serial seen since the last check, and from a few
        older ones (more at the end), onto the zone as it was then gives
        the zone now."""
        todo = set(self.unchecked)
        older = sorted({(o, s) for o, c in self.copies.items() for s in c} - todo)
        todo |= set(self.rng.sample(older, min(8 if full else 2, len(older))))
        self.unchecked.clear()
        configured = self.configured()
        now: dict[str, tuple[int, str]] = {}
        for origin, serial in sorted(todo):
            if origin not in configured:
                self.unchecked.add((origin, serial))  # checked once the zone is back
                continue
            for attempt in range(5):
                if origin not in now:
                    now[origin] = self.copy(origin)
                zone, incremental = ixfr_onto(self.server.port, origin, self.copies[origin][serial])
                if zone.get_soa().serial == now[origin][0]:
                    break
                del now[origin]  # (an ALIAS zone moved on meanwhile)
            else:
                raise AssertionError(f"zone {origin} never held still")
            assert canonical(zone) == now[origin][1], f"zone {origin}: IXFR from {serial} does not give the zone"
            start = self.history_from.get(origin)
            if start is None or not dns.serial.Serial(serial) < dns.serial.Serial(start):
                assert incremental, (f"zone {origin}: IXFR from {serial} not incremental (history from {start}); "
                                     f"its log:\n{zone_lines(full_log(self.dir), origin)}")
                self.stats["IXFR incremental"] += 1
            else:
                self.stats["IXFR whole zone (history restarted)" if not incremental else "IXFR incremental"] += 1
            self.stats[f"IXFR {origin[:-6]} {'incremental' if incremental else 'whole'}"] += 1


def owner(line: str) -> str | None:
    """The owner of a master-file line, as written (relative), or None."""
    if not line or line[0] in " \t;$":
        return None
    return line.split()[0]


def file_addresses(lines: list[str], name: str) -> set[str]:
    """The addresses of ``name``'s A records in a master file's lines."""
    return {line.split()[-1] for line in lines if owner(line) == name and line.split()[-2] == "A"}


def served(zone: dns.zone.Zone, name: str) -> set[str]:
    rdataset = zone.get_rdataset(name, "A")
    return {rd.address for rd in rdataset} if rdataset is not None else set()


def full_log(directory: Path) -> str:
    """aliasd.log with the files twistd rotated it into (1 MB each), oldest first."""
    rotated = sorted(directory.glob("aliasd.log.*"), key=lambda p: -int(p.suffix[1:]))
    return "".join(p.read_text() for p in [*rotated, directory / "aliasd.log"] if p.exists())


def zone_lines(log: str, origin: str, last: int = 60) -> str:
    """The log's last lines about a zone, its starts and its reloads."""
    keep = [line for line in log.splitlines()
            if origin in line or "aliasd 0.1.0 started" in line or "reload: reading" in line]
    return "\n".join(keep[-last:])


def context(log: str, needle: str) -> str:
    at = log.find(needle)
    return log[max(0, at - 2000):at + 3000]


def test_sigkill_at_random_moments_of_a_mixed_load(aliasd, upstream, tmp_path):
    started = time.monotonic()
    rng = random.Random(SEED)
    upstream.set(TARGET, "A", ["198.51.100.1"], ttl=1)
    (tmp_path / "extra").mkdir()
    for origin in EXTRAS[:2]:
        (tmp_path / "extra" / f"{origin[:-1]}.zone").write_text(zone_text(origin, alias=True))
    server = aliasd(
        resolver_config(upstream) + zones_config(True),
        {"dyn1.test.zone": zone_text("dyn1.test.", False), "dyn2.test.zone": zone_text("dyn2.test.", False),
         "alias.test.zone": zone_text("alias.test.", True)},
        server="serial-interval = 0\ndynamic-file-sync = 3600\n",  # aliasd writes the files only at a clean stop
    )
    updater = Updater(server.port, SEED + 1)
    churn = Churn(upstream, SEED + 2)
    crashes = Crashes(server, tmp_path, rng, updater)
    updater.start()
    churn.start()
    try:
        crashes.sample_serials()
        for round in range(KILLS):
            t0 = time.monotonic()
            updater.resume()
            crashes.load()
            how = crashes.kill()
            t1 = time.monotonic()
            server.start()
            updater.pause()
            t2 = time.monotonic()
            crashes.check(full=False)
            print(f"kill {round + 1} {how}: load {t1 - t0:.1f} s, start {t2 - t1:.1f} s, "
                  f"check {time.monotonic() - t2:.1f} s; serials {crashes.last}")
        churn.stop()
        t2 = time.monotonic()
        crashes.check(full=True)
        print(f"final check {time.monotonic() - t2:.1f} s")
    finally:
        updater.stop()
        churn.stop()
    counts = updater.counts
    acknowledged = sum(n for (kind, rcode), n in counts.items() if rcode == "NOERROR")
    print(f"\n{KILLS} kills in {time.monotonic() - started:.1f} s; updates: "
          + ", ".join(f"{k} {r}: {n}" for (k, r), n in sorted(counts.items()))
          + "; " + ", ".join(f"{k}: {n}" for k, n in sorted(crashes.stats.items()))
          + f"; update records an edit took over (logged lost): {len(crashes.lost)}; serials now {crashes.last}")
    assert acknowledged > 300 and crashes.stats["hand edits"] >= 10 and crashes.lost, (counts, crashes.stats)
    assert crashes.stats["IXFR incremental"] > 50, crashes.stats
