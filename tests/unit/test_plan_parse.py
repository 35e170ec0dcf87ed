"""Fleet-class and model-profile parsing: good files load, bad ones name the field."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from phalanx.errors import UsageError
from phalanx.plan.fleet_classes import GIB, load_fleet, parse_fleet
from phalanx.plan.model_profile import load_model, parse_model

ROOT = Path(__file__).resolve().parents[2]


def _cls(**kw: object) -> dict:
    base = {"name": "a", "count": 4, "throughput_sps": 10.0, "memory_gib": 16}
    base.update(kw)
    return base


def _field(data: dict, parse=parse_fleet) -> str:
    with pytest.raises(UsageError) as err:
        parse(data)
    return err.value.field


def test_example_files_load() -> None:
    for path in (ROOT / "examples" / "fleets").glob("*.toml"):
        fleet = load_fleet(path)
        assert fleet.device_count >= 1000, path
    model = load_model(ROOT / "examples" / "models" / "gpt_1b.toml")
    assert model.global_batch == 32768
    assert model.state_bytes == pytest.approx(1.3e9 * 16)


def test_defaults_and_derived_speed() -> None:
    table = {k: v for k, v in _cls().items() if k != "throughput_sps"}
    fleet = parse_fleet({"class": [table | {"peak_flops": 1e14, "efficiency": 0.5}]})
    c = fleet.classes[0]
    assert math.isinf(c.mtbf_h) and c.weibull_shape == 1.0 and c.defect_rate == 0.0
    assert c.memory_bytes == 16 * GIB
    model = parse_model(
        {
            "params": 1e6,
            "activation_bytes_per_sample": 1e3,
            "flops_per_sample": 1e12,
            "global_batch": 8,
        }
    )
    assert c.speed_sps(model) == pytest.approx(50.0)


def test_tables_of_others_are_ignored() -> None:
    data = {"fleet": {"name": "x"}, "device": [{"id": "cpu0", "speed": 1.0}], "class": [_cls()]}
    assert parse_fleet(data).device_count == 4


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"count": -3}, "class[0].count"),
        ({"count": True}, "class[0].count"),
        ({"count": 2.5}, "class[0].count"),
        ({"mtbh_h": 3}, "class[0].mtbh_h"),  # a typo must not pass silently
        ({"defect_rate": 1.5}, "class[0].defect_rate"),
        ({"power_idle_w": 500, "power_max_w": 300}, "class[0].power_idle_w"),
        ({"peak_flops": 1e14}, "class[0].throughput_sps"),  # both kinds of speed
        ({"throttle_speed": 0}, "class[0].throttle_speed"),
        ({"power_curve": [[0.5, 1.2]]}, "class[0].power_curve"),
        ({"name": ""}, "class[0].name"),
    ],
)
def test_bad_class_names_the_field(override: dict, field: str) -> None:
    assert _field({"class": [_cls(), {**_cls(name="b"), **override}]}) == field.replace(
        "[0]", "[1]"
    )


def test_missing_pieces() -> None:
    no_mem = _cls()
    del no_mem["memory_gib"]
    assert _field({"class": [no_mem]}) == "class[0].memory_bytes"
    assert _field({"device": [{"id": "x"}]}) == "class"
    assert _field({"class": [_cls(), _cls()]}) == "class[1].name"
    assert _field({"class": [_cls()], "sync": {"latncy_s": 1}}) == "sync.latncy_s"


def test_bad_model_names_the_field() -> None:
    good = {"params": 1e6, "activation_bytes_per_sample": 1e3, "global_batch": 8}
    assert _field({k: v for k, v in good.items() if k != "params"}, parse_model) == "model.params"
    assert _field(good | {"global_batch": 0}, parse_model) == "model.global_batch"
    assert _field(good | {"paramz": 3}, parse_model) == "model.paramz"
    # keys may also sit in a [model] table; other tables are ignored
    assert parse_model({"model": good, "meta": {"x": 1}}).global_batch == 8


def test_flops_needed_when_class_gives_peak_flops() -> None:
    fleet = parse_fleet(
        {
            "class": [
                {"name": "a", "count": 1, "peak_flops": 1e14, "efficiency": 0.5, "memory_gib": 8}
            ]
        }
    )
    model = parse_model({"params": 1e6, "activation_bytes_per_sample": 1e3, "global_batch": 8})
    with pytest.raises(UsageError) as err:
        fleet.classes[0].speed_sps(model)
    assert err.value.field == "model.flops_per_sample"


def test_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "f.toml"
    bad.write_text("[[class]\nname=", encoding="utf-8")
    with pytest.raises(UsageError) as err:
        load_fleet(bad)
    assert err.value.field == "--fleet"
    with pytest.raises(UsageError):
        load_model(tmp_path / "missing.toml")
    js = tmp_path / "m.json"
    js.write_text(
        '{"params": 10, "activation_bytes_per_sample": 1, "global_batch": 2}', encoding="utf-8"
    )
    assert load_model(js).params == 10
