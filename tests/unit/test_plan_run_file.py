"""`phalanx plan ... --out run.toml`: a file `phalanx run --config` takes as is (plan/run_file.py).

Each written file is parsed by run's own --config parser (the click context of
`phalanx run`, no launch): every key must be a run flag, and the values must be
what the plan decided.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from phalanx.devices.config import DeviceConfig, Qualification
from phalanx.devices.fleet_file import save_fleet
from phalanx.errors import UsageError
from phalanx.launch.run_config import SCRIPT_ARGS, flag_names
from phalanx.plan.layout import Chip, ModelNeeds, plan_layout
from phalanx.plan.layout_file import read_layout
from phalanx.plan.run_file import RUN_KEYS, RunFile, layout_run_file, render

ROOT = Path(__file__).resolve().parents[2]
CLASS_FLEET = ROOT / "examples" / "fleets" / "llama3_mixed_6500.toml"
GIB = 2**30
MODEL = 'name = "small"\nparams = 1e8\nbytes_per_param = 16\nactivation_bytes_per_sample = 0.5e9\n'
MODEL += "flops_per_sample = 1e9\nglobal_batch = 64\n"


def run_params(run_cmd: Any, *argv: str) -> dict[str, Any]:
    """What `phalanx run ARGV` resolves its flags to, config file included (nothing starts)."""
    return dict(run_cmd.make_context("run", list(argv)).params)


def qualified(tmp_path: Path, memory: int = 16 * GIB, n: int = 2) -> Path:
    q = Qualification(passed=True, level="quick", gflops=100.0, max_power_w=200.0)
    devices = [DeviceConfig(id=f"d{i}", kind="cuda", memory_bytes=memory, qualification=q)
               for i in range(n)]  # fmt: skip
    bad = DeviceConfig(
        id="bad", kind="cuda", qualification=Qualification(passed=False, level="quick")
    )
    path = tmp_path / "qualified.toml"
    save_fleet(path, [*devices, bad])
    return path


def plan(app: typer.Typer, tmp_path: Path, fleet: Path, *extra: str) -> Any:
    model = tmp_path / "model.toml"
    model.write_text(MODEL)
    argv = ["plan", "--fleet", str(fleet), "--model", str(model), *extra]
    return CliRunner().invoke(app, argv)


def test_every_key_plan_may_write_is_a_run_flag(run_cmd):
    assert RUN_KEYS - {SCRIPT_ARGS} <= set(flag_names(run_cmd))  # and script_args: after --


def test_a_fleet_plan_becomes_run_flags_that_run_parses_as_planned(app, run_cmd, tmp_path):
    out = tmp_path / "cfg" / "run.toml"
    res = plan(
        app, tmp_path, qualified(tmp_path), "--efficiency", "0.4", "--time-value", "3",
        "--subsidy-fraction", "0.25", "--out", str(out),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"wrote {out}: phalanx run SCRIPT --config {out}" in res.output
    text = out.read_text()
    assert text.startswith("# Written by: phalanx plan --fleet ")
    assert "--time-value 3.0" in text and "not qualified: bad" in text
    assert "the global batch of 64" in text  # the script's, not a run flag: said, not written
    params = run_params(run_cmd, "train.py", "--config", str(out))
    assert params["fleet"] == (tmp_path / "qualified.toml").resolve()
    assert (params["objective"], params["fleet_cost_per_h"]) == ("cost", 3.0)
    assert (params["tariff"], params["subsidy_fraction"]) == ("0.08/kWh", 0.25)
    # The command line still overrides the file.
    params = run_params(run_cmd, "train.py", "--config", str(out), "--objective", "time")
    assert params["objective"] == "time"


def test_a_throughput_plan_runs_every_device_at_full_power(app, run_cmd, tmp_path):
    out = tmp_path / "run.toml"
    res = plan(app, tmp_path, qualified(tmp_path), "--efficiency", "0.4", "--out", str(out))
    assert res.exit_code == 0, res.output
    params = run_params(run_cmd, "train.py", "--config", str(out))
    assert params["objective"] == "time" and params["subsidy_fraction"] is None


def test_a_fleet_of_classes_is_refused_before_planning(app, tmp_path):
    out = tmp_path / "run.toml"
    res = plan(app, tmp_path, CLASS_FLEET, "--out", str(out))
    assert isinstance(res.exception, UsageError) and res.exception.field == "--out"
    assert "[[class]] tables" in res.exception.problem and not out.exists()


def test_the_refusal_is_one_line_exit_2_without_a_traceback(tmp_path):
    model = tmp_path / "model.toml"
    model.write_text(MODEL)
    done = subprocess.run(
        [sys.executable, "-m", "phalanx", "plan", "--fleet", str(CLASS_FLEET), "--model",
         str(model), "--out", str(tmp_path / "run.toml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: --out: llama3_mixed_6500.toml describes chips by class")
    assert done.stderr.count("\n") == 1 and not (tmp_path / "run.toml").exists()


def test_a_plan_of_replica_groups_is_refused(app, tmp_path):
    # 1.5 GiB each: a replica with one sample needs about 2 GiB, so two devices form a group.
    out = tmp_path / "run.toml"
    res = plan(app, tmp_path, qualified(tmp_path, memory=3 * GIB // 2), "--efficiency", "0.4",
               "--out", str(out))  # fmt: skip
    assert isinstance(res.exception, UsageError) and res.exception.field == "--out"
    assert "replica groups of 2" in res.exception.problem and not out.exists()


def test_a_layout_is_the_files_own_plan_for_run_config_and_run_plan(run_cmd, tmp_path):
    needs = ModelNeeds("mlp", 667_680, 166_920, 0, 3_344, 48, 1000.0)
    chips = [Chip("c0", 1, 800_000), *[Chip(f"c{i}", 1, 400_000) for i in range(1, 5)]]
    layout = plan_layout(chips, needs)
    out = tmp_path / "plan.toml"
    script = tmp_path / "train.py"
    run_file = layout_run_file(layout, script, ["--batch", "48"])
    out.write_text(render(run_file, "phalanx plan --emulate ...", out))
    params = run_params(run_cmd, "--config", str(out))
    assert params["layout_plan"] == out and params["script"] == script.resolve()
    again = read_layout(out)  # what `run --plan` and run's launcher read
    assert again.ranks_per_group == layout.ranks_per_group == 3
    assert [len(r.chips) for r in again.replicas] == [len(r.chips) for r in layout.replicas]


def test_a_key_run_does_not_know_is_never_written(tmp_path):
    with pytest.raises(ValueError, match="global_batch"):
        render(RunFile({"global_batch": 64}, ["x"]), "phalanx plan", tmp_path / "run.toml")
