"""sites_summary.json: a sites run as a whole, from each site's summary.json and events.

Per site its key figures; the outer rounds completed; the fleet-wide data
accounting (fleet_accounting.py); the bytes the outer link carried. Any figure
the records do not hold (a site that never started, records of an older
runtime) is None, never a guess.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phalanx.observe.events import read_events
from phalanx.observe.safe_write import write_or_warn
from phalanx.sites.fleet_accounting import FLEET_SUMMARY_FILE, fleet_accounting

SCHEMA = "phalanx.sites_summary/1"
OUTER_ROUND = "outer_round"
SITE_FIGURES = (
    "completed", "steps", "planned_steps", "samples", "wall_s", "throughput_sps",
    "efficiency", "final_loss", "retries",
)  # fmt: skip


def build_sites_summary(
    out_dir: Path, codes: Mapping[str, int | None], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The whole run's summary; `codes`: each site's exit code, in site-index order."""
    run_dirs = [out_dir / name for name in codes]
    events = [read_events(run_dir, warn=False) for run_dir in run_dirs]
    rounds = _outer_rounds(event for site_events in events for event in site_events)
    return {
        "schema": SCHEMA,
        "sites": {name: _site_figures(out_dir / name, code) for name, code in codes.items()},
        "outer_rounds": len(rounds),
        "outer_link_bytes": outer_link_bytes(list(rounds.values())),
        "data": _fleet_data(run_dirs, events),
        **(extra or {}),
    }


def _site_figures(run_dir: Path, code: int | None) -> dict[str, Any]:
    figures: dict[str, Any] = {"exit_code": code, "run_dir": str(run_dir)}
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {**figures, "summary": None}
    figures.update({key: summary.get(key) for key in SITE_FIGURES})
    figures["duplicates"] = (summary.get("data") or {}).get("duplicates")
    return figures


def _outer_rounds(events: Any) -> dict[int, dict[str, Any]]:
    """Round -> its first record (every replica of every site records the same round)."""
    rounds: dict[int, dict[str, Any]] = {}
    for event in events:
        if event.get("kind") == OUTER_ROUND and isinstance(event.get("round"), int):
            rounds.setdefault(event["round"], event)
    return rounds


def outer_link_bytes(records: Sequence[Mapping[str, Any]]) -> int | None:
    """Bytes over the outer link: per round, each counted site's payload to each other member.

    A round's quorum is its `quorum` field (site indices or a count) where the
    record has one, else the sites that sent a payload. None when a record lacks
    the figures.
    """
    total = 0
    for record in records:
        sites = record.get("sites")
        if not isinstance(sites, list) or not all(
            isinstance(s, Mapping) and isinstance(s.get("payload_bytes"), int) for s in sites
        ):
            return None
        counted = [s for s in sites if s.get("counted", s["payload_bytes"] > 0)]
        quorum = record.get("quorum")
        members = (
            len(quorum) if isinstance(quorum, list)
            else quorum if isinstance(quorum, int)
            else len([s for s in sites if s["payload_bytes"] > 0])
        )  # fmt: skip
        total += sum(int(s["payload_bytes"]) * max(0, members - 1) for s in counted)
    return total


def _fleet_data(run_dirs: list[Path], events: list[list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The sites' data accounting together; None when no worker of any site started."""
    start = next(
        (e for site_events in events for e in site_events if e.get("kind") == "worker_start"),
        None,
    )
    if start is None or not start.get("global_batch_size"):
        return None
    return fleet_accounting(
        run_dirs,
        int(start["global_batch_size"]),
        int(start["num_samples"]) if start.get("num_samples") else None,
        int(start.get("seed") or 0),
    )


def write_sites_summary(out_dir: Path, summary: dict[str, Any]) -> Path | None:
    path = out_dir / FLEET_SUMMARY_FILE
    written = write_or_warn(
        FLEET_SUMMARY_FILE,
        path,
        lambda: path.write_text(json.dumps(summary, indent=2)),
        "each site's own summary.json and events are not affected",
        "free space, then run the sites again",
    )
    return path if written else None


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """The short summary `phalanx sites` prints at the end."""
    lines = []
    for name, site in summary["sites"].items():
        if site.get("summary", True) is None:
            lines.append(f"site {name}: exit {site['exit_code']}, no summary.json")
            continue
        loss, wall_s, sps = site.get("final_loss"), site.get("wall_s"), site.get("throughput_sps")
        lines.append(
            f"site {name}: exit {site['exit_code']}, {site.get('steps')}/"
            f"{site.get('planned_steps')} steps, {_number(site.get('samples'), ',d')} samples in "
            f"{_number(wall_s, '.1f')} s ({_number(sps, ',.0f')} samples/s), "
            f"final loss {_number(loss, '.4f')}"
        )
    link = summary.get("outer_link_bytes")
    lines.append(
        f"outer rounds: {summary['outer_rounds']}; outer link: "
        + ("unknown" if link is None else f"{link:,} bytes")
    )
    data = summary.get("data")
    if data:
        gaps = data["steps_missing"]
        lines.append(
            f"data (all sites): {data['samples_seen']:,} samples used, "
            f"{data['duplicates']:,} duplicated, {data['missing']:,} missed"
            + (f", stream steps never trained: {_few(gaps)}" if gaps else "")
        )
    else:
        lines.append("data (all sites): no worker started")
    return lines


def _number(value: Any, spec: str) -> str:
    return "?" if not isinstance(value, (int, float)) else format(value, spec)


def _few(values: Sequence[int], shown: int = 8) -> str:
    head = ", ".join(map(str, values[:shown]))
    return head + (f" and {len(values) - shown} more" if len(values) > shown else "")
