"""Where phalanx's time goes, and how fast it recovers: both read from events.jsonl alone."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from bench.timeline import WARMUP_STEPS, step_times

Event = dict[str, Any]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def phalanx_phases(events: list[Event], warmup: int = WARMUP_STEPS) -> dict[str, Any]:
    """Per-step medians on the critical path (the participant with the longest compute).

    interval_s is commit to commit; other_s is what the step loop spends outside the
    four timed phases (packing the flat buffer, optimizer step, events). compute_s splits
    into balanced_compute_s (shares exactly proportional to the speeds the chips showed in
    that step) and imbalance_s (the wait for the participant whose share was too big).
    """
    by_step: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        if event.get("kind") == "step" and event["step"] >= warmup:
            by_step[event["step"]].append(event)
    times = step_times(events, first_writer=True)
    rows: dict[str, list[float]] = defaultdict(list)
    for step, records in sorted(by_step.items()):
        if step - 1 not in times:
            continue
        interval_s = times[step] - times[step - 1]
        critical = max(records, key=lambda r: r["compute_s"])
        rows["interval_s"].append(interval_s)
        for phase in ("compute_s", "quorum_s", "allreduce_s", "commit_s"):
            rows[phase].append(critical[phase])
        # What compute would take if this step's shares matched this step's measured speeds.
        balanced_s = sum(critical["shares"]) / sum(critical["sps"])
        rows["balanced_compute_s"].append(balanced_s)
        rows["imbalance_s"].append(critical["compute_s"] - balanced_s)
        timed = sum(critical[p] for p in ("compute_s", "quorum_s", "allreduce_s", "commit_s"))
        rows["other_s"].append(interval_s - timed)
        rows["non_compute_s"].append(interval_s - critical["compute_s"])
    return {name: _median(values) for name, values in rows.items()}


def _first(events: list[Event], kind: str, replica: str, after_t: float) -> Event | None:
    return next(
        (
            e
            for e in events
            if e.get("kind") == kind and e.get("replica") == replica and e["t"] > after_t
        ),
        None,
    )


def recovery(events: list[Event]) -> dict[str, list[dict[str, Any]]]:
    """Fault -> survivors' next commit; restarted launch -> first participating step, split."""
    steps = [e for e in events if e.get("kind") == "step"]
    faults = []
    for fault in (e for e in events if e.get("kind") == "fault"):
        later = [e["t"] for e in steps if e["replica"] != fault["replica"] and e["t"] > fault["t"]]
        if later:
            faults.append(
                {
                    "fault": fault["fault"],
                    "replica": fault["replica"],
                    "step": fault["step"],
                    "to_survivors_commit_s": min(later) - fault["t"],
                }
            )
    rejoins = []
    for restart in (e for e in events if e.get("kind") == "worker_restart"):
        name, t0 = restart["replica"], restart["t"]
        started = _first(events, "worker_start", name, t0)
        healed = _first(events, "heal", name, t0)
        stepped = _first(events, "step", name, t0)
        if started is None or stepped is None:
            continue
        total_s = stepped["t"] - t0
        process_start_s = started["t"] - t0
        heal_s = healed["duration_s"] if healed is not None else 0.0
        rejoins.append(
            {
                "replica": name,
                "launch_to_step_s": total_s,
                "process_start_s": process_start_s,
                "heal_s": heal_s,
                "rest_s": total_s - process_start_s - heal_s,
            }
        )
    return {"faults": faults, "rejoins": rejoins}


def sync_and_heal(events: list[Event]) -> dict[str, Any]:
    """Scenario 5: median allreduce of full-fleet steps, and the heal of the woken replica."""
    steps = [e for e in events if e.get("kind") == "step" and e["step"] >= 1]
    widest = max((len(e["participants"]) for e in steps), default=0)
    full = [e for e in steps if len(e["participants"]) == widest]
    heals = [e["duration_s"] for e in events if e.get("kind") == "heal"]
    times = step_times(events, first_writer=True)
    intervals = [times[s] - times[s - 1] for s in times if s - 1 in times and s >= 2]
    return {
        "allreduce_s": _median([e["allreduce_s"] for e in full]),
        "compute_s": _median([e["compute_s"] for e in full]),
        "interval_s": _median(intervals),
        "heal_s": heals[0] if heals else None,
        "steps": len(times),
    }
