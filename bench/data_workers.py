"""Reader processes on a data-heavy workload: reading costs as much as computing.

    python bench/data_workers.py [--repeats 3]

One emulated chip (speed 0.05, an MLP of width 1024) and samples whose reading takes, per step, as
long as the chip's compute: the per-sample reading time is the compute-only
run's median compute per step / batch, measured first in the same run, so the
case is "as much as compute" on any host. Reading is either CPU work (a busy
wait, as decoding or tokenising) or a wait (a sleep, as network storage).
Cases, interleaved in each repeat: reading costs nothing (the compute-only
rate), reading in the training process (`loader_workers=0`), and two reader
processes (`loader_workers=2`) with CPU reading and with waiting reading. The
measure is the median interval between committed steps after a warm-up, so
start-up does not count; the chip's median compute per step is shown beside
it, because on a host of few cores busy readers slow the emulated chip itself
(its compute is host CPU time scaled by 1/speed), which a real accelerator's
kernels would not feel. Writes bench/results/data_workers.json and
docs/_generated/data_workers.md (included in docs/benchmarks.md by
`python -m bench.report bench/results/full.json`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fleet_helpers import events, phalanx  # noqa: E402

SCRIPT = ROOT / "bench" / "data_heavy_script.py"
# Speed 0.05 on a ~4 ms host computation (width 1024): at speed 0.01 on a 0.9 ms one, the
# host's cache misses after a reader's work, magnified 100x, added 20-40 ms to the chip.
SPEED, WIDTH, STEPS, BATCH, WARMUP_STEPS = "0.05", 1024, 30, 32, 5
COMPUTE_ONLY = "compute only (reading is free)"
CASES = {  # name: (reading costs as much as compute?, reader processes, kind of reading)
    COMPUTE_ONLY: (False, 0, "cpu"),
    "reading (CPU) in the training process": (True, 0, "cpu"),
    "2 reader processes, reading is CPU work": (True, 2, "cpu"),
    "2 reader processes, reading waits (storage)": (True, 2, "wait"),
}


def _run(name: str, decode_ms: float, workers: int, kind: str, out: Path) -> tuple[float, float]:
    """(median step interval, median chip compute per step), seconds."""
    result = phalanx(
        "run", str(SCRIPT), "--out", str(out), "--emulate", SPEED, "--quiet", "--",
        "--steps", str(STEPS), "--batch", str(BATCH), "--decode-ms", f"{decode_ms:.4f}",
        "--decode-kind", kind, "--loader-workers", str(workers), "--width", str(WIDTH),
        timeout_s=600,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"{name}: the run failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    steps = [e for e in events(out) if e["kind"] == "step"][WARMUP_STEPS:]
    interval = statistics.median(b["t"] - a["t"] for a, b in itertools.pairwise(steps))
    return interval, statistics.median(e["compute_s"] for e in steps)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    intervals: dict[str, list[float]] = {name: [] for name in CASES}
    computes: dict[str, list[float]] = {name: [] for name in CASES}
    decode_ms = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for number, (name, (reads, workers, kind)) in enumerate(CASES.items()):
                out = Path(tmp) / f"{number}-{repeat}"
                interval, compute = _run(name, decode_ms if reads else 0.0, workers, kind, out)
                intervals[name].append(interval)
                computes[name].append(compute)
                if name == COMPUTE_ONLY and repeat == 0:
                    # Reading a step's samples costs what computing them does, on this host.
                    decode_ms = 1000 * compute / BATCH
                print(f"{name}: {interval * 1000:.0f} ms per step", flush=True)
    # Paired within a repeat: each case against the compute-only run next to it.
    base = intervals[COMPUTE_ONLY]
    rows = {
        name: {
            "step_ms": round(1000 * statistics.median(values), 1),
            "compute_ms": round(1000 * statistics.median(computes[name]), 1),
            "rate_vs_compute_only": [
                round(min(r), 3),
                round(statistics.median(r), 3),
                round(max(r), 3),
            ],
        }
        for name, values in intervals.items()
        for r in [[b / v for b, v in zip(base, values, strict=True)]]
    }
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "data_workers.json").write_text(
        json.dumps(
            {"decode_ms": decode_ms, "intervals_s": intervals, "compute_s": computes, "rows": rows},
            indent=1,
        )
    )
    lines = [
        "| reading | step (ms, median) | chip compute per step (ms, median) "
        "| rate vs compute only (min / median / max) |",
        "|---|---|---|---|",
        *(
            f"| {name} | {row['step_ms']} | {row['compute_ms']} | "
            f"{' / '.join(f'{x:.3f}' for x in row['rate_vs_compute_only'])} |"
            for name, row in rows.items()
        ),
        "",
        f"Generated by `python bench/data_workers.py --repeats {args.repeats}` on "
        f"{time.strftime('%Y-%m-%d')} ({os.cpu_count()} cores): one emulated chip (speed "
        f"{SPEED}, MLP width {WIDTH}), {STEPS} steps of {BATCH}, reading {decode_ms:.2f} ms per sample (a step's "
        f"reading as long as its compute in the compute-only run), median step interval after "
        f"{WARMUP_STEPS} steps, cases interleaved, ratios paired within a repeat. The chip "
        "compute column shows the emulation's limit on a host of few cores: busy readers "
        "slow the emulated chip's own CPU work (scaled by 1/speed), which an accelerator's "
        "kernels would not feel.",
    ]
    (ROOT / "docs" / "_generated" / "data_workers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
