"""End to end: SIGHUP reloads configuration and zones without a gap."""

from __future__ import annotations

import os
import signal
import threading
import time
from textwrap import dedent

import dns.exception
import dns.rcode
import pytest

from tests.test_e2e_notify import NotifyListener

pytestmark = pytest.mark.e2e

ZONE = """\
    $ORIGIN example.com.
    $TTL 300
    @    SOA ns1 hostmaster 10 86400 600 864000 120
         NS  ns1
    ns1  A   192.0.2.53
    www  A   192.0.2.80
    """
OTHER = ZONE.replace("example.com.", "example.org.")


def config(notify="", zones=("example.com",)) -> str:
    text = ""
    for zone in zones:
        text += f"""
        [zones."{zone}"]
        file = "{zone}.zone"
        allow-transfer = ["127.0.0.1"]
        notify = [{notify}]
        """
    return text


def hup(p):
    p.proc.send_signal(signal.SIGHUP)


@pytest.fixture
def listener():
    made = NotifyListener("127.0.0.1")
    yield made
    made.close()


def test_changed_zone_gets_new_serial_and_notify(aliasd, tmp_path, listener):
    p = aliasd(config(f'"{listener.endpoint}"'), {"example.com.zone": ZONE})
    before = p.query("example.com", "SOA").answer[0][0].serial
    (tmp_path / "example.com.zone").write_text(dedent(ZONE).replace("192.0.2.80", "192.0.2.81"))
    hup(p)
    p.wait_for(lambda: p.addresses("www.example.com") == {"192.0.2.81"})
    assert p.query("example.com", "SOA").answer[0][0].serial == before + 1
    p.wait_for(lambda: any(m.answer[0][0].serial == before + 1 for _, m in listener.received))
    assert "reload done: 1 zones (0 added, 0 removed, 1 file(s) read again), 0 error(s)" in p.log()


def test_zones_added_and_removed_by_reload(aliasd, tmp_path):
    p = aliasd(config(), {"example.com.zone": ZONE, "example.org.zone": OTHER})
    assert p.query("www.example.org").rcode() == dns.rcode.REFUSED
    conf = tmp_path / "aliasd.toml"
    conf.write_text(conf.read_text() + config(zones=("example.org",)))
    hup(p)
    p.wait_for(lambda: p.query("www.example.org").rcode() == dns.rcode.NOERROR)
    conf.write_text(conf.read_text().replace('[zones."example.com"]', '[zones."example.net"]')
                    .replace('file = "example.com.zone"', 'file = "example.com.zone"'))
    # example.net would load example.com's file: a broken zone, nothing to
    # serve: SERVFAIL; example.com is gone from the configuration and stops
    # being served.
    hup(p)
    p.wait_for(lambda: p.query("www.example.com").rcode() == dns.rcode.REFUSED)
    assert "zone example.net. answers SERVFAIL until its file is mended" in p.log()
    assert p.query("www.example.net").rcode() == dns.rcode.SERVFAIL
    assert "(1 added [example.net.], 1 removed [example.com.], 0 file(s) read again), 1 error(s) [example.net.]" \
        in p.log()
    assert p.query("www.example.org").rcode() == dns.rcode.NOERROR


def test_broken_zone_file_keeps_the_old_version(aliasd, tmp_path):
    p = aliasd(config(), {"example.com.zone": ZONE})
    (tmp_path / "example.com.zone").write_text(dedent(ZONE) + "bad 300 A 192.0.2.999\n")
    hup(p)
    p.wait_for(lambda: "example.com.zone:7:" in p.log())
    assert "zone example.com. keeps serving its previous data" in p.log()
    assert p.addresses("www.example.com") == {"192.0.2.80"}
    (tmp_path / "aliasd.toml").write_text("[server\n")
    hup(p)
    p.wait_for(lambda: "reload failed, nothing changed" in p.log())
    assert p.addresses("www.example.com") == {"192.0.2.80"}
    assert p.alive()


def test_queries_during_reloads_are_all_answered(aliasd, tmp_path):
    big = dedent(ZONE) + "".join(f"h{i} A 10.0.{i >> 8}.{i & 255}\n" for i in range(20000))
    p = aliasd(config(), {"example.com.zone": big})
    failures, answered = [], []
    stop = threading.Event()

    def ask():
        while not stop.is_set():
            try:
                r = p.query("www.example.com", timeout=3)
                answered.append(r.rcode())
            except dns.exception.Timeout:
                failures.append("timeout")

    worker = threading.Thread(target=ask)
    worker.start()
    try:
        for _ in range(3):
            hup(p)
            time.sleep(1.5)
    finally:
        stop.set()
        worker.join(10)
    p.wait_for(lambda: p.log().count("reload done") == 3, timeout=30)
    assert not failures and len(answered) > 20
    assert set(answered) == {dns.rcode.NOERROR}


def test_an_edit_that_keeps_the_size_and_the_modification_time_is_served(aliasd, tmp_path):
    """A file put back with its old time (``cp -p``, ``rsync -t``, an editor
    that keeps it) and the same size is read again: its change time and
    inode say it changed, not its size and mtime alone."""
    p = aliasd(config(), {"example.com.zone": ZONE})
    path = tmp_path / "example.com.zone"
    before = path.stat()
    path.write_text(dedent(ZONE).replace("192.0.2.80", "192.0.2.81"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    hup(p)
    p.wait_for(lambda: p.addresses("www.example.com") == {"192.0.2.81"})
    assert "reload done: 1 zones (0 added, 0 removed, 1 file(s) read again), 0 error(s)" in p.log()


def test_a_changed_setting_with_no_zone_file_changed_is_applied(aliasd, tmp_path):
    """The zones as before but [zone-defaults] changed: every directory zone
    gets the new setting, though no file is read again; then one explicit
    zone's own table changed, with its file as it was."""
    (tmp_path / "zones.d").mkdir()
    for name in ("example.com", "example.org"):
        (tmp_path / "zones.d" / f"{name}.zone").write_text(dedent(ZONE).replace("example.com.", f"{name}."))
    p = aliasd('[zone-defaults]\nallow-transfer = []\n[zone-directory]\npath = "zones.d"\n'
               + config(zones=("example.net",)).replace('["127.0.0.1"]', "[]"),
               {"example.net.zone": ZONE.replace("example.com.", "example.net.")})
    for zone in ("example.com", "example.org", "example.net"):
        assert p.query(zone, "AXFR", tcp=True).rcode() == dns.rcode.REFUSED
    conf = tmp_path / "aliasd.toml"
    conf.write_text(conf.read_text().replace("allow-transfer = []", 'allow-transfer = ["127.0.0.1"]', 1))
    hup(p)
    p.wait_for(lambda: "reload done" in p.log())
    assert "reload done: 3 zones (0 added, 0 removed, 0 file(s) read again), 0 error(s)" in p.log()
    for zone in ("example.com", "example.org"):
        answer = p.query(zone, "AXFR", tcp=True)
        assert answer.rcode() == dns.rcode.NOERROR and len(answer.answer) >= 4, zone
    assert p.query("example.net", "AXFR", tcp=True).rcode() == dns.rcode.REFUSED
    conf.write_text(conf.read_text().replace("allow-transfer = []", 'allow-transfer = ["127.0.0.1"]'))
    hup(p)
    p.wait_for(lambda: p.log().count("reload done") == 2)
    assert p.query("example.net", "AXFR", tcp=True).rcode() == dns.rcode.NOERROR
    assert p.log().count("3 zones (0 added, 0 removed, 0 file(s) read again), 0 error(s)") == 2
