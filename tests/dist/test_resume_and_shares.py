"""Whole-fleet loss with --resume, and shares that follow the chips' speeds."""

import statistics
import subprocess
import sys

import pytest

from tests.fleet_helpers import (
    EXACT_ARGS,
    GPT,
    MLP,
    SLOW_FLEET,
    events,
    kill_tree,
    max_param_diff,
    phalanx,
    summary,
    wait_for,
)

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]


def test_whole_fleet_killed_then_resume_gives_the_same_model(tmp_path, reference_run):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "phalanx", "run", str(MLP), "--out", str(run), "--emulate", SLOW_FLEET,
               "--quiet", "--", *EXACT_ARGS]
    launcher = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(
            lambda: (run / "events.jsonl").exists()
            and any(e["kind"] == "checkpoint" and e["step"] >= 30 for e in events(run)),
            timeout_s=180,
            what="a checkpoint at step 30",
        )
    finally:
        kill_tree(launcher)  # the launcher dies; its workers die with it (PDEATHSIG)
    interrupted_at = max(e["step"] for e in events(run) if e["kind"] == "step")
    assert interrupted_at < 99

    again = phalanx("run", str(MLP), "--out", str(run), "--emulate", SLOW_FLEET, "--quiet", "--", *EXACT_ARGS)
    assert again.returncode == 2
    assert "--resume" in again.stderr and "Traceback" not in again.stderr

    resumed = phalanx("run", str(MLP), "--out", str(run), "--emulate", SLOW_FLEET, "--quiet", "--resume",
                      "--", *EXACT_ARGS)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert max_param_diff(run, reference_run) < 1e-9
    starts = [e for e in events(run) if e["kind"] == "resume"]
    assert starts and all(e["step"] >= 30 for e in starts)  # it did not start over from 0
    assert summary(run)["completed"]


def test_shares_follow_speed_after_warm_up(tmp_path):
    run = tmp_path / "run"
    # The ratios of 1,0.5,0.25x2, but every chip slower than the host: an emulated chip pads
    # its compute to CPU time / speed, so a speed-1 chip has no slack and a busy host
    # (2 cores, other jobs) makes it measure slower than emulated. Together these chips
    # need under one core while they compute.
    result = phalanx("run", str(GPT), "--out", str(run), "--emulate", "0.4,0.2,0.1x2", "--quiet",
                     "--", "--steps", "30", "--batch", "256", "--out", str(run))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    records = {}
    for event in events(run):
        if event["kind"] == "step":
            records.setdefault(event["step"], event)
    late = [
        dict(zip(records[s]["participants"], records[s]["shares"], strict=True))
        for s in sorted(records)[-10:]
    ]
    means = {name: statistics.mean(r.get(name, 0) for r in late) for name in ("r0", "r1", "r2", "r3")}
    # Shares come from measured step times, which carry this machine's noise: two
    # clean-clone CI runs of this session gave 134-145, 64-68, 23-30 and 24-30
    # (ratios 128, 64, 32, 32), the slow chips measuring slower than emulated on a
    # loaded host. So the test asks what does not depend on the noise: shares ordered
    # by speed, and each halving of speed at least a 1.5x smaller share (equal shares
    # would give 1.0x; the exact ratio 2.0x).
    slow = min(means["r2"], means["r3"])
    assert means["r0"] > means["r1"] > max(means["r2"], means["r3"]), means
    assert means["r0"] >= 1.5 * means["r1"] and means["r1"] >= 1.5 * slow, means
    assert abs(means["r2"] - means["r3"]) <= 0.35 * max(means["r2"], means["r3"]), means


def test_a_chip_slowed_past_the_collective_timeout_gets_a_share_that_fits(tmp_path, reference_run):
    """Chaos bug 16: a chip slowed 100x mid-run made every attempt of a step time out.

    Shares were learnt from committed steps only, so the same shares failed forever.
    Now a failed commit makes a new quorum, whose members exchange their last measured
    rates: the slowed chip's share is cut to what it computes within the timeout.
    """
    run = tmp_path / "run"
    # 500x slower: a 16-sample share takes ~13 s, far past the 3 s timeout on any host.
    # (100x took ~2.7 s: on a quiet host the step committed slowly, no attempt failed,
    # and the test failed 2 of 6 runs under load for want of the cut it checks.)
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", "0.05x3", "--quiet",
        "--timeout-s", "3", "--fault", "slow:replica=2,step=30,speed=0.0001",
        "--", *EXACT_ARGS,
        timeout_s=280,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert max_param_diff(run, reference_run) < 1e-9
    log = events(run)
    slowed = [e for e in log if e["kind"] == "slowdown"]
    assert slowed and all(e["replica"] == "r2" and e["step"] >= 30 for e in slowed)
    assert slowed[0]["measured_sps"] < 0.5 * slowed[0]["learnt_sps"]
    # Before the fix every later attempt failed; now the step after the cut commits. A
    # loaded host can time out a few more collectives, never a run of them.
    retried = [e for e in log if e["kind"] == "retry" and e["replica"] == "r0" and e["step"] >= 30]
    assert len(retried) <= 6, [(e["step"], e["reason"]) for e in retried]
    # From the cut on, r2's share fits the timeout: 0 or a few samples, never its old share.
    late = [e for e in log if e["kind"] == "step" and e["replica"] == "r0" and e["step"] >= 40]
    assert late and all(e["shares"][e["participants"].index("r2")] <= 2 for e in late if "r2" in e["participants"])
