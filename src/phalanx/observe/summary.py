"""summary.json, computed from events.jsonl alone (so any run can be re-summarised)."""

from __future__ import annotations

import itertools
import json
import os
import re
import statistics
from pathlib import Path
from typing import Any

from phalanx.observe.accounting import committed_steps, data_accounting
from phalanx.observe.chip_memory import chip_memory_summary
from phalanx.observe.energy_summary import energy_summary
from phalanx.observe.events import read_events
from phalanx.observe.guard_summary import guard_summary
from phalanx.observe.safe_write import write_or_warn
from phalanx.sites.fleet_accounting import is_site_run, site_accounting

SCHEMA = "phalanx.summary/1"
# The lighthouse_restart event is written just after the gate turns to the new lighthouse.
RESTART_EVENT_SLACK_S = 0.05
SUMMARY_FILE = "summary.json"


def _first(events: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((e for e in events if e.get("kind") == kind), None)


def _recoveries(
    events: list[dict[str, Any]], step_times: list[tuple[float, int]]
) -> list[dict[str, Any]]:
    """How long the fleet stalled around each fault, and each heal and rejoin."""
    intervals = [b[0] - a[0] for a, b in itertools.pairwise(step_times)]
    typical_s = statistics.median(intervals) if intervals else 0.0
    recoveries = []
    for event in (e for e in events if e.get("kind") == "fault"):
        t = event["t"]
        before = [st for st in step_times if st[0] <= t]
        after = [st for st in step_times if st[0] > t]
        if not after:
            continue
        prev_t = before[-1][0] if before else t
        gap_s = after[0][0] - prev_t
        recoveries.append(
            {
                "kind": event["fault"],
                "replica": event.get("replica"),
                "step": event["step"],
                "stall_s": round(max(0.0, gap_s - typical_s), 4),
            }
        )
    for event in (e for e in events if e.get("kind") == "heal"):
        recoveries.append(
            {
                "kind": "heal",
                "replica": event["replica"],
                "step": event["step"],
                "stall_s": round(event["duration_s"], 4),
            }
        )
    return recoveries


def build_summary(run_dir: str | Path) -> dict[str, Any]:
    events = read_events(run_dir, warn=False)
    start = _first(events, "run_start") or {}
    worker_start = _first(events, "worker_start") or {}
    global_batch_size = int(
        start.get("global_batch_size") or worker_start.get("global_batch_size") or 0
    )
    planned_steps = int(start.get("steps") or worker_start.get("steps") or 0)
    steps = committed_steps(events)
    step_times = sorted((e["t"], e["step"]) for e in steps.values())
    samples = len(steps) * global_batch_size

    first_quorum = _first(events, "quorum")
    window_s = (step_times[-1][0] - first_quorum["t"]) if (step_times and first_quorum) else 0.0
    wall_s = (events[-1]["t"] - events[0]["t"]) if events else 0.0
    run_end = _first(events, "run_end")
    if run_end is not None and start:
        wall_s = run_end["t"] - start["t"]
    throughput_sps = samples / window_s if window_s > 0 else 0.0

    replicas: dict[str, dict[str, Any]] = dict(start.get("replicas") or {})
    for event in events:
        if event.get("kind") == "worker_start":
            replicas.setdefault(event["replica"], {"speed": event.get("speed"), "kind": "cpu"})
    measured: dict[str, list[float]] = {name: [] for name in replicas}
    samples_by: dict[str, int] = dict.fromkeys(replicas, 0)
    final_share: dict[str, int] = {}
    for record in sorted(steps.values(), key=lambda r: r["step"]):
        for name, share, sps in zip(record["participants"], record["shares"], record["sps"]):
            measured.setdefault(name, []).append(sps)
            samples_by[name] = samples_by.get(name, 0) + share
        final_share = dict(zip(record["participants"], record["shares"]))
    # Skip the first measurements: they include warm-up (allocation, first-touch).
    solo = {n: statistics.median(v[2:] or v) for n, v in measured.items() if v}
    ideal_sps = sum(solo.values())

    faults = [e for e in events if e.get("kind") == "fault"]
    # On many hosts a host's events lack the steps committed while its replicas were away
    # (started late, cut off): a replica of this host that reached the end still finished.
    reached_end = any(
        e.get("kind") == "worker_done" and int(e.get("step") or 0) >= planned_steps for e in events
    )
    # Or the fleet finished while this host's replica was away (the gate told it so):
    # the run is complete, and its final model is on the hosts that finished it.
    finished_elsewhere = any(
        e.get("kind") == "straggler_exit"
        and e.get("fleet_finished")
        and int(e.get("fleet_step") or 0) >= planned_steps
        for e in events
    )
    # A site of a sites run ends with its outer rounds, after as many inner steps as
    # its speed allowed (sites/schedule.py), not after `steps`.
    site_done = any(e.get("kind") == "site_done" for e in events)
    outer_rounds = len({e["round"] for e in events if e.get("kind") == "outer_round"})
    finished = planned_steps > 0 and (
        len(steps) >= planned_steps or reached_end or finished_elsewhere or site_done
    )
    last_status = _replica_status(events, replicas, finished)
    energy = energy_summary(events, samples, start)
    per_device_j = energy["per_device_j"] if energy else {}
    # Each process of a replica reports its peak memory when it finishes: the largest.
    peak_rss: dict[str, int] = {}
    for event in events:
        if event.get("kind") == "worker_done" and event.get("peak_rss_bytes"):
            name = event["replica"]
            peak_rss[name] = max(peak_rss.get(name, 0), int(event["peak_rss_bytes"]))
    chip_memory = chip_memory_summary(events)
    devices = [
        {
            "id": name,
            "kind": info.get("kind", "cpu"),
            "speed": info.get("speed"),
            "samples": samples_by.get(name, 0),
            "final_share": final_share.get(name, 0),
            "solo_sps": round(solo[name], 3) if name in solo else None,
            "status": last_status.get(name, "unknown"),
            "energy_j": per_device_j.get(name),
            "peak_rss_bytes": peak_rss.get(name),
            "memory": chip_memory.get(name),
        }
        for name, info in replicas.items()
    ]
    # A site's steps are its part of the sites' one stream: fleet-wide figures elsewhere.
    accounting = site_accounting if is_site_run(steps) else data_accounting
    data = (
        accounting(
            steps,
            global_batch_size,
            int(worker_start["num_samples"]) if worker_start.get("num_samples") else None,
            int(worker_start.get("seed") or 0),
        )
        if worker_start
        else {}
    )
    last_step = max(steps.values(), key=lambda r: r["step"]) if steps else None
    return {
        "schema": SCHEMA,
        "steps": len(steps),
        "planned_steps": planned_steps,
        "completed": finished,
        # A site of a sites run: its outer rounds (its inner steps depend on its speed).
        **({"outer_rounds": outer_rounds} if outer_rounds else {}),
        "finished_elsewhere": finished_elsewhere and not reached_end,
        "global_batch_size": global_batch_size,
        "samples": samples,
        "wall_s": round(wall_s, 3),
        "train_window_s": round(window_s, 3),
        "throughput_sps": round(throughput_sps, 3),
        "ideal_sps": round(ideal_sps, 3),
        "efficiency": round(throughput_sps / ideal_sps, 4) if ideal_sps > 0 else None,
        "final_loss": last_step["loss"] if last_step else None,
        "devices": devices,
        "faults": {
            "injected": [_fault_view(f) for f in faults],
            "survived": len(faults) if finished else 0,
            "not_applied": _faults_not_applied(events, faults),
        },
        "recoveries": _recoveries(events, step_times),
        "lighthouse_restarts": _lighthouse_restarts(events, step_times),
        "admission": _last(events, "admission", skip={"t", "source", "kind"}),
        "retries": sum(1 for e in events if e.get("kind") == "retry"),
        "checkpoints": [e["step"] for e in events if e.get("kind") == "checkpoint"],
        "data": data,
        "guard": guard_summary(events),
        "energy": energy,
        "energy_j": energy["energy_j"] if energy else None,
    }


def _lighthouse_restarts(
    events: list[dict[str, Any]], step_times: list[tuple[float, int]]
) -> list[dict[str, Any]]:
    """Each loss of the lighthouse: where the fleet was, how long it was down, the pause.

    pause_s runs from the loss (a kill, or the launcher seeing it dead) to the
    first commit of a step whose quorum the new lighthouse answered: what the
    fleet lost, one step's own compute included. (A step in flight at the loss
    needs no lighthouse to commit, so its commit does not end the pause.)
    """
    restarts = []
    ups = [e for e in events if e.get("kind") == "lighthouse_restart"]
    steps = [e for e in events if e.get("kind") == "step"]
    for down in (e for e in events if e.get("kind") == "lighthouse_down"):
        t = down["t"]
        done = [step for step_t, step in step_times if step_t <= t]
        up = next((u for u in ups if u["t"] >= t), None)
        recovered = [e["t"] for e in steps if up is not None and follows_restart(e, up["t"])]
        restarts.append(
            {
                "at_step": (max(done) + 1) if done else 0,
                "cause": down.get("cause"),
                "down_s": up["down_s"] if up else None,
                "pause_s": round(min(recovered) - t, 4) if recovered else None,
            }
        )
    return restarts


def follows_restart(step: dict[str, Any], restart_t: float) -> bool:
    """Whether this step's quorum came from the lighthouse (re)started at `restart_t`.

    The quorum was answered at the commit time less the phases after it, or
    earlier (what runs between the phases is not counted, so the estimate is
    never early); a new lighthouse answers nothing before it is up. A step in
    flight at the loss was answered before it: at least one lighthouse start
    (0.3 s and more) earlier than any restart, far beyond the slack.
    """
    after_s = sum(
        float(step.get(k) or 0.0) for k in ("compute_s", "allreduce_s", "commit_s", "guard_s")
    )
    return float(step["t"]) - after_s > restart_t - RESTART_EVENT_SLACK_S


def _last(events: list[dict[str, Any]], kind: str, skip: set[str]) -> dict[str, Any] | None:
    found = [e for e in events if e.get("kind") == kind]
    return {k: v for k, v in found[-1].items() if k not in skip} if found else None


def _fault_view(event: dict[str, Any]) -> dict[str, Any]:
    skip = {"t", "source", "kind", "fault"}
    return {"kind": event["fault"], **{k: v for k, v in event.items() if k not in skip}}


def _faults_not_applied(
    events: list[dict[str, Any]], fired: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Planned replica faults that never fired, and why (a fault is never counted as
    injected where it could not have acted: faults/injector.py)."""
    planned = [f for e in events if e.get("kind") == "run_start" for f in e.get("faults") or []]
    fired_keys = {
        (f.get("fault"), f.get("planned_step", f.get("step")), _replica_index(f.get("replica")))
        for f in fired
    }
    missing = []
    for fault in planned:
        key = (fault["kind"], fault["step"], fault.get("replica", -1))
        if fault.get("replica", -1) < 0 or key in fired_keys:
            continue
        why = {
            "sdc": "the replica computed no samples at or after the planned step",
            "nan": "the replica computed no samples at or after the planned step",
        }.get(fault["kind"], "the replica never reached the planned step and phase")
        missing.append({**{k: v for k, v in fault.items()}, "reason": why})
    return missing


def _replica_index(name: Any) -> int | None:
    """The spec index of a worker name: `r2` and `h1-r2` are replica 2 of their host."""
    digits = re.search(r"r(\d+)$", str(name))
    return int(digits.group(1)) if digits else None


def _replica_status(
    events: list[dict[str, Any]], replicas: dict[str, Any], finished: bool
) -> dict[str, str]:
    status: dict[str, str] = {}
    for event in events:
        name = event.get("replica")
        kind = event.get("kind")
        if name is None:
            continue
        if kind == "worker_done":
            status[name] = "finished"
        elif kind == "worker_exit" and status.get(name) not in ("finished", "quarantined"):
            status[name] = "down"
        elif kind == "quarantine":
            status[name] = "quarantined"
        elif kind == "worker_start":
            status[name] = "training"
    return status


def write_summary(run_dir: str | Path, summary: dict[str, Any]) -> Path | None:
    """Write summary.json atomically; None (and one warning) on a full disk."""
    path = Path(run_dir) / SUMMARY_FILE
    tmp = path.with_suffix(".json.tmp")

    def write() -> None:
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, path)

    written = write_or_warn(
        "summary.json",
        path,
        write,
        "the run's result is not affected (it is in events.jsonl, checkpoints and the model)",
        f"free space, then `phalanx report {run_dir}` writes it from events.jsonl",
        cleanup=tmp,
    )
    return path if written else None
