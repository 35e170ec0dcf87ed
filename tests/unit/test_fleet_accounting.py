"""Data accounting over the sites of a sites run: the stream steps of every site together."""

from __future__ import annotations

import json
from pathlib import Path

from phalanx.observe.events import EventLog
from phalanx.observe.summary import build_summary
from phalanx.sites.fleet_accounting import fleet_accounting, site_accounting
from phalanx.sites.sites_summary import build_sites_summary, outer_link_bytes, summary_lines

B = 8  # global batch


def _write_site(run_dir: Path, name: str, stream_steps: list[int], stream: bool = True) -> None:
    """A site's events: its inner steps 0.. train the given global-stream steps.

    `stream` False: an ordinary run's events (no site fields), its steps the given ones.
    """
    log = EventLog(run_dir, source=f"{name}-r0")
    log.emit("worker_start", replica="r0", global_batch_size=B, num_samples=None, seed=0, steps=9)
    for inner, stream_step in enumerate(stream_steps):
        start = stream_step * B
        fields = {"site": name, "stream_step": stream_step} if stream else {}
        log.emit(
            "step", step=inner if stream else stream_step, ranges=[[start, start + 5], [start + 5, start + B]],
            participants=["r0", "r1"], shares=[5, 3], sps=[1.0, 1.0], loss=0.5, **fields,
        )  # fmt: skip


def _sites(tmp_path: Path, layout: dict[str, list[int]]) -> list[Path]:
    dirs = []
    for name, steps in layout.items():
        _write_site(tmp_path / name, name, steps)
        dirs.append(tmp_path / name)
    return dirs


def test_disjoint_sites_tile_the_stream(tmp_path):
    dirs = _sites(tmp_path, {"a": [0, 1, 4, 5], "b": [2, 3], "c": [6, 7, 8]})
    data = fleet_accounting(dirs, B, None, 0)
    assert data["duplicates"] == 0 and data["missing"] == 0
    assert data["steps_missing"] == [] and data["misaligned_steps"] == []
    assert data["samples_seen"] == 9 * B == data["unique_samples"]
    assert data["steps_committed"] == 9 and data["duplicate_steps"] == []


def test_two_sites_claiming_a_stream_step_count_as_duplicates(tmp_path):
    dirs = _sites(tmp_path, {"a": [0, 1, 2], "b": [2, 3]})
    data = fleet_accounting(dirs, B, None, 0)
    assert data["duplicate_steps"] == [2]
    assert data["duplicates"] == B
    assert data["samples_seen"] == 5 * B and data["unique_samples"] == 4 * B
    assert data["steps_missing"] == []


def test_a_stream_step_nobody_trained_is_missing(tmp_path):
    dirs = _sites(tmp_path, {"a": [0, 1], "b": [3, 4]})
    data = fleet_accounting(dirs, B, None, 0)
    assert data["steps_missing"] == [2]
    assert data["missing"] == B and data["duplicates"] == 0


def test_epochs_of_a_finite_data_set(tmp_path):
    # 3 steps of 8 over a data set of 12 samples: one full epoch, each sample once.
    dirs = _sites(tmp_path, {"a": [0], "b": [1, 2]})
    data = fleet_accounting(dirs, B, 12, 7)
    assert data["epochs_completed"] == 2 and data["missing"] == 0 and data["duplicates"] == 0


def test_sites_without_stream_steps_overlap_entirely(tmp_path):
    # Workers that do not know they are a site train the same steps: that is what happened.
    for name in ("a", "b"):
        _write_site(tmp_path / name, name, [0, 1, 2], stream=False)
    data = fleet_accounting([tmp_path / "a", tmp_path / "b"], B, None, 0)
    assert data["duplicates"] == 3 * B and data["duplicate_steps"] == [0, 1, 2]


def test_a_sites_own_summary_leaves_misses_to_the_fleet(tmp_path):
    _write_site(tmp_path / "b", "b", [2, 3, 2])  # stream step 2 twice within the site
    data = build_summary(tmp_path / "b")["data"]
    assert data["missing"] is None and data["steps_missing"] is None
    assert data["epochs_completed"] is None
    assert data["fleet_accounting"] == "sites_summary.json"
    assert data["duplicates"] == B and data["misaligned_steps"] == []
    # The tiling check is against the stream step, not the site's own inner step.
    direct = site_accounting({0: {"step": 0, "stream_step": 5, "ranges": [[40, 48]]}}, B, None, 0)
    assert direct["misaligned_steps"] == []


def test_an_ordinary_runs_summary_is_unchanged(tmp_path):
    _write_site(tmp_path, "x", [0, 1, 3], stream=False)
    data = build_summary(tmp_path)["data"]
    assert data["steps_missing"] == [2] and data["missing"] == B
    assert "fleet_accounting" not in data


def _round(index: int, payloads: list[int], **extra: object) -> dict:
    sites = [
        {"site": i, "inner_steps": 5 if p else 0, "samples": 40 if p else 0, "payload_bytes": p}
        for i, p in enumerate(payloads)
    ]
    return {"kind": "outer_round", "round": index, "sites": sites, **extra}


def test_outer_link_bytes():
    # Round 0: three sites send 100 each to the two others; round 1: site 2 was cut off.
    assert outer_link_bytes([_round(0, [100, 100, 100]), _round(1, [100, 100, 0])]) == (
        3 * 100 * 2 + 2 * 100 * 1
    )
    assert outer_link_bytes([_round(0, [100, 100, 100], quorum=[0, 1])]) == 3 * 100 * 1
    assert outer_link_bytes([{"kind": "outer_round", "round": 0}]) is None
    assert outer_link_bytes([]) == 0


def test_sites_summary_of_a_run(tmp_path):
    _sites(tmp_path, {"a": [0, 2], "b": [1]})
    for name in ("a", "b"):  # each replica of each site records the round: counted once
        EventLog(tmp_path / name, source="r0").emit(**_round(0, [50, 50]))
    (tmp_path / "a" / "summary.json").write_text(
        json.dumps({"completed": True, "steps": 2, "planned_steps": 2, "samples": 16})
    )
    summary = build_sites_summary(tmp_path, {"a": 0, "b": 1})
    assert summary["outer_rounds"] == 1 and summary["outer_link_bytes"] == 100
    assert summary["sites"]["a"]["steps"] == 2 and summary["sites"]["b"]["summary"] is None
    assert summary["data"]["steps_missing"] == [] and summary["data"]["duplicates"] == 0
    lines = summary_lines(summary)
    assert lines[0].startswith("site a: exit 0, 2/2 steps")
    assert lines[1] == "site b: exit 1, no summary.json"
    assert "100 bytes" in lines[2] and "0 duplicated, 0 missed" in lines[3]
