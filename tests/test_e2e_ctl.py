"""End to end: ``aliasd-ctl`` against a real ``twistd aliasd``.

Every command runs as the operator would run it (``python -m
aliasd.service.ctl``, the code of this checkout), in its human form and
with ``--json``, and the values it prints are checked against what the
server answers over DNS, what a test upstream serves, and what a real BIND
secondary holds.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import dns.query
import dns.rdatatype
import dns.xfr
import dns.zone
import pytest

from aliasd.base.config import ServerSettings
from tests.aliasd_process import REPO, free_port
from tests.secondaries import Named
from tests.test_e2e_statistics import scrape
from tests.test_e2e_update import (
    ZONE,
    acknowledged,
    config,
    incremental,
    nsupdate,
    serial,
    values,
)

pytestmark = pytest.mark.e2e

SLOW_SYNC = "serial-interval = 0\ndynamic-file-sync = 3600\n"  # the file is written only when asked


def ctl(tmp_path: Path, *args: str, json_out: bool = False) -> subprocess.CompletedProcess:
    """Run ``aliasd-ctl --config aliasd.toml ARGS``."""
    argv = [sys.executable, "-m", "aliasd.service.ctl", "--config", str(tmp_path / "aliasd.toml")]
    if json_out:
        argv.append("--json")
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def ok(tmp_path: Path, *args: str) -> tuple[str, dict]:
    """The command's human line(s) and its JSON data; both runs must succeed."""
    human = ctl(tmp_path, *args)
    assert human.returncode == 0, human.stdout + human.stderr
    data = ctl(tmp_path, *args, json_out=True)
    assert data.returncode == 0, data.stdout + data.stderr
    return human.stdout, json.loads(data.stdout)


def failed(tmp_path: Path, *args: str, code: int = 1) -> str:
    done = ctl(tmp_path, *args)
    assert done.returncode == code, done.stdout + done.stderr
    return done.stderr


def test_the_script_is_declared_beside_aliasd_check():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["aliasd-ctl"] == "aliasd.service.ctl:main"
    assert scripts["aliasd-check"] == "aliasd.service.check:main"


def test_status_zone_status_and_notify_with_an_alias_and_a_bind_secondary(aliasd, upstream, tmp_path):
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7", "198.51.100.9"], ttl=60)
    secondary_port, metrics_port = free_port(), free_port()
    zone = ZONE + "shop ALIAS lb.cdn.test.\n"
    extra = f'[statistics]\nlisten = "127.0.0.1:{metrics_port}"\n'
    server = aliasd(config(upstream, secondary_port) + extra, {"example.test.zone": zone}, server=SLOW_SYNC)
    (tmp_path / "named").mkdir()
    named = Named(tmp_path / "named", secondary_port).start("example.test", server.port)
    try:
        server.wait_for(lambda: values(server, "shop.example.test") == {"198.51.100.7", "198.51.100.9"})
        acknowledged(server.port, "update add added.example.test 60 A 192.0.2.44")
        served = serial(server)
        server.wait_for(lambda: named.serial("example.test") == served, timeout=20)

        text, data = ok(tmp_path, "status")
        workers = ServerSettings().worker_count  # [server] workers' default: one per CPU
        assert text.startswith("aliasd 0.1.0, up ") and f"1 zone(s) served, 0 broken, {workers} worker" in text
        assert data["zones_served"] == 1 and data["zones_broken"] == 0 and data["workers"] == workers
        if workers > 1:
            assert len(data["worker_pids"]) == workers and f"{workers} workers (1: pid " in text
        assert data["version"] == "0.1.0" and data["uptime_seconds"] > 0

        def secondary_caught_up():
            _, d = ok(tmp_path, "zone-status", "example.test")
            rows = d["secondaries"]
            return d if rows and rows[0]["serial"] == served and rows[0]["complete"] else None
        data = server.wait_for(secondary_caught_up, timeout=10)
        assert data["serial"] == served == named.serial("example.test")
        assert data["dynamic"] is True and data["frozen"] is False and data["error"] is None
        assert data["file"] == str(tmp_path / "example.test.zone")
        [alias] = data["aliases"]
        assert alias["owner"] == "shop.example.test." and alias["target"] == "lb.cdn.test."
        a = next(t for t in alias["upstream"] if t["type"] == "A")
        assert a["status"] == "resolved" and sorted(a["addresses"]) == ["198.51.100.7", "198.51.100.9"]
        [row] = data["secondaries"]
        assert row["address"] == "127.0.0.1" and row["key"] is None and row["kind"] == "IXFR"
        assert row["serials_behind"] == 0 and row["behind"] is False
        [told] = data["notify"]
        assert told["target"] == f"127.0.0.1:{secondary_port}"
        assert told["state"].startswith("answered NOERROR") and told["serial"] == served
        assert data["dnssec"] is None and data["dropped"] == []
        text, _ = ok(tmp_path, "zone-status", "example.test")
        assert f"zone example.test.: serial {served}" in text
        assert "ALIAS shop.example.test. -> lb.cdn.test.: A resolved 198.51.100.7 198.51.100.9" in text
        assert f"secondary 127.0.0.1: serial {served} (IXFR" in text and "up to date" in text
        assert scrape(metrics_port)["aliasd_secondaries_behind"] == 0

        # NOTIFY again: the secondary answers it once more (its log says so).
        before = named.log().count("notify from")
        text, data = ok(tmp_path, "notify", "example.test")
        assert text.strip() == f"zone example.test.: NOTIFY serial {served} queued for 1 secondaries"
        assert data == {"zone": "example.test.", "serial": served, "secondaries": 1}
        server.wait_for(lambda: named.log().count("notify from") >= before + 2, timeout=10)
        assert "NOTIFY of zone example.test. serial" in server.log()
    finally:
        named.stop()


def test_freeze_hand_edit_thaw_keeps_every_acknowledged_update(aliasd, tmp_path):
    server = aliasd(config(), {"example.test.zone": ZONE}, server=SLOW_SYNC)
    acknowledged(server.port, "update add one.example.test 60 A 192.0.2.41",
                 "update delete www.example.test A 192.0.2.11", "update add two.example.test 60 TXT \"acknowledged\"")
    old = serial(server)
    before = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", "example.test", port=server.port, timeout=5))
    path = tmp_path / "example.test.zone"

    text, data = ok(tmp_path, "freeze", "example.test")
    assert text.strip() == (f"zone example.test. frozen: {path} written (serial {old}); "
                            "updates are refused until thaw")
    assert data["frozen"] is True and data["serial"] == old
    # The file holds every acknowledged update.
    written = path.read_text()
    assert "one\t60\tIN\tA\t192.0.2.41" in written and '"acknowledged"' in written
    assert "192.0.2.11" not in written
    # Frozen: an update is refused, and the log says why.
    rc, out = nsupdate(server.port, "update add three.example.test 60 A 192.0.2.43")
    assert rc != 0 and "update failed: REFUSED" in out, out
    assert values(server, "three.example.test") == set()
    assert "REFUSED: the zone is frozen" in server.log()
    _, status = ok(tmp_path, "zone-status", "example.test")
    assert status["frozen"] is True
    # A freeze outlives a reload.
    ok(tmp_path, "reload")
    rc, out = nsupdate(server.port, "update add three.example.test 60 A 192.0.2.43")
    assert rc != 0 and "REFUSED" in out, out

    # The operator edits the file, then thaws.
    path.write_text(written.replace("mail\t300\tIN\tA\t192.0.2.20", "mail\t300\tIN\tA\t192.0.2.21")
                    + "byhand 300 IN A 192.0.2.46\n")
    text, data = ok(tmp_path, "thaw", "example.test")
    new = serial(server)
    assert new == old + 1
    assert text.strip() == f"zone example.test.: file read again, serial {new}; zone thawed, updates accepted"
    assert data["frozen"] is False and data["serial"] == new
    assert values(server, "byhand.example.test") == {"192.0.2.46"}
    assert values(server, "mail.example.test") == {"192.0.2.21"}
    assert values(server, "one.example.test") == {"192.0.2.41"}
    assert values(server, "two.example.test", "TXT") == {'"acknowledged"'}
    assert values(server, "www.example.test") == {"192.0.2.10"}
    # IXFR from the serial before the freeze gives the new zone.
    assert incremental(server.port, old)
    query, _ = dns.xfr.make_query(before, serial=old)
    dns.query.inbound_xfr("127.0.0.1", before, query, port=server.port, timeout=5)
    after = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", "example.test", port=server.port, timeout=5))
    assert before == after
    # Thawed: updates are taken again; thawing again is only a reread.
    acknowledged(server.port, "update add three.example.test 60 A 192.0.2.43")
    assert serial(server) == new + 1
    # This test's transfers left it, as a secondary, one serial behind (not for long yet).
    _, status = ok(tmp_path, "zone-status", "example.test")
    [row] = status["secondaries"]
    assert (row["address"], row["serial"], row["kind"], row["complete"]) == ("127.0.0.1", new, "AXFR", True)
    assert row["serials_behind"] == 1 and row["behind"] is False and row["seconds_behind"] < 31
    # The frozen flag survives a restart.
    ok(tmp_path, "freeze", "example.test")
    server.stop()
    server.start()
    rc, out = nsupdate(server.port, "update add four.example.test 60 A 192.0.2.44")
    assert rc != 0 and "REFUSED" in out, out
    ok(tmp_path, "thaw", "example.test")
    acknowledged(server.port, "update add four.example.test 60 A 192.0.2.44")


def test_a_hand_edit_without_freeze_lists_the_dropped_records_until_the_next_change(aliasd, tmp_path):
    server = aliasd(config(), {"example.test.zone": ZONE}, server=SLOW_SYNC)
    acknowledged(server.port, "update delete www.example.test A\nupdate add www.example.test 60 A 192.0.2.77\n"
                              "update add www.example.test 60 A 192.0.2.78")
    path = tmp_path / "example.test.zone"
    path.write_text(path.read_text().replace("www A 192.0.2.11\n", ""))  # the file does not know the update
    text, data = ok(tmp_path, "reload", "example.test")
    assert text.strip() == f"zone example.test.: file read again, serial {serial(server)}"
    assert values(server, "www.example.test") == {"192.0.2.10"}
    text, data = ok(tmp_path, "zone-status", "example.test")
    assert data["dropped"] == [
        {"owner": "www.example.test.", "ttl": 60, "type": "A", "data": "192.0.2.77"},
        {"owner": "www.example.test.", "ttl": 60, "type": "A", "data": "192.0.2.78"},
    ]
    assert "dropped by the last hand edit (2 record(s)):" in text
    assert "www.example.test. 60 A 192.0.2.77" in text and "www.example.test. 60 A 192.0.2.78" in text
    assert "2 record(s) of updates lost" in server.log()
    # The next change of the zone ends the list.
    acknowledged(server.port, "update add other.example.test 60 A 192.0.2.5")
    _, data = ok(tmp_path, "zone-status", "example.test")
    assert data["dropped"] == []
    # A file edited by hand and not read yet is never written over: freeze and sync say so.
    path.write_text(path.read_text() + "late A 192.0.2.47\n")
    for command in ("freeze", "sync"):
        assert "edited by hand and not read yet" in failed(tmp_path, command, "example.test")
    _, data = ok(tmp_path, "zone-status", "example.test")
    assert data["frozen"] is False and "late A 192.0.2.47" in path.read_text()
    ok(tmp_path, "reload", "example.test")
    text, _ = ok(tmp_path, "freeze", "example.test")
    assert values(server, "late.example.test") == {"192.0.2.47"} and "frozen" in text


def test_reload_sync_purge_and_errors(aliasd, tmp_path):
    extra = '[zones."static.test"]\nfile = "static.test.zone"\n'
    static = ZONE.replace("example.test.", "static.test.")
    server = aliasd(config() + extra, {"example.test.zone": ZONE, "static.test.zone": static}, server=SLOW_SYNC)
    # reload of everything, and of one zone whose file changed.
    text, data = ok(tmp_path, "reload")
    assert text.strip() == "reload done: 2 zones (0 added, 0 removed, 0 file(s) read again), 0 error(s)"
    assert data == {"ok": True, "summary": text.strip()}
    (tmp_path / "static.test.zone").write_text(static + "new A 192.0.2.99\n")
    text, _ = ok(tmp_path, "reload", "static.test")
    assert server.addresses("new.static.test") == {"192.0.2.99"}
    assert text.strip() == f"zone static.test.: file read again, serial {server.query('static.test', 'SOA').answer[0][0].serial}"
    # A broken file: the zone keeps its data, the command fails and says why.
    (tmp_path / "static.test.zone").write_text(static + "bad A 192.0.2.300\n")
    error = failed(tmp_path, "reload", "static.test")
    assert "static.test.zone:" in error and "keeps serving its previous data" in error
    assert server.addresses("new.static.test") == {"192.0.2.99"}
    _, data = ok(tmp_path, "zone-status", "static.test")
    assert "'192.0.2.300' is not an IPv4 address" in data["error"]
    _, data = ok(tmp_path, "status")
    assert data["zones_broken"] == 1
    # sync writes the dynamic zone's file now.
    acknowledged(server.port, "update add synced.example.test 60 A 192.0.2.45")
    text, data = ok(tmp_path, "sync", "example.test")
    assert "synced\t60\tIN\tA\t192.0.2.45" in (tmp_path / "example.test.zone").read_text()
    assert data["serial"] == serial(server) and text.startswith("zone example.test.: ")
    # Commands that cannot be done: a clear message, exit 1.
    for args, message in (
        (("freeze", "static.test"), "zone static.test. is not dynamic"),
        (("thaw", "static.test"), "zone static.test. is not dynamic"),
        (("sync", "static.test"), "zone static.test. is not dynamic"),
        (("zone-status", "nowhere.test"), "zone nowhere.test. is not configured"),
        (("notify", "example.test"), "has no secondaries to notify"),
        (("zone-purge", "example.test"), "zone example.test. is still configured"),
        (("zone-purge", "nowhere.test"), "no state kept for it"),
        (("reload", "nowhere.test"), "zone nowhere.test. is not configured"),
    ):
        assert message in failed(tmp_path, *args), args
    assert "usage: zone-status ZONE" in failed(tmp_path, "zone-status")
    assert "unknown command" in failed(tmp_path, "flush-everything", code=2)
    # zone-purge: the zones leave the configuration, then their state goes; their serials stay.
    last = serial(server)
    last_static = server.query("static.test", "SOA").answer[0][0].serial
    conf = tmp_path / "aliasd.toml"
    configured = conf.read_text()
    conf.write_text(configured.replace(extra, "").replace('[zones."example.test"]', '[zones."other.test"]')
                    .replace('"example.test.zone"', '"other.test.zone"'))
    (tmp_path / "other.test.zone").write_text(ZONE.replace("example.test.", "other.test."))
    # (the update rule's name is outside other.test.: the server refuses the configuration)
    assert "is not in zone other.test." in failed(tmp_path, "reload")
    conf.write_text(conf.read_text().replace("_acme-challenge.example.test.", "_acme-challenge.other.test."))
    text, _ = ok(tmp_path, "reload")
    assert text.strip() == "reload done: 1 zones (1 added [other.test.], 2 removed [example.test., static.test.], 1 file(s) read again), 0 error(s)"
    assert server.query("example.test", "SOA").rcode() != 0
    purged = ctl(tmp_path, "zone-purge", "static.test")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.startswith("zone static.test.: ")
    assert purged.stdout.strip().endswith(f"journal record(s) and its notes deleted; its served serial {last_static} is kept")
    purged = ctl(tmp_path, "--json", "zone-purge", "example.test")
    assert purged.returncode == 0, purged.stderr
    data = json.loads(purged.stdout)
    assert data["journal_records"] > 0 and data["serial_kept"] == last
    assert "no state kept for it" in failed(tmp_path, "zone-purge", "example.test")
    assert f"its served serial {last} is kept" in server.log()
    # Added back, they never start below the serials their secondaries hold.
    (tmp_path / "static.test.zone").write_text(static)
    conf.write_text(configured)
    assert ctl(tmp_path, "reload").returncode == 0
    assert serial(server) >= last and server.query("static.test", "SOA").answer[0][0].serial >= last_static
    assert values(server, "synced.example.test") == {"192.0.2.45"}  # from the file sync wrote


def test_backup_and_restore_never_move_a_serial_back(aliasd, tmp_path):
    extra = '[zones."static.test"]\nfile = "static.test.zone"\n'
    static = ZONE.replace("example.test.", "static.test.")
    server = aliasd(config() + extra, {"example.test.zone": ZONE, "static.test.zone": static}, server=SLOW_SYNC)
    acknowledged(server.port, "update add before.example.test 60 A 192.0.2.50")
    backup = tmp_path / "backup"
    done = ctl(tmp_path, "backup", str(backup))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"backup written to {backup}: state store (")
    assert stat.S_IMODE((backup / "aliasd.lmdb" / "data.mdb").stat().st_mode) == 0o640
    assert "exists and is not empty" in failed(tmp_path, "backup", str(backup))
    second = ctl(tmp_path, "--json", "backup", str(tmp_path / "second"))
    assert second.returncode == 0, second.stderr
    data = json.loads(second.stdout)
    assert data["path"] == str(tmp_path / "second") and data["key_files"] == 0
    assert data["store_bytes"] == (tmp_path / "second" / "aliasd.lmdb" / "data.mdb").stat().st_size
    # Changes after the backup: the serials rise.
    for n in range(3):
        (tmp_path / "static.test.zone").write_text(static + f"change A 192.0.2.{60 + n}\n")
        assert ctl(tmp_path, "reload", "static.test").returncode == 0
    acknowledged(server.port, "update add after.example.test 60 A 192.0.2.51")
    served = {z: server.query(z, "SOA").answer[0][0].serial for z in ("example.test", "static.test")}
    server.stop()
    assert "aliasd is not running" in failed(tmp_path, "status", code=3)
    done = ctl(tmp_path, "restore", str(backup))
    assert done.returncode == 0, done.stderr
    assert "2 zone serial(s) carried over from the replaced store" in done.stdout
    assert list(tmp_path.glob("state/aliasd.lmdb.before-restore-*"))
    server.start()
    for zone, before in served.items():
        now = server.query(zone, "SOA").answer[0][0].serial
        assert now >= before, (zone, now, before)
    assert server.addresses("change.static.test") == {"192.0.2.62"}
    assert server.addresses("before.example.test") == {"192.0.2.50"}
    # The update made after the backup is back too: the file written at the
    # clean stop holds it, and is merged as a hand edit of the restored zone.
    assert server.addresses("after.example.test") == {"192.0.2.51"}
    # Restoring while the server runs is refused.
    assert "stop it first" in failed(tmp_path, "restore", str(backup))


def test_the_socket_is_private_and_a_stopped_server_is_named(aliasd, tmp_path):
    server = aliasd(config(), {"example.test.zone": ZONE})
    sock = tmp_path / "state" / "control.sock"
    st = sock.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    server.stop()
    assert not sock.exists()
    error = failed(tmp_path, "status", code=3)
    assert error.strip() == f"aliasd-ctl: aliasd is not running (nothing answers on {sock})"
    # --state-dir and --socket find the same socket.
    for where in (["--state-dir", str(tmp_path / "state")], ["--socket", str(sock)]):
        done = subprocess.run([sys.executable, "-m", "aliasd.service.ctl", *where, "status"], check=False, capture_output=True,
                              text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 3 and "aliasd is not running" in done.stderr


def test_zone_status_shows_the_dnssec_keys_and_their_next_event(aliasd, upstream, tmp_path):
    from tests import test_e2e_dnssec as signed

    keys = tmp_path / "state" / "keys"
    ksk, zsk, new = signed._keygen(keys, "-f", "KSK"), signed._keygen(keys), signed._keygen(keys, "-G")
    publish = int(time.time()) + 3600
    signed._settime(keys, new, P=publish, A=publish + 3600)
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"])
    server = aliasd(signed.config(upstream), {"example.test.zone": signed.ZONE})
    assert signed._dnskeys(server) == {signed._tag(ksk), signed._tag(zsk)}
    text, data = ok(tmp_path, "zone-status", "example.test")
    moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(publish))
    assert data["dnssec"]["next_event"] == moment
    by_tag = {k["tag"]: k for k in data["dnssec"]["keys"]}
    assert set(by_tag) == {signed._tag(ksk), signed._tag(zsk), signed._tag(new)}
    assert by_tag[signed._tag(ksk)]["role"] == "KSK" and by_tag[signed._tag(ksk)]["active"]
    assert by_tag[signed._tag(zsk)]["role"] == "ZSK" and by_tag[signed._tag(zsk)]["active"]
    assert not by_tag[signed._tag(new)]["published"] and by_tag[signed._tag(new)]["next_event"] == f"Publish {moment}"
    assert f"DNSSEC key {signed._tag(new)} ZSK alg 13: not published, next event Publish {moment}" in text
    assert f"DNSSEC next event: {moment}" in text


def test_dnssec_steps_name_what_keeps_them_from_a_zone(aliasd, upstream, tmp_path):
    """The rollover steps through a real server: a zone that is not signed,
    one signed with keys that are never rolled, a wrong word and a key that
    is not a tag each get a message that says so, and exit status 1."""
    signed = ZONE.replace("example.test.", "signed.test.")
    text = config(upstream, free_port()) + '[zones."signed.test"]\nfile = "signed.test.zone"\ndnssec = true\n'
    aliasd(text, {"example.test.zone": ZONE, "signed.test.zone": signed})
    assert ("zone example.test. is not signed (no dnssec or dnssec-policy): it has no keys to roll"
            in failed(tmp_path, "dnssec-checkds", "example.test", "published"))
    never = failed(tmp_path, "dnssec-rollover", "signed.test")  # signed, by the never-rolling built-in policy
    assert "zone signed.test." in never and "dnssec-policy" in never and "no dnssec or" not in never
    assert "zone nowhere.test. is not configured" in failed(tmp_path, "dnssec-rollover", "nowhere.test")
    assert "usage: dnssec-checkds ZONE published|withdrawn" in failed(tmp_path, "dnssec-checkds", "signed.test")
    help_text = ctl(tmp_path, "--help").stdout
    assert "dnssec-rollover ZONE [KEY]" in help_text and "dnssec-checkds ZONE published|withdrawn" in help_text
