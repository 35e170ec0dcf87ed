"""`phalanx.Trainer`: one script, standalone (the reference) or on a fleet, unchanged.

The step loop below is the whole protocol of DESIGN.md, in order:
quorum (heal if behind) -> shares -> slice -> weighted forward/backward ->
one SUM allreduce carrying gradients, loss, veto and throughputs -> commit
vote -> optimizer step. An uncommitted step is retried with the same samples.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model
from torch.utils.data import Dataset

from phalanx.data.slicing import participant_ranges, sample_indices
from phalanx.emulate.pacer import ComputePacer
from phalanx.errors import UsageError
from phalanx.faults.injector import FaultInjector
from phalanx.faults.spec import FaultSpec
from phalanx.observe.events import EventLog
from phalanx.observe.summary import build_summary, write_summary
from phalanx.runtime import checkpoint as ckpt
from phalanx.runtime import excepthook, validate
from phalanx.runtime.compute import (
    FlatBuffer,
    LossFn,
    accumulate_slice_gradient,
    trainable_parameters,
)
from phalanx.runtime.state import TrainState
from phalanx.runtime.worker_config import WorkerConfig, from_environment
from phalanx.shares.apportion import choose_shares, record_measurement

OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
# Written by the first replica to finish: the run's history is complete.
COMPLETE_MARKER = ".complete"
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class Trainer:
    """Train `model` for `steps` optimizer steps over a fixed global batch.

    Run as `python train.py` it trains in this process. Run under
    `phalanx run train.py ...` every replica executes the same script and
    `fit()` joins the fleet; the launcher's `--out` overrides `out_dir`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: OptimizerFactory,
        dataset: Dataset,
        loss_fn: LossFn,
        global_batch_size: int,
        steps: int,
        seed: int = 0,
        out_dir: str | os.PathLike[str] = "runs/phalanx",
        scheduler: SchedulerFactory | None = None,
        clip_grad_norm: float | None = None,
        max_microbatch: int | None = None,
        checkpoint_every: int | None = 50,
        keep_checkpoints: int = 3,
    ) -> None:
        excepthook.install()
        self.global_batch_size = validate.positive_int(
            "global_batch_size", global_batch_size, "pass the number of samples per step, e.g. 256"
        )
        self.steps = validate.positive_int("steps", steps, "pass steps >= 0", allow_zero=True)
        self.max_microbatch = validate.optional_positive_int(
            "max_microbatch", max_microbatch, "pass None or a positive micro-batch size"
        )
        self.checkpoint_every = validate.optional_positive_int(
            "checkpoint_every", checkpoint_every, "pass None (off) or a positive step interval"
        )
        self.keep_checkpoints = validate.positive_int(
            "keep_checkpoints", keep_checkpoints, "keep at least 1 checkpoint"
        )
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise UsageError(
                "Trainer(clip_grad_norm=...)",
                "must be > 0",
                "pass None or a positive norm",
                clip_grad_norm,
            )
        self.num_samples = validate.check_dataset(dataset)
        self.model = model
        self.dataset = dataset
        self.loss_fn = loss_fn
        self.seed = int(seed)
        self.clip_grad_norm = clip_grad_norm
        self.worker: WorkerConfig | None = from_environment()
        if self.worker is not None:
            validate.check_fleet_batch(self.global_batch_size, self.worker.fleet_size)
            if self.worker.checkpoint_every is not None:
                self.checkpoint_every = self.worker.checkpoint_every or None
            if self.worker.keep_checkpoints is not None:
                self.keep_checkpoints = self.worker.keep_checkpoints
        self.out_dir = Path(self.worker.out_dir if self.worker else out_dir)
        self.device = torch.device(self.worker.device if self.worker else _default_device(model))
        self.model.to(self.device)
        built_optimizer = optimizer(self.model.parameters())
        built_scheduler = scheduler(built_optimizer) if scheduler is not None else None
        self.state = TrainState(self.model, built_optimizer, built_scheduler)

    # ----------------------------------------------------------------- setup
    def _open_run(self) -> tuple[EventLog, Any, FaultInjector, ComputePacer, str]:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise UsageError(
                "out_dir",
                f"cannot write there ({err.strerror})",
                "choose a writable directory",
                str(self.out_dir),
            ) from None
        worker = self.worker
        name = worker.replica if worker else "local"
        events = EventLog(self.out_dir, source=name)
        faults = [FaultSpec.from_json(f) for f in worker.faults] if worker else []
        injector = FaultInjector(faults, self.out_dir, events)
        pacer = ComputePacer(None)
        if worker is None:
            from phalanx.runtime.sync_local import LocalSync

            sync: Any = LocalSync(name)
        else:
            torch.set_num_threads(1)  # emulated chips share the host's cores
            from phalanx.runtime.sync_fleet import FleetSync

            sync = FleetSync(worker, self.state)
        return events, sync, injector, pacer, name

    def _restore(self, events: EventLog, sync: Any, name: str) -> None:
        try:
            loaded = ckpt.load_newest(self.state, self.out_dir)
        except ckpt.CheckpointError as err:
            raise UsageError(
                "checkpoints",
                f"none can be loaded ({err})",
                "remove the damaged checkpoints or use a new out dir",
            ) from None
        if loaded is None:
            return
        for path, why in loaded.skipped:
            events.emit("checkpoint_refused", replica=name, path=str(path), reason=why)
            print(
                f"warning: checkpoint {path.name} refused ({why}); using an older one", flush=True
            )
        events.emit("resume", replica=name, step=loaded.step, path=str(loaded.path))
        if hasattr(sync, "set_step"):
            sync.set_step(loaded.step)

    def _start_barrier(self) -> None:
        """First start of a fleet: wait until every replica is up, so the first quorum has all."""
        worker = self.worker
        if worker is None or worker.restarted or not worker.start_barrier:
            return
        from datetime import timedelta

        from torch.distributed import TCPStore

        host, port = worker.start_barrier.rsplit(":", 1)
        store = TCPStore(host, int(port), is_master=False, timeout=timedelta(seconds=120))
        store.add("ready", 1)
        deadline = time.monotonic() + 120
        while int(store.add("ready", 0)) < worker.fleet_size and time.monotonic() < deadline:
            time.sleep(0.02)  # polling a counter; the store has no wait-for-value

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        """Train to `steps` committed steps; return the summary written to summary.json."""
        events, sync, injector, pacer, name = self._open_run()
        worker = self.worker
        self._restore(events, sync, name)
        events.emit(
            "worker_start",
            replica=name,
            pid=os.getpid(),
            step=self.state.fleet.step,
            speed=worker.speed if worker else None,
            restarted=bool(worker and worker.restarted),
            global_batch_size=self.global_batch_size,
            steps=self.steps,
            num_samples=self.num_samples,
            seed=self.seed,
        )
        if worker is None:
            events.emit(
                "run_start",
                steps=self.steps,
                global_batch_size=self.global_batch_size,
                replicas={name: {"speed": None, "kind": self.device.type}},
            )
        fleet_info = worker.fleet if worker else {}
        hints = {n: v["hint_sps"] for n, v in fleet_info.items() if v.get("hint_sps")}
        caps = {n: v.get("max_share") for n, v in fleet_info.items()}
        params = trainable_parameters(self.model)
        self._start_barrier()
        participants: list[str] = []
        try:
            while self.state.fleet.step < self.steps:
                if worker is not None and (self.out_dir / COMPLETE_MARKER).exists():
                    # A straggler (e.g. one that was frozen) must not redo the last steps
                    # alone after the fleet finished: that would be a second history.
                    events.emit("straggler_exit", replica=name, step=self.state.fleet.step)
                    break
                injector.at("start", self.state.fleet.step)
                step_before = self.state.fleet.step
                quorum_t0 = time.time()
                members = sync.begin_step()
                if self.state.fleet.step != step_before:
                    events.emit(
                        "heal",
                        replica=name,
                        from_step=step_before,
                        step=self.state.fleet.step,
                        duration_s=time.time() - quorum_t0,
                    )
                if members != participants:
                    events.emit(
                        "quorum",
                        replica=name,
                        step=self.state.fleet.step,
                        participants=members,
                        quorum_id=getattr(sync, "quorum_id", None),
                    )
                    participants = members
                quorum_s = time.time() - quorum_t0
                step = self.state.fleet.step
                if step >= self.steps:
                    break
                if name not in members:  # not admitted this round; ask again
                    continue
                fleet = self.state.fleet
                shares = choose_shares(
                    members, self.global_batch_size, fleet.throughput_sps, fleet.shares, hints, caps
                )
                slot = members.index(name)
                start, end = participant_ranges(step, self.global_batch_size, shares)[slot]
                indices = sample_indices(start, end, self.seed, self.num_samples)

                injector.at("compute", step)
                speed = injector.speed_at(step, worker.speed if worker else None)
                pacer.speed = None if speed is None else speed * worker.time_scale  # type: ignore[union-attr]
                pacer.begin()
                weighted_loss = accumulate_slice_gradient(
                    self.model,
                    self.loss_fn,
                    self.dataset,
                    indices,
                    self.global_batch_size,
                    self.max_microbatch,
                    self.device,
                    rng_seed=self.seed * 1_000_003 + start,
                )
                compute_s = pacer.end()
                flat = FlatBuffer(params, len(members))
                flat.pack(
                    weighted_loss,
                    veto=False,
                    slot=slot,
                    throughput_sps=len(indices) / max(compute_s, 1e-9),
                )
                injector.corrupt_contribution(step, flat.tensor, flat.grad_len)

                sync_t0 = time.perf_counter()
                work = sync.allreduce(flat.tensor)
                injector.at("allreduce", step)
                work.wait()
                allreduce_s = time.perf_counter() - sync_t0
                injector.at("commit", step)
                sound = flat.finite() and flat.vetoes() == 0
                reason = (
                    ""
                    if sound
                    else (
                        "non-finite values in the summed buffer" if not flat.finite() else "vetoed"
                    )
                )
                commit_t0 = time.perf_counter()
                committed = sync.commit(sound, reason)
                commit_s = time.perf_counter() - commit_t0
                if not committed:
                    events.emit(
                        "retry",
                        replica=name,
                        step=step,
                        participants=members,
                        reason=sync.last_error or reason,
                    )
                    continue
                self._apply(flat)
                throughputs = flat.throughputs()
                for member, measured in zip(members, throughputs):
                    history, estimate = record_measurement(
                        fleet.sps_history.get(member, []), measured
                    )
                    fleet.sps_history[member] = history
                    fleet.throughput_sps[member] = estimate
                fleet.shares = dict(zip(members, shares))
                fleet.step = step + 1
                events.emit(
                    "step",
                    replica=name,
                    step=step,
                    loss=flat.loss(),
                    participants=members,
                    shares=shares,
                    ranges=participant_ranges(step, self.global_batch_size, shares),
                    sps=throughputs,
                    compute_s=round(compute_s, 5),
                    quorum_s=round(quorum_s, 5),
                    allreduce_s=round(allreduce_s, 5),
                    commit_s=round(commit_s, 5),
                )
                self._maybe_checkpoint(events, name, members)
        finally:
            sync.close()
        self._write_model()
        if self.state.fleet.step >= self.steps:
            (self.out_dir / COMPLETE_MARKER).touch()
        events.emit("worker_done", replica=name, step=self.state.fleet.step)
        summary = build_summary(self.out_dir)
        if worker is None:
            write_summary(self.out_dir, summary)
        return summary

    def _apply(self, flat: FlatBuffer) -> None:
        flat.unpack_gradients()
        if self.clip_grad_norm is not None:
            # The summed gradient is identical everywhere, so is its norm.
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.state.optimizer.step()
        if self.state.scheduler is not None:
            self.state.scheduler.step()

    def _maybe_checkpoint(self, events: EventLog, name: str, members: list[str]) -> None:
        step = self.state.fleet.step
        due = self.checkpoint_every and step % self.checkpoint_every == 0
        if not due or members[0] != name:
            return
        started = time.time()
        try:
            path = ckpt.save_checkpoint(self.state, self.out_dir, keep=self.keep_checkpoints)
        except OSError as err:  # a full disk must not stop training; the older ones are intact
            events.emit("checkpoint_failed", replica=name, step=step, reason=str(err))
            return
        events.emit(
            "checkpoint", replica=name, step=step, path=str(path), duration_s=time.time() - started
        )

    def _write_model(self) -> None:
        if self.state.fleet.step < self.steps:
            return
        final = self.out_dir / "model.safetensors"
        tmp = self.out_dir / f".model.{os.getpid()}.safetensors"
        save_model(self.model, str(tmp))
        os.replace(tmp, final)


def _default_device(model: torch.nn.Module) -> str:
    try:
        return str(next(model.parameters()).device)
    except StopIteration:
        return "cpu"
