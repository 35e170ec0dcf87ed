"""The campaign loop: schedules run one after another, each checked, results kept."""

from __future__ import annotations

import shlex
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from phalanx.chaos import report
from phalanx.chaos.invariants import Verdict, check_run
from phalanx.chaos.runner import Workload, fleet_command, run_reference, run_schedule
from phalanx.chaos.schedule import FLEETS, Schedule, generate


@dataclass(frozen=True)
class CampaignConfig:
    schedules: int
    seed: int
    out_dir: Path
    workload: Workload
    results_json: Path | None = None
    table_md: Path | None = None
    deadline_s: float = 300.0  # per schedule: a run that hangs is a violation, not a stuck campaign
    keep_runs: bool = False
    shrink: bool = False
    command: str = "python -m phalanx.chaos"
    fleets: tuple[tuple[float, ...], ...] = FLEETS
    doc_md: Path | None = None  # a hand-written doc whose table section is refreshed
    late_outages: bool = True  # False: kills and long hangs only early (the CI profile)
    budget_s: float | None = None  # start no new schedule after this long (partial campaigns)


def _record(
    schedule: Schedule, verdict: Verdict, wall_s: float, code: int | None, repro: str
) -> dict[str, Any]:
    planned = Counter(f.category for f in schedule.faults)
    survived = Counter() if verdict.violations else Counter(verdict.fired)
    return {
        **schedule.to_json(),
        "planned": dict(planned),
        "fired": dict(verdict.fired),
        "survived": dict(survived),
        "completed": verdict.completed,
        "exact": verdict.max_param_diff is not None and verdict.max_param_diff < 1e-9,
        "max_param_diff": verdict.max_param_diff,
        "max_loss_diff": verdict.max_loss_diff,
        "data": asdict(verdict.data),
        "quarantined": verdict.quarantined,
        "false_blames": verdict.false_blames,
        "retries": verdict.retries,
        "heals": verdict.heals,
        "rejoined": verdict.rejoined,
        "returncode": code,
        "wall_s": round(wall_s, 2),
        "violations": verdict.violations,
        "repro": repro if verdict.violations else None,
    }


def run_one(config: CampaignConfig, schedule: Schedule, reference: Path) -> tuple[Verdict, dict]:
    run_dir = config.out_dir / f"schedule-{schedule.index:04d}"
    result = run_schedule(schedule, config.workload, run_dir, config.deadline_s)
    w = config.workload
    verdict = check_run(run_dir, result.returncode, reference, w.steps, w.batch, w.timeout_s)
    repro = shlex.join(fleet_command(schedule, w, Path(f"runs/repro-{schedule.index}")))
    record = _record(schedule, verdict, result.wall_s, result.returncode, repro)
    if verdict.violations:
        (run_dir / "chaos-output.txt").write_text(result.output_tail)
    elif not config.keep_runs:
        shutil.rmtree(run_dir, ignore_errors=True)  # 200 passing runs need no disk
    return verdict, record


def shrink(config: CampaignConfig, schedule: Schedule, reference: Path) -> Schedule:
    """Drop faults one at a time while the schedule still violates something."""
    smallest = schedule
    for fault in schedule.faults:
        candidate = smallest.without(fault)
        if not candidate.faults:
            continue
        verdict, _ = run_one(config, candidate, reference)
        if verdict.violations:
            smallest = candidate
    return smallest


def campaign_info(config: CampaignConfig) -> dict[str, Any]:
    w = config.workload
    return {
        "command": config.command,
        "seed": config.seed,
        "schedules_requested": config.schedules,
        "workload": {
            "script": str(w.script.name),
            "steps": w.steps,
            "global_batch_size": w.batch,
            "samples": w.samples,
            "checkpoint_every": w.checkpoint_every,
            "timeout_s": w.timeout_s,
            "width": w.width,
            "repeat": w.repeat,
            "dtype": "float64",
        },
    }


def run_campaign(config: CampaignConfig, log: Any = print) -> list[dict[str, Any]]:
    config.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    reference = run_reference(config.workload, config.out_dir / "reference")  # once per campaign
    info = campaign_info(config)
    records: list[dict[str, Any]] = []
    for index in range(config.schedules):
        if config.budget_s is not None and time.monotonic() - started > config.budget_s:
            log(f"time budget spent: stopping after {index} of {config.schedules} schedules")
            break
        schedule = generate(
            config.seed,
            index,
            config.workload.steps,
            config.workload.timeout_s,
            fleets=config.fleets,
            late_outages=config.late_outages,
        )
        verdict, record = run_one(config, schedule, reference)
        if verdict.violations and config.shrink:
            smallest = shrink(config, schedule, reference)
            record["minimal_repro"] = shlex.join(
                fleet_command(smallest, config.workload, Path(f"runs/repro-{index}"))
            )
        records.append(record)
        info["wall_s"] = round(time.monotonic() - started, 1)
        if config.results_json is not None:
            report.write_json(config.results_json, info, records)
        if config.table_md is not None:
            report.write_table(config.table_md, info, records)
        if config.doc_md is not None:
            report.include_in_doc(config.doc_md, info, records)
        fired = sum(record["fired"].values())
        status = "ok" if not verdict.violations else "VIOLATION: " + "; ".join(verdict.violations)
        log(
            f"schedule {index + 1}/{config.schedules} [{schedule.emulate}] "
            f"{fired}/{len(schedule.faults)} faults fired, {record['wall_s']:.0f}s: {status}"
        )
    return records
