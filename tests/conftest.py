"""Shared fixtures: a controllable upstream and real aliasd processes."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from twisted.internet import task
from twisted.logger import globalLogPublisher

from tests.aliasd_process import AliasdProcess, free_port
from tests.upstream import UpstreamServer


@pytest.fixture
def clock():
    """A fake reactor clock for timing tests."""
    return task.Clock()


@pytest.fixture
def log_events():
    """Every event logged through twisted.logger during the test."""
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


@pytest.fixture
def upstream():
    server = UpstreamServer()
    yield server
    server.close()


@pytest.fixture
def aliasd(tmp_path):
    """Factory: ``aliasd(config_text, zones={name: text})`` starts a process."""
    started: list[AliasdProcess] = []

    def start(config: str = "", zones: dict[str, str] | None = None, args=(), port=None, server: str = "",
              host: str = "127.0.0.1"):
        """Write the configuration (``server`` adds keys to [server]) and start."""
        port = port or free_port()
        for filename, text in (zones or {}).items():
            (tmp_path / filename).write_text(textwrap.dedent(text))
        conf = tmp_path / "aliasd.toml"
        conf.write_text(
            textwrap.dedent(
                f"""\
                [server]
                listen = ["127.0.0.1", "::1"]
                port = {port}
                state-dir = "state"
                """
            )
            + textwrap.dedent(server)
            + textwrap.dedent(config)
        )
        process = AliasdProcess(["--config", str(conf), *args], tmp_path, port, host)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


def need(program: str) -> str:
    path = shutil.which(program) or (
        f"/usr/sbin/{program}" if Path(f"/usr/sbin/{program}").exists() else None
    )
    if path is None:
        pytest.fail(f"{program} is not installed; .ci/run installs it")
    return path
