"""The twistd plugin is found both in an editable and in a normal install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.aliasd_process import REPO, TWISTD

FIND_PLUGIN = """
import aliasd
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
import twisted.plugins
makers = [p for p in getPlugins(IServiceMaker) if p.tapname == "aliasd"]
print(len(makers), makers[0].module, aliasd.__file__)
"""


def test_twistd_lists_aliasd_in_this_install():
    out = subprocess.run([TWISTD, "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "aliasd" in out


def test_normal_install_ships_the_plugin_file(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    assert (target / "twisted" / "plugins" / "aliasd_plugin.py").exists()
    assert (target / "bin" / "aliasd-check").exists()  # the console script
    assert not (target / "twisted" / "__init__.py").exists()  # never shadow Twisted
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run(
        [sys.executable, "-c", FIND_PLUGIN], env=env, cwd=tmp_path,
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()
    assert out[0] == "1" and out[1] == "aliasd.tap"
    assert Path(out[2]).is_relative_to(target)
