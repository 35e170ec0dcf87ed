"""The ideal: each chip's solo throughput, measured alone, summed over the fleet.

Each distinct speed runs alone in this process (nothing else of the bench runs
meanwhile): the same model, data and `ComputePacer` at the fleet's time scale,
on the share the chip would get under a perfect speed-proportional split, with
its optimizer step, and no synchronisation with anybody.

    python bench/solo.py --speeds 1,0.5,0.25,0.25 --time-scale 0.25 --out solo.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timeline import steady_rate_sps
from bench.workload import (
    SEED,
    Workload,
    build_dataset,
    build_model,
    build_optimizer,
    loss_fn,
)
from phalanx.data.slicing import sample_indices
from phalanx.emulate.pacer import ComputePacer


def proportional_share(speed: float, speeds: list[float], batch: int) -> int:
    return max(1, round(batch * speed / sum(speeds)))


def solo_rate_sps(work: Workload, speed: float, time_scale: float, share: int) -> float:
    dataset = build_dataset(work)
    model = build_model(work, dataset)
    optimizer = build_optimizer(model.parameters())
    pacer = ComputePacer(speed * time_scale)
    times: dict[int, float] = {}
    for step in range(work.steps):
        start = step * work.batch
        indices = sample_indices(start, start + share, SEED, len(dataset))
        pacer.begin(units=share)
        loss_fn(model, default_collate([dataset[i] for i in indices])).backward()
        pacer.end()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times[step] = time.time()
    return steady_rate_sps(times, share)


def main() -> None:
    parser = argparse.ArgumentParser()
    Workload.add_args(parser)
    parser.add_argument("--speeds", required=True)
    parser.add_argument("--time-scale", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    work = Workload.from_args(args)
    speeds = [float(s) for s in args.speeds.split(",")]
    torch.set_num_threads(1)  # as every emulated chip of every contender
    by_speed = {
        speed: solo_rate_sps(
            work, speed, args.time_scale, proportional_share(speed, speeds, work.batch)
        )
        for speed in sorted(set(speeds), reverse=True)
    }
    chips_sps = [by_speed[s] for s in speeds]
    result = {
        "speeds": speeds,
        "chips_sps": chips_sps,
        "ideal_sps": sum(chips_sps),
        # Linux reports kilobytes; one chip at a time, so this is the largest chip's peak.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
