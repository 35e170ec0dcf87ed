"""A restarted replica's first forwards and backwards, run before it asks to join.

A process's first training step costs more than the ones after it: lazy
initialisation, the allocator's first growth, autograd's first graphs (on an
accelerator also loading kernels, autotuning them, compiling). A replica
restarted into a running fleet used to pay that inside its first step, and
the whole fleet waited for it at the first sum. On the bench's fleet the step
a replica rejoined in took 0.9-1.9 s instead of 0.4 (an emulated chip
stretches a step's CPU time by its slowness, so a cold step's extra CPU is
stretched too). Paid before the quorum instead, the fleet trains on without
the replica meanwhile, at the speed it already had while the replica was away.

A replica group's ranks do not warm up: their forward gathers the sharded
parameters from each other, and they restart together anyway.
"""

from __future__ import annotations

import time

from phalanx.runtime.compute import Workload, trainable_parameters
from phalanx.runtime.memory_probe import first_samples, leaves_no_trace
from phalanx.runtime.step import StepContext
from phalanx.runtime.worker_config import WorkerConfig

# Two passes: the first pays the one-off costs, the second those of the first
# backward's buffers being reused (the allocator's cache, autograd's graph pools).
WARM_UP_PASSES = 2


def warm_up_samples(work: Workload, fleet_size: int) -> int:
    """About the share the replica will compute: a fair split, within a micro-batch."""
    samples = max(1, work.global_batch_size // max(1, fleet_size))
    if work.max_microbatch is not None:
        samples = min(samples, work.max_microbatch)
    if work.num_samples is not None:
        samples = min(samples, work.num_samples)
    return samples


def warm_up(work: Workload, samples: int) -> float:
    """Forward and backward of the stream's first `samples`, leaving no trace; seconds."""
    started = time.perf_counter()
    params = trainable_parameters(work.model)
    with leaves_no_trace(work.model):  # the read's randomness too (RNG forked)
        batch = first_samples(work.feed, samples, work.device)
        for _ in range(WARM_UP_PASSES):
            for param in params:
                param.grad = None  # never into the step's gradient buffer
            with work.precision.autocast(work.device):
                loss = work.loss_fn(work.model, batch)
            loss.float().backward()
        for param in params:
            param.grad = None
    return time.perf_counter() - started


def warm_up_if_restarted(ctx: StepContext, worker: WorkerConfig | None) -> None:
    """Warm a restarted replica up (see above); a `warm_up` event says how long it took."""
    if worker is None or not worker.restarted or ctx.group is not None:
        return
    samples = warm_up_samples(ctx.work, worker.fleet_size)
    seconds = warm_up(ctx.work, samples)
    ctx.events.emit("warm_up", replica=ctx.name, samples=samples, duration_s=seconds)
