"""The outer lighthouse: started on a port the OS picks, reachable at its address, shut down."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from phalanx.errors import UsageError
from phalanx.sites.outer_lighthouse import (
    OuterLighthouseProcess,
    outer_lighthouse_settings,
    start_outer_lighthouse,
)

pytestmark = pytest.mark.timeout(120)


def _accepts(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("bind", ["[::]:0", "127.0.0.1:0"])
def test_start_address_shutdown(bind):
    server = start_outer_lighthouse(sites=3, bind=bind)
    try:
        host, _, port = server.address.rpartition(":")
        assert host == "127.0.0.1" and int(port) == server.port > 0  # HOST:PORT, no scheme
        assert _accepts(server.address)
        assert server.settings.min_replicas == 2  # a majority of 3 sites
    finally:
        server.shutdown()


def test_settings_follow_the_sites_and_timeouts():
    settings = outer_lighthouse_settings(4, join_timeout_s=30, heartbeat_timeout_s=2.5)
    assert (settings.bind_host, settings.port) == ("[::]", 0)
    assert settings.min_replicas == 3
    assert (settings.join_timeout_ms, settings.heartbeat_timeout_ms) == (30_000, 2500)
    default = outer_lighthouse_settings(2)
    assert (default.join_timeout_ms, default.heartbeat_timeout_ms) == (60_000, 5000)


@pytest.mark.parametrize(
    ("args", "field"),
    [((0,), "--sites"), ((2, "nowhere"), "--bind"), ((2, "[::]:0", 0.0), "--join-timeout-s")],
)
def test_bad_settings_are_one_line(args, field):
    with pytest.raises(UsageError) as err:
        outer_lighthouse_settings(*args)
    assert err.value.field == field


def test_as_a_child_process(tmp_path):
    log = tmp_path / "outer.log"
    server = OuterLighthouseProcess(outer_lighthouse_settings(2, bind="127.0.0.1:0"), log)
    try:
        assert server.alive and _accepts(server.address)
    finally:
        server.shutdown()
    assert not server.alive
    assert log.exists()  # its chatty log goes to the file, not the terminal


def test_foreground_refuses_bad_input_in_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.sites.outer_lighthouse", "--sites", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: --sites:") and "Traceback" not in done.stderr
