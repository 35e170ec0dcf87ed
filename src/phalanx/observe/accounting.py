"""Exactly-once data accounting, recomputed from the committed steps in events.jsonl."""

from __future__ import annotations

from collections import Counter
from typing import Any

from phalanx.data.slicing import position_to_sample


def committed_steps(events: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The first `step` record of each committed step (every participant writes one)."""
    steps: dict[int, dict[str, Any]] = {}
    for event in events:
        if event.get("kind") == "step" and event["step"] not in steps:
            steps[event["step"]] = event
    return steps


def data_accounting(
    steps: dict[int, dict[str, Any]], global_batch_size: int, num_samples: int, seed: int
) -> dict[str, Any]:
    seen: Counter[tuple[int, int]] = Counter()
    for record in steps.values():
        for start, end in record["ranges"]:
            for position in range(start, end):
                seen[position_to_sample(position, seed, num_samples)] += 1
    duplicates = sum(count - 1 for count in seen.values() if count > 1)
    covered = len(steps) * global_batch_size
    epochs_completed = covered // num_samples if num_samples else 0
    missing = 0
    for epoch in range(epochs_completed):
        missing += sum(1 for index in range(num_samples) if (epoch, index) not in seen)
    # A step whose participant ranges do not tile [s*B, (s+1)*B) is a protocol error.
    misaligned = sorted(
        s
        for s, record in steps.items()
        if sorted(map(tuple, record["ranges"])) != _tiling(record["ranges"], s, global_batch_size)
    )
    return {
        "samples_seen": sum(seen.values()),
        "unique_samples": len(seen),
        "epochs_completed": epochs_completed,
        "duplicates": duplicates,
        "missing": missing,
        "misaligned_steps": misaligned,
        "steps_committed": len(steps),
        "steps_missing": sorted(set(range(max(steps, default=-1) + 1)) - set(steps)),
    }


def _tiling(ranges: list[list[int]], step: int, global_batch_size: int) -> list[tuple[int, int]]:
    ordered = sorted((int(start), int(end)) for start, end in ranges)
    position = step * global_batch_size
    for start, end in ordered:
        if start != position:
            return []
        position = end
    return ordered if position == (step + 1) * global_batch_size else []
