"""Simulator calibration: predict real emulated runs from a separately measured profile.

    python bench/calibration.py      # writes docs/_generated/calibration.md and bench/results/calibration.json

For each case, a fault-free *profile* run of the fleet measures each chip's
throughput and the per-step sync overhead; then `phalanx.sim.predict_run`
predicts the *test* run (same fleet, its own fault schedule) before it is
compared with what the test run measured. Nothing of the test run feeds the
prediction except its fault schedule.
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fleet_helpers import events, run_gpt_fleet, summary  # noqa: E402

from phalanx.faults.spec import parse_faults  # noqa: E402
from phalanx.sim.predict_run import predict_run  # noqa: E402

STEPS = 40
WARMUP = 5  # steps before the shares have settled
BATCH = 128
CASES = [
    ("1,0.5,0.25x2", []),
    ("1,0.5,0.25x2", ["kill:replica=1,step=12,restart_s=1", "hang:replica=2,step=25,seconds=4"]),
    ("1x2,0.5x2", ["kill:replica=3,step=10,restart_s=1"]),
]


def _run(fleet: str, faults: list[str], out: Path) -> dict[str, Any]:
    flags = ["--emulate", fleet, "--timeout-s", "3", "--quiet"]
    for fault in faults:
        flags += ["--fault", fault]
    run_gpt_fleet(out, flags, STEPS, BATCH, timeout_s=600)
    return summary(out)


def _profile(run: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Per-chip throughput, per-step time beyond balanced compute, and warm-up excess.

    The step overhead is taken whole (sync, control plane, and the imbalance that
    noisy throughput estimates leave), as the median step interval minus the
    perfectly balanced compute time; warm-up is what the first steps (equal
    shares before any throughput is known) cost beyond that.
    """
    all_events = events(run)
    first_quorum = min(e["t"] for e in all_events if e["kind"] == "quorum")
    times: dict[int, float] = {}
    for event in all_events:
        if event["kind"] == "step":
            times[event["step"]] = min(times.get(event["step"], event["t"]), event["t"])
    ordered = sorted(times)
    interval_s = statistics.median(
        b - a for a, b in itertools.pairwise(times[s] for s in ordered[WARMUP:])
    )
    speeds = [d["solo_sps"] for d in info["devices"]]
    balanced_compute_s = BATCH / sum(speeds)
    warmup_s = (times[ordered[WARMUP]] - first_quorum) - (WARMUP + 1) * interval_s
    return {
        "speeds_sps": speeds,
        "sync_s": interval_s - balanced_compute_s,
        "warmup_s": max(0.0, warmup_s),
    }


def _startup_s(run: Path) -> float:
    """Seconds from a worker process launch to its first `worker_start` event (Python + torch)."""
    launches = [e for e in events(run) if e["kind"] in ("worker_restart", "worker_start")]
    gaps = []
    pending: dict[str, float] = {}
    for event in launches:
        if event["kind"] == "worker_restart":
            pending[event["replica"]] = event["t"]
        elif event["replica"] in pending:
            gaps.append(event["t"] - pending.pop(event["replica"]))
    return statistics.median(gaps) if gaps else 5.0


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (fleet, faults) in enumerate(CASES):
            profile_dir, test_dir = Path(tmp) / f"profile{index}", Path(tmp) / f"test{index}"
            profile = _profile(profile_dir, _run(fleet, [], profile_dir))
            measured = _run(fleet, faults, test_dir)
            specs = [f.to_json() for f in parse_faults(faults)]
            startup_s = _startup_s(test_dir) if faults else 0.0
            for spec in specs:  # a restarted worker also pays Python + torch start-up
                if spec["kind"] == "kill":
                    spec["restart_s"] = spec.get("restart_s", 0.0) + startup_s
            predicted = predict_run(
                profile["speeds_sps"],
                BATCH,
                STEPS,
                specs,
                profile["sync_s"],
                stall_s=2.0,
                hang_timeout_s=3.0,
            )
            predicted["wall_s"] += profile["warmup_s"]
            predicted["throughput_sps"] = STEPS * BATCH / predicted["wall_s"]
            error = predicted["wall_s"] / measured["train_window_s"] - 1
            rows.append(
                {
                    "fleet": fleet,
                    "faults": faults,
                    "predicted_wall_s": round(predicted["wall_s"], 2),
                    "measured_wall_s": measured["train_window_s"],
                    "predicted_sps": round(predicted["throughput_sps"], 1),
                    "measured_sps": measured["throughput_sps"],
                    "error": round(error, 3),
                    "profile_sync_s": round(profile["sync_s"], 4),
                }
            )
            print(rows[-1], flush=True)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "calibration.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "| fleet | faults | predicted wall (s) | measured wall (s) | error |",
        "|---|---|---|---|---|",
        *(
            f"| {r['fleet']} | {'; '.join(r['faults']) or 'none'} | {r['predicted_wall_s']} | "
            f"{r['measured_wall_s']} | {r['error']:+.1%} |"
            for r in rows
        ),
        "",
        f"Generated by `python bench/calibration.py` on {time.strftime('%Y-%m-%d')}: demo GPT, "
        f"{STEPS} steps of {BATCH} samples; wall = first quorum to last commit.",
    ]
    out = ROOT / "docs" / "_generated" / "calibration.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
