"""Runs `outer_rounds_script.py` replicas against a real outer lighthouse, for the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phalanx.launch.lighthouse import Lighthouse, LighthouseSettings
from phalanx.sites.outer_link import outer_quorum_size
from tests.dist import outer_rounds_script as script

SCRIPT = Path(script.__file__)
ROOT = SCRIPT.parents[2]


def run_replicas(replicas: list[tuple[str, str, list[str]]], out: Path) -> None:
    """Each (site, replica, options) as a process of its own, two sites; all must exit 0."""
    lighthouse = Lighthouse(
        LighthouseSettings(min_replicas=outer_quorum_size(2), heartbeat_timeout_ms=1000)
    )
    processes = {}
    try:
        for site, replica, options in replicas:
            with (out / f"{site}-{replica}.log").open("ab") as log:  # the child holds its own
                processes[(site, replica)] = subprocess.Popen(
                    [sys.executable, str(SCRIPT), site, replica, lighthouse.address, str(out),
                     *options],
                    cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    env={**os.environ, "PYTHONPATH": f"{ROOT}/src:{ROOT}"},
                )  # fmt: skip
        deadline = time.monotonic() + 150
        while any(p.poll() is None for p in processes.values()):
            if time.monotonic() > deadline:
                logs = {k: (out / f"{k[0]}-{k[1]}.log").read_text()[-1500:] for k in processes}
                pytest.fail(f"the replicas did not finish: {logs}")
            time.sleep(0.1)  # polling the processes, with a deadline
        assert {k: p.returncode for k, p in processes.items()} == {k: 0 for k in processes}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
        lighthouse.shutdown()


def replica_events(out: Path, site: str, replica: str) -> list[dict]:
    lines = (out / f"{site}-{replica}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]
