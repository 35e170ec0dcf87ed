"""`phalanx run --config run.toml`: every flag from a file, the command line overriding it."""

import pytest

from tests.fleet_helpers import MLP, phalanx, summary

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def _config(tmp_path, extra: str = "") -> str:
    path = tmp_path / "run.toml"
    path.write_text(
        f'script = "{MLP}"\nemulate = "1x2"\nout = "{tmp_path / "from-file"}"\n'
        'quiet = true\ntimeout-s = 5\nscript_args = ["--steps", "3", "--batch", "8"]\n' + extra
    )
    return str(path)


def test_the_file_gives_every_flag_and_the_command_line_overrides_it(tmp_path):
    config = _config(tmp_path)
    result = phalanx("run", "--config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    first = summary(tmp_path / "from-file")
    assert first["steps"] == 3 and len(first["devices"]) == 2
    out = tmp_path / "from-flags"
    result = phalanx(
        "run", "--config", config, "--emulate", "1x3", "--out", str(out), "--", "--steps", "2",
        "--batch", "9",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    second = summary(out)
    assert second["steps"] == 2 and len(second["devices"]) == 3
    assert second["global_batch_size"] == 9


def test_an_unknown_key_is_one_line_naming_the_closest_flag(tmp_path):
    result = phalanx("run", "--config", _config(tmp_path, "timout_s = 3\n"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown key 'timout_s'" in result.stderr and "did you mean timeout_s" in result.stderr
