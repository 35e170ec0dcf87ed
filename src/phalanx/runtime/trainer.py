"""`phalanx.Trainer`: one script, standalone (the reference) or on a fleet, unchanged.

`fit` is a short loop: `take_step` (runtime/step.py: the whole protocol, top
to bottom), then the after-step hooks (runtime/hooks.py), until the run has
its committed steps. Everything the step needs is built once here, from the
script's arguments and the launcher's worker config, and handed in typed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from phalanx import quick_exit
from phalanx.data.build import make_feed
from phalanx.devices.placement import bind_with_cap
from phalanx.emulate.memory import EmulatedOutOfMemory
from phalanx.errors import UsageError
from phalanx.groups.member import join_and_shard, rank_events
from phalanx.observe.events import EventLog
from phalanx.runtime import excepthook, validate
from phalanx.runtime.compute import LossFn
from phalanx.runtime.context import RunSettings, UserParts, build_context
from phalanx.runtime.finish import finish_run
from phalanx.runtime.hooks import LeaveFleet
from phalanx.runtime.loop_exits import leave_now, out_of_memory, step_or_leave
from phalanx.runtime.precision import PRECISIONS
from phalanx.runtime.preemption import Preemption, leave_preempted
from phalanx.runtime.profile_mode import ProfileRequest, run_profile
from phalanx.runtime.setup import announce, restore_newest, start_barrier
from phalanx.runtime.state import TrainState
from phalanx.runtime.sync import Sync
from phalanx.runtime.warm_up import warm_up_if_restarted
from phalanx.runtime.worker_config import WorkerConfig, from_environment

OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
# off: no checks; standard: gradient checks + a parameter fingerprint every step;
# full: standard + ABFT checksums on every linear layer's output.
GUARD_LEVELS = ("off", "standard", "full")


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
        dataset: Any,
        loss_fn: LossFn,
        global_batch_size: int,
        steps: int,
        seed: int = 0,
        out_dir: str | os.PathLike[str] = "runs/phalanx",
        scheduler: SchedulerFactory | None = None,
        clip_grad_norm: float | None = None,
        max_microbatch: int | None = None,
        aligned_microbatch: int | None = None,
        checkpoint_every: int | None = 50,
        keep_checkpoints: int = 3,
        guard: str = "standard",
        quarantine_after: int = 3,
        exact: bool = True,
        precision: str = "32",
        collate_fn: Callable[[list[Any]], Any] | None = None,
        loader_workers: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        excepthook.install()
        quick_exit.install()
        self.global_batch_size = validate.positive_int(
            "global_batch_size", global_batch_size, "pass the number of samples per step, e.g. 256"
        )
        self.steps = validate.positive_int("steps", steps, "pass steps >= 0", allow_zero=True)
        self.max_microbatch = validate.optional_positive_int(
            "max_microbatch", max_microbatch, "pass None or a positive micro-batch size"
        )
        # Fixed blocks of the global batch, whoever computes them: the same arithmetic as
        # one process (fp16-mixed then overflows on the same steps), at whole-block shares.
        self.aligned_microbatch = validate.aligned_microbatch(
            aligned_microbatch, self.global_batch_size, self.max_microbatch
        )
        self.checkpoint_every = validate.optional_positive_int(
            "checkpoint_every", checkpoint_every, "pass None (off) or a positive step interval"
        )
        self.keep_checkpoints = validate.positive_int(
            "keep_checkpoints", keep_checkpoints, "keep at least 1 checkpoint"
        )
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise UsageError(
                "Trainer(clip_grad_norm=...)", "must be > 0", "pass None or a positive norm",
                clip_grad_norm,
            )  # fmt: skip
        validate.one_of("guard", guard, GUARD_LEVELS)
        self.precision = validate.one_of("precision", precision, PRECISIONS)
        self.guard = guard
        self.quarantine_after = validate.positive_int(
            "quarantine_after", quarantine_after, "quarantine a replica after this many offences"
        )
        self.model, self.dataset, self.loss_fn = model, dataset, loss_fn
        # Global-batch BatchNorm statistics and dropout masks keyed by sample (exact/).
        self.exact = bool(exact)
        self.seed = int(seed)
        self.clip_grad_norm = clip_grad_norm
        self.worker: WorkerConfig | None = from_environment()
        if (w := self.worker) is not None:  # `phalanx run`'s flags win over the script's
            validate.check_fleet_batch(self.global_batch_size, w.fleet_size)
            validate.check_fleet_blocks(
                self.global_batch_size, self.aligned_microbatch, w.fleet_size
            )
            if w.checkpoint_every is not None:  # 0: off
                self.checkpoint_every = w.checkpoint_every or None
            if w.keep_checkpoints is not None:
                self.keep_checkpoints = w.keep_checkpoints
            self.guard, self.precision = w.guard or self.guard, w.precision or self.precision
            bind_with_cap(w.device, w.device_table)
        self.out_dir = Path(self.worker.out_dir if self.worker else out_dir)
        self.name = self.worker.replica if self.worker else "local"
        self.device = torch.device(self.worker.device if self.worker else _default_device(model))
        # Map-style or a stream, read by `loader_workers` processes ahead of the chip.
        self.feed = make_feed(
            dataset, self.seed, self.global_batch_size, self._microbatch, collate_fn,
            loader_workers, pin_memory, self.device,
        )  # fmt: skip
        self.num_samples = self.feed.num_samples
        self.model.to(self.device)
        joined = None
        if self.worker is not None:
            joined = join_and_shard(
                self.worker, self.model, self.loss_fn, self.feed, self.device, self.guard
            )
        self.group = joined.rank if joined is not None else None
        self._chip_cpu_per_sample = joined.cpu_per_sample_s if joined is not None else None
        if self.group is not None:
            self.guard = "off"  # not in groups yet (docs/groups.md)
        built_optimizer = optimizer(self.model.parameters())
        built_scheduler = scheduler(built_optimizer) if scheduler is not None else None
        self.state = TrainState(
            self.model, built_optimizer, built_scheduler, sharded=self.group is not None,
            writes_for_group=self.group is None or self.group.leads,
        )  # fmt: skip
        self.site = None  # a sites run (runtime/site_run.py): outer rounds between steps
        if self.worker is not None and self.worker.sites is not None:
            from phalanx.runtime.site_run import SiteRun

            self.site = SiteRun(self.worker, self.model, self.state, self.steps,
                                self.global_batch_size, sharded=self.group is not None)  # fmt: skip

    @property
    def _microbatch(self) -> int | None:
        """The largest micro-batch: an aligned block is one, whole, wherever it lands."""
        return self.aligned_microbatch or self.max_microbatch

    # ------------------------------------------------------------------ loop
    @property
    def holds_final_model(self) -> bool:
        """After `fit`: did this process train the run's last step?

        False for a replica that came back (restarted, reconnected) after the fleet
        had finished: it leaves with the state it restored, which is not the final
        model, so code after `fit` must not save it as one.
        """
        if self.site is not None:
            return self.site.finished
        return self.state.fleet.step >= self.steps

    def fit(self, preemption: Preemption | None = None) -> dict[str, Any]:
        """Train to `steps` committed steps; return the summary written to summary.json.

        `preemption`: a SIGTERM catcher installed by the main thread, for a `fit`
        that runs in another (runtime/own_loop.py); by default `fit` installs one.
        """
        profile = ProfileRequest.from_environment()
        if profile is not None:  # `phalanx qualify --script`: measure the model, do not train
            run_profile(profile, self.model, self.loss_fn, self.feed, self.state.optimizer,
                        self.global_batch_size)  # fmt: skip
            raise SystemExit(0)
        if preemption is None:  # from the start: a SIGTERM while restoring or warming up
            preemption = Preemption()  # leaves with 75 at the first boundary, not killed
            preemption.install()
        self.feed.start()  # fork the readers before the fleet's threads exist
        events = self._open_run()
        sync = self._connect()
        try:
            ctx, hooks = build_context(
                self._settings(), self._user_parts(), self.worker, events, sync
            )
            if self.group is not None:  # its ranks decide alike (groups/member.py)
                ctx.group, ctx.overlap = self.group, False
                ctx.pacer.cpu_per_unit_s = self._chip_cpu_per_sample
            if self.site is not None:
                self.site.attach(ctx)
                self.site.connect(events, self.name)
                hooks.append(self.site.after_step)
        except EmulatedOutOfMemory as oom:
            start_barrier(self.worker)  # the peers must not wait for us at the start
            leave_now(events, self.name, out_of_memory(oom, self.state.fleet.step))
        # A group's ranks each load the whole state and keep their slices (any grouping).
        restore_newest(self.name, self.state, self.out_dir, events, sync)
        announce(events, self.name, self.worker, self)
        start_barrier(self.worker, given_up=lambda: preemption.requested)
        warm_up_if_restarted(ctx, self.worker)  # its cold first step, before it joins
        members: list[str] = []
        try:
            while not self.holds_final_model:
                if preemption.requested:  # SIGTERM: leave at this boundary, checkpointed
                    leave_preempted(self.name, self.state, members, self.out_dir,
                                    self.keep_checkpoints, events, self.worker is not None)  # fmt: skip
                if self.site is not None and self.site.due(self.state.fleet.step):
                    self.site.outer_round(self.state.fleet.step, preemption)  # between steps
                    continue
                report = step_or_leave(ctx)
                if report.leave:
                    break
                if report.committed:  # the first of these members checkpoints on SIGTERM
                    members = list(report.members)
                for hook in hooks:
                    hook(report)
            if self.holds_final_model:
                ctx.watch.finished(self.state.fleet.step)
        except LeaveFleet as leave:
            leave_now(events, self.name, leave)
        finally:
            if self.site is not None:
                self.site.close()
            sync.close()
            self.feed.close()
        return self._finish(events)

    # ----------------------------------------------------------------- setup
    def _settings(self) -> RunSettings:
        return RunSettings(
            name=self.name, out_dir=self.out_dir, device=self.device,
            global_batch_size=self.global_batch_size, steps=self.steps, seed=self.seed,
            max_microbatch=self._microbatch, share_unit=self.aligned_microbatch or 1, clip_grad_norm=self.clip_grad_norm,
            guard=self.guard, quarantine_after=self.quarantine_after, exact=self.exact,
            precision=self.precision,
            checkpoint_every=self.checkpoint_every, keep_checkpoints=self.keep_checkpoints,
        )  # fmt: skip

    def _user_parts(self) -> UserParts:
        return UserParts(
            self.model, self.loss_fn, self.dataset, self.num_samples, self.state, self.feed
        )

    def _open_run(self) -> EventLog:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / f".write-test-{os.getpid()}"  # workers probe at once
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise UsageError(
                "out_dir", f"cannot write there ({err.strerror})", "choose a writable directory",
                str(self.out_dir),
            ) from None  # fmt: skip
        return rank_events(self.out_dir, self.name, self.group)

    def _connect(self) -> Sync:
        if self.worker is None:
            from phalanx.runtime.sync_local import LocalSync

            return LocalSync(self.name)
        torch.set_num_threads(self.worker.threads)  # emulated chips pace one thread each
        from phalanx.runtime.sync_fleet import FleetSync

        return FleetSync(self.worker, self.state)

    # ---------------------------------------------------------------- finish
    def _finish(self, events: EventLog) -> dict[str, Any]:
        step = self.state.fleet.step
        steps = self.steps if self.site is None else self.site.done(events, self.name, step)
        return finish_run(
            events, self.name, self.model, self.out_dir, step, steps,
            standalone=self.worker is None, group=self.group,
        )  # fmt: skip


def _default_device(model: torch.nn.Module) -> str:
    try:
        return str(next(model.parameters()).device)
    except StopIteration:
        return "cpu"
