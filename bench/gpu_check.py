"""`make gpu-check`: the prepared check of the real-device paths, for a host with one GPU.

    python -m bench.gpu_check [--out bench/results/gpu-check.json] [--steps 60]
    python -m bench.gpu_check --cpu-stand-in     # the same runs with a CPU in the GPU's place

A fleet of the GPU plus two CPU replicas (`--devices cuda:0,cpu,cpu`) trains
examples/mlp.py with a kill inside the allreduce and a hang, in each of 32,
fp16-mixed and bf16-mixed, beside the one-process run on the GPU in the same
precision. For each precision it records: the run's exit code and completion,
the faults survived, the largest parameter difference from the one-process run
against the tolerance below, every sample seen exactly once, the shares beside
the replicas' measured speeds, and the GPU's energy with its source. One JSON.

Why these tolerances: the fleet sums gradients computed by different kernels
(cuBLAS on the GPU, the CPU's own), so it cannot be bit-exact against a run on
one device; in float32 the differences stay at rounding level, under autocast
the 16-bit products dominate. Without a GPU it says so and exits 0 (CI has
none); `--cpu-stand-in` runs the same script with `cpu` in the GPU's place, so
the check itself is exercised anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fleet_helpers import MLP, independent_data_check, local_run, max_param_diff, phalanx  # noqa: E402

PRECISIONS = ("32", "fp16-mixed", "bf16-mixed")
# Largest |fleet - one process| of any final parameter after 60 steps, per precision.
TOLERANCE = {"32": 1e-4, "fp16-mixed": 5e-2, "bf16-mixed": 5e-2}
SAMPLES = 512
FAULTS = ("kill:replica=1,step=12,restart_s=1,phase=allreduce", "hang:replica=2,step=30,seconds=6")


def find_gpu() -> str | None:
    import torch

    if torch.cuda.is_available():  # ROCm builds answer here too
        return "cuda:0"
    return None


def check_precision(gpu: str, precision: str, steps: int, work: Path) -> dict[str, Any]:
    args = ["--steps", str(steps), "--batch", "48", "--samples", str(SAMPLES),
            "--checkpoint-every", "0", "--precision", precision]  # fmt: skip
    reference = local_run(MLP, work / f"ref-{precision}", [*args, "--device", gpu])
    run = work / f"fleet-{precision}"
    started = time.monotonic()
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--devices", f"{gpu},cpu,cpu",
        "--precision", precision, "--timeout-s", "5", "--quiet",
        *[flag for spec in FAULTS for flag in ("--fault", spec)], "--", *args,
        timeout_s=480,
    )  # fmt: skip
    record: dict[str, Any] = {
        "precision": precision,
        "code": result.returncode,
        "wall_s": round(time.monotonic() - started, 1),
    }
    if result.returncode != 0:
        return {**record, "ok": False, "error": (result.stdout + result.stderr)[-2000:]}
    summary = json.loads((run / "summary.json").read_text())
    diff = max_param_diff(run, reference)
    duplicates, missing = independent_data_check(run, num_samples=SAMPLES)
    devices = summary["devices"]
    total = sum(d["samples"] for d in devices) or 1
    record.update(
        completed=summary["completed"],
        faults_survived=summary["faults"]["survived"],
        max_param_diff=diff,
        tolerance=TOLERANCE[precision],
        duplicates=duplicates,
        missing=missing,
        shares=[
            {
                "replica": d["id"],
                "sample_fraction": round(d["samples"] / total, 3),
                "solo_sps": d.get("solo_sps"),
                "energy_j": d.get("energy_j"),
            }
            for d in devices
        ],
        energy_note=(summary.get("energy") or {}).get("note"),
    )
    # The GPU (replica 0) is the fastest device here, so it must carry the largest share.
    fastest_first = devices[0]["samples"] == max(d["samples"] for d in devices)
    record["ok"] = bool(
        summary["completed"]
        and summary["faults"]["survived"] == len(FAULTS)
        and diff <= TOLERANCE[precision]
        and (duplicates, missing) == (0, 0)
        and (fastest_first or gpu == "cpu")
    )
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/gpu-check.json")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--cpu-stand-in", action="store_true", help="use cpu in the GPU's place")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    options = parser.parse_args()
    gpu = "cpu" if options.cpu_stand_in else find_gpu()
    if gpu is None:
        print("gpu-check: no GPU on this host, nothing to check (CI has none; it skips this)")
        return 0
    import torch

    name = torch.cuda.get_device_name(0) if gpu.startswith("cuda") else "cpu stand-in"
    results = {"schema": "phalanx.gpu_check/1", "device": name, "steps": options.steps,
               "faults": list(FAULTS), "precisions": []}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="phalanx-gpu-check-") as tmp:
        for precision in options.precisions.split(","):
            record = check_precision(gpu, precision, options.steps, Path(tmp))
            results["precisions"].append(record)
            verdict = "ok" if record["ok"] else "FAILED"
            print(f"gpu-check {precision}: {verdict} "
                  f"(diff {record.get('max_param_diff', float('nan')):.2e}, {record['wall_s']} s)")  # fmt: skip
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"gpu-check: results in {options.out}")
    return 0 if all(r["ok"] for r in results["precisions"]) else 1


if __name__ == "__main__":
    sys.exit(main())
