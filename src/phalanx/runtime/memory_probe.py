"""Probe a model on its own data, leaving no trace: what it holds, what it costs.

Used where a replica starts on an emulated chip with a memory cap (the cap
binds from its first micro-batch), by profile mode, which measures a script's
model for `phalanx plan --script` (plan/layout.py), and by a replica group's
rank before it shards its model (runtime/compute_probe.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from phalanx.data.feed import BatchFeed
from phalanx.emulate.memory import ChipMemory
from phalanx.exact.keys import sample_keys
from phalanx.runtime.compute import Workload, move_to, trainable_parameters


@contextmanager
def leaves_no_trace(model: torch.nn.Module) -> Iterator[None]:
    """Inside: forwards (and backwards from no gradient) for measuring only. After: the
    RNG, the buffers (BatchNorm statistics) and each `.grad` are what they were."""
    snapshot = [b.detach().clone() for b in model.buffers()]
    params = trainable_parameters(model)
    grads = [p.grad for p in params]
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        for param, grad in zip(params, grads):
            param.grad = grad
        with torch.no_grad():
            for buffer, saved in zip(model.buffers(), snapshot):
                buffer.copy_(saved)


def first_samples(feed: BatchFeed, samples: int, device: torch.device) -> Any:
    """The stream's first `samples` samples as one batch, on `device`."""
    return move_to(feed.read_now(0, samples, whole=True)[0].batch, device)


def probe_activations(memory: ChipMemory, work: Workload) -> None:
    """Run `memory.probe` on the feed's first samples; leave no trace."""
    feed = work.feed
    most = feed.num_samples if feed.num_samples is not None else 2

    def forward_of(samples: int) -> object:
        # Under sample keys, as training runs it: keyed attention dropout holds its
        # weights for backward where the fused kernel would not (exact/functional_dropout.py).
        with sample_keys(work.seed, 0, samples, work.device):
            return work.loss_fn(work.model, first_samples(feed, samples, work.device))

    with leaves_no_trace(work.model):
        memory.probe(forward_of, most)
