"""`phalanx run --config`: a key is a flag's name, whatever its parameter is called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from phalanx.errors import UsageError


def run_params(run_cmd: Any, config: Path) -> dict[str, Any]:
    """What `phalanx run train.py --config CONFIG` resolves its flags to (nothing starts)."""
    return dict(run_cmd.make_context("run", ["train.py", "--config", str(config)]).params)


def test_keys_are_flag_names(run_cmd, tmp_path):
    # `--plan` and `--subsidy-per-kwh` set parameters named otherwise; both names work.
    config = tmp_path / "run.toml"
    config.write_text(
        'plan = "layout.toml"\nsubsidy_per_kwh = "0.02/kWh"\nno_thermal_guard = true\n'
    )
    params = run_params(run_cmd, config)
    assert params["layout_plan"] == Path("layout.toml") and params["subsidy"] == "0.02/kWh"
    assert params["thermal_guard"] is False
    config.write_text('layout_plan = "layout.toml"\nthermal-guard = false\n')
    params = run_params(run_cmd, config)
    assert params["layout_plan"] == Path("layout.toml") and params["thermal_guard"] is False


def test_a_negated_flag_takes_a_boolean_and_a_typo_names_the_flag(run_cmd, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("no_thermal_guard = 1\n")
    with pytest.raises(UsageError, match="must be true or false"):
        run_params(run_cmd, config)
    config.write_text('subsidy_per_kw = "0.02"\n')
    with pytest.raises(UsageError, match="did you mean subsidy_per_kwh"):
        run_params(run_cmd, config)
