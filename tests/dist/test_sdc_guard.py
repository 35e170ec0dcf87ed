"""The silent-data-corruption guard keeps corrupt results out of the model."""

import pytest

from phalanx.launch.launcher import Launcher, RunPlan
from tests.fleet_helpers import (
    EXACT_ARGS,
    EXACT_STEPS,
    MLP,
    SLOW_FLEET,
    events,
    independent_data_check,
    max_param_diff,
    phalanx,
    summary,
)

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]


def _sdc_events(run):
    return [e for e in events(run) if e["kind"] == "sdc"]


def _quarantined(run):
    return {e["replica"] for e in events(run) if e["kind"] == "quarantine"}


def test_gradient_and_weight_bit_flips_are_caught_in_the_same_step(tmp_path, reference_run):
    run = tmp_path / "run"
    planned = (6, 16, 26)
    faults = [f"sdc:replica=1,step={s},target=grad" for s in planned]
    faults.append("sdc:replica=2,step=12,target=weight")
    command = [
        "run",
        str(MLP),
        "--out",
        str(run),
        "--emulate",
        SLOW_FLEET,
        "--timeout-s",
        "2",
        "--quiet",
    ]
    for fault in faults:
        command += ["--fault", fault]
    result = phalanx(*command, "--", *EXACT_ARGS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert max_param_diff(run, reference_run) < 1e-9
    assert independent_data_check(run, num_samples=500) == (0, 0)
    run_events = events(run)
    fired = [e for e in run_events if e["kind"] == "fault"]
    grad_flips = sorted(e["step"] for e in fired if e["target"] == "grad")
    weight_flips = [e["step"] for e in fired if e["target"] == "weight"]
    # A slow chip may hold no samples at a planned step: the flip then waits for the
    # first step where it computes (a flip of nothing is no test of the guard).
    shares = {}
    for e in run_events:
        if e["kind"] == "step":
            shares.setdefault(e["step"], dict(zip(e["participants"], e["shares"])))
    for flip in (e for e in fired if e["target"] == "grad"):
        skipped = range(flip.get("planned_step", flip["step"]), flip["step"])
        assert all(shares[s].get("r1", 0) == 0 for s in skipped if s in shares)
    chip = {
        (e["check"], e["replica"], e["step"])
        for e in _sdc_events(run)
        if e["attribution"] == "chip"
    }
    caused = {("gradient_veto", "r1", s) for s in grad_flips}
    caused |= {("fingerprint_mismatch", "r2", s) for s in weight_flips}
    assert chip == caused  # every flip found in the step it happened, nothing else blamed
    assert weight_flips == [12]  # a weight flip needs no samples: it fires when planned
    # Three offences quarantine r1, if all three flips found a step where r1 computed.
    assert _quarantined(run) == ({"r1"} if len(grad_flips) == 3 else set())
    assert any(e["kind"] == "heal" and e["replica"] == "r2" for e in run_events)  # r2 healed
    assert summary(run)["steps"] == EXACT_STEPS


@pytest.mark.parametrize("defect_seed", [11, 12])
def test_defective_chip_is_outvoted_and_quarantined(tmp_path, reference_run, defect_seed):
    run = tmp_path / "run"
    defective = {"flip_rate": 1e-4, "seed": defect_seed}
    plan = RunPlan(
        script=MLP,
        out_dir=run,
        speeds=[0.05, 0.05, 0.05],
        script_args=EXACT_ARGS,
        timeout_s=2.0,
        quiet=True,
        guard="full",
        device_tables=[{}, {"defects": defective}, {}],
    )
    assert Launcher(plan).run() == 0
    assert max_param_diff(run, reference_run) < 1e-9
    assert _quarantined(run) == {"r1"}
    detections = _sdc_events(run)
    assert {e["replica"] for e in detections} == {"r1"}  # nothing is ever blamed on a healthy chip
    vetoes = [e for e in detections if e["check"] == "gradient_veto"]
    # Each offence has evidence that differs between chips: its own rerun differed (an
    # intermittent flip), or a healthy peer recomputed the slice and disagreed.
    assert len({e["step"] for e in vetoes}) >= 3
    assert all(e["attribution"] == "chip" for e in vetoes)
    assert all("different" in (e["rerun"], e["peer"]) for e in vetoes)
