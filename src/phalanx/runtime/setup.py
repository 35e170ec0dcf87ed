"""One-time setup of a replica before its first step."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from phalanx.errors import UsageError
from phalanx.exact.functional_dropout import SITES
from phalanx.exact.layer_stats import LayerStatsSync
from phalanx.exact.setup import (
    learn_dropout_layouts,
    make_exact,
    parameters_written_in_forward,
    randomness_outside_layers,
)
from phalanx.observe.events import EventLog
from phalanx.runtime import checkpoint as ckpt
from phalanx.runtime.compute import Workload, move_to
from phalanx.runtime.model_buffers import trained_buffers
from phalanx.runtime.state import TrainState
from phalanx.runtime.sync import Sync
from phalanx.runtime.worker_config import WorkerConfig

START_BARRIER_S = 120.0


def restore_newest(
    name: str, state: TrainState, out_dir: Path, events: EventLog, sync: Sync
) -> None:
    """Load the newest loadable checkpoint in `out_dir`, if any (a resume)."""
    try:
        loaded = ckpt.load_newest(state, out_dir)
    except ckpt.CheckpointError as err:
        raise UsageError(
            "checkpoints", f"none can be loaded ({err})",
            "restore a good checkpoint from a backup, or move the damaged ones away "
            "to start again from step 0",
        ) from None  # fmt: skip
    if loaded is None:
        return
    for path, why in loaded.skipped:
        events.emit("checkpoint_refused", replica=name, path=str(path), reason=why)
        print(f"warning: checkpoint {path.name} refused ({why}); using an older one", flush=True)
    events.emit("resume", replica=name, step=loaded.step, path=str(loaded.path))
    sync.set_step(loaded.step)


def announce(events: EventLog, name: str, worker: WorkerConfig | None, run: Any) -> None:
    """`worker_start` (and, run standalone, `run_start`): `run` is the Trainer."""
    events.emit(
        "worker_start", replica=name, pid=os.getpid(), step=run.state.fleet.step,
        speed=worker.speed if worker else None, restarted=bool(worker and worker.restarted),
        global_batch_size=run.global_batch_size, steps=run.steps,
        num_samples=run.num_samples, seed=run.seed,
        defects=worker.defects if worker and worker.defects else None,
        device=str(run.device), threads=torch.get_num_threads(),
    )  # fmt: skip
    if worker is None:
        events.emit(
            "run_start", steps=run.steps, global_batch_size=run.global_batch_size,
            replicas={name: {"speed": None, "kind": run.device.type}},
        )  # fmt: skip


def start_barrier(
    worker: WorkerConfig | None, given_up: Callable[[], bool] = lambda: False
) -> None:
    """First start of a fleet: wait until every replica is up, so the first quorum has all.

    `given_up()` True ends the wait (a SIGTERM: a peer that was pre-empted never comes).
    """
    if worker is None or worker.restarted or not worker.start_barrier:
        return
    from torch.distributed import TCPStore

    host, port = worker.start_barrier.rsplit(":", 1)
    store = TCPStore(host, int(port), is_master=False, timeout=timedelta(seconds=START_BARRIER_S))
    store.add("ready", 1)
    deadline = time.monotonic() + START_BARRIER_S
    everyone = worker.fleet_size * worker.group_ranks  # every rank of every replica group
    while int(store.add("ready", 0)) < everyone and time.monotonic() < deadline and not given_up():
        time.sleep(0.02)  # polling a counter; the store has no wait-for-value


PROBE_SAMPLES = 2  # the start-up probes' batch: the first samples of the stream


def probe_count(work: Workload) -> int:
    return min(PROBE_SAMPLES, work.num_samples or PROBE_SAMPLES)


def probe_forward(work: Workload, count: int | None = None) -> Callable[[], torch.Tensor]:
    """One training forward (the loss) of the first samples, for the start-up probes."""
    count = count or probe_count(work)
    batch = move_to(work.feed.read_now(0, count, whole=True)[0].batch, work.device)
    return lambda: work.loss_fn(work.model, batch)


def find_trained_buffers(work: Workload) -> list[tuple[str, torch.Tensor]]:
    """The model buffers a training forward changes (synchronised every step).

    Found by one forward of the first two samples; a model whose forward fails on
    them (an unusual batch shape) gets every buffer synchronised instead: slower,
    never wrong.
    """
    try:
        return trained_buffers(work.model, probe_forward(work))
    except Exception:  # the probe is an optimisation; the fallback is always correct
        return [(n, b) for n, b in work.model.named_buffers() if b.dtype != torch.bool]


def make_layers_exact(
    work: Workload, exact: bool, sync: Sync, dry_run: Callable[[], None]
) -> tuple[LayerStatsSync | None, list[str]]:
    """Patch the model's split-dependent layers (exact/setup.py); (their sync, warnings)."""

    def allreduce(tensor: torch.Tensor) -> None:
        sync.allreduce(tensor).wait()

    stats = LayerStatsSync(allreduce, dry_run)
    found = make_exact(work.model, exact, work.max_microbatch, stats)
    warnings = list(found.warnings)
    if exact:
        # Two sample counts to tell the batch by; not one sample (BatchNorm refuses it in
        # training, and a user's loop may squeeze the batch away).
        counts = (PROBE_SAMPLES, PROBE_SAMPLES + 1)
        if work.num_samples is None or work.num_samples >= counts[1]:
            layouts = learn_dropout_layouts(
                work.model, {**found.keyed_modules, **SITES}, lambda n: probe_forward(work, n), counts,
                work.seed,
            )  # fmt: skip
            if layouts:
                warnings.append(layouts)
        try:
            forward = probe_forward(work)
        except Exception:  # no probe batch: nothing to learn from
            forward = None
        count = probe_count(work)
        extra = forward and randomness_outside_layers(work.model, forward, count, work.seed)
        if extra:
            warnings.append(extra)
    return (stats if found.global_batchnorms else None), warnings


def check_writes_in_forward(work: Workload, probe: bool = True) -> str | None:
    """On a fleet, before the first step: a model that changes its parameters inside
    forward. nn.Embedding(max_norm=...) renormalises the rows a batch looks up: each
    replica would change the rows of its own samples, the replicas would hold different
    models, and the guard would stop the run at the first step (fingerprints that no
    majority shares). Refused at start, by name (exit 2); other writes that a probe
    forward shows (`probe`: not in a replica group, whose forward gathers shards) are
    named in a warning (a write the same on every replica, a clamp, is harmless)."""
    renorm = [
        name
        for name, module in work.model.named_modules()
        if isinstance(module, (torch.nn.Embedding, torch.nn.EmbeddingBag))
        and module.max_norm is not None
    ]
    if renorm:
        raise UsageError(
            "model",
            f"{', '.join(renorm)}: nn.Embedding(max_norm=...) renormalises the rows a batch "
            "looks up inside forward, so each replica would change the rows of its own "
            "samples and the fleet could not keep one model",
            "pass max_norm=None (renormalise after the optimizer step instead), or train "
            "this model in one process",
        )
    if not probe:
        return None
    try:
        forward = probe_forward(work)
    except Exception:  # no probe batch: nothing to learn from
        return None
    written = parameters_written_in_forward(work.model, forward, probe_count(work), work.seed)
    if not written:
        return None
    return (
        f"{', '.join(written)} changed inside a training forward: unless every replica "
        "changes them alike, the replicas will hold different models and the guard stops "
        "the run. Fix: change parameters only in the optimizer step"
    )
