"""Replicas of different kinds round differently: no false blame, no drift, faults still caught."""

import glob

import pytest
from safetensors.torch import load_file

from tests.fleet_helpers import MLP, events, independent_data_check, phalanx, summary

pytestmark = [pytest.mark.dist, pytest.mark.timeout(400)]


def test_a_chip_of_another_kind_is_not_blamed_does_not_drift_and_is_still_guarded(tmp_path):
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", "0.05x2,0.05:kind=b", "--quiet",
        "--timeout-s", "5", "--fault", "sdc:replica=2,step=70,target=weight",
        "--", "--steps", "120", "--batch", "48", "--checkpoint-every", "20", "--replica-copy",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    run_events = events(run)
    detections = {(e["check"], e["replica"], e["step"]) for e in run_events if e["kind"] == "sdc"}
    flips = [e["step"] for e in run_events if e["kind"] == "fault"]
    # Its last bits differ from the others' after every step: that is never a detection.
    # The weight flip is (a real corruption on a kind of its own, by the coarse check).
    assert detections == {("fingerprint_mismatch", "r2", step) for step in flips} and flips
    resyncs = sorted({e["step"] for e in run_events if e["kind"] == "resync"})
    assert resyncs == [50, 100]
    assert not any(e["kind"] == "quarantine" for e in run_events)
    assert summary(run)["steps"] == 120
    assert independent_data_check(run, num_samples=2048) == (0, 0)
    # The kinds stay together: 20 steps after the last re-synchronisation, still close.
    copies = [load_file(p) for p in glob.glob(str(run / "replica-*.safetensors"))]
    assert len(copies) == 3  # nobody was killed: every replica trained the last step
    drift = max(
        float((a[k] - b[k]).abs().max()) for a in copies for b in copies for k in a
    )
    assert 0 < drift < 1e-5
