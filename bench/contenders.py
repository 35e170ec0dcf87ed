"""The four contenders, each run as its users run it, measured from its own step timeline.

- phalanx: `phalanx run bench/phalanx_script.py --emulate ...`; events.jsonl.
- ddp: real torchrun + torch DDP (gloo), equal split, no restarts.
- torchrun-restart: the same with `--max-restarts` and checkpoints every K steps.
- ideal: bench/solo.py, each chip alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench import phases
from bench.fleet import Fleet, free_port
from bench.procs import run_logged
from bench.timeline import goodput_sps, read_jsonl, steady_rate_sps, step_times
from bench.workload import Workload

BENCH = Path(__file__).resolve().parent
RUN_TIMEOUT_S = 420.0


def _phalanx(
    fleet_args: list[str], work: Workload, run_dir: Path, options: list[str]
) -> tuple[float, list[dict[str, Any]]]:
    cmd = [sys.executable, "-m", "phalanx", "run", str(BENCH / "phalanx_script.py")]
    cmd += [*fleet_args, "--out", str(run_dir), "--quiet", *options, "--", *work.to_args()]
    wall_s = run_logged(cmd, run_dir.parent / f"{run_dir.name}.log", RUN_TIMEOUT_S)
    return wall_s, read_jsonl(run_dir / "events.jsonl")


def _fault_options(faults: list[str]) -> list[str]:
    return [arg for fault in faults for arg in ("--fault", fault)]


def run_phalanx(
    work: Workload,
    fleet: Fleet,
    run_dir: Path,
    faults: list[str],
    checkpoint_every: int,
    options: list[str] | None = None,
) -> dict[str, Any]:
    """`options`: more `phalanx run` flags (e.g. --timeout-s)."""
    options = [
        "--checkpoint-every",
        str(checkpoint_every),
        *_fault_options(faults),
        *(options or []),
    ]
    wall_s, events = _phalanx(["--emulate", fleet.spec], work, run_dir, options)
    times = step_times(events, first_writer=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    rate, window_s = goodput_sps(events, work.batch)
    return {
        "wall_s": wall_s,
        "steady_sps": steady_rate_sps(times, work.batch),
        "goodput_sps": rate,
        "window_s": window_s,
        "steps": len(times),
        "completed": bool(summary.get("completed")),
        # phalanx's own ideal: the sum of each chip's compute rate measured inside this run.
        "in_run_ideal_sps": summary.get("ideal_sps"),
        "phases": phases.phalanx_phases(events),
        "equal_share_ratio": phases.equal_share_ratio(events),
        "recovery": phases.recovery(events),
        # Each replica's largest process (the worker reports it in its worker_done event).
        "peak_rss_bytes": [d.get("peak_rss_bytes") for d in summary.get("devices", [])],
        "run_dir": str(run_dir),
    }


def run_phalanx_plain(
    work: Workload, replicas: int, run_dir: Path, faults: list[str], timeout_s: float
) -> dict[str, Any]:
    """Plain CPU replicas (no emulation): scenario 5 measures sync and healing, not speed."""
    options = ["--timeout-s", str(timeout_s), "--checkpoint-every", "0", *_fault_options(faults)]
    wall_s, events = _phalanx(["--replicas", str(replicas)], work, run_dir, options)
    return {"wall_s": wall_s, **phases.sync_and_heal(events), "run_dir": str(run_dir)}


def _fault_json(faults: list[str], size: int) -> str:
    from phalanx.faults.spec import parse_faults

    return json.dumps([f.to_json() for f in parse_faults(faults, size)])


def run_torchrun(
    work: Workload,
    fleet: Fleet,
    run_dir: Path,
    faults: list[str],
    checkpoint_every: int,
    max_restarts: int,
) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run"]  # the `torchrun` entry point
    cmd += ["--nnodes", "1", "--nproc-per-node", str(fleet.size)]
    cmd += ["--max-restarts", str(max_restarts), "--rdzv-backend", "c10d"]
    cmd += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", run_dir.name]
    cmd += [str(BENCH / "ddp_worker.py"), *work.to_args()]
    cmd += ["--speeds", fleet.spec, "--time-scale", repr(fleet.time_scale)]
    cmd += ["--run-dir", str(run_dir), "--checkpoint-every", str(checkpoint_every)]
    cmd += ["--faults", _fault_json(faults, fleet.size)]
    wall_s = run_logged(cmd, run_dir.parent / f"{run_dir.name}.log", RUN_TIMEOUT_S)
    records = read_jsonl(run_dir / "steps.jsonl")
    times = step_times(records)
    rate, window_s = goodput_sps(records, work.batch)
    attempts = [r for r in records if r.get("kind") == "attempt"]
    executed = sum(1 for r in records if r.get("kind") == "step")
    return {
        "wall_s": wall_s,
        "steady_sps": steady_rate_sps(times, work.batch),
        "goodput_sps": rate,
        "window_s": window_s,
        "steps": len(times),
        "completed": len(times) == work.steps,
        "restarts": len(attempts) - 1,
        "to_new_progress_s": _restart_gaps_s(records),
        "steps_redone": executed - len(times),
        "phases": phases.ddp_phases(records),
        "peak_rss_bytes": _ddp_peak_rss_bytes(records, fleet.size),
        "run_dir": str(run_dir),
    }


def _ddp_peak_rss_bytes(records: list[dict[str, Any]], world: int) -> list[int | None]:
    """Per rank, the largest peak of its processes (a restarted rank had several)."""
    peaks: list[int | None] = [None] * world
    for record in records:
        if record.get("kind") == "done":
            rank, peak = int(record["rank"]), int(record["peak_rss_bytes"])
            peaks[rank] = max(peak, peaks[rank] or 0)
    return peaks


def _restart_gaps_s(records: list[dict[str, Any]]) -> list[float]:
    """Per restart: last commit before it -> first commit of a step never committed before."""
    gaps, last_t, best_step, waiting = [], None, -1, False
    for record in records:
        if record.get("kind") == "attempt" and record.get("restart", 0) > 0:
            waiting = True
        elif record.get("kind") == "step":
            if waiting and record["step"] > best_step and last_t is not None:
                gaps.append(record["t"] - last_t)
                waiting = False
            if not waiting:
                last_t = record["t"]
            best_step = max(best_step, record["step"])
    return gaps


def run_ideal(work: Workload, fleet: Fleet, run_dir: Path) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "solo.json"
    cmd = [sys.executable, str(BENCH / "solo.py"), *work.to_args()]
    cmd += ["--speeds", fleet.spec, "--time-scale", repr(fleet.time_scale), "--out", str(out)]
    wall_s = run_logged(cmd, run_dir.parent / f"{run_dir.name}.log", RUN_TIMEOUT_S)
    solo = json.loads(out.read_text())
    return {
        "wall_s": wall_s,
        "steady_sps": solo["ideal_sps"],
        "chips_sps": solo["chips_sps"],
        # One process runs the chips one after the other: its peak is the largest chip's.
        "peak_rss_bytes": [solo.get("peak_rss_bytes")],
    }
