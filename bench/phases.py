"""Where each contender's time goes, and how fast phalanx recovers.

phalanx's figures are read from its events.jsonl alone, DDP's from the bench worker's steps.jsonl.
"""

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
    four timed phases and the guard (packing the flat buffer, optimizer step, events). compute_s splits
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
        # The SDC guard's own time (fingerprints, its checks) lies outside the four phases.
        guard_s = critical.get("guard_s", 0.0)
        rows["guard_s"].append(guard_s)
        rows["other_s"].append(interval_s - timed - guard_s)
        rows["non_compute_s"].append(interval_s - critical["compute_s"])
    return {name: _median(values) for name, values in rows.items()}


def ddp_phases(records: list[Event], warmup: int = WARMUP_STEPS) -> dict[str, Any]:
    """DDP's per-step medians on the critical path (the rank with the longest compute).

    compute_s is the paced forward+backward until the rank's last gradient bucket left
    (the buckets before it are summed while backward goes on, as DDP does); allreduce_s is
    the rest of backward, the allreduce DDP did not hide; other_s is the rest of the step
    (optimizer step, the next batch, the timeline). Same definitions of interval_s and
    non_compute_s as phalanx's, so their non-compute shares compare like with like.
    """
    by_step: dict[int, list[Event]] = defaultdict(list)
    for record in records:
        if record.get("kind") == "phase" and record["step"] >= warmup:
            by_step[record["step"]].append(record)
    times = step_times(records)
    rows: dict[str, list[float]] = defaultdict(list)
    for step, ranks in sorted(by_step.items()):
        if step - 1 not in times or step not in times:
            continue
        interval_s = times[step] - times[step - 1]
        critical = max(ranks, key=lambda r: r["compute_s"])
        rows["interval_s"].append(interval_s)
        rows["compute_s"].append(critical["compute_s"])
        rows["allreduce_s"].append(critical["backward_s"] - critical["compute_s"])
        rows["other_s"].append(interval_s - critical["backward_s"])
        rows["non_compute_s"].append(interval_s - critical["compute_s"])
    return {name: _median(values) for name, values in rows.items()}


def equal_share_ratio(events: list[Event], warmup: int = WARMUP_STEPS) -> float | None:
    """The worst step after warm-up: largest share / smallest among chips of equal speed.

    Speeds are the launcher's (run_start); a step's shares are in every participant's
    step event, the first one is read. None when no two participants share a speed. A
    chip of equal speed given no sample makes the ratio infinite.
    """
    speeds: dict[str, Any] = {}
    for event in events:
        if event.get("kind") == "run_start":
            speeds = {name: info.get("speed") for name, info in event["replicas"].items()}
    worst: float | None = None
    seen: set[int] = set()
    for event in events:
        if event.get("kind") != "step" or event["step"] < warmup or event["step"] in seen:
            continue
        seen.add(event["step"])
        groups: dict[Any, list[int]] = defaultdict(list)
        for name, share in zip(event["participants"], event["shares"]):
            groups[speeds.get(name)].append(share)
        for shares in (g for g in groups.values() if len(g) > 1):
            ratio = max(shares) / min(shares) if min(shares) > 0 else float("inf")
            worst = ratio if worst is None else max(worst, ratio)
    return worst


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
        # A commit of the fault's step or a later one: a survivor may log the step
        # before it a moment after the faulty replica started this one.
        later = [
            e["t"]
            for e in steps
            if e["replica"] != fault["replica"]
            and e["t"] > fault["t"]
            and e["step"] >= fault["step"]
        ]
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
