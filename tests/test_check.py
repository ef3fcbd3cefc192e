"""``aliasd-check``: the real console script on good and broken configurations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.aliasd_process import REPO

CHECK = str(Path(sys.executable).with_name("aliasd-check"))
GOOD = "$ORIGIN example.com.\n@ 300 SOA ns1 h 7 3600 600 86400 60\n@ 300 ALIAS lb.example.net.\nwww 300 A 192.0.2.1\n"


def run(*args, cwd=None):
    return subprocess.run([CHECK, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_bundled_configuration_is_good():
    result = run("--config", str(REPO / "etc" / "aliasd.toml"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("example.com.: serial 2026112601, ") and "2 ALIAS" in lines[0]


def test_every_broken_zone_is_reported_with_file_and_line(tmp_path):
    (tmp_path / "a.zone").write_text(GOOD + "www 300 CNAME x\n")
    (tmp_path / "b.zone").write_text(GOOD.replace("example.com.", "example.org.") + "x 300 A 1.2.3\n")
    (tmp_path / "aliasd.toml").write_text(
        '[zones."example.com"]\nfile = "a.zone"\n[zones."example.org"]\nfile = "b.zone"\n'
    )
    result = run("--config", "aliasd.toml", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines == [
        f"{tmp_path / 'a.zone'}:5: CNAME at www.example.com. beside other data (A)",
        f"{tmp_path / 'b.zone'}:5: A record: '1.2.3' is not an IPv4 address",
    ]


def test_configuration_error_names_the_key(tmp_path):
    (tmp_path / "aliasd.toml").write_text("[resolver]\nmin-refresh = 'soon'\n")
    result = run("--config", str(tmp_path / "aliasd.toml"))
    assert result.returncode == 2  # the configuration: the server would refuse it
    assert result.stdout.strip() == f"{tmp_path / 'aliasd.toml'}: [resolver] min-refresh: expected a number, got 'soon'"


def test_exit_status_tells_broken_zones_from_a_broken_configuration(tmp_path):
    """1: zone files only (the server serves the others); 2: the
    configuration (the server refuses it); the init script relies on it."""
    (tmp_path / "a.zone").write_text(GOOD)
    (tmp_path / "b.zone").write_text(GOOD.replace("example.com.", "example.org.") + "x 300 BOGUS 1\n")
    conf = tmp_path / "aliasd.toml"
    conf.write_text('[zones."example.com"]\nfile = "a.zone"\n')
    assert run("--config", str(conf)).returncode == 0
    conf.write_text(conf.read_text() + '[zones."example.org"]\nfile = "b.zone"\n')
    broken = run("--config", str(conf))
    assert broken.returncode == 1
    assert broken.stdout.strip() == f"{tmp_path / 'b.zone'}:5: unknown record type 'BOGUS'"
    conf.write_text(conf.read_text() + "[server\n")
    assert run("--config", str(conf)).returncode == 2
    conf.write_text("[server]\nport = 5300\n")  # no zones
    assert run("--config", str(conf)).returncode == 2
    # No zones, but the HTTP API to create them: good.
    conf.write_text(conf.read_text() + '[api]\nlisten = ["127.0.0.1:8081"]\nkeys = [{ name = "a", secret = "s" }]\n')
    api_only = run("--config", str(conf))
    assert (api_only.returncode, api_only.stdout) == (0, "")


def test_zones_from_the_command_line_and_loop_warning(tmp_path):
    (tmp_path / "z.zone").write_text(GOOD + "l1 300 ALIAS l2\nl2 300 ALIAS l1\n")
    result = run("--zone", "example.com=z.zone", cwd=tmp_path)
    assert result.returncode == 0
    assert "warning: ALIAS loop, no addresses for l1.example.com., l2.example.com." in result.stdout


def test_python_dash_m_form():
    result = subprocess.run(
        [sys.executable, "-m", "aliasd", "check", "--config", str(REPO / "etc" / "aliasd.toml")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and "cdn.example.net." in result.stdout
