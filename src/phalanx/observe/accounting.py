"""Exactly-once data accounting, recomputed from the committed steps in events.jsonl."""

from __future__ import annotations

from collections import Counter
from typing import Any

from phalanx.data.permutation import epoch_indices


def undone_from(event: dict[str, Any]) -> int | None:
    """The first step an event takes back, or None.

    `tie_restore`: the fleet went back to a checkpoint (a weight-SDC tie). `rewind`:
    the only holders of the steps from `step` on restarted before any peer learnt
    them; those commits are lost with them and the fleet trains them again
    (`lost_steps` names them).
    """
    kind = event.get("kind")
    if kind == "tie_restore" and event.get("restored_step") is not None:
        return int(event["restored_step"])
    if kind == "rewind" and event.get("step") is not None:
        return int(event["step"])
    return None


def committed_history(
    events: list[dict[str, Any]],
) -> tuple[dict[int, dict[str, Any]], int, Counter[str]]:
    """(step -> its committed `step` record as the final model saw it, disagreements,
    event kind -> how many of its events took committed steps back).

    Every participant writes a record of the step: a later record whose slices or
    participants differ from the first is a disagreement (a second history).
    """
    steps: dict[int, dict[str, Any]] = {}
    disagreements = 0
    undos: Counter[str] = Counter()
    for event in events:
        undone = undone_from(event)
        if undone is not None:
            taken_back = [s for s in steps if s >= undone]
            undos[event["kind"]] += 1 if taken_back else 0
            for step in taken_back:
                del steps[step]
        elif event.get("kind") == "step":
            first = steps.setdefault(event["step"], event)
            if first["ranges"] != event["ranges"] or sorted(first["participants"]) != sorted(
                event["participants"]
            ):
                disagreements += 1
    return steps, disagreements, undos


def committed_steps(events: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The committed record of each step in the final history (rollbacks taken back)."""
    return committed_history(events)[0]


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
