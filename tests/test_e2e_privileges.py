"""Start as root, bind the privileged ports, run as an unprivileged user.

The daemon binds port 53 (UDP and TCP) and 853 (TLS) as root, then twistd
drops to ``nobody:nogroup`` before any service starts. Port 53 is not ours
to take on the test machine, so the daemon runs in a network namespace the
test creates (``unshare --net``, its own loopback), and the test's clients
enter it with ``nsenter``. A state directory that user cannot write stops
start-up with an error that says which directory, which user and what to do.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.aliasd_process import TWISTD, free_port, run_twistd
from tests.certs import SERVER_NAME, Authority

pytestmark = pytest.mark.e2e

ZONE = "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 h 5 3600 600 86400 60\n@ NS ns1\nwww A 192.0.2.80\n"

#: A DNS-over-TLS query run inside the namespace: prints the answer's address.
TLS_CLIENT = textwrap.dedent(
    """\
    import socket, ssl, struct, sys
    import dns.message
    ctx = ssl.create_default_context(cafile=sys.argv[1])
    ctx.set_alpn_protocols(["dot"])
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", 853), timeout=5), server_hostname=sys.argv[2]) as s:
        wire = dns.message.make_query("www.example.com", "A").to_wire()
        s.sendall(struct.pack("!H", len(wire)) + wire)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
            data += s.recv(4096)
        print(dns.message.from_wire(data[2:]).answer[0][0].address, s.version())
    """
)


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: these tests are about starting as root and dropping privileges")


def need_namespaces() -> None:
    for program in ("unshare", "nsenter", "ip", "dig"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not installed; .ci/run installs it")
    probe = subprocess.run(["unshare", "--net", "--", "true"], capture_output=True, text=True)
    if probe.returncode != 0:  # a container without CAP_SYS_ADMIN
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.strip()}")


@pytest.fixture
def tree():
    """A temporary tree the unprivileged user can traverse; state owned by it."""
    root = Path(tempfile.mkdtemp(prefix="aliasd-priv-", dir="/tmp"))
    root.chmod(0o755)
    (root / "example.com.zone").write_text(ZONE)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def proc_ids(pid: int) -> tuple[list[int], list[int]]:
    """(real, effective, saved, fs uids), (the same gids) of a process."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = [int(v) for v in value.split()] if key in ("Uid", "Gid") else value
    return fields["Uid"], fields["Gid"]


def start_as_nobody(tree: Path, config: str) -> tuple[subprocess.Popen, list[str], Path]:
    """twistd aliasd started as root in a network namespace of its own, with
    ``--uid nobody --gid nogroup``: (the process, the ``nsenter`` prefix that
    runs a command in its namespace, its log file)."""
    (tree / "aliasd.toml").write_text(config)
    log = tree / "aliasd.log"
    command = (
        f"ip link set lo up && exec {TWISTD} -n --pidfile= --logfile={log} "
        f"--uid nobody --gid nogroup aliasd --config {tree / 'aliasd.toml'}"
    )
    proc = subprocess.Popen(["unshare", "--net", "--", "sh", "-c", command], cwd=tree)
    return proc, ["nsenter", f"--net=/proc/{proc.pid}/ns/net", "--"], log


def dig_53(netns: list[str], *args: str) -> str:
    """www.example.com A asked at port 53 in the namespace: the short answer."""
    return subprocess.run([*netns, "dig", *args, "-p", "53", "+short", "www.example.com", "A"],
                          capture_output=True, text=True, timeout=10).stdout.strip()


def wait_answering_53(proc: subprocess.Popen, netns: list[str], log: Path) -> None:
    deadline = time.monotonic() + 20
    answer = ""
    while time.monotonic() < deadline and proc.poll() is None:
        answer = dig_53(netns, "@127.0.0.1", "+tries=1", "+time=1")
        if answer == "192.0.2.80":
            break
        time.sleep(0.2)
    assert answer == "192.0.2.80", log.read_text() if log.exists() else proc.poll()


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_binds_53_and_853_as_root_then_runs_as_nobody(tree):
    need_root()
    need_namespaces()
    nobody = pwd.getpwnam("nobody")
    state = tree / "state"
    state.mkdir()
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    certs = Authority(tree / "pki")
    cert, key = certs.server()
    key.chmod(0o600)  # readable by root only: read before privileges are dropped
    proc, netns, log = start_as_nobody(tree, textwrap.dedent(
        f"""\
        [server]
        listen = ["127.0.0.1", "::1"]
        port = 53
        state-dir = "state"
        [tls]
        port = 853
        certificate = "{cert}"
        key = "{key}"
        [zones."example.com"]
        file = "example.com.zone"
        """
    ))
    try:
        wait_answering_53(proc, netns, log)
        uids, gids = proc_ids(proc.pid)
        assert uids == [nobody.pw_uid] * 4 and gids == [nobody.pw_gid] * 4, (uids, gids)
        for transport in ("+tcp", "+notcp"):
            for server in ("@127.0.0.1", "@::1"):
                assert dig_53(netns, server, transport) == "192.0.2.80", (server, transport)
        tls = subprocess.run(
            [*netns, sys.executable, "-c", TLS_CLIENT, str(certs.ca_file), SERVER_NAME],
            capture_output=True, text=True, timeout=20,
        )
        assert tls.stdout.split() == ["192.0.2.80", "TLSv1.3"], tls.stderr
        # The daemon, now nobody, wrote its state there.
        written = list((state / "aliasd.lmdb").iterdir())
        assert written and all(p.stat().st_uid == nobody.pw_uid for p in written), [
            (p.name, p.stat().st_uid) for p in written]
        # The control socket too, and only it may use it (root may anyway).
        sock = state / "control.sock"
        assert sock.stat().st_uid == nobody.pw_uid and stat.S_IMODE(sock.stat().st_mode) == 0o600
        ctl = subprocess.run([sys.executable, "-m", "aliasd.service.ctl", "--socket", str(sock), "status"],
                             check=False, capture_output=True, text=True, timeout=30)
        assert ctl.returncode == 0 and "1 zone(s) served" in ctl.stdout, ctl.stderr
        text = log.read_text()
        assert "set uid/gid 65534/65534" in text or f"set uid/gid {nobody.pw_uid}/{nobody.pw_gid}" in text
        assert "DNS on 127.0.0.1, ::1 port 53, TLS on 127.0.0.1, ::1 port 853" in text
    finally:
        stop(proc)


def test_state_directory_the_user_cannot_write_stops_start_up(tree):
    need_root()
    state = tree / "state"
    state.mkdir(mode=0o755)  # owned by root: nobody cannot write it
    result = run_twistd(
        ["--zone", f"example.com={tree / 'example.com.zone'}", "--port", str(free_port()),
         "--state-dir", str(state)],
        tree,
        uid_args=["--uid", "nobody", "--gid", "nogroup"],
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"state directory {state} is not writable by user nobody" in output, output
    assert "owned by root:root, mode 0755" in output
    assert "chown" in output
