"""Step timelines -> rates. One definition for every contender, so ratios compare like with like."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

# Steps before this one are warm-up (allocation, first connections, shares settling)
# and are left out of steady-state rates, for every contender alike.
WARMUP_STEPS = 4


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a SIGKILL
            continue
    return records


def step_times(records: list[dict[str, Any]], first_writer: bool = False) -> dict[int, float]:
    """Commit time of each step.

    A step redone after a restart counts once, at its last commit. With
    `first_writer` (phalanx: every participant writes each step), the
    earliest participant's record of a step is its commit time.
    """
    times: dict[int, float] = {}
    for record in records:
        if record.get("kind") != "step":
            continue
        step, t = int(record["step"]), float(record["t"])
        times[step] = min(t, times.get(step, t)) if first_writer else t
    return times


def steady_rate_sps(times: dict[int, float], batch: int, warmup: int = WARMUP_STEPS) -> float:
    """Samples per second between the commit of step `warmup` and the last step."""
    steps = sorted(s for s in times if s >= warmup)
    if len(steps) < 2:
        raise ValueError(f"too few steps after warm-up {warmup}: {steps}")
    first, last = steps[0], steps[-1]
    return batch * (last - first) / (times[last] - times[first])


def goodput_sps(records: list[dict[str, Any]], batch: int) -> tuple[float, float]:
    """Useful samples per second from the first commit of step 0 to the last commit: (rate, window_s).

    Everything a fault costs (stalls, restarts, steps redone from a checkpoint) falls
    inside this window: it starts at the *first* time any step was committed, not at a
    redone step's later commit.
    """
    steps = [r for r in records if r.get("kind") == "step"]
    if not steps:
        raise ValueError("no committed steps")
    start_t = min(float(r["t"]) for r in steps)
    times = step_times(records)
    last = max(times)
    window_s = times[last] - start_t
    return batch * last / window_s, window_s


def spread(values: list[float]) -> dict[str, float | int]:
    """min / median / max of repeats (n is the number of repeats)."""
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "n": len(values),
    }
