"""The phalanx contender's training script: the bench workload through `phalanx.Trainer`.

Launched as users launch any script: `phalanx run bench/phalanx_script.py --emulate ... -- ARGS`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# `phalanx run` starts this file as a script; make the repo root importable for `bench.*`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import phalanx
from bench.workload import (
    SEED,
    Workload,
    build_dataset,
    build_model,
    build_optimizer,
    loss_fn,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    Workload.add_args(parser)
    parser.add_argument("--out", default="runs/bench-local")
    work = Workload.from_args(parser.parse_args())
    dataset = build_dataset(work)
    trainer = phalanx.Trainer(
        model=build_model(work, dataset),
        optimizer=build_optimizer,
        dataset=dataset,
        loss_fn=loss_fn,
        global_batch_size=work.batch,
        steps=work.steps,
        seed=SEED,
        out_dir=parser.parse_args().out,
    )
    trainer.fit()


if __name__ == "__main__":
    main()
