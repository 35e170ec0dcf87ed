"""Energy on a real fleet: the thermal guard and power limits keep the math exact."""

import pytest

from tests.fleet_helpers import (
    EXACT_ARGS,
    EXACT_STEPS,
    MLP,
    events,
    max_param_diff,
    phalanx,
    qualified_fleet,
    step_losses,
    summary,
)

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]

# Two ordinary chips and one so badly cooled that at a full share it would pass
# its throttle point (85 C) and reach shutdown (100 C): 25 + 0.7 W/C * its draw.
HOT_FLEET = qualified_fleet(
    ("cool-0", 0.05, ""),
    ("cool-1", 0.05, ""),
    ("hot", 0.05, "[device.thermal]\nresistance_c_per_w = 0.7\ntime_constant_s = 3.0\n"),
)


def _assert_exact(run, reference_run):
    assert max_param_diff(run, reference_run) < 1e-9
    fleet, local = step_losses(run), step_losses(reference_run)
    assert sorted(fleet) == list(range(EXACT_STEPS))
    assert max(abs(fleet[s] - local[s]) for s in local) < 1e-9


def test_a_chip_that_would_overheat_stays_below_throttle_and_math_stays_exact(
    tmp_path, reference_run
):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(HOT_FLEET)
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--fleet", str(fleet), "--out", str(run), "--quiet",
        "--", *EXACT_ARGS,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    _assert_exact(run, reference_run)
    all_events = events(run)
    hot = [e for e in all_events if e["kind"] == "step" and e["source"] == "r2"]
    assert hot, "the hot chip took part"
    assert max(e["temperature_c"] for e in hot) < 85.0
    cuts = [e for e in all_events if e["kind"] == "thermal" and e["action"] == "derate"]
    assert cuts and {e["replica"] for e in cuts} == {"r2"}
    assert not [e for e in all_events if e["kind"] in ("device_failure", "worker_restart")]
    # Work moved to the cool chips: the hot one computed the fewest samples.
    samples = {d["id"]: d["samples"] for d in summary(run)["devices"]}
    assert samples["r2"] < min(samples["r0"], samples["r1"])


# An old chip without a power-limit knob: under a budget it can only be left out.
POWER_FLEET = qualified_fleet(
    ("a", 0.05, ""),
    ("b", 0.05, ""),
    ("old", 0.0125, "[device.power]\nidle_w = 60\nmax_w = 250\nlimit_control = false\n"),
)


def test_a_power_budget_caps_every_sample_and_leaves_out_the_old_chip(tmp_path, reference_run):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(POWER_FLEET)
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--fleet", str(fleet), "--out", str(run),
        "--power-budget-w", "400",
        "--", *EXACT_ARGS,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "left out (not worth their power here): old" in result.stdout
    _assert_exact(run, reference_run)
    all_events = events(run)
    start = next(e for e in all_events if e["kind"] == "run_start")
    assert start["power_budget_w"] == 400
    points = {p["device"]: p for p in start["energy_plan"]["points"]}
    assert not points["old"]["train"]
    limits = [points["a"]["limit_w"], points["b"]["limit_w"]]
    assert all(limit is not None for limit in limits) and sum(limits) <= 400
    draw: dict[int, float] = {}
    for e in all_events:
        if e["kind"] == "step" and e["source"] == e["replica"]:
            assert e["power_limit_w"] in limits
            # Every chip at its computing draw at once: the worst moment of the step.
            draw[e["step"]] = draw.get(e["step"], 0.0) + (e["busy_power_w"] or e["power_w"])
    assert len(draw) == EXACT_STEPS
    assert max(draw.values()) <= 400
