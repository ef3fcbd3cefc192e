"""The twistd plugin is found both in an editable and in a normal install."""

from __future__ import annotations

import os
import shutil
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

#: What a build leaves in the tree it runs in; never copied, never left in the checkout.
BUILD_LEFTOVERS = ("build", "dist", "*.egg-info")


def _leftovers(tree: Path) -> set[str]:
    return {p.name for pattern in BUILD_LEFTOVERS for p in tree.glob(pattern)}


def test_twistd_lists_aliasd_in_this_install():
    out = subprocess.run([TWISTD, "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "aliasd" in out


def test_normal_install_ships_the_plugin_file(tmp_path):
    before = _leftovers(REPO)
    # setuptools builds in the source tree (build/, aliasd.egg-info): build
    # from a copy, so that the checkout stays as it is.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".pytest_cache", ".hypothesis", "__pycache__", "dropin.cache",
        "var", *BUILD_LEFTOVERS,
    ))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    assert _leftovers(REPO) <= before  # nothing built in the checkout
    assert (target / "twisted" / "plugins" / "aliasd_plugin.py").exists()
    assert (target / "bin" / "aliasd-check").exists()  # the console script
    assert not (target / "twisted" / "__init__.py").exists()  # never shadow Twisted
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run(
        [sys.executable, "-c", FIND_PLUGIN], env=env, cwd=tmp_path,
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()
    assert out[0] == "1" and out[1] == "aliasd.service.tap"
    assert Path(out[2]).is_relative_to(target)
