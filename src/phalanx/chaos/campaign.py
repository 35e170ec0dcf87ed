"""The campaign loop: schedules run (`jobs` at a time), each checked, results kept in order."""

from __future__ import annotations

import os
import shlex
import shutil
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from phalanx.chaos import netns, report, runner
from phalanx.chaos.invariants import Verdict, check_run
from phalanx.chaos.runner import (
    Workload,
    campaign_repro,
    fleet_command,
    run_hosts_schedule,
    run_reference,
    run_schedule,
)
from phalanx.chaos.schedule import CATEGORIES, FLEETS, Schedule, generate


@dataclass(frozen=True)
class CampaignConfig:
    schedules: int
    seed: int
    out_dir: Path
    workload: Workload
    results_json: Path | None = None
    table_md: Path | None = None
    deadline_s: float = 600.0  # per schedule: a run that hangs is a violation, not a stuck campaign
    keep_runs: bool = False
    shrink: bool = False
    command: str = "python -m phalanx.chaos"
    fleets: tuple[tuple[float, ...], ...] = FLEETS
    doc_md: Path | None = None  # a hand-written doc whose table section is refreshed
    late_outages: bool = True  # False: kills and long hangs only early (the CI profile)
    budget_s: float | None = None  # start no new schedule after this long (partial campaigns)
    jobs: int = 1  # schedules run at once (emulated chips mostly sleep)
    categories: tuple[str, ...] = CATEGORIES  # fault categories drawn (see available_categories)
    only: tuple[int, ...] | None = None  # run just these schedule indices (a repro)
    # Records of an earlier, interrupted run of the same campaign (--continue): kept,
    # and their indices not run again.
    previous: tuple[dict[str, Any], ...] = ()
    code_label: str | None = None  # what code was under test, kept on each new record
    previous_wall_s: float = 0.0  # the earlier run's wall time (--continue)
    left_out: tuple[tuple[str, str], ...] = ()  # (category, why): shown beside the table


def available_categories(without: tuple[str, ...] = ()) -> tuple[tuple[str, ...], dict[str, str]]:
    """The categories this machine can inject, and why any of the others is left out."""
    left_out = {c: "left out on request (--without)" for c in without}
    if "netcut" not in left_out:
        reason = netns.unavailable()
        if reason is not None:
            left_out["netcut"] = f"network cuts need network namespaces: {reason}"
    return tuple(c for c in CATEGORIES if c not in left_out), left_out


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
        "data_outliers": verdict.data_outliers,
        "retries": verdict.retries,
        "heals": verdict.heals,
        "rejoined": verdict.rejoined,
        "returncode": code,
        "wall_s": round(wall_s, 2),
        "violations": verdict.violations,
        "repro": repro if verdict.violations else None,
    }


def run_one(
    config: CampaignConfig, schedule: Schedule, reference: Path, attempt: str = ""
) -> tuple[Verdict, dict]:
    """Run and check one schedule in its own directory (`attempt` names a shrink candidate)."""
    run_dir = config.out_dir / f"schedule-{schedule.index:04d}{attempt}"
    run = run_hosts_schedule if schedule.hosts else run_schedule
    result = run(schedule, config.workload, run_dir, config.deadline_s)
    w = config.workload
    verdict = check_run(
        run_dir,
        result.returncode,
        reference,
        w.steps,
        w.batch,
        w.timeout_s,
        result.outputs,
        result.host_codes,
    )
    repro = shlex.join(_repro(schedule, w))
    record = _record(schedule, verdict, result.wall_s, result.returncode, repro)
    # How busy the machine was: read beside a violation, it tells overload from a fault.
    record["load_avg_1m"] = round(os.getloadavg()[0], 2)
    if verdict.violations:
        (run_dir / "chaos-output.txt").write_text(result.output_tail)
    elif not config.keep_runs:
        shutil.rmtree(run_dir, ignore_errors=True)  # 200 passing runs need no disk
    return verdict, record


def _repro(schedule: Schedule, workload: Workload) -> list[str]:
    """A `phalanx run` command where one reproduces it, else the campaign for that index."""
    where = Path(f"runs/repro-{schedule.index}")
    if schedule.hosts:
        return campaign_repro(schedule, workload, where)
    return fleet_command(schedule, workload, where)


def shrink(config: CampaignConfig, schedule: Schedule, reference: Path) -> Schedule:
    """Drop faults one at a time while the schedule still violates something.

    Each candidate runs in its own directory, so the failing run's artifacts stay.
    """
    smallest = schedule
    for number, fault in enumerate(schedule.faults):
        candidate = smallest.without(fault)
        if not candidate.faults:
            continue
        verdict, _ = run_one(config, candidate, reference, attempt=f"-shrink{number}")
        if verdict.violations:
            smallest = candidate
    return smallest


def check_schedule(config: CampaignConfig, index: int, reference: Path) -> dict[str, Any]:
    """Generate, run, check (and shrink) schedule `index`: one job of the campaign."""
    schedule = generate(
        config.seed,
        index,
        config.workload.steps,
        config.workload.timeout_s,
        fleets=config.fleets,
        late_outages=config.late_outages,
        categories=config.categories,
    )
    verdict, record = run_one(config, schedule, reference)
    if verdict.violations and config.shrink and not schedule.hosts:  # hosts: rerun by index
        smallest = shrink(config, schedule, reference)
        record["minimal_repro"] = shlex.join(_repro(smallest, config.workload))
    return record


def campaign_info(config: CampaignConfig) -> dict[str, Any]:
    w = config.workload
    return {
        "command": config.command,
        "seed": config.seed,
        "schedules_requested": config.schedules,
        "jobs": config.jobs,
        "categories": list(config.categories),
        "left_out": dict(config.left_out),
        "deadline_s": config.deadline_s,
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
    """Run the schedules, `config.jobs` at a time; records are kept in index order.

    Each schedule has its own run directory and every port of its fleet is chosen by
    the OS, so concurrent schedules share nothing but the reference (read only) and
    the CPUs. Results are written from this thread only, sorted by index, after each
    schedule ends: the output does not depend on which job finished first.
    """
    config.out_dir.mkdir(parents=True, exist_ok=True)
    runner.STOP.clear()
    started = time.monotonic()
    info = campaign_info(config)
    done: dict[int, dict[str, Any]] = {r["index"]: r for r in config.previous}
    indices = config.only if config.only is not None else tuple(range(config.schedules))
    todo = [i for i in indices if i not in done]
    upcoming = iter(todo)
    if not todo:  # nothing left to run (--continue): just write the results again
        _publish(config, info, started, done)
        return [done[i] for i in sorted(done)]
    reference = run_reference(config.workload, config.out_dir / "reference")  # once per campaign
    with ThreadPoolExecutor(max_workers=config.jobs, thread_name_prefix="chaos") as pool:
        running: dict[Future[dict[str, Any]], int] = {}

        def submit_next() -> None:
            index = next(upcoming, None)
            if index is None:
                return
            if config.budget_s is not None and time.monotonic() - started > config.budget_s:
                log(f"time budget spent: no schedule started after {len(running) + len(done)}")
                return
            running[pool.submit(check_schedule, config, index, reference)] = index

        for _ in range(config.jobs):
            submit_next()
        if not running:  # the budget was spent before any schedule started
            _publish(config, info, started, done)
        while running:
            try:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop every fleet, keep the results
                log("interrupted: stopping the running schedules")
                runner.STOP.set()
                upcoming = iter(())
                continue
            for future in finished:
                index = running.pop(future)
                if runner.STOP.is_set():
                    continue  # cut short by the stop, not by its faults: no record
                record = done[index] = future.result()
                if config.code_label is not None:
                    record["code"] = config.code_label
                _publish(config, info, started, done)
                fired = sum(record["fired"].values())
                status = (
                    "ok"
                    if not record["violations"]
                    else "VIOLATION: " + "; ".join(record["violations"])
                )
                log(
                    f"schedule {index} ({len(done)}/{len(indices)} done) [{record['emulate']}] "
                    f"{fired}/{len(record['faults'])} faults fired, {record['wall_s']:.0f}s: "
                    f"{status}"
                )
                submit_next()
    if runner.STOP.is_set():
        raise KeyboardInterrupt  # the results so far are written; the caller says it stopped
    return [done[i] for i in sorted(done)]


def _publish(
    config: CampaignConfig, info: dict[str, Any], started: float, done: dict[int, dict[str, Any]]
) -> None:
    """Rewrite the results after every schedule, so an interrupted campaign keeps them."""
    records = [done[i] for i in sorted(done)]
    # With --continue, the earlier run's wall time counts too.
    info["wall_s"] = round(config.previous_wall_s + time.monotonic() - started, 1)
    if config.results_json is not None:
        report.write_json(config.results_json, info, records)
    if config.table_md is not None:
        report.write_table(config.table_md, info, records)
    if config.doc_md is not None:
        report.include_in_doc(config.doc_md, info, records)
