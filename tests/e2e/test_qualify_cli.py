"""`phalanx fleet scan` and `phalanx qualify` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.devices.fleet_file import load_admitted, load_fleet
from phalanx.toml_compat import tomllib
from tests.qualify_expect import DEFECTIVE20, assert_verdicts

PHALANX = str(Path(sys.executable).parent / "phalanx")


def phalanx(*args: str, cwd: Path, timeout_s: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PHALANX, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout_s
    )


@pytest.mark.e2e
@pytest.mark.timeout(330)
def test_standard_qualification_of_the_defective_fleet_in_real_time(tmp_path):
    """The acceptance run: 20 chips, 12 defective, --level standard, chip time = wall time."""
    out = tmp_path / "qualified.toml"
    run = phalanx(
        "qualify",
        "--fleet",
        str(DEFECTIVE20),
        "--level",
        "standard",
        "--out",
        str(out),
        "--seed",
        "0",
        cwd=tmp_path,
        timeout_s=300,
    )
    assert run.returncode == 0, run.stderr
    assert "8 of 20 devices passed" in run.stdout
    devices = list(load_fleet(out).devices)
    assert_verdicts(devices)
    assert all(
        d.qualification.time_scale == 1.0 and d.qualification.sustained_s
        for d in devices
        if d.qualification.passed
    )
    admitted, rejected = load_admitted(out)
    assert len(admitted) == 8 and len(rejected) == 12
    assert all(r.reasons for r in rejected)
    # plain progress lines, not a live table, when stdout is not a terminal
    assert "[crash-a] FAILED: crash: crashed after 30.0 s of load" in run.stdout


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_scan_then_qualify_the_real_cpu(tmp_path):
    scan = phalanx("fleet", "scan", "--out", "fleet.toml", "--cpu", cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    fleet = load_fleet(tmp_path / "fleet.toml")
    cpu = next(d for d in fleet.devices if d.kind == "cpu")
    assert cpu.capabilities["memory"] and cpu.memory_bytes
    run = phalanx(
        "qualify", "--fleet", "fleet.toml", "--level", "quick", "--out", "q.toml", cwd=tmp_path
    )
    assert run.returncode == 0, run.stdout + run.stderr
    q = next(d for d in load_fleet(tmp_path / "q.toml").devices if d.kind == "cpu").qualification
    assert q.passed, q.reasons
    assert q.gflops > 0.1 and q.measured_speed > 0
    assert q.memory_checked_bytes >= 2**20 and q.bad_memory_bytes == 0
    assert (
        q.elements_checked >= 3 * 4 * 2**20 and q.wrong_elements == 0
    )  # float32, float64, bfloat16
    assert q.sustained_s >= 10.0 and q.duration_s > q.sustained_s
    assert q.max_microbatch and len(q.profile_samples_per_s) == len(q.profile_microbatches) > 0
    print(
        f"cpu: {q.gflops:.1f} GFLOP/s, {q.memory_checked_bytes / 2**20:.0f} MiB checked, {q.duration_s:.1f} s"
    )


@pytest.mark.e2e
def test_emulated_quick_run_and_exit_code_when_nothing_passes(tmp_path):
    ok = phalanx(
        "qualify",
        "--emulate",
        "1,0.5x2",
        "--level",
        "quick",
        "--time-scale",
        "0",
        "--out",
        "q.toml",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    doc = tomllib.loads((tmp_path / "q.toml").read_text())
    assert [d["qualification"]["passed"] for d in doc["device"]] == [True, True, True]
    assert doc["fleet"]["qualified_level"] == "quick"
    (tmp_path / "bad.toml").write_text(
        '[[device]]\nid = "x"\nkind = "emulated"\n[device.defects]\ncrash_after_load_s = 1.0\n'
    )
    bad = phalanx(
        "qualify",
        "--fleet",
        "bad.toml",
        "--level",
        "quick",
        "--time-scale",
        "0",
        "--out",
        "q2.toml",
        cwd=tmp_path,
    )
    assert bad.returncode == 1
    assert "0 of 1 devices passed" in bad.stdout


MALFORMED = [
    ('[[device]]\nkind = "emulated"\nspeed = -0.5\n', "device[0].speed"),
    ('[[device]]\nkind = "quantum"\n', "device[0].kind"),
    ('[[device]]\nkind = "emulated"\nspeed = "fast"\n', "device[0].speed"),
    ('[[device]]\nkind = "cuda"\nindex = 1.5\n', "device[0].index"),
    (
        '[[device]]\nkind = "emulated"\n[device.defects]\nflip_rte = 1e-3\n',
        "device[0].defects.flip_rte",
    ),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("text", "field"), MALFORMED)
def test_malformed_fleet_is_one_clear_line_and_exit_2(tmp_path, text, field):
    (tmp_path / "fleet.toml").write_text(text)
    run = phalanx("qualify", "--fleet", "fleet.toml", cwd=tmp_path, timeout_s=60)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert not (tmp_path / "qualified.toml").exists()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--emulate", "1", "--fleet", "x.toml"], "--emulate"),
        (["--emulate", "1", "--level", "extreme"], "--level"),
        (["--emulate", "1", "--time-scale", "-1"], "--time-scale"),
        (["--emulate", "1", "--script", "train.py"], "--script"),
        (["--emulate", "0,1"], "--emulate"),
        (["--fleet", "missing.toml"], "--fleet"),
    ],
)
def test_bad_flags_are_usage_errors(tmp_path, args, field):
    run = phalanx("qualify", *args, cwd=tmp_path, timeout_s=60)
    assert run.returncode == 2
    assert run.stderr.startswith(f"error: {field}:"), run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_quick_caps_a_chip_whose_bad_memory_is_untested_and_plan_honours_the_cap(tmp_path):
    """Issue 13, item 5: a 16 GiB chip with 64 bad bytes at 15 GiB, tested in its first quarter."""
    (tmp_path / "fleet.toml").write_text(
        '[[device]]\nid = "badmem-high"\nkind = "emulated"\nmemory_bytes = 17179869184\n'
        "[device.defects]\nbad_memory = [{ offset_bytes = 16106127360, length_bytes = 64 }]\n"
    )
    run = phalanx(
        "qualify", "--fleet", "fleet.toml", "--level", "quick", "--time-scale", "0",
        "--out", "q.toml", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert (
        "warning: memory: tested 4.0 of 16.0 GiB (25.0%); usable memory capped at 4.0 GiB"
        in run.stdout
    )
    q = load_fleet(tmp_path / "q.toml").devices[0].qualification
    assert q.passed and q.usable_memory_bytes == 4 * 2**30 and q.memory_tested_fraction == 0.25
    # A replica plus one sample needs 6e9 bytes: it would fit the chip's 16 GiB, not its 4 tested.
    (tmp_path / "model.toml").write_text(
        'name = "m"\nparams = 2.5e8\nbytes_per_param = 16\nactivation_bytes_per_sample = 2e9\n'
        "flops_per_sample = 1e9\nglobal_batch = 8\n"
    )
    plan = phalanx(
        "plan", "--fleet", "q.toml", "--model", "model.toml", "--efficiency", "0.5", cwd=tmp_path
    )
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "no replica of m (5.6 GiB with one sample) fits on these chips" in plan.stderr
