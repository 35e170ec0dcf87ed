"""CPU time per sample of the model's training forward+backward, measured on it whole.

A rank of a replica group is (part of) an emulated chip, and its compute phase
also runs FSDP2's host work on the same thread: the gathers' copies, the
reduce-scatter's, the hooks. Paced by the chip's speed, that host work would
be stretched as if the chip did it (bench/group_microbatch.py: a micro-batch of
1.5 ms of compute took 7.8 ms of thread CPU sharded over three ranks). So a
group rank's chip computes its samples at the rate measured here, on the
model whole, before it is sharded, over the chip's speed; host work beyond
that shows as the time it takes, as an accelerator's kernels overlap the
host's Python.
"""

from __future__ import annotations

import statistics
import time

import torch

from phalanx.data.feed import BatchFeed
from phalanx.runtime.compute import LossFn
from phalanx.runtime.memory_probe import first_samples, leaves_no_trace

PROBE_SAMPLES = 32
REPEATS = 3


def cpu_per_sample(
    model: torch.nn.Module, loss_fn: LossFn, feed: BatchFeed, device: torch.device
) -> float | None:
    """Median thread CPU seconds per sample of forward+backward; the model is left as found."""
    samples = min(PROBE_SAMPLES, feed.num_samples or PROBE_SAMPLES)
    if samples < 1:
        return None
    batch = first_samples(feed, samples, device)
    times: list[float] = []
    with leaves_no_trace(model):
        for _ in range(REPEATS + 1):  # the first warms up
            start = time.thread_time()
            loss_fn(model, batch).backward()
            times.append(time.thread_time() - start)
    return statistics.median(times[1:]) / samples
