"""One-time setup of a replica before its first step."""

from __future__ import annotations

import time
from datetime import timedelta

import torch
from torch.utils.data import default_collate

from phalanx.runtime.compute import Workload, move_to
from phalanx.runtime.model_buffers import trained_buffers
from phalanx.runtime.worker_config import WorkerConfig

START_BARRIER_S = 120.0


def start_barrier(worker: WorkerConfig | None) -> None:
    """First start of a fleet: wait until every replica is up, so the first quorum has all."""
    if worker is None or worker.restarted or not worker.start_barrier:
        return
    from torch.distributed import TCPStore

    host, port = worker.start_barrier.rsplit(":", 1)
    store = TCPStore(host, int(port), is_master=False, timeout=timedelta(seconds=START_BARRIER_S))
    store.add("ready", 1)
    deadline = time.monotonic() + START_BARRIER_S
    while int(store.add("ready", 0)) < worker.fleet_size and time.monotonic() < deadline:
        time.sleep(0.02)  # polling a counter; the store has no wait-for-value


def find_trained_buffers(work: Workload) -> list[tuple[str, torch.Tensor]]:
    """The model buffers a training forward changes (synchronised every step).

    Found by one forward of the first two samples; a model whose forward fails on
    them (an unusual batch shape) gets every buffer synchronised instead: slower,
    never wrong.
    """
    count = min(2, work.num_samples)
    try:
        batch = move_to(default_collate([work.dataset[i] for i in range(count)]), work.device)
        return trained_buffers(work.model, lambda: work.loss_fn(work.model, batch))
    except Exception:  # the probe is an optimisation; the fallback is always correct
        return [(n, b) for n, b in work.model.named_buffers() if b.dtype != torch.bool]
