"""`phalanx sites` stopped by Ctrl-C or SIGTERM: every site stops, nothing is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.launch.process_tree import descendants
from phalanx.observe.events import read_events
from tests.fleet_helpers import MLP, kill_tree, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _trained(run_dir: Path) -> bool:
    events = run_dir / "events.jsonl"
    return events.exists() and '"kind":"step"' in events.read_text()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 75)])
def test_a_signal_stops_every_site(tmp_path, signum, code):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "phalanx", "sites", "--site", "a=0.05", "--site", "b=0.05,0.05"]
    argv += ["--outer-every", "5", "--out", str(out), "--quiet", str(MLP), "--", "--steps", "5000"]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # kill_tree, should the test fail
        # A Ctrl-C reaches a foreground program with SIGINT's default action.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(lambda: _trained(out / "a") and _trained(out / "b"), 200, "both sites training")
        family = descendants(process.pid)
        assert len(family) >= 7  # outer lighthouse, per site a launcher, its lighthouse, workers
        os.kill(process.pid, signum)
        _, err = process.communicate(timeout=120)
        assert process.returncode == code, err
        alive = [pid for pid in family if Path(f"/proc/{pid}").exists()]
        wait_for(lambda: not [p for p in alive if _running(p)], 30, f"no orphans of {alive}")
        assert (out / "sites_summary.json").exists()
        if signum == signal.SIGTERM:
            # Every replica left at a step boundary with its checkpoint, none killed at
            # the end of the grace: one waiting for its outer round's quorum (for a site
            # that had already left) stops waiting.
            for site, replicas in (("a", {"r0"}), ("b", {"r0", "r1"})):
                log = read_events(out / site)
                assert {e["replica"] for e in log if e["kind"] == "preempted"} == replicas
                codes = {e["replica"]: e["code"] for e in log if e["kind"] == "worker_exit"}
                assert codes == dict.fromkeys(replicas, 75), codes
    finally:
        kill_tree(process)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie is gone, waiting to be reaped
