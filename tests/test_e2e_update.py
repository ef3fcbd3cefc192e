"""End to end: dynamic UPDATE (RFC 2136) with real clients, a real secondary, and restarts.

``nsupdate`` (bind9-dnsutils) and dnspython's ``dns.update`` send signed
updates to a real ``twistd aliasd``; a BIND secondary follows them by IXFR
after NOTIFY; the process is restarted (cleanly and with SIGKILL) and must
serve every acknowledged update with a serial that did not go back, and IXFR
from the serials it served before.
"""

from __future__ import annotations

import base64
import random
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.serial
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr
import dns.zone
import pytest

from tests.aliasd_process import TWISTD, free_port, run_twistd
from tests.conftest import need
from tests.secondaries import Named
from tests.test_update import with_ttl

pytestmark = pytest.mark.e2e

OPS = base64.b64encode(b"aliasd update key for ops, 32 o.").decode()
ACME = base64.b64encode(b"aliasd update key for acme, 32 o").decode()
ZONE = """\
$ORIGIN example.test.
$TTL 300
@ SOA ns1 hostmaster 1 3600 600 86400 300
@ NS ns1
ns1 A 192.0.2.1
www A 192.0.2.10
www A 192.0.2.11
mail A 192.0.2.20
"""


def config(upstream=None, notify_port=None, extra=""):
    resolver = f'[resolver]\nupstreams = ["{upstream.endpoint}"]\nmin-refresh = 1\n' if upstream else ""
    notify = f'notify = ["127.0.0.1:{notify_port}"]\n' if notify_port else ""
    return f"""
    {resolver}
    [keys.ops]
    secret = "{OPS}"
    [keys.acme]
    secret = "{ACME}"
    [zones."example.test"]
    file = "example.test.zone"
    allow-transfer = ["127.0.0.1"]
    {notify}update = [
      {{ key = "ops" }},
      {{ key = "acme", name = "_acme-challenge.example.test.", subdomains = true, types = ["TXT"] }},
    ]
    {extra}
    """


SERVER = "serial-interval = 0\ndynamic-file-sync = 1\n"


@pytest.fixture
def server(aliasd):
    return aliasd(config(), {"example.test.zone": ZONE}, server=SERVER)


def nsupdate(port: int, commands: str, key: tuple[str, str] | None = ("ops", OPS), tcp=False,
             zone: str = "example.test"):
    """Run nsupdate with ``commands`` for ``zone``; returns (exit status, output)."""
    argv = [need("nsupdate")]
    if tcp:
        argv.append("-v")
    if key is not None:
        argv += ["-y", f"hmac-sha256:{key[0]}:{key[1]}"]
    script = f"server 127.0.0.1 {port}\nzone {zone}\n{commands.strip()}\nsend\n"
    result = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=30)
    return result.returncode, result.stdout + result.stderr


def acknowledged(port: int, *commands: str) -> None:
    """Send each update with nsupdate; each must be answered NOERROR."""
    for command in commands:
        rc, out = nsupdate(port, command)
        assert rc == 0, out


def values(server, name, rdtype="A"):
    return server.addresses(name, rdtype)


def serial(server) -> int:
    return server.query("example.test", "SOA").answer[0][0].serial


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_nsupdate_every_prerequisite_and_update_form(server, tcp):
    port = server.port
    start = serial(server)
    ok = lambda commands: nsupdate(port, commands, tcp=tcp)  # noqa: E731
    # Prerequisites that hold, then an add: NOERROR, one new serial.
    rc, out = ok("prereq yxdomain www.example.test\nprereq nxdomain new.example.test\n"
                 "prereq yxrrset www.example.test A\nprereq nxrrset www.example.test AAAA\n"
                 "prereq yxrrset www.example.test A 192.0.2.10\nprereq yxrrset www.example.test A 192.0.2.11\n"
                 "update add new.example.test 60 A 192.0.2.55")
    assert rc == 0, out
    assert values(server, "new.example.test") == {"192.0.2.55"}
    assert serial(server) == start + 1
    # Each prerequisite that fails, with its rcode; nothing is applied.
    for prereq, rcode in (
        ("prereq nxdomain www.example.test", "YXDOMAIN"),
        ("prereq yxdomain nothing.example.test", "NXDOMAIN"),
        ("prereq yxrrset www.example.test AAAA", "NXRRSET"),
        ("prereq nxrrset www.example.test A", "YXRRSET"),
        ("prereq yxrrset www.example.test A 192.0.2.10", "NXRRSET"),  # value-dependent: not the whole RRset
    ):
        rc, out = ok(f"{prereq}\nupdate add never.example.test 60 A 192.0.2.66")
        assert rc != 0 and f"update failed: {rcode}" in out, (prereq, out)
    assert values(server, "never.example.test") == set()
    assert serial(server) == start + 1
    # Delete one record, an RRset, and a name.
    rc, out = ok("update add gone.example.test 60 TXT \"x\"\nupdate add gone.example.test 60 A 192.0.2.77\n"
                 "update delete www.example.test A 192.0.2.10")
    assert rc == 0, out
    assert values(server, "www.example.test") == {"192.0.2.11"}
    rc, out = ok("update delete mail.example.test A")
    assert rc == 0 and values(server, "mail.example.test") == set()
    rc, out = ok("update delete gone.example.test")
    assert rc == 0 and values(server, "gone.example.test", "TXT") == set()
    assert server.query("gone.example.test", "A").rcode() == dns.rcode.NXDOMAIN
    assert serial(server) == start + 4
    # Outside the zone: NOTZONE. Updates that would break the zone are ignored.
    rc, out = ok("update add www.example.org. 60 A 192.0.2.1")
    assert rc != 0 and "NOTZONE" in out, out
    rc, out = ok("update add www.example.test 60 CNAME mail.example.test")
    assert rc == 0 and server.query("www.example.test", "CNAME").answer == []
    rc, out = ok("update delete example.test NS")
    assert rc == 0 and values(server, "example.test", "NS") == {"ns1.example.test."}
    assert serial(server) == start + 4  # nothing changed: no new serial
    assert "CNAME at www.example.test. beside other data" in server.log()


def test_unsigned_wrongly_signed_and_foreign_updates(server):
    port = server.port
    rc, out = nsupdate(port, "update add x.example.test 60 A 192.0.2.1", key=None)
    assert "REFUSED" in out, out
    rc, out = nsupdate(port, "update add x.example.test 60 A 192.0.2.1",
                       key=("ops", base64.b64encode(b"not the right secret at all!!!!!").decode()))
    assert rc != 0, out
    assert values(server, "x.example.test") == set()
    # dnspython: the bad signature gets NOTAUTH with BADSIG, an unknown zone NOTAUTH.
    update = dns.update.UpdateMessage("example.test", keyring=ring({"ops.": "d3Jvbmc="}), keyname="ops.")
    update.add("x", 60, "A", "192.0.2.1")
    wire = update.to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(wire, ("127.0.0.1", port))
        answer = dns.message.from_wire(s.recv(65535), keyring=False)
    assert answer.rcode() == dns.rcode.NOTAUTH and answer.tsig_error == dns.rcode.BADSIG
    update = dns.update.UpdateMessage("example.org", keyring=ring(), keyname="ops.")
    update.add("x", 60, "A", "192.0.2.1")
    assert dns.query.udp(update, "127.0.0.1", port=port, timeout=5).rcode() == dns.rcode.NOTAUTH
    # No zone section at all: FORMERR.
    header = struct.pack("!HHHHHH", 4321, 5 << 11, 0, 0, 0, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(header, ("127.0.0.1", port))
        reply = s.recv(65535)
    assert reply[:2] == b"\x10\xe1" and reply[3] & 0xF == dns.rcode.FORMERR
    assert "not signed with TSIG" in server.log()
    assert server.alive()


def test_the_acme_key_changes_acme_challenge_txt_and_nothing_else(server):
    port = server.port
    acme = ("acme", ACME)
    rc, out = nsupdate(port, 'update add _acme-challenge.example.test 60 TXT "token-1"', key=acme)
    assert rc == 0, out
    rc, out = nsupdate(port, 'update add x._acme-challenge.example.test 60 TXT "token-2"', key=acme)
    assert rc == 0, out
    assert values(server, "_acme-challenge.example.test", "TXT") == {'"token-1"'}
    for forbidden in (
        "update add www.example.test 60 A 192.0.2.99",
        'update add www.example.test 60 TXT "hijack"',
        "update add _acme-challenge.example.test 60 CAA 0 issue \"ca.test\"",  # not TXT
        "update delete www.example.test",
        "update add example.test 300 SOA ns1 hostmaster 99 3600 600 86400 300",
    ):
        rc, out = nsupdate(port, forbidden, key=acme)
        assert rc != 0 and "REFUSED" in out, (forbidden, out)
    assert values(server, "www.example.test") == {"192.0.2.10", "192.0.2.11"}
    rc, out = nsupdate(port, "update delete _acme-challenge.example.test TXT", key=acme)
    assert rc == 0 and values(server, "_acme-challenge.example.test", "TXT") == set()


def ring(keys=None):
    return dns.tsigkeyring.from_text(keys or {"ops.": (dns.tsig.HMAC_SHA256, OPS)})


def test_dnspython_updates_over_udp_and_tcp(server):
    for send, name in ((dns.query.udp, "u"), (dns.query.tcp, "t")):
        update = dns.update.UpdateMessage("example.test", keyring=ring(), keyname="ops.")
        update.absent(name)
        update.replace(name, 60, "AAAA", "2001:db8::1")
        response = send(update, "127.0.0.1", port=server.port, timeout=5)
        assert response.rcode() == dns.rcode.NOERROR
        assert response.tsig is not None  # the answer is signed (dnspython checked it)
        assert values(server, f"{name}.example.test", "AAAA") == {"2001:db8::1"}


def alias_rdata(target: str) -> str:
    wire = dns.name.from_text(target).to_wire()
    return rf"\# {len(wire)} {wire.hex()}"


def test_an_alias_added_by_update_is_resolved_at_once_and_followed_by_a_bind_secondary(aliasd, upstream, tmp_path):
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"], ttl=60)
    upstream.set("lb2.cdn.test.", "A", ["198.51.100.8"], ttl=60)
    secondary_port = free_port()
    server = aliasd(config(upstream, secondary_port), {"example.test.zone": ZONE}, server=SERVER)
    named_dir = tmp_path / "named"
    named_dir.mkdir()
    named = Named(named_dir, secondary_port).start("example.test", server.port)
    try:
        server.wait_for(lambda: named.serial("example.test") == 1, timeout=20)
        rc, out = nsupdate(server.port, f"update add example.test 300 TYPE65401 {alias_rdata('lb.cdn.test.')}")
        acknowledged = time.monotonic()
        assert rc == 0, out
        server.wait_for(lambda: values(server, "example.test") == {"198.51.100.7"}, timeout=1.0, interval=0.02)
        assert time.monotonic() - acknowledged < 1.0
        # The transfer view carries the addresses, never the ALIAS itself.
        axfr = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", "example.test", port=server.port, timeout=5))
        apex = axfr.get_node("@")
        assert {rd.address for rd in apex.get_rdataset(1, dns.rdatatype.A)} == {"198.51.100.7"}
        assert not any(rds.rdtype == 65401 for rds in apex.rdatasets)
        server.wait_for(lambda: named.addresses("example.test") == {"198.51.100.7"}, timeout=15)
        # Replace it, then delete it: the secondary follows each by IXFR.
        rc, out = nsupdate(server.port, f"update add example.test 300 TYPE65401 {alias_rdata('lb2.cdn.test.')}")
        assert rc == 0, out
        server.wait_for(lambda: named.addresses("example.test") == {"198.51.100.8"}, timeout=15)
        rc, out = nsupdate(server.port, "update delete example.test TYPE65401")
        assert rc == 0, out
        server.wait_for(lambda: named.addresses("example.test") == set(), timeout=15)
        assert named.serial("example.test") == serial(server)
        kinds = named.transfers()
        assert kinds[0] == "AXFR" and kinds[1:] and set(kinds[1:]) == {"IXFR"}, kinds
    finally:
        named.stop()


def test_updates_survive_a_restart_and_ixfr_works_from_before_it(aliasd, tmp_path):
    server = aliasd(config(), {"example.test.zone": ZONE}, server="serial-interval = 0\ndynamic-file-sync = 3600\n")
    serials = [serial(server)]
    for i in range(5):
        rc, out = nsupdate(server.port, f"update add h{i}.example.test 60 A 192.0.2.{100 + i}")
        assert rc == 0, out
        serials.append(serial(server))
    server.proc.kill()  # SIGKILL: no clean stop, the file was never written back
    server.proc.wait()
    assert "h0" not in (tmp_path / "example.test.zone").read_text()
    server.start()
    assert serial(server) == serials[-1]
    for i in range(5):
        assert values(server, f"h{i}.example.test") == {f"192.0.2.{100 + i}"}
    assert "5 update(s) from the journal applied" in server.log()
    for old in serials[:-1]:
        assert incremental(server.port, old), old
    # A clean stop writes the file; aliasd-check reads it; a start from it is the same zone.
    server.stop()
    text = (tmp_path / "example.test.zone").read_text()
    assert "h4\t60\tIN\tA\t192.0.2.104" in text
    check = subprocess.run(
        [str(need_check()), "--config", str(tmp_path / "aliasd.toml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    server.start()
    assert serial(server) == serials[-1] and values(server, "h4.example.test") == {"192.0.2.104"}


def need_check() -> Path:
    return Path(TWISTD).with_name("aliasd-check")


def incremental(port: int, old: int) -> bool:
    """Does an IXFR from ``old`` come back incremental (and apply cleanly)?"""
    messages = list(dns.query.xfr("127.0.0.1", "example.test", rdtype=dns.rdatatype.IXFR, serial=old,
                                  port=port, timeout=5, relativize=False))
    answers = [rr for m in messages for rr in m.answer]
    # An incremental answer: the new SOA, then the old one (RFC 1995 4).
    return len(answers) >= 2 and answers[1].rdtype == dns.rdatatype.SOA and answers[1][0].serial == old


def test_a_file_edited_by_hand_merges_with_the_updates_on_reload(aliasd, tmp_path):
    """The edit is the difference between the file aliasd last wrote and the
    file now, applied on top of the zone's records: updates stay, except
    where the edit changed the same RRset (the edit wins, the log names the
    records lost). The merge survives a restart, and serials never go back."""
    slow = "serial-interval = 0\ndynamic-file-sync = 3600\n"  # the file is not written meanwhile
    server = aliasd(config(), {"example.test.zone": ZONE}, server=slow)
    for command in ("update add added.example.test 60 A 192.0.2.44",
                    "update delete www.example.test A\nupdate add www.example.test 60 A 192.0.2.77"):
        rc, out = nsupdate(server.port, command)
        assert rc == 0, out
    before = serial(server)
    path = tmp_path / "example.test.zone"
    # The operator edits the file (aliasd's copy of it holds none of the updates).
    text = path.read_text().replace("mail A 192.0.2.20", "mail A 192.0.2.21")
    text = text.replace("www A 192.0.2.11\n", "") + "byhand A 192.0.2.46\n"
    path.write_text(text)
    server.proc.send_signal(1)  # SIGHUP: reload
    server.wait_for(lambda: values(server, "byhand.example.test") == {"192.0.2.46"}, timeout=10)
    assert values(server, "mail.example.test") == {"192.0.2.21"}
    assert values(server, "added.example.test") == {"192.0.2.44"}  # the update stays
    assert values(server, "www.example.test") == {"192.0.2.10"}  # both changed www: the edit won
    assert serial(server) == before + 1
    log = server.log()
    assert "was edited by hand since aliasd last wrote it" in log
    assert "1 record(s) of updates lost" in log and "www.example.test. 60 A 192.0.2.77" in log
    # A reload of the same file changes nothing more.
    server.proc.send_signal(1)
    server.wait_for(lambda: server.log().count("reload done") == 2, timeout=10)
    assert serial(server) == before + 1 and server.log().count("edited by hand") == 1
    # The merge is the zone's truth: a restart serves it as it was.
    server.stop()
    server.start()
    assert serial(server) == before + 1
    assert values(server, "added.example.test") == {"192.0.2.44"}
    assert values(server, "byhand.example.test") == {"192.0.2.46"}
    assert values(server, "www.example.test") == {"192.0.2.10"}


def test_removing_the_update_rules_keeps_the_acknowledged_updates(aliasd, tmp_path):
    """They are written to the file first; put the rules back and they are
    still there; nothing comes back that was deleted."""
    slow = "serial-interval = 0\ndynamic-file-sync = 3600\n"
    server = aliasd(config(), {"example.test.zone": ZONE}, server=slow)
    acknowledged(server.port, "update add kept.example.test 60 A 192.0.2.61",
                 "update add gone.example.test 60 A 192.0.2.62", "update delete gone.example.test A")
    conf = tmp_path / "aliasd.toml"
    dynamic_conf = conf.read_text()
    static_conf = dynamic_conf.replace("update = [", "no_update = [").split("no_update = [")[0]
    conf.write_text(static_conf)
    server.proc.send_signal(1)
    server.wait_for(lambda: server.log().count("reload done") == 1, timeout=10)
    assert values(server, "kept.example.test") == {"192.0.2.61"}
    assert "kept" in (tmp_path / "example.test.zone").read_text()
    assert "no update rules any more" in server.log()
    _, out = nsupdate(server.port, "update add refused.example.test 60 A 192.0.2.63")
    assert "REFUSED" in out
    conf.write_text(dynamic_conf)  # the rules are back
    server.proc.send_signal(1)
    server.wait_for(lambda: server.log().count("reload done") == 2, timeout=10)
    assert values(server, "kept.example.test") == {"192.0.2.61"}
    server.stop()
    server.start()
    assert values(server, "kept.example.test") == {"192.0.2.61"}
    assert values(server, "gone.example.test") == set()


def test_a_removed_zone_keeps_its_state_and_comes_back_whole(aliasd, tmp_path):
    slow = "serial-interval = 0\ndynamic-file-sync = 3600\n"
    server = aliasd(config(), {"example.test.zone": ZONE}, server=slow)
    rc, out = nsupdate(server.port, "update add back.example.test 60 A 192.0.2.71")
    assert rc == 0, out
    served = serial(server)
    conf = tmp_path / "aliasd.toml"
    with_zone = conf.read_text()
    without = '[zones."other.test"]\nfile = "other.test.zone"\n'  # example.test is removed
    (tmp_path / "other.test.zone").write_text(ZONE.replace("example.test.", "other.test."))
    conf.write_text(without)
    server.proc.send_signal(1)
    server.wait_for(lambda: server.log().count("reload done") == 1, timeout=10)
    assert server.query("back.example.test", "A").rcode() == dns.rcode.REFUSED
    assert "no longer served; its state" in server.log()
    conf.write_text(with_zone)
    server.proc.send_signal(1)
    server.wait_for(lambda: server.log().count("reload done") == 2, timeout=10)
    assert values(server, "back.example.test") == {"192.0.2.71"}
    assert not dns.serial.Serial(serial(server)) < dns.serial.Serial(served)


def test_sigkill_at_random_moments_loses_no_acknowledged_update(aliasd, tmp_path):
    """2,000 updates from a client while aliasd is killed (SIGKILL) and
    restarted at random moments, in the middle of updates: every NOERROR is
    in the zone at the end, serials never went back, and IXFR works from
    every serial served before a kill."""
    server = aliasd(config(), {"example.test.zone": ZONE},
                    server="serial-interval = 0\ndynamic-file-sync = 1\n")  # default history bounds
    rng = random.Random(2136)
    acknowledged: dict[str, str] = {}
    deleted: set[str] = set()
    done = threading.Event()

    kills = 0

    def client():
        # 2,000 updates, and on until the server was killed 5 times (a
        # loaded machine restarts it slower), bounded.
        for i in range(20000):
            if i >= 2000 and kills >= 5:
                break
            name = f"n{i}"
            address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            update = dns.update.UpdateMessage("example.test", keyring=ring(), keyname="ops.")
            victim = None
            if i % 10 == 9 and acknowledged:  # some deletes too
                victim = sorted(acknowledged)[rng.randrange(len(acknowledged))]
                update.delete(victim)
            else:
                update.add(name, 60, "A", address)
            try:
                response = dns.query.tcp(update, "127.0.0.1", port=server.port, timeout=3)
            except (OSError, EOFError, dns.exception.DNSException):
                # Killed meanwhile: this one may or may not have been applied
                # (recorded, then killed before the answer went out). An add
                # is then not counted; a delete makes its victim uncertain.
                if victim is not None:
                    acknowledged.pop(victim, None)
                time.sleep(0.02)
                continue
            if response.rcode() == dns.rcode.NOERROR:
                if victim is None:
                    acknowledged[name] = address
                else:
                    acknowledged.pop(victim, None)
                    deleted.add(victim)
        done.set()

    seen_serials = [serial(server)]
    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    while not done.wait(rng.uniform(0.2, 1.2)):
        seen_serials.append(serial(server))
        server.proc.kill()
        server.proc.wait()
        kills += 1
        server.start()
        now = serial(server)
        assert not dns.serial.Serial(now) < dns.serial.Serial(seen_serials[-1]), (now, seen_serials)
        seen_serials.append(now)
    thread.join()
    assert kills >= 5 and len(acknowledged) > 500, (kills, len(acknowledged))
    final = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", "example.test", port=server.port, timeout=10),
                              relativize=True)
    for name, address in acknowledged.items():
        rdataset = final.get_rdataset(name, "A")
        assert rdataset is not None and {rd.address for rd in rdataset} == {address}, name
    for name in deleted - set(acknowledged):
        assert final.get_node(name) is None, name
    current = serial(server)
    for old in sorted(set(seen_serials) - {current}):
        assert incremental(server.port, old), old
    assert "was changed by hand" not in server.log()


def _add(port: int, i: int, payload: str = "") -> None:
    update = dns.update.UpdateMessage("example.test", keyring=ring(), keyname="ops.")
    update.add(f"h{i}", 60, "TXT", f'"{i}{payload}"')
    assert dns.query.tcp(update, "127.0.0.1", port=port, timeout=5).rcode() == dns.rcode.NOERROR


def test_a_secondary_a_thousand_updates_behind_gets_ixfr_across_a_restart(aliasd):
    """The history is bounded by octets (10 MiB a zone by default), not by a
    count: 1,000 updates later, IXFR from the first serial, after a restart
    too (the history is read back from the state store)."""
    server = aliasd(config(), {"example.test.zone": ZONE}, server=SERVER)
    first = serial(server)
    # A secondary's copy at the first serial.
    zone = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", "example.test.", port=server.port, timeout=10))
    for i in range(1000):
        _add(server.port, i)
    server.stop()
    server.start()
    assert serial(server) == first + 1000
    assert incremental(server.port, first) and incremental(server.port, first + 500)
    # Applied to the zone as it was at the first serial, the IXFR gives the zone now.
    query, _ = dns.xfr.make_query(zone)
    dns.query.inbound_xfr("127.0.0.1", zone, query, port=server.port, timeout=10)
    now = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", "example.test.", port=server.port, timeout=10))
    assert zone == now and zone.get_soa().serial == first + 1000


def test_a_small_journal_max_usage_keeps_only_the_newest_differences(aliasd):
    server = aliasd(config(extra='journal-max-usage = "8K"'), {"example.test.zone": ZONE}, server=SERVER)
    first = serial(server)
    for i in range(40):
        _add(server.port, i, payload="x" * 200)  # about 300 octets a difference
    last = serial(server)
    assert not incremental(server.port, first)  # pushed out: the whole zone instead
    assert incremental(server.port, last - 5)
    server.stop()
    server.start()  # the store kept only what the bound allows
    assert not incremental(server.port, first) and incremental(server.port, last - 5)


def test_aliasd_check_accepts_update_rules_and_rejects_bad_ones(tmp_path):
    (tmp_path / "example.test.zone").write_text(ZONE)
    conf = tmp_path / "aliasd.toml"
    conf.write_text(config().replace('{ key = "ops" },', '{ key = "nobody" },'))
    result = run_twistd(["--config", str(conf), "--port", str(free_port())], tmp_path)
    assert result.returncode != 0
    assert "no key named 'nobody' in [keys]" in result.stdout + result.stderr


@pytest.mark.parametrize("send", [dns.query.udp, dns.query.tcp], ids=["udp", "tcp"])
def test_a_prerequisite_or_a_deletion_with_a_ttl_gets_formerr_and_changes_nothing(server, send):
    """RFC 2136 3.2.5 and 3.4.1.3: their TTL must be 0."""
    start = serial(server)
    for section, rr in (
        ("prerequisite", ("www.example.test.", dns.rdataclass.ANY, "ANY", 300)),  # name in use
        ("prerequisite", ("nothing.example.test.", dns.rdataclass.NONE, "ANY", 60)),  # name not in use
        ("update", ("mail.example.test.", dns.rdataclass.ANY, "A", 300)),  # delete an RRset
        ("update", ("mail.example.test.", dns.rdataclass.ANY, "ANY", 86400)),  # delete a name
        ("update", ("www.example.test.", dns.rdataclass.NONE, "A", 300, "192.0.2.10")),  # delete one record
    ):
        update = dns.update.UpdateMessage("example.test", keyring=ring(), keyname="ops.")
        update.add("never", 60, "A", "192.0.2.66")
        with_ttl(getattr(update, section), *rr)
        response = send(update, "127.0.0.1", port=server.port, timeout=5)
        assert response.rcode() == dns.rcode.FORMERR, (rr, dns.rcode.to_text(response.rcode()))
    assert values(server, "mail.example.test") == {"192.0.2.20"}
    assert values(server, "www.example.test") == {"192.0.2.10", "192.0.2.11"}
    assert values(server, "never.example.test") == set()
    assert serial(server) == start
    assert "FORMERR: deletion at mail.example.test. with TTL 300, not 0" in server.log()
    assert "FORMERR: prerequisite at www.example.test. with TTL 300, not 0" in server.log()
    # The same deletion with TTL 0 is applied.
    update = dns.update.UpdateMessage("example.test", keyring=ring(), keyname="ops.")
    with_ttl(update.update, "mail.example.test.", dns.rdataclass.ANY, "A", 0)
    assert send(update, "127.0.0.1", port=server.port, timeout=5).rcode() == dns.rcode.NOERROR
    assert values(server, "mail.example.test") == set() and serial(server) == start + 1


SIGNED_ZONE = ZONE + """\
sub NS ns.sub
ns.sub A 192.0.2.53
"""
DNSKEY = "257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ=="
DS = "12345 13 2 " + "ab" * 32


def test_a_signed_zone_refuses_the_signers_records_and_takes_a_ds_at_a_delegation(aliasd):
    """aliasd makes the DNSKEY, RRSIG, NSEC3, NSEC3PARAM, CDS and CDNSKEY
    of a zone it signs: an update that adds or deletes them is REFUSED and
    the zone stays as it was (it verifies); a DS is taken at a delegation
    only, and the zone still verifies with it."""
    from tests.validators import axfr_text, dnssec_verify

    server = aliasd(config(extra="dnssec = true\n"), {"example.test.zone": SIGNED_ZONE}, server=SERVER)
    server.wait_for(lambda: "RRSIG" in axfr_text("example.test", server.port), timeout=15)
    before = axfr_text("example.test", server.port)
    ok, output = dnssec_verify("example.test", before)
    assert ok, output
    start = serial(server)
    for refused, why in (
        (f"update add example.test 300 DNSKEY {DNSKEY}", "adding DNSKEY at example.test.: aliasd makes"),
        ("update add example.test 0 NSEC3PARAM 1 0 0 -", "adding NSEC3PARAM at example.test."),
        (f"update add example.test 300 CDS {DS}", "adding CDS at example.test."),
        ("update add www.example.test 300 RRSIG A 13 3 300 20300101000000 20200101000000 12345 example.test. "
         + "A" * 88, "adding RRSIG at www.example.test."),
        ("update delete example.test DNSKEY", "deleting DNSKEY at example.test."),
        (f"update add example.test 300 DS {DS}", "DS record at the zone apex example.test."),
        (f"update add www.example.test 300 DS {DS}", "DS record at www.example.test., which is not a delegation"),
        (f"update add ok.example.test 60 A 192.0.2.99\nupdate add example.test 300 DNSKEY {DNSKEY}",
         "adding DNSKEY at example.test."),  # all or nothing
    ):
        rc, out = nsupdate(server.port, refused)
        assert rc != 0 and "update failed: REFUSED" in out, (refused, out)
        assert why in server.log(), why
    assert serial(server) == start and values(server, "ok.example.test") == set()
    assert axfr_text("example.test", server.port) == before  # unchanged, so it still verifies
    rc, out = nsupdate(server.port, f"update add sub.example.test 300 DS {DS}")
    assert rc == 0, out
    assert serial(server) == start + 1
    after = axfr_text("example.test", server.port)
    assert f"sub.example.test. 300 IN DS {DS}" in after.splitlines()
    assert "sub.example.test. 300 IN RRSIG DS 13 3 300 " in after  # signed, as the parent's record
    ok, output = dnssec_verify("example.test", after)
    assert ok, output


def test_max_records_refuses_an_update_past_it_and_a_zone_file_over_it(aliasd):
    """``max-records`` (as BIND's, after CVE-2024-1737): an UPDATE that
    would leave the zone with more records is REFUSED and changes nothing;
    a zone file with more does not load (SERVFAIL, nothing stored)."""
    big = 'max-records = 7\n[zones."big.test"]\nfile = "big.test.zone"\nmax-records = 2\n'
    server = aliasd(config(extra=big), {"example.test.zone": ZONE, "big.test.zone": ZONE.replace("example.test.", "big.test.")},
                    server=SERVER)
    start = serial(server)
    acknowledged(server.port, "update add new.example.test 60 A 192.0.2.55")  # 7 records: the limit
    rc, out = nsupdate(server.port, "update add more.example.test 60 A 192.0.2.56")
    assert rc != 0 and "REFUSED" in out, out
    assert values(server, "more.example.test") == set() and serial(server) == start + 1
    assert "would hold 8 records, more than its max-records (7)" in server.log()
    # Room again once one is deleted: replacing within the limit is fine.
    acknowledged(server.port, "update delete new.example.test A\nupdate add more.example.test 60 A 192.0.2.56")
    assert values(server, "more.example.test") == {"192.0.2.56"}
    assert server.query("big.test", "SOA").rcode() == dns.rcode.SERVFAIL
    assert "big.test.zone: 6 records, more than the zone's max-records (2)" in server.log()
