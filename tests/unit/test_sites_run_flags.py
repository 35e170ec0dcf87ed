"""`phalanx run --site ...`: the flags become the SiteRunSettings every worker is told."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from phalanx.cli import main
from phalanx.errors import UsageError
from phalanx.launch.site_flags import SiteFlags, site_settings
from phalanx.sites.run_settings import SiteRunSettings

ROOT = Path(__file__).resolve().parents[2]
MLP = str(ROOT / "examples" / "mlp.py")
SITE = ["--site", "a", "--sites", "a,b", "--outer", "127.0.0.1:29600"]


def _flags(**given: Any) -> SiteFlags:
    base = {"site": "a", "sites": "a,b", "outer": "127.0.0.1:29600", "outer_every": 5}
    return SiteFlags(**{**base, **given})


@pytest.mark.parametrize(
    ("given", "flag", "words"),
    [
        ({"outer_every": 0}, "--outer-every", "integer >= 1"),
        ({"compression": "zip"}, "--outer-compression", "not a known scheme"),
        (
            {"compression": "int8", "error_feedback": False},
            "--no-outer-error-feedback",
            "quantisation bias",
        ),
        ({"compression": "4bit", "block_size": 0}, "--outer-block-size", "positive integer"),
        ({"outer_lr": 0.0}, "--outer-lr", "positive number"),
        ({"outer_momentum": 1.0}, "--outer-momentum", "[0, 1)"),
        ({"site": "c"}, "--site", "not one of the run's sites"),
        ({"sites": "a,a"}, "--sites", "used by another site"),
        ({"sites": "a,,b"}, "--sites", "letters, digits"),
        ({"outer": "nowhere"}, "--outer", "HOST:PORT"),
        ({"outer_every": None}, "--site", "needs --outer-every"),
        ({"sites": None, "outer": None}, "--site", "needs --sites, --outer"),
    ],
)
def test_a_bad_sites_flag_is_named_as_typed(given, flag, words):
    with pytest.raises(UsageError) as err:
        site_settings(_flags(**given))
    assert err.value.field == flag
    assert words in err.value.message()
    # The fix speaks in flags too, never in the settings' field names.
    assert "error_feedback =" not in err.value.fix and "outer_momentum 0" not in err.value.fix


@pytest.mark.parametrize(
    "given",
    [
        {"sites": "a,b"},
        {"outer": "127.0.0.1:1"},
        {"outer_every": 5},
        {"compression": "int8"},
        {"error_feedback": True},
        {"outer_lr": 0.5},
        {"replay": Path("runs/x")},
    ],
)
def test_a_sites_flag_without_site_is_refused(given):
    with pytest.raises(UsageError, match="--site is not given"):
        site_settings(SiteFlags(**given))


def test_no_sites_flag_is_an_ordinary_fleet():
    assert site_settings(SiteFlags()) is None


def test_replay_needs_a_run_directory_with_events(tmp_path):
    with pytest.raises(UsageError) as err:
        site_settings(_flags(replay=tmp_path))
    assert err.value.field == "--outer-replay" and "events.jsonl" in err.value.problem
    (tmp_path / "events.jsonl").write_text("")
    settings = site_settings(_flags(replay=tmp_path))
    assert settings is not None and settings.replay == str(tmp_path.absolute())


def test_defaults_and_the_outer_address():
    settings = site_settings(_flags(outer="http://10.0.0.1:29600"))
    assert settings == SiteRunSettings(
        site="a", site_names=("a", "b"), outer="10.0.0.1:29600", outer_every=5
    )
    assert (settings.compression, settings.block_size, settings.error_feedback) == (
        "none",
        64,
        True,
    )
    assert (settings.outer_lr, settings.outer_momentum) == (0.7, 0.9)


@pytest.fixture
def launched(monkeypatch) -> list[Any]:
    """The RunPlans `phalanx run` would launch (nothing starts)."""
    plans: list[Any] = []

    def launch(plan: Any) -> int:
        plans.append(plan)
        return 0

    monkeypatch.setattr("phalanx.launch.cli._launch", launch)
    return plans


def _main_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0)


def test_the_cli_builds_the_settings_and_every_worker_config_carries_them(launched, tmp_path):
    argv = ["run", MLP, "--out", str(tmp_path / "a"), "--emulate", "1,0.5", *SITE]
    argv += ["--outer-every", "20", "--outer-compression", "int8", "--outer-block-size", "32"]
    argv += ["--outer-lr", "0.5", "--outer-momentum", "0.8"]
    assert _main_code(argv) == 0
    (plan,) = launched
    expected = SiteRunSettings(
        site="a", site_names=("a", "b"), outer="127.0.0.1:29600", outer_every=20,
        compression="int8", block_size=32, outer_lr=0.5, outer_momentum=0.8,
    )  # fmt: skip
    assert plan.sites == expected
    from phalanx.launch.launcher import Launcher

    launcher = Launcher(plan)
    slots = launcher._make_slots("http://127.0.0.1:1", "127.0.0.1:2")
    assert [s.config.sites for s in slots] == [expected.to_json()] * 2
    slots[0]._save_configs()  # what a first launch and a restart read
    for restarted in (False, True):
        saved = json.loads(slots[0].config_path(restarted).read_text())
        assert SiteRunSettings.from_json(saved["sites"]) == expected


def test_an_ordinary_run_carries_no_sites(launched, tmp_path):
    assert _main_code(["run", MLP, "--out", str(tmp_path), "--emulate", "1"]) == 0
    assert launched[0].sites is None


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        ([*SITE, "--outer-every", "0"], "--outer-every"),
        ([*SITE, "--outer-every", "5", "--outer-compression", "zip"], "--outer-compression"),
        (["--outer-every", "5"], "--outer-every"),
    ],
)
def test_the_cli_says_one_line(launched, tmp_path, capsys, extra, flag):
    assert _main_code(["run", MLP, "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {flag}:")
    assert not launched


def test_config_file_takes_the_sites_keys(run_cmd, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        'site = "b"\nsites = "a,b"\nouter = "10.0.0.1:29600"\nouter_every = 40\n'
        'outer-compression = "4bit"\nouter_block_size = 128\nouter_lr = 0.6\n'
        'outer_momentum = 0.5\nno_outer_error_feedback = false\nouter_replay = "runs/old/a"\n'
    )
    params = dict(run_cmd.make_context("run", ["train.py", "--config", str(config)]).params)
    assert params["site"] == "b" and params["sites"] == "a,b"
    assert params["outer"] == "10.0.0.1:29600" and params["outer_every"] == 40
    assert params["outer_compression"] == "4bit" and params["outer_block_size"] == 128
    assert params["outer_lr"] == 0.6 and params["outer_momentum"] == 0.5
    assert params["outer_error_feedback"] is True
    assert params["outer_replay"] == Path("runs/old/a")
