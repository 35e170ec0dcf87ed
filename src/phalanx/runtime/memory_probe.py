"""Measure a model's activations per sample on its own data, leaving no trace.

Used where a replica starts on an emulated chip with a memory cap (the cap
binds from its first micro-batch) and by profile mode, which measures a
script's model for `phalanx plan --script` (plan/layout.py).
"""

from __future__ import annotations

import torch

from phalanx.emulate.memory import ChipMemory
from phalanx.runtime.compute import Workload, move_to


def probe_activations(memory: ChipMemory, work: Workload) -> None:
    """Run `memory.probe` on the feed's first samples; restore buffers and RNG after."""
    feed = work.feed
    most = feed.num_samples if feed.num_samples is not None else 2

    def forward_of(samples: int) -> object:
        batch = move_to(feed.read_now(0, samples, whole=True)[0].batch, work.device)
        return work.loss_fn(work.model, batch)

    snapshot = [b.detach().clone() for b in work.model.buffers()]
    try:
        with torch.random.fork_rng(devices=[]):
            memory.probe(forward_of, most)
    finally:
        with torch.no_grad():  # the probe's forwards must leave no trace (BatchNorm stats)
            for buffer, saved in zip(work.model.buffers(), snapshot):
                buffer.copy_(saved)
