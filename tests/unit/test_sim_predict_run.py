"""predict_run: the step-by-step predictor the calibration bench feeds with real runs."""

from __future__ import annotations

import pytest

from phalanx.errors import UsageError
from phalanx.sim.predict_run import predict_run


def test_no_faults_is_steps_times_the_split() -> None:
    # speeds 3 and 1, batch 8: shares 6 and 2, both busy 2 s; plus 0.1 s sync.
    out = predict_run([3.0, 1.0], 8, 10, sync_s=0.1)
    assert out["wall_s"] == pytest.approx(10 * 2.1)
    assert out["throughput_sps"] == pytest.approx(80 / 21.0)
    # An equal split waits for the slow chip: 4 samples at 1/s.
    assert predict_run([3.0, 1.0], 8, 10, sync_s=0.1, balanced=False)["wall_s"] == pytest.approx(
        41.0
    )


def test_kill_costs_a_stall_and_the_survivors_carry_on() -> None:
    base = predict_run([1.0, 1.0, 1.0], 6, 20, sync_s=0.0)["wall_s"]
    kill = [{"kind": "kill", "replica": 2, "step": 5, "restart_s": 4.0}]
    out = predict_run([1.0, 1.0, 1.0], 6, 20, kill, sync_s=0.0, stall_s=2.0)["wall_s"]
    # lost half step (1 s) + stall (2 s); its 4 s restart overlaps the stall, so
    # only one step runs on two chips (3 s instead of 2 s).
    assert out == pytest.approx(base + 1.0 + 2.0 + 1.0)


def test_hang_costs_the_timeout_and_slow_rebalances_after_one_step() -> None:
    hang = [{"kind": "hang", "replica": 0, "step": 0, "seconds": 30.0}]
    out = predict_run([1.0, 1.0], 2, 1, hang, hang_timeout_s=5.0)
    assert out["wall_s"] == pytest.approx(0.5 + 5.0 + 2.0)  # then one chip does both samples
    slow = [{"kind": "slow", "replica": 1, "step": 0, "speed": 0.5}]
    out = predict_run([1.0, 1.0], 4, 2, slow)
    # step 0: old shares 2/2, the slowed chip needs 4 s; step 1: shares 3/1 -> 3 s
    assert out["wall_s"] == pytest.approx(4.0 + 3.0)


def test_bad_speeds() -> None:
    with pytest.raises(UsageError):
        predict_run([], 8, 1)
