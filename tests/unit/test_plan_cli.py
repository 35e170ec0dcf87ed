"""`phalanx plan` and `phalanx simulate` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from phalanx.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "examples" / "fleets" / "llama3_mixed_6500.toml"
MODEL = ROOT / "examples" / "models" / "gpt_1b.toml"


def test_plan_writes_table_and_json(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    res = CliRunner().invoke(
        app, ["plan", "--fleet", str(FLEET), "--model", str(MODEL), "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "throughput" in res.output and "old-b" in res.output
    data = json.loads(out.read_text())
    assert data["schema"] == "phalanx.plan/1"
    assert (
        sum(s["share"] * s["devices"] for c in data["classes"] for s in c["shares"])
        == data["global_batch"]
    )


def test_simulate_writes_json_and_plots(app: typer.Typer, tmp_path: Path) -> None:
    args = ["simulate", "--fleet", str(FLEET), "--model", str(MODEL), "--days", "2", "--seed", "0"]
    args += ["--json", str(tmp_path / "sim.json"), "--plots", str(tmp_path / "img")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "sim.json").read_text())
    assert [p["name"] for p in data["policies"]] == ["phalanx", "ddp-restart", "phalanx-nobalance"]
    for name in ("sim_progress.png", "sim_goodput.png"):
        assert (tmp_path / "img" / name).read_bytes()[:4] == b"\x89PNG"


def test_bad_input_raises_usage_error(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[class]]\nname = "x"\ncount = 0\nthroughput_sps = 1\nmemory_gib = 8\n', encoding="utf-8"
    )
    res = CliRunner().invoke(app, ["plan", "--fleet", str(bad), "--model", str(MODEL)])
    assert isinstance(res.exception, UsageError) and res.exception.field == "class[0].count"


def test_main_cli_turns_bad_input_into_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[class]]\nname = "x"\ncount = 4\nthroughput_sps = 1\nmemory_gib = 8\nmtbh_h = 3\n',
        encoding="utf-8",
    )
    cmd = [
        sys.executable,
        "-c",
        "from phalanx.cli import main; main()",
        "plan",
        "--fleet",
        str(bad),
        "--model",
        str(MODEL),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "class[0].mtbh_h" in proc.stderr and "Traceback" not in proc.stderr


def test_subsidy_is_a_fraction_in_plan_and_named_so(app: typer.Typer) -> None:
    base = ["plan", "--fleet", str(FLEET), "--model", str(MODEL)]
    res = CliRunner().invoke(app, [*base, "--subsidy-fraction", "0.25"])
    assert res.exit_code == 0 and "subsidy 25%" in res.output, res.output
    res = CliRunner().invoke(app, [*base, "--subsidy-fraction", "2"])
    assert isinstance(res.exception, UsageError) and res.exception.field == "--subsidy-fraction"
    # The old name meant a fraction here and a price per kWh in `run`: it is gone from both.
    res = CliRunner().invoke(app, [*base, "--subsidy", "0.25"])
    assert res.exit_code == 2 and "--subsidy-fraction" in res.output, res.output
