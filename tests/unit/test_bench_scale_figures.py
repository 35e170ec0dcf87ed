"""Scenario 4's step, memory and balance figures: from raw records to the rendered rows.

Synthetic records only (no processes): the bench's arithmetic, not its timing.
"""

import math

import pytest
from bench import aggregate, phases, report
from bench.contenders import _ddp_peak_rss_bytes

GiB = 2**30


def _ddp_records(intervals_s, compute_s, backward_s):
    """steps.jsonl of a 2-rank DDP run: rank 1 computes 0.5 s longer than rank 0."""
    records, t = [{"kind": "attempt", "restart": 0, "step": 0, "t": 0.0}], 0.0
    for step, interval_s in enumerate(intervals_s):
        t += interval_s
        for rank, extra_s in ((0, 0.0), (1, 0.5)):
            records.append(
                {
                    "kind": "phase",
                    "rank": rank,
                    "step": step,
                    "compute_s": compute_s + extra_s,
                    "backward_s": backward_s + extra_s,
                    "optimizer_s": 0.1,
                    "t": t,
                }
            )
        records.append({"kind": "step", "step": step, "t": t})
    return records


def test_ddp_phases_follow_the_slowest_rank_after_warm_up():
    # Warm-up steps 0-3 are slow; from step 4 on every step takes 10 s.
    records = _ddp_records([30.0] * 4 + [10.0] * 4, compute_s=6.5, backward_s=7.5)
    got = phases.ddp_phases(records, warmup=4)
    assert got["interval_s"] == pytest.approx(10.0)
    assert got["compute_s"] == pytest.approx(7.0)  # rank 1's
    assert got["allreduce_s"] == pytest.approx(1.0)  # backward after its last bucket
    assert got["other_s"] == pytest.approx(2.0)
    assert got["non_compute_s"] == pytest.approx(3.0)


def test_ddp_peak_memory_per_rank_keeps_the_largest_process():
    records = [
        {"kind": "done", "rank": 0, "peak_rss_bytes": 2 * GiB},
        {"kind": "done", "rank": 1, "peak_rss_bytes": 3 * GiB},
        {"kind": "done", "rank": 1, "peak_rss_bytes": 1 * GiB},  # its restarted process
    ]
    assert _ddp_peak_rss_bytes(records, 3) == [2 * GiB, 3 * GiB, None]


def _phalanx_events(shares_by_step, speeds):
    events = [{"kind": "run_start", "replicas": {n: {"speed": s} for n, s in speeds.items()}}]
    for step, shares in enumerate(shares_by_step):
        for name in speeds:  # every participant writes the same shares
            events.append(
                {"kind": "step", "step": step, "replica": name, "participants": list(speeds)}
                | {"shares": shares}
            )
    return events


def test_equal_share_ratio_compares_chips_of_one_speed_after_warm_up():
    speeds = {"r0": 1.0, "r1": 1.0, "r2": 0.5}
    # Step 0 (warm-up) is lopsided; later the equal chips get 10 and 11, the slow one 5.
    events = _phalanx_events([[20, 1, 5], [10, 10, 5], [10, 11, 5]], speeds)
    assert phases.equal_share_ratio(events, warmup=1) == pytest.approx(1.1)
    assert phases.equal_share_ratio(_phalanx_events([[4, 0, 2]], speeds), warmup=0) == math.inf
    # No two chips of one speed: nothing to compare.
    assert phases.equal_share_ratio(_phalanx_events([[4, 2]], {"a": 1, "b": 0.5}), 0) is None


GOALS = {
    "phalanx_over_ddp": 0.95,
    "non_compute_points": 5.0,
    "rss_over_ddp": 1.25,
    "imbalance_share": 0.03,
    "equal_share_ratio": 1.10,
}


def _run(contender, repeat, sps, interval_s, non_compute_s, rss_gib, **extra):
    return {
        "scenario": "homogeneous",
        "config": "4 equal chips | 100M",
        "contender": contender,
        "repeat": repeat,
        "goals": GOALS,
        "steady_sps": sps,
        "phases": {"interval_s": interval_s, "non_compute_s": non_compute_s, **extra},
        "peak_rss_bytes": [rss_gib * GiB, None],
    }


def _records():
    return [
        # Repeat 0: phalanx spends 28% of its step outside compute, DDP 20%.
        _run("phalanx", 0, 0.9, 10.0, 2.8, 2.5, imbalance_s=0.2) | {"equal_share_ratio": 1.0},
        _run("ddp", 0, 1.0, 10.0, 2.0, 2.0),
        # Repeat 1: 25% against 25%.
        _run("phalanx", 1, 1.0, 8.0, 2.0, 2.3, imbalance_s=0.4) | {"equal_share_ratio": 1.1},
        _run("ddp", 1, 1.0, 8.0, 2.0, 2.0),
        {"scenario": "homogeneous", "config": "4 equal chips | 100M", "contender": "ideal"}
        | {"repeat": 0, "steady_sps": 1.1, "peak_rss_bytes": [int(1.5 * GiB)]},
    ]


def test_figures_are_paired_per_repeat_and_carry_the_rows_goals():
    (row,) = aggregate.summarize(_records())["homogeneous"]
    assert row["goals"] == GOALS
    assert row["non_compute_points"]["min"] == pytest.approx(0.0)
    assert row["non_compute_points"]["max"] == pytest.approx(8.0)
    assert row["rss_over_ddp"]["median"] == pytest.approx((1.25 + 1.15) / 2)
    assert row["peak_rss_bytes"]["ideal"]["median"] == pytest.approx(1.5 * GiB)
    assert row["imbalance_share"]["max"] == pytest.approx(0.05)
    assert row["equal_share_ratio"]["max"] == pytest.approx(1.1)
    assert row["ddp_phases"]["interval_s"] == pytest.approx(9.0)


def test_rendered_rows_state_each_goal_and_verdict():
    (row,) = aggregate.summarize(_records())["homogeneous"]
    rendered = {r[2]: r for r in report.headline_rows({**_empty(), "homogeneous": [row]})}
    points = rendered["non-compute share of a step: phalanx - DDP"]
    assert points[3] == "4.0 points (0.0-8.0, n=2)"
    assert (points[5], points[6]) == ("<= 5.0 points", "met")
    rss = rendered["peak RSS per replica: phalanx / DDP"]
    assert (rss[5], rss[6]) == ("<= 1.25", "met")
    assert "DDP 2.15 GB" in rss[4] and "solo 1.61 GB" in rss[4]
    imbalance = rendered["imbalance, % of a step"]
    assert imbalance[3].startswith("3.5%") and imbalance[6] == "missed by 0.5"
    shares = rendered["equal chips' shares after warm-up, max / min (worst step)"]
    assert (shares[3], shares[6]) == ("1.05 (1.00-1.10, n=2)", "met")
    assert rendered["phalanx / DDP throughput"][5] == ">= 0.95"


def test_rows_without_goals_or_figures_render_as_before():
    """A results file from before these figures: defaults, no rows for what nobody measured."""
    (row,) = aggregate.summarize(_records())["homogeneous"]
    old = {k: row[k] for k in ("config", "phalanx_over_ddp", "phalanx_over_ideal")}
    old["ddp_over_ideal"] = row["ddp_over_ideal"]
    rows = report.headline_rows({**_empty(), "homogeneous": [old]})
    assert [r[2] for r in rows] == [
        "phalanx / DDP throughput",
        "imbalance, % of a step",
        "equal chips' shares after warm-up, max / min (worst step)",
    ]
    assert rows[0][5] == ">= 0.95" and rows[1][6] == "not measured"


def _empty():
    recovery = {
        "phalanx_fault_to_survivors_commit_s": {},
        "phalanx_rejoin": {},
        "torchrun_failure_to_new_progress_s": {},
    }
    return {"efficiency": [], "faults": [], "recovery": recovery, "scaling": []}


def test_a_miss_smaller_than_the_figures_digits_is_shown_with_more():
    """3.04% against a goal of 3%: not "missed by 0.0" (it reads as met), but by 0.04."""
    value = {"median": 0.0304, "min": 0.0304, "max": 0.0304, "n": 1}
    assert report._verdict(value, 0.03, at_most=True, digits=1, scale=100) == "missed by 0.04"
    assert report._verdict(value, 0.04, at_most=True, digits=1, scale=100) == "met"
