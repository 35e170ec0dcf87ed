"""The subsidy flags mean the same in `run`, `plan` and `simulate` (issue 18 polish)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from phalanx.energy.subsidy import subsidy_fraction, subsidy_per_kwh
from phalanx.errors import UsageError
from tests.fleet_helpers import MLP
from tests.unit.test_fuzz_inputs import run_cli

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "examples" / "fleets" / "llama3_mixed_6500.toml"
MODEL = ROOT / "examples" / "models" / "gpt_1b.toml"


def test_each_form_converts_to_the_other_at_the_tariff():
    assert subsidy_fraction(0.08, None, 0.02) == pytest.approx(0.25)
    assert subsidy_fraction(0.08, 0.25, None) == 0.25
    assert subsidy_fraction(0.08, None, 0.5) == 1.0  # more than the tariff: free power, no credit
    assert subsidy_fraction(0.08, None, None) == 0.0
    assert subsidy_per_kwh(0.08, 0.25, None) == pytest.approx(0.02)
    assert subsidy_per_kwh(0.08, None, 0.02) == 0.02
    assert subsidy_per_kwh(None, None, 0.02) == 0.02  # no tariff: no cost estimate, no error


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: subsidy_fraction(0.08, 0.25, 0.02), "--subsidy-per-kwh"),
        (lambda: subsidy_fraction(0.08, 1.5, None), "--subsidy-fraction"),
        (lambda: subsidy_per_kwh(None, 0.25, None), "--subsidy-fraction"),
    ],
)
def test_contradictions_name_the_flag(call, field):
    with pytest.raises(UsageError) as refused:
        call()
    assert refused.value.field == field


def test_plan_takes_either_form_with_one_meaning(app: typer.Typer) -> None:
    base = ["plan", "--fleet", str(FLEET), "--model", str(MODEL), "--tariff", "0.08"]
    by_fraction = CliRunner().invoke(app, [*base, "--subsidy-fraction", "0.25"])
    by_amount = CliRunner().invoke(app, [*base, "--subsidy-per-kwh", "0.02/kWh"])
    assert by_fraction.exit_code == 0 and by_amount.exit_code == 0, by_amount.output
    assert "subsidy 25%" in by_fraction.output and "subsidy 25%" in by_amount.output


def test_simulate_takes_either_form_with_one_meaning(app: typer.Typer, tmp_path: Path) -> None:
    costs = []
    for flag, value in (("--subsidy-fraction", "0.25"), ("--subsidy-per-kwh", "0.02")):
        out = tmp_path / f"{flag}.json"
        args = ["simulate", "--fleet", str(FLEET), "--model", str(MODEL), "--days", "2"]
        args += ["--tariff", "0.08", flag, value, "--policies", "phalanx", "--json", str(out)]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        costs.append(json.loads(out.read_text()))
    assert costs[0] == costs[1]


def test_run_takes_either_form_with_one_meaning(tmp_path, monkeypatch):
    import phalanx.launch.cli as run_cli_module

    planned = []

    def capture(plan):  # the launch itself is not what this checks
        planned.append(plan)
        return 0

    monkeypatch.setattr(run_cli_module, "_launch", capture)
    for flag, value in (("--subsidy-fraction", "0.25"), ("--subsidy-per-kwh", "0.02/kWh")):
        out = tmp_path / flag
        argv = ["run", str(MLP), "--out", str(out), "--emulate", "1,1", "--tariff", "0.08/kWh"]
        code, _stdout, stderr = run_cli([*argv, flag, value])
        assert code == 0, stderr
    assert [p.subsidy_per_kwh for p in planned] == pytest.approx([0.02, 0.02])
    code, _stdout, stderr = run_cli(
        ["run", str(MLP), "--out", str(tmp_path / "x"), "--subsidy-fraction", "0.25"]
    )
    assert code == 2 and "--tariff" in stderr, stderr


def test_runs_cost_objective_weighs_the_price_after_the_subsidy(tmp_path, monkeypatch):
    import phalanx.launch.cli as run_cli_module

    planned = []
    monkeypatch.setattr(run_cli_module, "_launch", lambda plan: planned.append(plan) or 0)
    argv = ["run", str(MLP), "--out", str(tmp_path / "a"), "--emulate", "1,1"]
    argv += ["--objective", "cost", "--fleet-cost-per-h", "5", "--tariff", "0.08"]
    code, _stdout, stderr = run_cli([*argv, "--subsidy-fraction", "0.25"])
    assert code == 0, stderr
    assert planned[0].energy.tariff_per_kwh == pytest.approx(0.06)
    assert planned[0].tariff_per_kwh == 0.08  # the bill in summary.json: tariff less subsidy
    code, _stdout, stderr = run_cli([*argv, "--subsidy-fraction", "1"])
    assert code == 2 and "--objective time" in stderr, stderr
