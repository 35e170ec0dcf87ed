"""`phalanx.Trainer`: one script, standalone (the reference) or on a fleet, unchanged.

The step loop below is the whole protocol of DESIGN.md, in order:
quorum (heal if behind) -> shares -> slice -> weighted forward/backward ->
one SUM allreduce carrying gradients, loss, veto and throughputs -> commit
vote -> optimizer step. An uncommitted step is retried with the same samples.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model
from torch.utils.data import Dataset

from phalanx.data.slicing import participant_ranges
from phalanx.devices.emulated.chip import DeviceCrashed
from phalanx.emulate.pacer import ComputePacer
from phalanx.energy.thermal_guard import ThermalGuard
from phalanx.errors import EXIT_FATAL, EXIT_QUARANTINED, UsageError
from phalanx.faults.injector import FaultInjector
from phalanx.faults.spec import FaultSpec
from phalanx.guard.abft import AbftMonitor
from phalanx.guard.defect_hooks import DefectiveLinears
from phalanx.guard.grad_sanity import GradientSanity
from phalanx.launch.fleet_progress import FleetProgress
from phalanx.observe.events import EventLog
from phalanx.observe.report import write_report_safely
from phalanx.observe.summary import build_summary, write_summary
from phalanx.runtime import checkpoint as ckpt
from phalanx.runtime import excepthook, validate
from phalanx.runtime.compute import FlatBuffer, LossFn, trainable_parameters
from phalanx.runtime.error_line import say_error
from phalanx.runtime.profile_mode import ProfileRequest, run_profile
from phalanx.runtime.state import TrainState
from phalanx.runtime.step_round import StepRound
from phalanx.runtime.worker_config import WorkerConfig, from_environment
from phalanx.shares.affine import fit_cost, record_timing
from phalanx.shares.apportion import choose_shares, record_measurement

OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
# off: no checks; standard: gradient sanity + a parameter fingerprint every step;
# full: standard + ABFT checksums on every linear layer's output.
GUARD_LEVELS = ("off", "standard", "full")
UNRECOVERABLE_ROUNDS = 3
# Written by the first replica to finish: the run's history is complete.
COMPLETE_MARKER = ".complete"
# Many hosts: how long a quorum behind the fleet's newest committed step waits for a
# replica that holds it, and how often it asks for a new quorum meanwhile.
BEHIND_WAIT_S = 60.0
BEHIND_RETRY_S = 0.5
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
        guard: str = "standard",
        quarantine_after: int = 3,
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
        if guard not in GUARD_LEVELS:
            raise UsageError(
                "Trainer(guard=...)",
                f"unknown guard level {guard!r}",
                f"use one of {', '.join(GUARD_LEVELS)}",
                guard,
            )
        self.guard = guard
        self.quarantine_after = validate.positive_int(
            "quarantine_after", quarantine_after, "quarantine a replica after this many offences"
        )
        self.offences = 0
        self.local_steps = 0  # steps this process computed (its first ones are warm-up)
        self._all_vetoed: dict[tuple[str, int], int] = {}
        self.model = model
        self.params = trainable_parameters(model)
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
            if self.worker.guard is not None:
                self.guard = self.worker.guard
        self.out_dir = Path(self.worker.out_dir if self.worker else out_dir)
        self.device = torch.device(self.worker.device if self.worker else _default_device(model))
        self.model.to(self.device)
        built_optimizer = optimizer(self.model.parameters())
        built_scheduler = scheduler(built_optimizer) if scheduler is not None else None
        self.state = TrainState(self.model, built_optimizer, built_scheduler)

    # ----------------------------------------------------------------- setup
    def _open_run(self) -> tuple[EventLog, Any, FaultInjector, str]:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / f".write-test-{os.getpid()}"  # workers probe at once
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
        self.pacer = ComputePacer(None)
        if worker is None:
            from phalanx.runtime.sync_local import LocalSync

            sync: Any = LocalSync(name)
        else:
            torch.set_num_threads(1)  # emulated chips share the host's cores
            from phalanx.runtime.sync_fleet import FleetSync

            sync = FleetSync(worker, self.state)
        return events, sync, injector, name

    def _restore(self, events: EventLog, sync: Any, name: str) -> None:
        try:
            loaded = ckpt.load_newest(self.state, self.out_dir)
        except ckpt.CheckpointError as err:
            raise UsageError(
                "checkpoints",
                f"none can be loaded ({err})",
                "restore a good checkpoint from a backup, or move the damaged ones away "
                "to start again from step 0",
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
        profile = ProfileRequest.from_environment()
        if profile is not None:  # `phalanx qualify --script`: measure the model, do not train
            run_profile(profile, self.model, self.loss_fn, self.dataset, self.num_samples)
            raise SystemExit(0)
        events, sync, injector, name = self._open_run()
        self._install_guard(name)
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
        self._start_barrier()
        participants: list[str] = []
        self._behind_since: float | None = None
        try:
            while self.state.fleet.step < self.steps:
                # Before the first quorum, also ask the gate: a replica back after the
                # other hosts finished need not wait for a quorum to learn it.
                if worker is not None and self._fleet_done(
                    events, name, None if participants else self._ask_fleet(sync)
                ):
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
                changed = members != participants
                if changed:
                    events.emit(
                        "quorum",
                        replica=name,
                        step=self.state.fleet.step,
                        participants=members,
                        quorum_id=getattr(sync, "quorum_id", None),
                    )
                    participants = members
                asked = worker is not None and (changed or self._behind_since is not None)
                progress = self._ask_fleet(sync) if asked else None
                if worker is not None and self._fleet_done(events, name, progress):
                    break  # it finished while we waited for this quorum (which may hold only us)
                if asked and self._wait_for_newer_state(progress, sync, events, name, members):
                    continue
                quorum_s = time.time() - quorum_t0
                step = self.state.fleet.step
                if step >= self.steps:
                    break
                if name not in members:  # not admitted this round; ask again
                    continue
                fleet = self.state.fleet
                injector.corrupt_weights(step, self.params)
                speed = injector.speed_at(step, worker.speed if worker else None)
                self.pacer.speed = self._pacer_speed(speed)
                injector.at("compute", step)
                outcome = StepRound(self, name, members, step).run(
                    lambda active, fleet=fleet: choose_shares(
                        active,
                        self.global_batch_size,
                        fleet.throughput_sps,
                        fleet.shares,
                        hints,
                        caps,
                        costs=fleet.costs,
                        derates=fleet.derates,
                    ),
                    injector,
                    sync,
                )
                injector.at("commit", step)
                for detection in outcome.detections:
                    events.emit("sdc", observer=name, step=step, **detection)
                if outcome.tie:
                    sync.commit(False, outcome.reason)
                    self._restore_after_tie(events, sync, name, step)
                    self._stop_if_unrecoverable(events, name, step, outcome, what="tie")
                    continue
                sound = outcome.ok and outcome.flat is not None and outcome.flat.finite()
                sound = sound and not outcome.diverged_self
                reason = outcome.reason or (
                    "parameters differ from the majority"
                    if outcome.diverged_self
                    else "non-finite values in the summed buffer"
                )
                commit_t0 = time.perf_counter()
                committed = sync.commit(sound, "" if sound else reason)
                commit_s = time.perf_counter() - commit_t0
                self._stop_if_unrecoverable(events, name, step, outcome)
                self._count_offences(events, name, step, outcome)
                if not committed:
                    events.emit(
                        "retry",
                        replica=name,
                        step=step,
                        participants=members,
                        reason=sync.last_error or reason,
                    )
                    continue
                flat = outcome.flat
                assert flat is not None
                self._apply(flat)
                if self.sanity is not None:
                    self.sanity.accept(outcome.own_norm, outcome.own_share, self.global_batch_size)
                active, shares = outcome.active, outcome.shares
                throughputs = dict(zip(members, flat.throughputs()))
                self.local_steps += 1
                for member in active:
                    if throughputs[member] <= 0:  # warming up (or no slice): nothing to learn
                        continue
                    history, estimate = record_measurement(
                        fleet.sps_history.get(member, []), throughputs[member]
                    )
                    fleet.sps_history[member] = history
                    fleet.throughput_sps[member] = estimate
                    samples = dict(zip(active, shares))[member]
                    if throughputs[member] > 0 and samples > 0:
                        fleet.timings[member] = record_timing(
                            fleet.timings.get(member, []), samples, samples / throughputs[member]
                        )
                        fleet.costs[member] = list(
                            fit_cost(fleet.timings[member], fleet.costs.get(member))
                        )
                fleet.shares = dict(zip(active, shares))
                # Every participant reads the same heats: the next shares agree.
                fleet.derates = {m: 1.0 - h for m, h in zip(members, flat.heats()) if h > 0}
                fleet.step = step + 1
                if worker is not None and worker.many_hosts:
                    sync.report_step(fleet.step)  # the gate keeps the fleet's newest step
                try:
                    readings = self._device_readings(outcome.compute_s)
                except DeviceCrashed as crash:  # e.g. an emulated chip's thermal shutdown
                    events.emit("device_failure", replica=name, step=step, reason=str(crash))
                    raise
                events.emit(
                    "step",
                    replica=name,
                    step=step,
                    loss=flat.loss(),
                    participants=active,
                    members=members,
                    shares=shares,
                    ranges=participant_ranges(step, self.global_batch_size, shares),
                    sps=[abs(throughputs[m]) for m in active],
                    compute_s=round(outcome.compute_s, 5),
                    quorum_s=round(quorum_s, 5),
                    allreduce_s=round(outcome.allreduce_s, 5),
                    commit_s=round(commit_s, 5),
                    guard_s=round(outcome.guard_s, 6),
                    **readings,
                )
                self._guard_heat(events, name, step, readings.get("temperature_c"))
                self._maybe_checkpoint(events, name, members)
                self._maybe_rescreen(events, name, step)
            if worker is not None and worker.many_hosts and self.state.fleet.step >= self.steps:
                # Before our heartbeats stop: a quorum that leaves us out comes after this.
                sync.exchange_progress(self.state.fleet.step, complete=True)
        finally:
            sync.close()
        self._write_model()
        if self.state.fleet.step >= self.steps:
            (self.out_dir / COMPLETE_MARKER).touch()
        events.emit("worker_done", replica=name, step=self.state.fleet.step)
        summary = build_summary(self.out_dir)
        if worker is None:
            write_summary(self.out_dir, summary)
            write_report_safely(self.out_dir)
        return summary

    def _ask_fleet(self, sync: Any) -> FleetProgress | None:
        """Many hosts: the fleet's progress, from the admission gate.

        None on one host (the shared out dir's `.complete` marker says all that is
        needed) and when the gate cannot be reached.
        """
        if self.worker is None or not self.worker.many_hosts:
            return None
        progress: FleetProgress | None = sync.exchange_progress(self.state.fleet.step, False)
        return progress

    def _fleet_done(self, events: EventLog, name: str, progress: FleetProgress | None) -> bool:
        """Has the fleet finished the run without us? Then leave (`straggler_exit`).

        A straggler (e.g. one that was frozen) must not redo the last steps alone
        after the fleet finished: that would be a second history. On one host it
        sees the `.complete` marker in the shared out dir; on a host of its own
        only the gate's `progress` can tell it (launch/fleet_progress.py).
        """
        if (self.out_dir / COMPLETE_MARKER).exists():
            events.emit("straggler_exit", replica=name, step=self.state.fleet.step)
            return True
        if progress is None or not progress.complete or self.state.fleet.step >= self.steps:
            return False
        events.emit(
            "straggler_exit",
            replica=name,
            step=self.state.fleet.step,
            fleet_step=progress.step,
            fleet_finished=True,
        )
        return True

    def _wait_for_newer_state(
        self,
        progress: FleetProgress | None,
        sync: Any,
        events: EventLog,
        name: str,
        members: list[str],
    ) -> bool:
        """Many hosts: hold a quorum whose newest state is older than the fleet's.

        Its members (healed to the quorum's newest step) are behind a step the
        fleet committed, so the replicas holding that state are away (cut off,
        frozen). Training on would commit those steps a second time, with other
        slices. Wait for them; after BEHIND_WAIT_S go on from the older state
        (`rewind`) and lower the gate's record, so later joiners do not wait too.
        True: skip this quorum and ask for another.
        """
        if progress is None or progress.step <= self.state.fleet.step:  # not behind
            self._behind_since = None
            return False
        now = time.monotonic()
        if self._behind_since is None:
            self._behind_since = now
            events.emit(
                "behind_fleet",
                replica=name,
                step=self.state.fleet.step,
                fleet_step=progress.step,
                participants=members,
                wait_s=BEHIND_WAIT_S,
            )
            print(
                f"{name}: the fleet has committed {progress.step} steps, this quorum's newest "
                f"state has {self.state.fleet.step}; waiting up to {BEHIND_WAIT_S:g} s for a "
                "replica that holds the newer state",
                flush=True,
            )
        if now - self._behind_since < BEHIND_WAIT_S:
            time.sleep(BEHIND_RETRY_S)  # back-off before the next quorum, not synchronisation
            return True
        events.emit("rewind", replica=name, step=self.state.fleet.step, fleet_step=progress.step)
        sync.exchange_progress(self.state.fleet.step, complete=False, rewind=True)
        self._behind_since = None
        return False

    def _install_guard(self, name: str) -> None:
        worker = self.worker
        self.sanity = GradientSanity() if self.guard != "off" else None
        self.fingerprints = self.guard != "off" and worker is not None
        self.defects = None
        defects = (worker.defects or {}) if worker is not None else {}
        if worker is not None and defects.get("flip_rate"):
            # The chip's defect acts first, so the guard sees what the chip computed.
            seed = int(defects.get("seed", self.seed + worker.index))
            self.defects = DefectiveLinears(self.model, float(defects["flip_rate"]), seed=seed)
        self.abft = AbftMonitor(self.model) if self.guard == "full" else None
        self.monitor = None
        if worker is not None and (worker.device_table or worker.speed is not None):
            from phalanx.runtime.device_monitor import DeviceMonitor

            table = worker.device_table or {"id": name, "kind": "emulated", "speed": worker.speed}
            self.monitor = DeviceMonitor(
                table,
                worker.index,
                worker.time_scale,
                worker.rescreen_every_s,
                power_limit_w=worker.power_limit_w,
            )
        self.thermal = None
        throttle_c = self.monitor.throttle_c() if self.monitor is not None else None
        if worker is not None and worker.thermal_guard and throttle_c is not None:
            self.thermal = ThermalGuard(throttle_c)
        self._last_step_end = time.perf_counter()

    def _pacer_speed(self, speed: float | None) -> float | None:
        """Emulated speed right now: nominal x common time scale x the chip's own state
        (power limit, thermal throttling), so a throttled chip really is slower."""
        if speed is None or self.worker is None:
            return None
        factor = self.monitor.speed_factor() if self.monitor is not None else 1.0
        return speed * self.worker.time_scale * factor

    def _guard_heat(
        self, events: EventLog, name: str, step: int, temperature_c: float | None
    ) -> None:
        if self.thermal is None:
            return
        action = self.thermal.update(temperature_c)
        if action is not None:
            events.emit(
                "thermal",
                replica=name,
                step=step,
                action=action.action,
                derate=round(action.derate, 4),
                temperature_c=round(action.temperature_c, 2),
                predicted_c=round(action.predicted_c, 2),
                throttle_c=action.throttle_c,
            )

    def _device_readings(self, compute_s: float) -> dict[str, float | None]:
        """Advance the device model by this step and read its sensors."""
        now = time.perf_counter()
        step_s, self._last_step_end = now - self._last_step_end, now
        if self.monitor is None:
            return {}
        self.monitor.step_done(compute_s, step_s)
        return self.monitor.readings()

    def _maybe_rescreen(self, events: EventLog, name: str, step: int) -> None:
        if self.monitor is None or not self.monitor.rescreen_due():
            return
        result = self.monitor.probe()
        events.emit(
            "rescreen",
            replica=name,
            step=step,
            passed=result.passed,
            wrong=result.wrong,
            checked=result.checked,
            duration_s=round(result.duration_s, 4),
        )
        if not result.passed:
            events.emit(
                "quarantine",
                replica=name,
                step=step,
                offences=self.offences,
                reason=f"re-screen found {result.wrong} wrong of {result.checked} elements",
            )
            print(f"{name}: quarantined: the periodic re-screen failed", flush=True)
            os._exit(EXIT_QUARANTINED)

    def _count_offences(self, events: EventLog, name: str, step: int, outcome: Any) -> None:
        # A veto is an offence only when the same samples then computed cleanly
        # elsewhere (the round succeeded without us): otherwise the data is suspect.
        vetoed_self = outcome.ok and any(
            d["check"] == "gradient_veto" and d["replica"] == name for d in outcome.detections
        )
        if vetoed_self or outcome.diverged_self:
            self.offences += 1
        if self.offences >= self.quarantine_after and self.worker is not None:
            events.emit(
                "quarantine",
                replica=name,
                step=step,
                offences=self.offences,
                reason="repeated corrupt results (gradient vetoes or diverged parameters)",
            )
            print(f"{name}: quarantined after {self.offences} offences", flush=True)
            os._exit(EXIT_QUARANTINED)  # leave the fleet now; peers see a dead replica

    def _stop_if_unrecoverable(
        self, events: EventLog, name: str, step: int, outcome: Any, what: str = "veto"
    ) -> None:
        """The same step failing the same way again and again cannot be retried away.

        Every participant vetoing it is the data or the model, not a chip; two
        replicas that still disagree after returning to the newest checkpoint
        have no healthy majority to heal from.
        """
        if what == "veto" and outcome.reason != "every participant was excluded":
            self._all_vetoed = {}
            return
        key = (what, step)
        self._all_vetoed[key] = self._all_vetoed.get(key, 0) + 1
        if self._all_vetoed[key] < UNRECOVERABLE_ROUNDS:
            return
        if what == "tie":
            message = (
                f"step {step}: two replicas hold different parameters and still disagree after "
                f"returning to the newest checkpoint {UNRECOVERABLE_ROUNDS} times. Fix: restart "
                "the run with --resume on more than two replicas, so a majority can outvote a bad chip"
            )
        else:
            message = (
                f"step {step}: every replica's gradient fails the guard (non-finite or exploding) "
                f"{UNRECOVERABLE_ROUNDS} times: a data or model problem, not a chip. Fix: lower the "
                "learning rate, clip gradients, or check this step's samples"
            )
        events.emit("unrecoverable", replica=name, step=step, reason=message)
        say_error(message, sys.stdout)
        os._exit(EXIT_FATAL)

    def _restore_after_tie(self, events: EventLog, sync: Any, name: str, step: int) -> None:
        """Two replicas disagree with no majority: both return to the newest checkpoint."""
        loaded = ckpt.load_newest(self.state, self.out_dir)
        restored = loaded.step if loaded is not None else None
        events.emit("tie_restore", replica=name, step=step, restored_step=restored)
        if loaded is not None and hasattr(sync, "set_step"):
            sync.set_step(loaded.step)

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
        except OSError as err:
            # A full disk (ENOSPC) does not stop training: every live replica holds the
            # state in memory, the checkpoints already on disk are intact (the save wrote
            # into a temporary directory), and the next due checkpoint tries again. What
            # is at risk is only the loss of the whole fleet before a save succeeds.
            events.emit("checkpoint_failed", replica=name, step=step, reason=str(err))
            print(f"warning: {err}; training goes on from memory", flush=True)
            return
        events.emit(
            "checkpoint", replica=name, step=step, path=str(path), duration_s=time.time() - started
        )

    def _write_model(self) -> None:
        if self.state.fleet.step < self.steps:
            return
        final = self.out_dir / "model.safetensors"
        tmp = self.out_dir / f".model.{os.getpid()}.safetensors"
        try:
            save_model(self.model, str(tmp))
            os.replace(tmp, final)
        except Exception as err:  # safetensors reports a full disk as its own error type
            tmp.unlink(missing_ok=True)
            newest = ckpt.list_checkpoints(self.out_dir)
            held = f"; the newest checkpoint is {newest[0]}" if newest else ""
            say_error(
                f"the final model could not be written to {final} "
                f"({str(err).splitlines()[0] if str(err) else type(err).__name__}){held}. "
                "Fix: free disk space, then run again with --resume",
                sys.stdout,
            )
            raise SystemExit(EXIT_FATAL) from None


def _default_device(model: torch.nn.Module) -> str:
    try:
        return str(next(model.parameters()).device)
    except StopIteration:
        return "cpu"
