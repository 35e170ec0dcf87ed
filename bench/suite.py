"""Run a benchmark suite: every scenario, every contender, interleaved per repeat (A B A B).

    python -m bench.suite --suite quick        # < 10 minutes on 2 cores, prints the table
    python -m bench.suite --suite full --docs  # also writes docs/benchmarks.md and its plots
    python -m bench.suite --suite scale-smoke  # only the 100M model on 2 chips, ~2-3 minutes

The model-scale rows (100M, 300M parameters) run in `full` only: quick stays under
10 minutes without them, and scale-smoke checks that they run.

Raw runs go under --work-dir; the figures go to bench/results/<suite>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import aggregate, contenders, machine, report
from bench.fleet import Fleet
from bench.procs import RunFailed
from bench.scenarios import (
    MAX_RESTARTS,
    SCALING_HANG_S,
    SCALING_TIMEOUT_S,
    SOLO_STEPS,
    SUITES,
    FleetCase,
    Suite,
)
from bench.share_ceiling import whole_sample_ceiling
from bench.workload import Workload, heads, parameter_count

ROOT = Path(__file__).resolve().parents[1]
Record = dict[str, Any]


class Runner:
    """Runs contenders one at a time and keeps every outcome, failures included."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.records: list[Record] = []
        self._count = 0

    def run(
        self,
        scenario: str,
        config: str,
        contender: str,
        repeat: int,
        fn: Callable[[Path], Record],
        goals: Record | None = None,
    ) -> Record | None:
        self._count += 1
        run_dir = self.work_dir / f"{self._count:03d}-{contender}"
        started = time.perf_counter()
        record: Record = {
            "scenario": scenario,
            "config": config,
            "contender": contender,
            "repeat": repeat,
        }
        if goals is not None:  # the row's goals travel with its runs, failed ones too
            record["goals"] = goals
        try:
            record.update(fn(run_dir))
            ok = True
        except (RunFailed, ValueError, OSError, KeyError) as err:
            record["error"] = str(err)
            ok = False
        took_s = time.perf_counter() - started
        status = "ok" if ok else f"FAILED: {record['error'][:300]}"
        print(
            f"[{scenario}] {config} | {contender} #{repeat}: {took_s:.0f} s, {status}", flush=True
        )
        self.records.append(record)
        return record if ok else None


def _fleet_runs(
    runner: Runner,
    scenario: str,
    case: FleetCase,
    suite: Suite,
    repeat: int,
    with_ideal: bool,
) -> None:
    """One repeat of the fault-free contenders on one fleet, interleaved, one at a time."""
    fleet, work = case.fleet, case.work
    config = f"{fleet.name} | {_describe(work)}"
    goals = (
        asdict(case.goals)
        if scenario == "homogeneous"
        else {"phalanx_over_ideal": fleet.efficiency_goal}
    )
    options = [] if case.timeout_s is None else ["--timeout-s", f"{case.timeout_s:g}"]
    # What whole samples leave of the ideal (bench/share_ceiling.py), beside the runs.
    ceiling = {"whole_sample_ceiling": whole_sample_ceiling(fleet.speeds, work.batch)}
    runner.run(
        scenario,
        config,
        "phalanx",
        repeat,
        lambda d: {
            **contenders.run_phalanx(work, fleet, d, [], suite.checkpoint_every, options),
            **ceiling,
        },
        goals,
    )
    runner.run(
        scenario,
        config,
        "ddp",
        repeat,
        lambda d: contenders.run_torchrun(work, fleet, d, [], suite.checkpoint_every, MAX_RESTARTS),
        goals,
    )
    if with_ideal:
        solo = work.with_(steps=min(work.steps, SOLO_STEPS))
        runner.run(
            scenario, config, "ideal", repeat, lambda d: contenders.run_ideal(solo, fleet, d), goals
        )


def _describe(work: Workload) -> str:
    params_m = parameter_count(work) / 1e6
    return (
        f"TinyGPT {params_m:.2f}M params (width {work.width}, {work.layers} layers, "
        f"{heads(work)} heads, context {work.context}), B={work.batch}, {work.steps} steps"
    )


def run_suite(suite: Suite, work_dir: Path) -> list[Record]:
    runner = Runner(work_dir)
    fault_list = list(suite.faults)
    main_fleet = suite.hetero[0] if suite.hetero else None
    for repeat in range(max(suite.repeats, suite.fault_repeats)):
        # Scenario 1 (and the fault-free rates of scenario 2) on every heterogeneous fleet.
        for fleet in suite.hetero:
            wanted = suite.repeats if fleet == main_fleet else suite.wide_repeats
            # The main fleet's fault-free runs are also scenario 2's baseline.
            if repeat < wanted or (fleet == main_fleet and repeat < suite.fault_repeats):
                case = FleetCase(fleet, suite.work)
                _fleet_runs(runner, "efficiency", case, suite, repeat, True)
        if main_fleet is not None and repeat < suite.fault_repeats:
            _fault_runs(runner, suite, main_fleet, fault_list, repeat)
        for case in suite.homogeneous:
            wanted = suite.repeats if case.repeats is None else min(case.repeats, suite.repeats)
            if repeat < wanted:
                _fleet_runs(runner, "homogeneous", case, suite, repeat, suite.homogeneous_ideal)
    for point in suite.sizes:
        runner.run("scaling", point.label, "phalanx", 0, lambda d, p=point: _scaling_run(p, d))
    return runner.records


def _fault_runs(runner: Runner, suite: Suite, fleet: Fleet, faults: list[str], repeat: int) -> None:
    work = suite.work
    config = f"{fleet.name} | {_describe(work)} | faults: {'; '.join(faults)}"
    if suite.phalanx_faulted:
        runner.run(
            "faults",
            config,
            "phalanx",
            repeat,
            lambda d: {
                **contenders.run_phalanx(work, fleet, d, faults, suite.checkpoint_every),
                # What the fault schedule itself allows (bench/fault_ceiling.py).
                "schedule": {
                    "speeds": list(fleet.speeds),
                    "faults": faults,
                    "steps": work.steps,
                    "batch": work.batch,
                },
            },
        )
    for every in suite.restart_intervals:
        runner.run(
            "faults",
            config,
            f"torchrun K={every}",
            repeat,
            lambda d, k=every: contenders.run_torchrun(work, fleet, d, faults, k, MAX_RESTARTS),
        )


def _scaling_run(point: Any, run_dir: Path) -> Record:
    hang = f"hang:replica=1,step={point.hang_step},seconds={SCALING_TIMEOUT_S + SCALING_HANG_S}"
    result = contenders.run_phalanx_plain(point.work, 2, run_dir, [hang], SCALING_TIMEOUT_S)
    result["params"] = parameter_count(point.work)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", choices=sorted(SUITES), default="quick")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="raw runs (default runs/bench-SUITE)"
    )
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--docs", action="store_true", help="write docs/benchmarks.md and plots")
    args = parser.parse_args()
    suite = SUITES[args.suite]
    work_dir = args.work_dir or ROOT / "runs" / f"bench-{suite.name}"
    if work_dir.exists():
        shutil.rmtree(work_dir)  # every suite starts from scratch
    work_dir.mkdir(parents=True)
    about = machine.describe()
    started = time.perf_counter()
    records = run_suite(suite, work_dir)
    about["suite"] = suite.name
    about["suite_wall_s"] = time.perf_counter() - started
    about["load_avg_end"] = os.getloadavg()[0]
    figures = aggregate.summarize(records)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{suite.name}.json"
    out.write_text(json.dumps({"machine": about, "figures": figures, "runs": records}, indent=1))
    print(report.table_text(figures, about))
    print(f"results: {out}")
    if args.docs:
        report.write_docs(figures, about, ROOT / "docs")


if __name__ == "__main__":
    main()
