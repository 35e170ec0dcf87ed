"""Build, once per replica, everything the step and its hooks need.

The trainer validates the script's arguments into `RunSettings`; the
launcher's `WorkerConfig` says where and how this replica runs. From those
two (and the model, data and state) this module builds the typed
`StepContext` (runtime/step.py) and the after-step hooks (runtime/hooks.py),
so that neither the step nor a hook ever reads a trainer attribute.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from phalanx.data.feed import BatchFeed
from phalanx.emulate.memory import ChipMemory
from phalanx.emulate.pacer import ComputePacer
from phalanx.energy.thermal_guard import ThermalGuard
from phalanx.faults.injector import FaultInjector
from phalanx.faults.spec import FaultSpec
from phalanx.guard.abft import AbftMonitor
from phalanx.guard.defect_hooks import DefectiveLinears
from phalanx.guard.offences import OffenceLedger
from phalanx.observe.events import EventLog
from phalanx.runtime.compute import (
    LossFn,
    Workload,
    batches_gradient,
    trainable_parameters,
)
from phalanx.runtime.fleet_watch import FleetWatch
from phalanx.runtime.grad_buffer import GradBuffer
from phalanx.runtime.hooks import CheckpointHook, DeviceHook, GuardHook, StepLogHook
from phalanx.runtime.memory_probe import probe_activations
from phalanx.runtime.model_buffers import ModelBuffers
from phalanx.runtime.precision import Precision
from phalanx.runtime.reduction import Reduction
from phalanx.runtime.setup import (
    check_writes_in_forward,
    find_trained_buffers,
    make_layers_exact,
    probe_count,
)
from phalanx.runtime.state import TrainState
from phalanx.runtime.step import GuardSetup, StepContext, StepReport
from phalanx.runtime.sync import Sync
from phalanx.runtime.worker_config import WorkerConfig
from phalanx.shares.learning import SharePolicy

Hook = Callable[[StepReport], None]


@dataclass(frozen=True)
class RunSettings:
    """The Trainer's validated arguments (after the launcher's overrides)."""

    name: str  # this replica ("local" for a one-process run)
    out_dir: Path
    device: torch.device
    global_batch_size: int
    steps: int
    seed: int
    max_microbatch: int | None
    clip_grad_norm: float | None
    guard: str
    quarantine_after: int
    exact: bool
    checkpoint_every: int | None
    keep_checkpoints: int
    precision: str = "32"
    share_unit: int = 1  # shares are whole blocks of this many samples (aligned_microbatch)


@dataclass(frozen=True)
class UserParts:
    """What the user's script built."""

    model: torch.nn.Module
    loss_fn: LossFn
    dataset: Any
    num_samples: int | None
    state: TrainState
    feed: BatchFeed


def build_context(
    run: RunSettings,
    user: UserParts,
    worker: WorkerConfig | None,
    events: EventLog,
    sync: Sync,
) -> tuple[StepContext, list[Hook]]:
    faults = [FaultSpec.from_json(f) for f in worker.faults] if worker else []
    injector = FaultInjector(faults, run.out_dir, events)
    params = trainable_parameters(user.model)
    work = Workload(
        user.model, user.loss_fn, user.dataset, user.num_samples, run.global_batch_size,
        run.max_microbatch, run.device, run.seed, Precision(run.precision), user.feed,
    )  # fmt: skip
    fleet_info = worker.fleet if worker else {}
    shares = SharePolicy(
        run.global_batch_size,
        {n: v["hint_sps"] for n, v in fleet_info.items() if v.get("hint_sps")},
        {n: v.get("max_share") for n, v in fleet_info.items()},
        collective_timeout_s=worker.timeout_s if worker else None,
        unit=run.share_unit,
        relative_speeds={
            n: v["relative_speed"] for n, v in fleet_info.items() if v.get("relative_speed")
        },
    )
    watch = FleetWatch(
        sync, events, run.name, run.out_dir, bool(worker and worker.many_hosts),
        in_fleet=worker is not None,
    )  # fmt: skip
    defects = (worker.defects or {}) if worker is not None else {}
    if worker is not None and defects.get("flip_rate"):
        # The chip's defect acts first, so the guard sees what the chip computed.
        seed = int(defects.get("seed", run.seed + worker.index))
        DefectiveLinears(user.model, float(defects["flip_rate"]), seed=seed)
    guard = GuardSetup(
        run.guard,
        fingerprints=run.guard != "off" and worker is not None,
        abft=AbftMonitor(user.model) if run.guard == "full" else None,
    )
    layer_stats, warnings = make_layers_exact(work, run.exact, sync, lambda: _dry_run(ctx))
    # (One process may write its parameters in forward: it is the reference. A replica
    # group's ranks hold shards whose forward gathers them: only the layer check.)
    written = (
        check_writes_in_forward(work, probe=worker.group_ranks == 1) if worker is not None else None
    )
    if written:
        warnings.append(written)
    _say_inexact(run.name, worker, events, warnings)
    # After the exact layers: the cap is measured on the forward that training runs.
    memory = _chip_memory(run.name, worker, work, user.state.optimizer, events)
    if memory is not None:
        work = replace(work, memory=memory)
    buffers = find_trained_buffers(work)
    gradients = GradBuffer(params, control_numel=0)
    ctx = StepContext(
        name=run.name, events=events, watch=watch, work=work, params=params,
        state=user.state, buffer=gradients, reduction=Reduction(gradients, sync),
        model_buffers=ModelBuffers([b for _, b in buffers], [n for n, _ in buffers]),
        sync=sync, shares=shares, injector=injector, pacer=ComputePacer(None), guard=guard,
        steps=run.steps, clip_grad_norm=run.clip_grad_norm,
    )  # fmt: skip
    if worker is not None:
        ctx.kinds = {name: str(info.get("kind") or "") for name, info in worker.fleet.items()}
        ctx.emulated_kind = worker.emulated_kind
    if layer_stats is not None:
        ctx.layer_stats = layer_stats
        ctx.overlap = False  # its collectives inside backward must keep one order everywhere
    monitor = _device_monitor(run.name, worker)
    if worker is not None and worker.speed is not None:
        ctx.pace = _pacing(worker, injector, monitor)
        ctx.reduction.before_launch = ctx.pacer.pace_so_far
    return ctx, _hooks(run, worker, ctx, monitor)


def _hooks(
    run: RunSettings, worker: WorkerConfig | None, ctx: StepContext, monitor: Any
) -> list[Hook]:
    ledger = OffenceLedger(run.name, run.quarantine_after)
    hooks: list[Hook] = [GuardHook(ctx, ledger, run.out_dir, in_fleet=worker is not None)]
    if monitor is not None:
        throttle_c = monitor.throttle_c()
        wanted = worker is not None and worker.thermal_guard
        thermal = ThermalGuard(throttle_c) if wanted and throttle_c is not None else None
        hooks.append(DeviceHook(ctx, monitor, thermal))
    hooks.append(StepLogHook(ctx, run.global_batch_size))
    hooks.append(
        CheckpointHook(ctx, ctx.state, run.out_dir, run.checkpoint_every, run.keep_checkpoints)
    )
    return hooks


def _pacing(
    worker: WorkerConfig, injector: FaultInjector, monitor: Any
) -> Callable[[int], float | None]:
    factor = monitor.speed_factor if monitor is not None else (lambda: 1.0)
    base_speed = worker.speed

    def pace(step: int) -> float | None:
        # Emulated speed now: nominal (or a `slow` fault's) x the common time scale
        # x the chip's own state (power limit, throttling): a hot chip really is slower.
        speed = injector.speed_at(step, base_speed)
        return None if speed is None else speed * worker.time_scale * factor()

    return pace


def _chip_memory(
    name: str, worker: WorkerConfig | None, work: Workload, optimizer: Any, events: EventLog
) -> ChipMemory | None:
    """An emulated chip's binding memory: measured, checked, micro-batches capped to fit.

    The cap is `--emulate ...:mem=SIZE`, or an emulated fleet-file device's memory.
    Raises EmulatedOutOfMemory when the state, or one sample beside it, does not fit.
    """
    if worker is None or worker.speed is None:
        return None
    cap = worker.emulated_memory_bytes
    if cap is None and worker.device_table:
        from phalanx.devices.memory_cap import usable_memory_of_table

        cap = usable_memory_of_table(worker.device_table)
    if cap is None:
        return None
    memory = ChipMemory(name, cap, work.model, optimizer)
    probe_activations(memory, work)
    fits = memory.max_microbatch()
    state, _ = memory.need_bytes(0)
    where = {"rank": worker.group_rank, "chip": worker.group_chip}  # chip of its replica
    events.emit(
        "chip_memory", replica=name, cap_bytes=cap, state_bytes=state.total,
        activation_bytes_per_sample=memory.per_sample_bytes, max_microbatch=fits, **where,
    )  # fmt: skip
    memory.on_peak = lambda held: events.emit(
        "chip_memory_peak", replica=name, held_bytes=held, cap_bytes=cap, **where
    )
    if fits < 1:
        raise memory.out_of_memory(1)
    feed = work.feed
    if feed.max_microbatch is None or fits < feed.max_microbatch:
        feed.max_microbatch = fits  # gradient accumulation takes any share in pieces that fit
    return memory


def _dry_run(ctx: StepContext) -> None:
    """A participant that never computed learns the order of the layers' collectives."""
    batches_gradient(ctx.work, ctx.work.feed.read_now(0, probe_count(ctx.work)))
    ctx.buffer.zero_grads()
    ctx.model_buffers.restore()


def _say_inexact(
    name: str, worker: WorkerConfig | None, events: EventLog, warnings: list[str]
) -> None:
    """Once at start, on the first replica: which layers make the result split-dependent."""
    if not warnings:
        return
    events.emit("inexact_layers", replica=name, warnings=warnings)
    if worker is None or worker.index == 0:
        for warning in warnings:
            print(f"warning: not exact: {warning}", flush=True)


def _device_monitor(name: str, worker: WorkerConfig | None) -> Any:
    if worker is None or not (worker.device_table or worker.speed is not None):
        return None
    from phalanx.runtime.device_monitor import DeviceMonitor

    table = worker.device_table or {"id": name, "kind": "emulated", "speed": worker.speed}
    # CPU replicas share the host's package: each answers for its cores' part of its energy.
    cpu = worker.speed is None and worker.device == "cpu"
    host_share = min(1.0, worker.threads / (os.cpu_count() or 1)) if cpu else 1.0
    return DeviceMonitor(
        table, worker.index, worker.time_scale, worker.rescreen_every_s,
        power_limit_w=worker.power_limit_w, host_share=host_share,
    )  # fmt: skip
