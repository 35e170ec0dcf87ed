"""The user's own loop on a fleet: a kill and a gradient flip, exact against examples/mlp.py
run alone with phalanx.Trainer (issue 18)."""

import pytest

from tests.fleet_helpers import (
    ROOT,
    events,
    independent_data_check,
    local_run,
    max_param_diff,
    phalanx,
)

pytestmark = [pytest.mark.dist, pytest.mark.timeout(400)]

ARGS = ["--dtype", "float64", "--steps", "30", "--batch", "48", "--samples", "500", "--repeat", "2",
        "--checkpoint-every", "10"]  # fmt: skip


def test_own_loop_fleet_survives_a_kill_and_a_flip_exactly(tmp_path):
    reference = local_run(ROOT / "examples" / "mlp.py", tmp_path / "reference", ARGS)
    run = tmp_path / "run"
    result = phalanx(
        "run", str(ROOT / "examples" / "own_loop.py"), "--out", str(run), "--emulate", "1,0.5,0.25",
        "--timeout-s", "2", "--quiet", "--fault", "kill:replica=1,step=12,restart_s=0",
        "--fault", "sdc:replica=0,step=20,target=grad", "--", *ARGS,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    seen = events(run)
    assert any(e["kind"] == "worker_restart" for e in seen)  # at once: the rest is short
    # The flip is caught: the vetoed slice is recomputed through the user's loop body.
    assert any(e["kind"] == "sdc" and e["replica"] == "r0" and e["step"] == 20 for e in seen)
    assert max_param_diff(run, reference) < 1e-9
    assert independent_data_check(run, num_samples=500) == (0, 0)
