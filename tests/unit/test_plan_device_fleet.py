"""`phalanx plan` on a qualified fleet file: devices as classes, memory capped by qualification."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from phalanx.devices.config import DeviceConfig, Qualification
from phalanx.devices.fleet_file import save_fleet
from phalanx.errors import UsageError
from phalanx.plan.device_classes import load_plan_fleet
from phalanx.plan.model_profile import parse_model
from phalanx.plan.planner import make_plan

GIB = 2**30
ROOT = Path(__file__).resolve().parents[2]
CLASS_FLEET = ROOT / "examples" / "fleets" / "llama3_mixed_6500.toml"
# A replica and one sample need 1.6e9 + 0.5e9 bytes (about 2 GiB).
MODEL = {
    "name": "small",
    "params": 1e8,
    "bytes_per_param": 16,
    "activation_bytes_per_sample": 0.5e9,
    "flops_per_sample": 1e9,
    "global_batch": 64,
}


def device(device_id: str, cap: int | None, passed: bool = True) -> DeviceConfig:
    q = Qualification(
        passed=passed, level="quick", gflops=100.0, max_power_w=200.0, usable_memory_bytes=cap
    )
    return DeviceConfig(id=device_id, kind="cuda", memory_bytes=16 * GIB, qualification=q)


def qualified(tmp_path: Path, *devices: DeviceConfig) -> Path:
    path = tmp_path / "qualified.toml"
    save_fleet(path, list(devices))
    return path


def test_the_planner_sizes_a_capped_device_by_its_tested_memory(tmp_path):
    fleet = load_plan_fleet(qualified(tmp_path, device("capped", GIB), device("full", None)), 0.5)
    capped, full = fleet.spec.classes
    assert (capped.name, capped.memory_bytes) == ("capped", GIB)  # not its 16 GiB
    assert (full.name, full.memory_bytes) == ("full", 16 * GIB)
    assert capped.speed_sps(parse_model(MODEL)) == pytest.approx(100e9 * 0.5 / 1e9)

    plan = make_plan(fleet.spec, parse_model(MODEL))
    by_name = {c.name: c for c in plan.classes}
    assert by_name["capped"].used == 0 and by_name["full"].used == 1
    (memory,) = by_name["capped"].excluded
    assert memory.reason == "memory" and "has 1.0 GiB" in memory.detail


def test_with_enough_tested_memory_both_devices_train(tmp_path):
    fleet = load_plan_fleet(qualified(tmp_path, device("a", 4 * GIB), device("b", None)), 0.5)
    plan = make_plan(fleet.spec, parse_model(MODEL))
    assert [c.used for c in plan.classes] == [1, 1]
    assert plan.classes[0].memory_bytes == 4 * GIB


def test_identical_devices_form_one_class_and_failed_ones_are_left_out(tmp_path):
    path = qualified(
        tmp_path, device("x0", GIB), device("x1", GIB), device("bad", None, passed=False)
    )
    fleet = load_plan_fleet(path, 0.5)
    (cls,) = fleet.spec.classes
    assert (cls.name, cls.count) == ("x0 +1", 2)
    assert fleet.left_out == ("bad",) and fleet.from_devices


def _plan(app: typer.Typer, tmp_path: Path, fleet: Path, *extra: str, model: dict | None = None):
    model_path = tmp_path / "model.toml"
    model_path.write_text(
        "\n".join(
            f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"'
            for k, v in (model or MODEL).items()
        )
    )
    return CliRunner().invoke(
        app, ["plan", "--fleet", str(fleet), "--model", str(model_path), *extra]
    )


def test_cli_plans_a_qualified_fleet_and_names_what_it_left_out(app, tmp_path):
    path = qualified(tmp_path, device("full", None), device("bad", None, passed=False))
    res = _plan(app, tmp_path, path, "--efficiency", "0.4")
    assert res.exit_code == 0, res.output
    assert "not planned (failed or not qualified): bad" in res.output
    assert "1 of 1 chips" in res.output


@pytest.mark.parametrize(
    ("extra", "model", "field", "words"),
    [
        ((), None, "--efficiency", "is needed"),
        (("--efficiency", "1.5"), None, "--efficiency", "at most 1"),
        (
            ("--efficiency", "0.4"),
            {k: v for k, v in MODEL.items() if k != "flops_per_sample"},
            "model.flops_per_sample",
            "measured in FLOP/s",
        ),
    ],
)
def test_cli_bad_input_names_the_field(app, tmp_path, extra, model, field, words):
    res = _plan(app, tmp_path, qualified(tmp_path, device("a", None)), *extra, model=model)
    assert isinstance(res.exception, UsageError), res.output
    assert res.exception.field == field and words in res.exception.message()


def test_efficiency_belongs_to_device_fleets_and_a_fleet_needs_a_passed_device(app, tmp_path):
    res = _plan(app, tmp_path, CLASS_FLEET, "--efficiency", "0.4")
    assert isinstance(res.exception, UsageError) and res.exception.field == "--efficiency"
    with pytest.raises(UsageError) as info:
        load_plan_fleet(qualified(tmp_path, device("bad", None, passed=False)), 0.4)
    assert info.value.field == "--fleet" and "passed qualification" in info.value.problem
