"""`phalanx sites`: the sites it parses and each site's `phalanx run` arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from phalanx.errors import UsageError
from phalanx.launch.sites_plan import (
    SiteEntry,
    SitesPlan,
    check_out_dir,
    parse_sites,
    site_faults,
)


def test_sites_parse_as_emulate_specs():
    assert parse_sites(["a=1,1", "b=0.5x3:max_share=4", "c=1+1"]) == [
        ("a", "1,1", 2),
        ("b", "0.5x3:max_share=4", 3),
        ("c", "1+1", 1),  # one replica group of two chips
    ]


@pytest.mark.parametrize(
    ("texts", "field", "words"),
    [
        ([], "--site", "is missing"),
        (["a=1", "b="], "--site b", "site b has no replicas"),
        (["a=1", "a=0.5"], "--site", "site a is given twice"),
        (["=1"], "--site", "is not NAME=SPEC"),
        (["a"], "--site", "is not NAME=SPEC"),
        (["a:b=1"], "--site", "letters, digits"),
        (["a=fast"], "--site a", "is not SPEED"),
    ],
)
def test_bad_sites(texts, field, words):
    with pytest.raises(UsageError) as err:
        parse_sites(texts)
    assert err.value.field == field and words in err.value.message()
    assert "e.g. --emulate" not in err.value.fix  # the fix names the flag the user typed


def test_site_faults_go_to_their_site():
    faults = site_faults(["b:kill:replica=1,step=5,restart_s=2"], {"a": 1, "b": 2})
    assert faults == {"a": [], "b": ["kill:replica=1,step=5,restart_s=2"]}
    with pytest.raises(UsageError, match="site's name"):
        site_faults(["c:kill:replica=0,step=5"], {"a": 1})
    with pytest.raises(UsageError) as err:
        site_faults(["a:kill:replica=1,step=5"], {"a": 1})
    assert err.value.field.startswith("--site-fault") and "(site a)" in err.value.field


def test_each_sites_run_arguments():
    plan = SitesPlan(
        script=Path("/x/train.py"),
        script_args=["--steps", "9"],
        sites=(SiteEntry("a", "1,1", 2), SiteEntry("b", "0.5", 1, ("kill:replica=0,step=3",))),
        out_dir=Path("/runs/s"),
        outer_flags={"--outer-every": "20", "--no-outer-error-feedback": ""},
        run_flags=("--timeout-s", "3.0"),
    )
    assert plan.site_argv(plan.sites[1], "127.0.0.1:9") == [
        "run", "/x/train.py", "--emulate", "0.5", "--out", "/runs/s/b", "--site", "b",
        "--sites", "a,b", "--outer", "127.0.0.1:9", "--outer-every", "20",
        "--no-outer-error-feedback", "--timeout-s", "3.0", "--fault", "kill:replica=0,step=3",
        "--", "--steps", "9",
    ]  # fmt: skip


def test_out_dir_of_an_earlier_sites_run_is_refused(tmp_path):
    check_out_dir(tmp_path / "new", ["a", "b"])
    (tmp_path / "new" / "b").mkdir()
    (tmp_path / "new" / "b" / "events.jsonl").write_text("")
    with pytest.raises(UsageError, match="already holds a sites run"):
        check_out_dir(tmp_path / "new", ["a", "b"])
