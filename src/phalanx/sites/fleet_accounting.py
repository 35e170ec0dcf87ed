"""Exactly-once data accounting over every site of a sites run.

Each site writes its own events.jsonl; its committed `step` records are keyed by
the site's own inner step, and carry `stream_step`: the step of the one global
sample stream that inner step trained (its `ranges` tile [stream_step*B,
(stream_step+1)*B)). Re-keyed by `stream_step`, the sites' records together are
one run's committed steps, and `data_accounting` says what it says of any run.

A stream step claimed by two records (two sites, or one site twice) is trained
twice: the first claim counts, every other one is counted as duplicated samples.
A record without `stream_step` (a site whose workers do not know they are one)
falls back to its own step: two such sites then overlap entirely, which is the
truth of what they trained.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from phalanx.observe.accounting import committed_steps, data_accounting
from phalanx.observe.events import read_events

STREAM_STEP = "stream_step"
FLEET_SUMMARY_FILE = "sites_summary.json"  # where a sites run's fleet-wide figures are


def is_site_run(steps: dict[int, dict[str, Any]]) -> bool:
    """Whether these committed step records are a site's (they carry `stream_step`)."""
    return any(STREAM_STEP in record for record in steps.values())


def by_stream_step(
    sites_steps: Iterable[dict[int, dict[str, Any]]],
) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """(stream step -> the first record that claims it, every later claim of a taken one)."""
    union: dict[int, dict[str, Any]] = {}
    refused: list[dict[str, Any]] = []
    for steps in sites_steps:
        for step in sorted(steps):
            record = steps[step]
            key = int(record.get(STREAM_STEP, step))
            if key in union:
                refused.append(record)
            else:
                union[key] = record
    return union, refused


def accounting_of(
    sites_steps: Sequence[dict[int, dict[str, Any]]],
    global_batch_size: int,
    num_samples: int | None,
    seed: int,
) -> dict[str, Any]:
    """`data_accounting` of the union of the sites' steps, re-keyed by stream step."""
    union, refused = by_stream_step(sites_steps)
    data = data_accounting(union, global_batch_size, num_samples, seed)
    twice = sum(int(end) - int(start) for r in refused for start, end in r["ranges"])
    data["samples_seen"] += twice
    data["duplicates"] += twice
    data["duplicate_steps"] = sorted({int(r.get(STREAM_STEP, r["step"])) for r in refused})
    return data


def fleet_accounting(
    run_dirs: Sequence[str | Path], global_batch_size: int, num_samples: int | None, seed: int
) -> dict[str, Any]:
    """Samples seen, duplicated and missed over the sites whose run directories are given."""
    steps = [committed_steps(read_events(run_dir, warn=False)) for run_dir in run_dirs]
    return accounting_of(steps, global_batch_size, num_samples, seed)


def site_accounting(
    steps: dict[int, dict[str, Any]], global_batch_size: int, num_samples: int | None, seed: int
) -> dict[str, Any]:
    """One site's part in its own summary.json: what it saw and trained twice.

    Which stream steps nobody trained is a question about every site together:
    those figures are None here and in sites_summary.json beside the site's run
    directory (`phalanx sites` writes it).
    """
    data = accounting_of([steps], global_batch_size, num_samples, seed)
    data.update(
        epochs_completed=None,
        missing=None,
        steps_missing=None,
        fleet_accounting=FLEET_SUMMARY_FILE,
    )
    return data
