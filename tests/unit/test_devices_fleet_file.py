"""fleet.toml parsing, validation errors that name the field, round trips, admission."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from phalanx.devices.config import DeviceConfig, Qualification
from phalanx.devices.fleet_file import load_admitted, load_fleet, save_fleet
from phalanx.errors import UsageError

DATA = Path(__file__).resolve().parents[1] / "data"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


def error_for(tmp_path: Path, text: str) -> UsageError:
    with pytest.raises(UsageError) as info:
        load_fleet(write(tmp_path, text))
    return info.value


def test_minimal_devices_get_defaults(tmp_path):
    fleet = load_fleet(
        write(
            tmp_path,
            '[[device]]\nkind = "cuda"\nindex = 1\n\n[[device]]\nkind = "emulated"\nspeed = 0.5\n',
        )
    )
    cuda, emu = fleet.devices
    assert (cuda.id, cuda.torch_device, cuda.speed) == ("cuda1", "cuda:1", None)
    assert (emu.id, emu.torch_device, emu.speed) == ("emu1", "cpu", 0.5)
    assert emu.memory_bytes and emu.power and emu.thermal and not emu.defects.any()


def test_class_tables_belong_to_the_planner_and_are_ignored(tmp_path):
    fleet = load_fleet(
        write(
            tmp_path,
            '[[class]]\nname = "old"\ncount = 4000\nwhatever = 1\n\n[[device]]\nkind = "cpu"\n',
        )
    )
    assert [d.id for d in fleet.devices] == ["cpu0"]


def test_acceptance_fleet_parses_with_every_defect_kind():
    devices = {d.id: d for d in load_fleet(DATA / "defective20.toml").devices}
    assert len(devices) == 20
    assert devices["sdc-1e-6-a"].defects.flip_rate == 1e-6
    assert devices["badmem-a"].defects.bad_memory[0].offset_bytes == 3 * 2**30
    assert devices["late-sdc-a"].defects.intermittent.after_load_s == 20.0
    assert devices["heat-slow-a"].defects.heat_slowdown.fraction == 0.4
    assert devices["crash-b"].defects.crash_after_load_s == 45.0
    assert sum(d.defects.any() for d in devices.values()) == 12


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ('[[device]]\nkind = "tpu"\n', "device[0].kind", "not one of the known values"),
        ("[[device]]\nindex = 0\n", "device[0].kind", "missing"),
        ('[[device]]\nkind = "emulated"\nspeed = -1.0\n', "device[0].speed", "positive"),
        ('[[device]]\nkind = "emulated"\nspeed = "fast"\n', "device[0].speed", "must be a number"),
        ('[[device]]\nkind = "cuda"\nindex = "0"\n', "device[0].index", "must be an integer"),
        ('[[device]]\nkind = "cuda"\nindex = true\n', "device[0].index", "must be an integer"),
        ('[[device]]\nkind = "cuda"\nspeeed = 1\n', "device[0].speeed", "unknown key"),
        ('[[device]]\nkind = "cuda"\nspeed = 1\n', "device[0].speed", "only allowed for kind"),
        (
            '[[device]]\nkind = "emulated"\n[device.thermal]\nthrottle_c = "hot"\n',
            "device[0].thermal.throttle_c",
            "number",
        ),
        (
            '[[device]]\nkind = "emulated"\n[device.thermal]\nthrottle_c = 90.0\nshutdown_c = 80.0\n',
            "device[0].thermal.shutdown_c",
            "above throttle_c",
        ),
        (
            '[[device]]\nkind = "emulated"\n[device.defects]\nflip_rate = 2.0\n',
            "device[0].defects.flip_rate",
            "at most 1",
        ),
        (
            '[[device]]\nkind = "emulated"\nmemory_bytes = 1024\n[device.defects]\nbad_memory = [{ offset_bytes = 1000, length_bytes = 100 }]\n',
            "device[0].defects.bad_memory[0].offset_bytes",
            "past the device",
        ),
        (
            '[[device]]\nkind = "emulated"\n[device.defects.intermittent]\nflip_rate = 1e-4\n',
            "device[0].defects.intermittent.after_load_s",
            "missing",
        ),
        (
            '[[device]]\nkind = "emulated"\n[device.power]\nidle_w = 100.0\nmax_w = 50.0\n',
            "device[0].power.max_w",
            "below idle_w",
        ),
        (
            '[[device]]\nid = "a"\nkind = "cpu"\n[[device]]\nid = "a"\nkind = "cpu"\n',
            "device[1].id",
            "duplicates",
        ),
        ('[[device]]\nkind = "cpu"\ndtypes = ["float8"]\n', "device[0].dtypes[0]", "not one of"),
        ("device = 3\n", "device", "array of tables"),
        (
            '[[device]]\nkind = "emulated"\n[device.qualification]\npassed = true\nlevel = "quick"\nusable_memory_bytes = 0\n',
            "device[0].qualification.usable_memory_bytes",
            "at least 1",
        ),
        (
            '[[device]]\nkind = "emulated"\n[device.qualification]\npassed = true\nlevel = "quick"\nusable_memory_bytes = "4GiB"\n',
            "device[0].qualification.usable_memory_bytes",
            "must be an integer",
        ),
        (
            '[[device]]\nkind = "cuda"\nmemory_bytes = 1024\n[device.qualification]\npassed = true\nlevel = "quick"\nusable_memory_bytes = 2048\n',
            "device[0].qualification.usable_memory_bytes",
            "more than the device's memory_bytes (1024)",
        ),
        (
            '[[device]]\nkind = "emulated"\n[device.qualification]\npassed = true\nlevel = "quick"\nmemory_tested_fraction = 1.5\n',
            "device[0].qualification.memory_tested_fraction",
            "at most 1",
        ),
    ],
)
def test_bad_fleet_files_name_the_field(tmp_path, text, field, words):
    err = error_for(tmp_path, text)
    assert err.field == field
    assert words in err.message()


def test_invalid_toml_is_a_usage_error(tmp_path):
    err = error_for(tmp_path, "[[device]\nkind = cpu\n")
    assert "not valid TOML" in err.message()


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError) as info:
        load_fleet(tmp_path / "nope.toml")
    assert info.value.field == "--fleet"


def test_save_then_load_round_trips_every_field(tmp_path):
    original = load_fleet(DATA / "defective20.toml").devices
    q = Qualification(
        passed=False,
        level="standard",
        failed_checks=("memory",),
        reasons=("memory: bad",),
        gflops=12.5,
        profile_microbatches=(1, 8),
        profile_samples_per_s=(10.0, 70.5),
        max_microbatch=64,
        throttled=False,
        memory_tested_fraction=0.25,
        usable_memory_bytes=2**30,
    )
    devices = [dataclasses.replace(d, qualification=q) for d in original]
    devices.append(
        DeviceConfig(
            id="gpu0",
            kind="cuda",
            model="NVIDIA H200",
            capabilities={"power": True},
            spec={"tdp_w": 700.0},
        )
    )
    path = tmp_path / "out.toml"
    save_fleet(path, devices, {"name": "x", "nested": {"a": 1}})
    loaded = load_fleet(path)
    assert loaded.meta["nested"] == {"a": 1}
    assert list(loaded.devices) == devices


def test_load_admitted_splits_passing_failing_and_unqualified(tmp_path):
    good = Qualification(passed=True, level="quick", measured_speed=0.5, max_microbatch=128)
    bad = Qualification(
        passed=False,
        level="quick",
        failed_checks=("compute",),
        reasons=("compute: 3 wrong results",),
    )
    devices = [
        DeviceConfig(id="a", kind="emulated", speed=0.5, qualification=good),
        DeviceConfig(id="b", kind="emulated", speed=1.0, qualification=bad),
        DeviceConfig(id="c", kind="cpu"),
    ]
    path = tmp_path / "qualified.toml"
    save_fleet(path, devices)
    admitted, rejected = load_admitted(path)
    assert [d.id for d in admitted] == ["a"]
    assert admitted[0].qualification.measured_speed == 0.5
    assert [(r.device.id, r.reasons) for r in rejected] == [
        ("b", ("compute: 3 wrong results",)),
        ("c", ("not qualified: run `phalanx qualify` on this fleet",)),
    ]
    admitted, rejected = load_admitted(path, require_qualification=False)
    assert [d.id for d in admitted] == ["a", "c"]
