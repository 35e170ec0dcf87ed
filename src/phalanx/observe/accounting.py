"""Exactly-once data accounting, recomputed from the committed steps in events.jsonl."""

from __future__ import annotations

from collections import Counter
from typing import Any

from phalanx.data.permutation import epoch_indices


def committed_steps(events: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The first `step` record of each committed step (every participant writes one)."""
    steps: dict[int, dict[str, Any]] = {}
    for event in events:
        if event.get("kind") == "step" and event["step"] not in steps:
            steps[event["step"]] = event
    return steps


def data_accounting(
    steps: dict[int, dict[str, Any]], global_batch_size: int, num_samples: int | None, seed: int
) -> dict[str, Any]:
    """Samples seen, duplicated and missed. `num_samples` None: a stream of unknown
    length, whose positions are its samples (each epoch in the stream's own order)."""
    seen: Counter[tuple[int, int]] = Counter()
    for record in steps.values():
        for start, end in record["ranges"]:
            for key in _samples_at(int(start), int(end), seed, num_samples):
                seen[key] += 1
    duplicates = sum(count - 1 for count in seen.values() if count > 1)
    covered = len(steps) * global_batch_size
    epochs_completed = covered // num_samples if num_samples else 0
    missing = 0
    for epoch in range(epochs_completed):
        missing += sum(1 for index in range(num_samples or 0) if (epoch, index) not in seen)
    if not num_samples:
        missing = sum(1 for p in range(covered) if (0, p) not in seen)
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


def _samples_at(start: int, end: int, seed: int, num_samples: int | None) -> list[tuple[int, int]]:
    """(epoch, dataset index) of stream positions [start, end), a range at a time."""
    if not num_samples:
        return [(0, p) for p in range(start, end)]
    keys: list[tuple[int, int]] = []
    position = start
    while position < end:
        epoch, offset = divmod(position, num_samples)
        take = min(end - position, num_samples - offset)
        keys += [
            (epoch, i)
            for i in epoch_indices(seed, epoch, num_samples, range(offset, offset + take))
        ]
        position += take
    return keys


def _tiling(ranges: list[list[int]], step: int, global_batch_size: int) -> list[tuple[int, int]]:
    ordered = sorted((int(start), int(end)) for start, end in ranges)
    position = step * global_batch_size
    for start, end in ordered:
        if start != position:
            return []
        position = end
    return ordered if position == (step + 1) * global_batch_size else []
