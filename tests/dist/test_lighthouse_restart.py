"""The lighthouse killed mid-run: replicas pause, the launcher restarts it, the math stays exact."""

import pytest

from tests.fleet_helpers import (
    EXACT_ARGS,
    EXACT_STEPS,
    MLP,
    events,
    independent_data_check,
    max_param_diff,
    phalanx,
    step_losses,
    summary,
)

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]
KILL_AT = 30
# Four equal slow chips. With SLOW_FLEET, late in the run the 0.025 chip got 2 of 48
# samples, and the gradient guard quarantined it, healthy, for the heavy tail of 2-sample
# gradients (an open guard bug, not this test's subject; see the session note).
EVEN_FLEET = "0.025x4"


def test_lighthouse_killed_mid_run_training_completes_exact(tmp_path, reference_run):
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", EVEN_FLEET, "--timeout-s", "2",
        # restart_s=1: down for a second, so replicas really find no lighthouse for a while
        "--fault", f"lighthouse:step={KILL_AT},restart_s=1",
        "--", *EXACT_ARGS,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    # Exact: the same parameters and losses as one process, every sample once.
    assert max_param_diff(run, reference_run) < 1e-9
    fleet, local = step_losses(run), step_losses(reference_run)
    assert sorted(fleet) == list(range(EXACT_STEPS))
    assert max(abs(fleet[s] - local[s]) for s in local) < 1e-9
    assert independent_data_check(run, num_samples=500) == (0, 0)

    info = summary(run)
    assert info["completed"] and info["faults"]["survived"] == 1
    (restart,) = info["lighthouse_restarts"]
    assert restart["cause"] == "injected" and restart["at_step"] >= KILL_AT
    assert restart["down_s"] >= 1.0  # restart_s=1 was honoured
    # causality, not speed: no step can follow a quorum before the new lighthouse is up
    assert restart["pause_s"] is not None and restart["pause_s"] >= restart["down_s"] - 0.01
    print(
        f"\nlighthouse down {restart['down_s']:.2f} s; training paused {restart['pause_s']:.2f} s"
    )
    # ... and the console summary says so.
    assert (
        f"training paused {restart['pause_s']:.1f}s at step {restart['at_step']}" in result.stdout
    )

    all_events = events(run)
    # Nobody died of it: replicas waited for the new lighthouse instead of crashing.
    assert not [
        e for e in all_events if e["kind"] in ("worker_exit", "worker_restart") and e.get("code")
    ]
    # The launcher said so as it happened (an event, and a line on its console).
    (recovered,) = [e for e in all_events if e["kind"] == "lighthouse_recovered"]
    assert recovered["pause_s"] == pytest.approx(restart["pause_s"], abs=0.05)  # same measure
    assert "lighthouse lost (injected)" in result.stdout
    assert "training goes on at step" in result.stdout
    restart_t = next(e["t"] for e in all_events if e["kind"] == "lighthouse_restart")
    steps_after = [e for e in all_events if e["kind"] == "step" and e["t"] > restart_t]
    assert len({e["replica"] for e in steps_after}) >= 2  # the fleet trained on, not one survivor
    # Quorum ids restart at 1 on a new lighthouse; ours carry its incarnation, so torchft
    # rebuilt the process group under a store prefix no earlier quorum used.
    logs = [(run / "logs" / f"r{i}.log").read_text(errors="replace") for i in range(4)]
    assert sum("from a restarted lighthouse" in log for log in logs) >= 2
