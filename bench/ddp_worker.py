"""One torch DDP worker (gloo), launched by torchrun: the DDP and torchrun-restart contenders.

Equal split: every rank computes B / world samples of the same global sample
order phalanx uses. The emulated chip is phalanx's own `ComputePacer` at the
same speed and time scale. DDP keeps its bucketed allreduce overlapped with
backward: a comm hook first sleeps until the emulated chip would have produced
the bucket's gradients, then hands the bucket to torch's default allreduce hook.

Faults use phalanx's `FaultInjector` (same specs, once per run via marker
files), so a kill is a real SIGKILL and a hang a real SIGSTOP. With
--checkpoint-every K, rank 0 saves model+optimizer every K steps and every
(re)started worker resumes from the newest checkpoint, as a torchrun user would.

steps.jsonl (in --run-dir): rank 0 writes `attempt` and `step` (its commit time);
every rank writes `phase` per step (compute_s: until its last gradient bucket left;
backward_s: until backward returned, i.e. also the allreduce DDP did not hide;
optimizer_s) and `done` with its peak resident memory.
"""

# No `from __future__ import annotations`: DDP checks the hook's annotations at runtime.

import argparse
import json
import os
import resource
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script by torchrun

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
from phalanx.faults.injector import FaultInjector
from phalanx.faults.spec import FaultSpec

CHECKPOINT = "ddp_checkpoint.pt"
TIMELINE = "steps.jsonl"


class PacedBuckets:
    """The comm hook's state: the emulated chip, and when this step's last bucket left it."""

    def __init__(self, pacer: ComputePacer) -> None:
        self.pacer = pacer
        self.last_bucket_s = 0.0  # seconds from the step's compute start

    def begin(self, samples: int) -> None:
        self.last_bucket_s = 0.0
        self.pacer.begin(units=samples)


def paced_allreduce_hook(
    state: PacedBuckets, bucket: dist.GradBucket
) -> torch.futures.Future[torch.Tensor]:
    # Pad to the emulated time first: a slow chip cannot send gradients it has not made yet.
    # The last bucket leaves when backward has made every gradient: the end of compute.
    state.last_bucket_s = state.pacer.end()
    return default_hooks.allreduce_hook(None, bucket)  # type: ignore[arg-type]


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def save_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int
) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp
    )
    os.replace(tmp, path)  # a worker killed mid-save leaves the previous checkpoint intact


def init_process_group(rank: int, world: int, restart: int) -> None:
    # Long enough that a hung peer is waited for (DDP has no way to drop it).
    timeout = timedelta(seconds=120)
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        dist.init_process_group("gloo", timeout=timeout)
        return
    # torchrun (torch 2.13) keeps its agent's store across restarts; under the default
    # prefix a restarted worker reads its dead predecessors' gloo addresses and the new
    # group never connects. A per-attempt prefix is the user-side fix.
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size=world,
        is_master=False,
        timeout=timeout,
    )
    dist.init_process_group(
        "gloo",
        store=dist.PrefixStore(f"attempt_{restart}", store),
        rank=rank,
        world_size=world,
        timeout=timeout,
    )


def emit(path: Path, **record: object) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps({"t": time.time(), **record}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    Workload.add_args(parser)
    parser.add_argument("--speeds", required=True, help="comma-separated emulated speeds")
    parser.add_argument("--time-scale", type=float, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--checkpoint-every", type=int, default=0, help="0: no checkpoints")
    parser.add_argument("--faults", default="[]", help="JSON list of phalanx fault specs")
    args = parser.parse_args()
    work = Workload.from_args(args)
    speeds = [float(s) for s in args.speeds.split(",")]

    torch.set_num_threads(1)  # emulated chips share the host's cores, as in phalanx
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if world != len(speeds) or work.batch % world:
        raise SystemExit(f"need one rank per speed and B divisible by {world}")
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    init_process_group(rank, world, restart)

    dataset = build_dataset(work)
    model = build_model(work, dataset)
    optimizer = build_optimizer(model.parameters())
    checkpoint = args.run_dir / CHECKPOINT
    start_step = load_checkpoint(checkpoint, model, optimizer)
    ddp = DistributedDataParallel(model)
    buckets = PacedBuckets(ComputePacer(speeds[rank] * args.time_scale))
    ddp.register_comm_hook(buckets, paced_allreduce_hook)
    faults = [FaultSpec.from_json(f) for f in json.loads(args.faults) if f["replica"] == rank]
    injector = FaultInjector(faults, args.run_dir, events=None)
    timeline = args.run_dir / TIMELINE
    share = work.batch // world
    if rank == 0:
        emit(timeline, kind="attempt", restart=restart, step=start_step)

    for step in range(start_step, work.steps):
        injector.at("compute", step)
        start = step * work.batch + rank * share
        indices = sample_indices(start, start + share, SEED, len(dataset))
        buckets.begin(share)
        loss = loss_fn(ddp, default_collate([dataset[i] for i in indices]))
        loss.backward()  # the hook paces and launches each bucket's allreduce
        backward_s = buckets.pacer.end()  # DDP's backward returns once every bucket is summed
        optimizer_t0 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        optimizer_s = time.perf_counter() - optimizer_t0
        # Every rank: where its step went (the bench takes the slowest rank's compute).
        emit(
            timeline,
            kind="phase",
            rank=rank,
            step=step,
            compute_s=round(buckets.last_bucket_s or backward_s, 5),
            backward_s=round(backward_s, 5),
            optimizer_s=round(optimizer_s, 5),
        )
        if rank == 0:
            emit(timeline, kind="step", step=step, loss=float(loss.detach()))
            if args.checkpoint_every and (step + 1) % args.checkpoint_every == 0:
                save_checkpoint(checkpoint, model, optimizer, step + 1)
    dist.destroy_process_group()
    emit(timeline, kind="done", rank=rank, peak_rss_bytes=peak_rss_bytes())


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux reports kilobytes), as phalanx's workers."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


if __name__ == "__main__":
    main()
