"""Two replicas, one flipped weight, no checkpoint yet: the vetoes settle the tie (chaos 145)."""

import pytest

from tests.fleet_helpers import (
    EXACT_ARGS,
    MLP,
    events,
    independent_data_check,
    max_param_diff,
    phalanx,
)

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]


def test_a_weight_flip_between_two_replicas_before_any_checkpoint_is_healed(
    tmp_path, reference_run
):
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", "0.05x2", "--timeout-s", "2",
        "--quiet", "--fault", "sdc:replica=0,step=4,target=weight", "--", *EXACT_ARGS,
    )  # fmt: skip
    # Before: no fingerprint majority, no checkpoint to return to, the run gave up (exit 1).
    assert result.returncode == 0, result.stdout + result.stderr
    assert max_param_diff(run, reference_run) < 1e-9
    assert independent_data_check(run, num_samples=500) == (0, 0)
    run_events = events(run)
    detections = [e for e in run_events if e["kind"] == "sdc"]
    blamed = {(e["check"], e.get("replica"), e["step"], e.get("attribution")) for e in detections}
    # r0's flipped weight made its gradient non-finite; its rerun agreed, r1's did not.
    assert ("gradient_veto", "r0", 4, "chip") in blamed
    assert not any(e.get("replica") == "r1" for e in detections)
    assert not any(e["kind"] in ("tie_restore", "quarantine") for e in run_events)
    heals = [e for e in run_events if e["kind"] == "heal" and e["replica"] == "r0"]
    assert heals and heals[0]["step"] == 5  # r0 did not commit step 4: it healed from r1
