"""SIGTERM as a scheduler sends it: checkpoint at a step boundary, exit 75, --resume exact."""

import os
import signal
import subprocess
import sys

import pytest

from tests.fleet_helpers import (
    EXACT_ARGS,
    MLP,
    SLOW_FLEET,
    events,
    independent_data_check,
    kill_tree,
    max_param_diff,
    phalanx,
    summary,
    wait_for,
)

pytestmark = [pytest.mark.dist, pytest.mark.timeout(400)]

EXIT_PREEMPTED = 75  # sysexits' EX_TEMPFAIL: the code a requeue rule matches


@pytest.mark.parametrize("who", ["launcher", "every_process"])
def test_sigterm_checkpoints_the_newest_step_and_resume_is_exact(tmp_path, reference_run, who):
    """`launcher`: Kubernetes signals the container's first process; `every_process`: Slurm
    signals every process of the job step at once, workers included."""
    run = tmp_path / "run"
    flags = ["--out", str(run), "--emulate", SLOW_FLEET, "--timeout-s", "2", "--quiet"]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "phalanx", "run", str(MLP), *flags, "--", *EXACT_ARGS],
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Past step 13: the newest periodic checkpoint (every 10) is older than the fleet.
        wait_for(
            lambda: (run / "events.jsonl").exists()
            and any(e["kind"] == "step" and e["step"] >= 13 for e in events(run)),
            timeout_s=240,
            what="step 13",
        )
        targets = [launcher.pid]
        if who == "every_process":
            targets += [e["pid"] for e in events(run) if e["kind"] == "worker_start"]
        for pid in targets:
            os.kill(pid, signal.SIGTERM)
        out, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            kill_tree(launcher)
    assert launcher.returncode == EXIT_PREEMPTED, out + err
    assert "pre-empted (SIGTERM)" in err and "--resume" in err and "Traceback" not in err, err
    stopped = [e for e in events(run) if e["kind"] == "preempted"]
    last_step = max(e["step"] for e in events(run) if e["kind"] == "step") + 1
    assert stopped and max(e["step"] for e in stopped) == last_step < 100
    # The first member of each replica's last quorum writes it: once per step (replicas
    # that got the signal a step apart each leave at their own boundary).
    saved = sorted(e["step"] for e in stopped if e["checkpoint"])
    assert saved and saved[-1] == last_step and len(set(saved)) == len(saved), stopped
    # Nothing was restarted after the signal: every replica left at a step boundary.
    assert not [e for e in events(run) if e["kind"] == "worker_restart"]

    resumed = phalanx("run", str(MLP), *flags, "--resume", "--", *EXACT_ARGS)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [e["step"] for e in events(run) if e["kind"] == "resume"][0] == last_step
    assert max_param_diff(run, reference_run) < 1e-9
    info = summary(run)
    assert info["completed"] and info["data"]["duplicates"] == info["data"]["missing"] == 0
    assert independent_data_check(run, num_samples=500) == (0, 0)
