"""The LSB init script, run for real against a temporary installation.

Paths come from a defaults file (``ALIASD_DEFAULTS``) pointing into a
temporary directory and a high port; when the tests run as root the daemon
binds as root and then runs as ``nobody``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.aliasd_process import REPO, free_port

pytestmark = pytest.mark.e2e

SCRIPT = str(REPO / "etc" / "init.d" / "aliasd")
BIN = Path(sys.executable).parent
ZONE = "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 h 5 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.53\nwww A 192.0.2.80\n"


@pytest.fixture
def install():
    """A world-readable temporary tree (the daemon may run as nobody)."""
    root = Path(tempfile.mkdtemp(prefix="aliasd-init-", dir="/tmp"))
    root.chmod(0o755)
    port = free_port()
    (root / "etc").mkdir()
    (root / "etc" / "example.com.zone").write_text(ZONE)
    (root / "etc" / "aliasd.toml").write_text(
        f'[server]\nlisten = ["127.0.0.1"]\nport = {port}\n[zones."example.com"]\nfile = "example.com.zone"\n'
    )
    as_root = os.geteuid() == 0
    (root / "default").write_text(
        textwrap.dedent(
            f"""\
            CONFIG={root}/etc/aliasd.toml
            DAEMON_ARGS=""
            USER={'nobody' if as_root else ''}
            GROUP={'nogroup' if as_root else ''}
            PIDFILE={root}/run/aliasd.pid
            LOGFILE={root}/log/aliasd.log
            STATEDIR={root}/state
            TWISTD={BIN / 'twistd'}
            CHECK={BIN / 'aliasd-check'}
            """
        )
    )
    yield root, port
    pid_file = root / "run" / "aliasd.pid"
    if pid_file.exists():
        subprocess.run(["kill", "-KILL", pid_file.read_text().strip()], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def service(root: Path, action: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ALIASD_DEFAULTS=str(root / "default"))
    return subprocess.run(["sh", SCRIPT, action], env=env, capture_output=True, text=True, timeout=60)


def ask(port: int, name: str = "www.example.com"):
    return dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)


def test_start_query_reload_status_stop(install):
    root, port = install
    started = service(root, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int((root / "run" / "aliasd.pid").read_text())
    assert ask(port).answer[0][0].address == "192.0.2.80"
    if os.geteuid() == 0:  # bound as root, runs as nobody
        uid_line = [ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("Uid:")][0]
        assert uid_line.split()[1:] == [str(int(subprocess.check_output(["id", "-u", "nobody"])))] * 4
    assert service(root, "start").returncode == 0  # already running: fine
    assert service(root, "status").returncode == 0

    (root / "etc" / "example.com.zone").write_text(ZONE.replace("192.0.2.80", "192.0.2.81"))
    reloaded = service(root, "reload")
    assert reloaded.returncode == 0, reloaded.stdout
    deadline = time.monotonic() + 10
    while ask(port).answer[0][0].address != "192.0.2.81":
        assert time.monotonic() < deadline, (root / "log" / "aliasd.log").read_text()
        time.sleep(0.2)
    assert int((root / "run" / "aliasd.pid").read_text()) == pid  # same process

    # A broken zone file is reported, and reload and restart go on (the
    # zone keeps its last good data, from the store after the restart).
    (root / "etc" / "example.com.zone").write_text(ZONE + "bad 300 A 192.0.2.999\n")
    error = f"{root / 'etc' / 'example.com.zone'}:7: A record: '192.0.2.999' is not an IPv4 address"
    reported = service(root, "reload")
    assert reported.returncode == 0 and error in reported.stderr, reported.stdout + reported.stderr
    assert "reloading" in reported.stdout
    assert ask(port).answer[0][0].address == "192.0.2.81"  # still serving
    restarted = service(root, "restart")
    assert restarted.returncode == 0 and error in restarted.stderr, restarted.stdout + restarted.stderr
    new_pid = int((root / "run" / "aliasd.pid").read_text())
    assert new_pid != pid
    assert ask(port).answer[0][0].address == "192.0.2.81"  # its last good data

    # A broken configuration file stops reload and start, as BIND's does.
    config = (root / "etc" / "aliasd.toml").read_text()
    (root / "etc" / "aliasd.toml").write_text(config + "[server\n")
    refused = service(root, "reload")
    assert refused.returncode == 6 and "invalid TOML" in refused.stderr, refused.stdout + refused.stderr
    assert ask(port).answer[0][0].address == "192.0.2.81"
    assert service(root, "stop").returncode == 0
    assert service(root, "start").returncode == 6
    (root / "etc" / "aliasd.toml").write_text(config)
    (root / "etc" / "example.com.zone").write_text(ZONE)
    assert service(root, "start").returncode == 0
    new_pid = int((root / "run" / "aliasd.pid").read_text())
    assert ask(port).answer[0][0].address == "192.0.2.80"

    stopped = service(root, "stop")
    assert stopped.returncode == 0
    assert not Path(f"/proc/{new_pid}").exists()
    assert service(root, "status").returncode == 3
    assert service(root, "stop").returncode == 0  # stopping a stopped service is fine
    assert service(root, "reload").returncode == 7
    log = (root / "log" / "aliasd.log").read_text()
    assert "reload done" in log and "Traceback" not in log


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def test_workers_of_the_daemon_stay_up(install):
    """twistd daemonizes (forks) after the service is made: its workers
    must know the daemon, not the process that started it, as their parent
    (they took the daemon for a dead parent and left at once, over and
    over, so the init script's service never had a worker)."""
    root, port = install
    config = root / "etc" / "aliasd.toml"
    config.write_text(config.read_text().replace("[server]\n", "[server]\nworkers = 2\n"))
    assert service(root, "start").returncode == 0
    pid = int((root / "run" / "aliasd.pid").read_text())
    log = root / "log" / "aliasd.log"
    deadline = time.monotonic() + 15
    while len(children(pid)) < 2 or "workers answer UDP and TCP queries" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    first = children(pid)
    for _ in range(50):  # fresh source ports: both workers' sockets
        assert ask(port).answer[0][0].address == "192.0.2.80"
    time.sleep(2)
    assert children(pid) == first and len(first) == 2
    assert "died" not in log.read_text(), log.read_text()
    assert service(root, "stop").returncode == 0
    assert not any(Path(f"/proc/{p}").exists() for p in first | {pid})


def test_dead_process_with_pid_file_and_bad_usage(install):
    root, _ = install
    (root / "run").mkdir()
    (root / "run" / "aliasd.pid").write_text("999999\n")
    assert service(root, "status").returncode == 1
    assert service(root, "bogus").returncode == 2


def test_missing_configuration_is_not_configured(install):
    root, _ = install
    (root / "etc" / "aliasd.toml").unlink()
    assert service(root, "start").returncode == 6
