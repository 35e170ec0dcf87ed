"""`phalanx run --fleet qualified.toml`: only devices that passed train; re-screening."""

import textwrap

import pytest

from tests.fleet_helpers import MLP, events, phalanx, summary

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

FLEET = textwrap.dedent(
    """
    [[device]]
    id = "good-a"
    kind = "emulated"
    speed = 0.5

    [[device]]
    id = "bad-sdc"
    kind = "emulated"
    speed = 0.5
    [device.defects]
    flip_rate = 1e-3

    [[device]]
    id = "good-b"
    kind = "emulated"
    speed = 0.25
    """
)


def test_only_qualified_devices_train(tmp_path):
    fleet, qualified, run = tmp_path / "fleet.toml", tmp_path / "qualified.toml", tmp_path / "run"
    fleet.write_text(FLEET)
    done = phalanx(
        "qualify",
        "--fleet",
        str(fleet),
        "--level",
        "quick",
        "--time-scale",
        "0",
        "--out",
        str(qualified),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = phalanx(
        "run", str(MLP), "--fleet", str(qualified), "--out", str(run), "--", "--steps", "12"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not admitted: bad-sdc" in result.stdout
    start = next(e for e in events(run) if e["kind"] == "run_start")
    assert sorted(start["replicas"]) == ["r0", "r1"]
    assert [r["speed"] for r in start["replicas"].values()] == [0.5, 0.25]
    assert summary(run)["completed"]


def test_a_chip_that_degrades_under_load_is_caught_by_the_rescreen(tmp_path):
    # Both chips passed qualification earlier; one starts flipping bits after 0.03 s of
    # load (a few steps in). The onset is counted in chip load and the re-screen in wall
    # time, so the run must outlast the onset by many re-screen periods on any host: with
    # 0.2 s of load and 60 steps the run could end before the first re-screen after the
    # onset (it did, beside a busy core). The early re-screens may pass or fail; whichever,
    # the defective chip is the one quarantined, by the re-screen, and only it.
    fleet = tmp_path / "qualified.toml"
    fleet.write_text(
        textwrap.dedent(
            """
            [[device]]
            id = "steady"
            kind = "emulated"
            speed = 0.25
            [device.qualification]
            passed = true
            level = "quick"

            [[device]]
            id = "tires"
            kind = "emulated"
            speed = 0.25
            [device.defects.intermittent]
            flip_rate = 1e-3
            after_load_s = 0.03
            [device.qualification]
            passed = true
            level = "quick"
            """
        )
    )
    run = tmp_path / "run"
    result = phalanx(
        "run",
        str(MLP),
        "--fleet",
        str(fleet),
        "--out",
        str(run),
        "--rescreen-every-s",
        "0.1",
        "--quiet",
        "--",
        "--steps",
        "150",
        "--repeat",
        "4",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    quarantined = [e for e in events(run) if e["kind"] == "quarantine"]
    assert [e["replica"] for e in quarantined] == ["r1"]
    assert quarantined[0]["reason"].startswith("re-screen found")
    assert any(
        e["kind"] == "rescreen" and e["replica"] == "r0" and e["passed"] for e in events(run)
    )
    info = summary(run)
    assert info["completed"]
    assert {d["id"]: d["status"] for d in info["devices"]}["r1"] == "quarantined"


def test_qualify_profiles_the_users_script(tmp_path):
    out = tmp_path / "qualified.toml"
    done = phalanx(
        "qualify",
        "--emulate",
        "1,0.5",
        "--level",
        "quick",
        "--time-scale",
        "0",
        "--script",
        str(MLP),
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    from phalanx.toml_compat import tomllib

    devices = tomllib.loads(out.read_text())["device"]
    profiles = [d["qualification"] for d in devices]
    assert all(
        p["profile_microbatches"][0] == 1 for p in profiles
    )  # the script's model, not the built-in
    fast, slow = (max(p["profile_samples_per_s"]) for p in profiles)
    assert 1.6 < fast / slow < 2.4  # the emulated 0.5 chip measures about half as fast
