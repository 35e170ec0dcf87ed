"""Survivors of a kill or a freeze go on at once: nobody sits out the collective timeout."""

import os

import pytest

from tests.fleet_helpers import (
    EXACT_ARGS,
    MLP,
    SLOW_FLEET,
    events,
    local_run,
    max_param_diff,
    phalanx,
    summary,
)

pytestmark = [pytest.mark.dist, pytest.mark.timeout(240)]


SHORT = ["--dtype", "float64", "--steps", "8", "--batch", "32", "--samples", "256"]


def _run_with(tmp_path, fault: str) -> list[dict]:
    """Four equal replicas under a 60 s collective timeout, one fault; the run's events."""
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", "0.05x4", "--timeout-s", "60",
        "--quiet", "--fault", fault, "--", *SHORT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary(run)["completed"]
    return events(run)


def _participants(all_events: list[dict], step: int) -> set[tuple[str, ...]]:
    return {tuple(e["participants"]) for e in all_events if e["kind"] == "step" and e["step"] == step}


def test_survivors_of_a_kill_go_on_without_waiting_out_the_timeout(tmp_path):
    # Four replicas in gloo's ring: r1 dies while the others reduce. r0 and r2 talk to
    # r1 and fail at once; r3 waits for r2, which is alive, so r3 would wait out the
    # whole collective timeout (60 s here) and the lighthouse, waiting for every live
    # replica, would form no quorum meanwhile. The survivors must commit the step
    # without r1, long before r1 comes back (restart_s=8, then seconds of start-up).
    all_events = _run_with(tmp_path, "kill:replica=1,step=3,restart_s=8,phase=compute")
    assert _participants(all_events, 3) == {("r0", "r2", "r3")}


# Step 6, not earlier: a survivor knows where its peers listen from a page it reads in
# the background once a quorum forms (runtime/gone_peers.py). These steps take ~50 ms,
# and on a busy host a kill at step 3 (0.15 s after the first quorum) once came before
# every survivor's read had ended: none could probe, and all waited for the lighthouse
# (correct, but not what these tests are about). A real step is far longer than that.
KILL_STEP = 6
KILL_AT_COMPUTE = f"kill:replica=1,step={KILL_STEP},restart_s=1,phase=compute"


def _exact_run_with(tmp_path, steps: int, *faults: str) -> list[dict]:
    """Four equal float64 replicas under `faults`, exactly the one-process run; its events."""
    args = ["--dtype", "float64", "--steps", str(steps), "--batch", "32", "--samples", "256"]
    reference = local_run(MLP, tmp_path / "reference", args)
    run = tmp_path / "run"
    fault_args = [arg for fault in faults for arg in ("--fault", fault)]
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", "0.25x4", "--timeout-s", "60",
        "--quiet", *fault_args, "--", *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert max_param_diff(run, reference) < 1e-9
    assert summary(run)["data"]["duplicates"] == 0
    return events(run)


def _speculated_quorums(all_events: list[dict], step: int) -> list[dict]:
    return [e for e in all_events if e["kind"] == "quorum" and e["step"] == step and e["speculated"]]


def test_survivors_of_a_kill_compute_its_step_while_the_lighthouse_decides_and_stay_exact(
    tmp_path,
):
    # r1 dies as step 6's compute begins. If its request for step 6's quorum left
    # before, the quorum has r1 and the others' first sum fails; if not, the others
    # wait at their first sum for a quorum the lighthouse forms only after r1's
    # heartbeat timeout. Either way r1's port refuses meanwhile, so the survivors
    # compute step 6 on themselves right away (runtime/gone_peers.py, sync_fleet.py);
    # the quorum that forms is theirs, and the result is exactly the one-process
    # run's. (A kill in `allreduce` may land after the sum completed: then step 6 is
    # an ordinary step of all four.) r1 comes back and heals.
    all_events = _exact_run_with(tmp_path, 24, KILL_AT_COMPUTE)
    assert _participants(all_events, KILL_STEP) == {("r0", "r2", "r3")}
    # Each survivor that saw the refusal in time speculated (a busy host may make one
    # late: it then waits for the quorum, as before); the three never all miss it.
    speculated = _speculated_quorums(all_events, KILL_STEP)
    assert any(q["participants"] == ["r0", "r2", "r3"] for q in speculated), all_events


def test_survivors_that_speculated_compute_again_when_a_peer_slowed_down_and_stay_exact(
    tmp_path,
):
    # As above, and r2 slows to a quarter of its speed in the same step. The survivors
    # that computed step 6 on the old shares learn r2's rate only at the rate exchange
    # (which they issue after their slice): its share is cut, so they compute again on
    # the shares everyone derives. Different shares at a sum would stop the run (plan
    # check); the result is exactly the one-process run's.
    all_events = _exact_run_with(
        tmp_path, 14, KILL_AT_COMPUTE, f"slow:replica=2,step={KILL_STEP},speed=0.06"
    )
    steps = [e for e in all_events if e["kind"] == "step" and e["step"] == KILL_STEP]
    assert {tuple(e["participants"]) for e in steps} == {("r0", "r2", "r3")}
    shares = {tuple(e["shares"]) for e in steps}
    assert len(shares) == 1
    r0_share, r2_share, _ = shares.pop()
    assert r2_share < r0_share  # cut to what r2 computes at its new speed
    assert _speculated_quorums(all_events, KILL_STEP), all_events
    assert any(e["kind"] == "slowdown" and e["step"] == KILL_STEP for e in all_events)


def test_survivors_of_a_freeze_go_on_without_waiting_for_it(tmp_path):
    # r2 freezes (SIGSTOP) in the middle of step 3's compute, for 12 s, under a 60 s
    # collective timeout. Its sockets stay open, so gloo alone would hold the others
    # until r2 wakes (and then finish the step with it). Its heartbeats stop, though:
    # the lighthouse gives up on it after 1 s, and the survivors, asking the lighthouse
    # while they wait, fail the attempt and commit step 3 without r2.
    # (r2's request for step 3's quorum may not have left before it froze, on a busy
    # host: then the lighthouse forms the quorum without r2 once its heartbeats stop,
    # the survivors' steady speculation moves onto it, and nothing is retried.)
    all_events = _run_with(tmp_path, "hang:replica=2,step=3,seconds=12,phase=compute")
    assert _participants(all_events, 3) == {("r0", "r1", "r3")}
    reasons = {e["replica"]: e["reason"] for e in all_events if e["kind"] == "retry" and e["step"] == 3}
    if reasons:  # r2 was in step 3's quorum: every survivor gave up on it by heartbeats
        for survivor in ("r0", "r1", "r3"):
            assert reasons.get(survivor, "").startswith("r2 stopped heartbeating"), reasons
    else:  # it was not: each survivor's step 3 went on in the quorum formed without it
        without_r2 = {
            e["replica"]
            for e in all_events
            if e["kind"] == "quorum" and e["step"] == 3 and e["participants"] == ["r0", "r1", "r3"]
        }
        assert without_r2 == {"r0", "r1", "r3"}, all_events


@pytest.mark.parametrize("phase", ["allreduce", "compute"])
def test_a_replica_that_wakes_after_its_peers_went_on_does_not_commit_the_step(tmp_path, phase):
    # r2 freezes for 3 s under a 60 s collective timeout. Its peers give up on it after
    # the lighthouse's heartbeat timeout and commit step 3 without it, but the collective
    # they left is still open in gloo: when r2 wakes it completes, and r2 would commit
    # step 3 a second time. r2 notices it stood still and does not; it heals and trains
    # on. The result is exactly the one-process run's.
    # Frozen in `compute`, r2 may not even be in step 3's quorum: a steady step computes
    # before its quorum is confirmed (runtime/sync_fleet.py), and its request may not
    # have left. Then the peers' quorum forms without it and nothing of theirs is open;
    # r2 wakes to a quorum that moved, and heals. Either way: exact, and no second step 3.
    args = ["--dtype", "float64", "--steps", "40", "--batch", "32", "--samples", "256"]
    reference = local_run(MLP, tmp_path / "reference", args)
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", "0.05x4", "--timeout-s", "60",
        "--quiet", "--fault", f"hang:replica=2,step=3,seconds=3,phase={phase}", "--", *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert max_param_diff(run, reference) < 1e-9
    all_events = events(run)
    committed = _participants(all_events, 3)
    if phase == "compute":  # r2 froze before its first sum: the step went on without it
        assert committed == {("r0", "r1", "r3")}
    elif committed != {("r0", "r1", "r2", "r3")}:
        # Frozen after launching its sum, r2 usually holds the ring up: the peers go on
        # without it, and when r2 wakes its sum completes. It must veto its own commit.
        # (Under load the whole sum can finish before the freeze lands: then step 3 is
        # one ordinary step of all four, which the exactness check above covers.)
        assert committed == {("r0", "r1", "r3")}
        vetoes = [e for e in all_events if e["kind"] == "retry" and e["replica"] == "r2"]
        assert any(e["step"] == 3 and "stood still" in e["reason"] for e in vetoes), vetoes
    assert summary(run)["data"]["duplicates"] == 0


def test_a_killed_replica_restarts_in_a_warm_spare_and_the_math_stays_exact(
    tmp_path, reference_run
):
    # The spare starts importing at the fleet's first step and is handed out at the
    # restart, ready or not. The kill at step 30 of 100 (about 0.09 s a step) leaves the
    # restarted worker about 5 s to rejoin: at step 60 a CI host once needed 2.6 s to
    # start it after the 1 s delay, and the survivors, who no longer wait for the
    # lighthouse, had finished the last 40 steps in 3.5 s.
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", SLOW_FLEET, "--quiet",
        "--fault", "kill:replica=1,step=30,restart_s=1", "--", *EXACT_ARGS,
        env={**os.environ, "PHALANX_WARM_SPARE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    run_events = events(run)
    restarts = [e for e in run_events if e["kind"] == "worker_restart"]
    assert [(e["replica"], e["warm"]) for e in restarts] == [("r1", True)], restarts
    # The restarted worker is a whole worker: it rejoined and trained.
    rejoined = [e for e in run_events if e["kind"] == "step" and e["source"] == "r1"]
    assert rejoined and rejoined[-1]["t"] > restarts[0]["t"]
    assert max_param_diff(run, reference_run) < 1e-9
    assert summary(run)["data"]["duplicates"] == summary(run)["data"]["missing"] == 0
