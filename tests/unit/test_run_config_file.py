"""`phalanx run --config FILE` read by the real CLI, without torch.

The file is parsed in an eager callback, before `phalanx run` imports the launcher
(and torch), so these run on the oldest supported Python as well, where `tomllib`
is the `tomli` package (`make check-oldest-python`). The runs a file configures
are tested end to end in tests/e2e/test_run_config.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from phalanx.toml_compat import tomllib


def test_the_toml_reader_is_the_standard_librarys_from_3_11_and_tomli_before():
    assert tomllib.__name__ == ("tomllib" if sys.version_info >= (3, 11) else "tomli")
    assert tomllib.loads('a = [1, 2]\n[b]\nc = "d"\n') == {"a": [1, 2], "b": {"c": "d"}}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            'emulate = "1x2"\ntimout_s = 3\nscript_args = ["--steps", "3"]\n',
            ["unknown key 'timout_s'", "did you mean timeout_s"],
        ),
        ('emulate = "1x2"\nscript_args = "--steps 3"\n', ["script_args", "list of strings"]),
        ('emulate = "1x2\n', ["is not valid TOML", "fix the file"]),
        (b"\xff\xfe not text", ["is not valid TOML"]),
    ],
)
def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path, text, words):
    path = tmp_path / "run.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    result = _run_with_config(path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: --config"), result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_a_missing_config_file_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "nowhere.toml"
    result = _run_with_config(missing)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot read it" in result.stderr and str(missing) in result.stderr


def _run_with_config(path):
    """`phalanx run --config PATH` as a user types it (tests.fleet_helpers needs torch)."""
    return subprocess.run(
        [sys.executable, "-m", "phalanx", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
