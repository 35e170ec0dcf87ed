"""`phalanx plan ... --out run.toml`, then `phalanx run --config run.toml`: it trains as planned."""

import textwrap

import pytest

from tests.fleet_helpers import MLP, events, phalanx, summary

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# Two emulated devices that passed qualification (as `phalanx qualify` writes them, cut
# to what the planner reads) and one that failed: the plan and the run leave out the same.
QUALIFIED = textwrap.dedent(
    """
    [[device]]
    id = "fast"
    kind = "emulated"
    speed = 1.0
    memory_bytes = 2000000000
    [device.qualification]
    passed = true
    level = "quick"
    gflops = 10.0

    [[device]]
    id = "half"
    kind = "emulated"
    speed = 0.5
    memory_bytes = 2000000000
    [device.qualification]
    passed = true
    level = "quick"
    gflops = 5.0

    [[device]]
    id = "failed"
    kind = "emulated"
    speed = 0.5
    [device.qualification]
    passed = false
    level = "quick"
    reasons = ["wrong results"]
    """
)
MODEL = 'name = "mlp"\nparams = 20000\nbytes_per_param = 16\nactivation_bytes_per_sample = 4096\n'
MODEL += "flops_per_sample = 1e6\nglobal_batch = 32\n"


def test_a_fleet_plan_runs_from_its_file(tmp_path):
    fleet, model, config = tmp_path / "q.toml", tmp_path / "m.toml", tmp_path / "run.toml"
    fleet.write_text(QUALIFIED)
    model.write_text(MODEL)
    done = phalanx(
        "plan", "--fleet", str(fleet), "--model", str(model), "--efficiency", "0.4",
        "--time-value", "3", "--out", str(config),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"wrote {config}: phalanx run SCRIPT --config {config}" in done.stdout
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--config", str(config), "--out", str(run), "--", "--steps", "3"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not admitted: failed" in result.stdout
    start = next(e for e in events(run) if e["kind"] == "run_start")
    assert [r["speed"] for r in start["replicas"].values()] == [1.0, 0.5]
    done = summary(run)
    assert done["steps"] == 3 and done["completed"]
    assert done["energy"]["objective"] == "cost"  # the plan's --time-value


def test_an_emulated_layout_runs_from_its_file(tmp_path):
    config = tmp_path / "plan.toml"
    args = ["--batch", "16"]
    done = phalanx(
        "plan", "--emulate", "1:mem=800KB,0.5:mem=800KB", "--script", str(MLP),
        "--out", str(config), "--", *args,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"wrote {config}: phalanx run --config {config}" in done.stdout
    run = tmp_path / "run"
    # The file names the script and its arguments: only the steps are added here.
    result = phalanx("run", "--config", str(config), "--out", str(run), "--", *args, "--steps", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    done = summary(run)
    assert done["steps"] == 3 and len(done["devices"]) == 2
    assert done["global_batch_size"] == 16
