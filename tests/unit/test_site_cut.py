"""`phalanx sites --cut`: its spec, and a whole process tree frozen and woken on the record."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.errors import UsageError
from phalanx.launch.process_tree import descendants
from phalanx.launch.site_cut import CutSpec, SiteCuts, parse_cut
from phalanx.observe.events import EventLog, read_events
from tests.fleet_helpers import wait_for

pytestmark = pytest.mark.timeout(120)
SITES = ["a", "b"]


def test_parse_cut():
    assert parse_cut("b:round=2,for_s=10", SITES) == CutSpec("b", 2, 10.0, 0.3)
    assert parse_cut("a: round=0, for_s=1.5, delay_s=0", SITES) == CutSpec("a", 0, 1.5, 0.0)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("b", "is not NAME:round=R,for_s=S"),
        ("c:round=1,for_s=1", "names no site"),
        ("b:round=1", "misses for_s"),
        ("b:for_s=1", "misses round"),
        ("b:round=x,for_s=1", "is not a number"),
        ("b:round=1,for_s=0", "must be > 0"),
        ("b:round=-1,for_s=1", "must be >= 0"),
        ("b:round=1,for_s=1,delay_s=-1", "must be >= 0"),
        ("b:round=1,for_s=1,when=3", "unknown item"),
        ("b:round=1,round=2,for_s=1", "given twice"),
    ],
)
def test_bad_cuts_are_one_line(text, words):
    with pytest.raises(UsageError) as err:
        parse_cut(text, SITES)
    assert err.value.field.startswith("--cut") and words in err.value.message()
    assert "\n" not in err.value.message()


# A site in miniature: a parent, and a child in a session of its own (as workers are).
TREE = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],"
    " start_new_session=True)\n"
    "time.sleep(120)\n"
)


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


@pytest.fixture
def site_tree():
    parent = subprocess.Popen([sys.executable, "-c", TREE])
    try:
        wait_for(lambda: len(descendants(parent.pid)) == 1, 30, "the child of the site")
        yield parent.pid, descendants(parent.pid)[0]
    finally:
        pids = [parent.pid, *descendants(parent.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        parent.wait()


def test_a_cut_freezes_the_whole_site_and_wakes_it(tmp_path, site_tree):
    parent, child = site_tree
    said: list[str] = []
    log = EventLog(tmp_path, source="sites", file_name="sites_events.jsonl")
    site_dirs = {"a": tmp_path / "a", "b": tmp_path / "b"}
    cuts = SiteCuts(
        [CutSpec("b", round=1, for_s=10.0, delay_s=0.5)],
        site_dirs,
        lambda name: parent if name == "b" else None,
        log,
        said.append,
    )
    site_a = EventLog(site_dirs["a"], source="a-r0")
    site_a.emit("outer_round", round=0, sites=[])
    cuts.tick(now=100.0)
    assert said == []  # round 0 is before the cut's round
    site_a.emit("outer_round", round=1, sites=[])
    cuts.tick(now=200.0)  # the round is seen: the cut is due delay_s later
    cuts.tick(now=200.4)
    assert said == []
    cuts.tick(now=200.5)
    wait_for(lambda: _state(parent) == "T" and _state(child) == "T", 30, "the site frozen")
    assert len(said) == 1 and "site b cut off" in said[0] and "2 processes" in said[0]
    cuts.tick(now=210.4)
    assert _state(child) == "T"
    cuts.tick(now=210.5)
    wait_for(lambda: _state(parent) != "T" and _state(child) != "T", 30, "the site woken")
    assert "site b is back" in said[1] and not cuts.active
    events = read_events(tmp_path, file_name="sites_events.jsonl")
    assert [(e["kind"], e["site"], e["round"]) for e in events] == [
        ("site_cut", "b", 1),
        ("site_back", "b", 1),
    ]


def test_stopping_wakes_a_site_still_cut_off(tmp_path, site_tree):
    parent, child = site_tree
    log = EventLog(tmp_path, source="sites", file_name="sites_events.jsonl")
    cuts = SiteCuts(
        [CutSpec("a", round=0, for_s=60.0, delay_s=0.0)],
        {"a": tmp_path / "a"},
        lambda name: parent,
        log,
        lambda line: None,
    )
    EventLog(tmp_path / "a", source="a-r0").emit("outer_round", round=3, sites=[])
    cuts.tick(now=0.0)
    wait_for(lambda: _state(child) == "T", 30, "the site frozen")
    cuts.release_all()
    wait_for(lambda: _state(parent) != "T" and _state(child) != "T", 30, "the site woken")
