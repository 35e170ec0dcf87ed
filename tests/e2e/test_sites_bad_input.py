"""Bad input to `phalanx sites` and to `phalanx run --site`: one line, exit code 2."""

import pytest

from tests.fleet_helpers import MLP, one_clear_line, phalanx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SITE = ["--site", "a", "--sites", "a,b", "--outer", "127.0.0.1:1"]


_one_clear_line = one_clear_line


def test_a_site_without_replicas(tmp_path):
    result = phalanx(
        "sites", "--site", "a=1", "--site", "b=", "--outer-every", "5", "--out", str(tmp_path),
        str(MLP), "--", "--steps", "5",
    )  # fmt: skip
    _one_clear_line(result, "--site b", "site b has no replicas")
    assert not list(tmp_path.iterdir())  # nothing started


def test_sites_run_bad_outer_flag_names_the_flag(tmp_path):
    result = phalanx(
        "sites", "--site", "a=1", "--site", "b=1", "--outer-every", "5",
        "--outer-compression", "int8", "--no-outer-error-feedback", "--out", str(tmp_path),
        str(MLP),
    )  # fmt: skip
    _one_clear_line(result, "--no-outer-error-feedback")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ([*SITE, "--outer-every", "0"], "--outer-every"),
        ([*SITE, "--outer-every", "5", "--outer-compression", "int8", "--no-outer-error-feedback"],
         "--no-outer-error-feedback"),
        ([*SITE, "--outer-every", "5", "--outer-compression", "zip"], "--outer-compression"),
        (["--site", "c", "--sites", "a,b", "--outer", "127.0.0.1:1", "--outer-every", "5"],
         "--site"),
        (["--outer-every", "5"], "--outer-every"),
        ([*SITE, "--outer-every", "5", "--outer-replay", "/nonexistent"], "--outer-replay"),
    ],
)  # fmt: skip
def test_run_site_flags(tmp_path, flags, needle):
    result = phalanx("run", str(MLP), "--out", str(tmp_path), "--emulate", "1", *flags)
    _one_clear_line(result, f"error: {needle}:", "Fix:")
