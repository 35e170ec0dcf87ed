"""Small after-step hooks: each promise's per-step policy, wired to the step's report.

The policies live with their checks (guard/offences.py, energy/thermal_guard.py,
runtime/checkpoint.py, the device monitor); these classes only feed them the
step's report and act on their answer. A replica that must leave raises
`LeaveFleet`; the trainer turns it into an event, a line and the exit code.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phalanx.data.slicing import participant_ranges
from phalanx.devices.emulated.chip import DeviceCrashed
from phalanx.energy.thermal_guard import ThermalGuard
from phalanx.errors import EXIT_FATAL, EXIT_QUARANTINED
from phalanx.guard.offences import OffenceLedger
from phalanx.runtime import checkpoint as ckpt
from phalanx.runtime.state import TrainState
from phalanx.runtime.step import StepContext, StepReport

# The same step failing the same way this many times cannot be retried away.
UNRECOVERABLE_ROUNDS = 3


class LeaveFleet(Exception):
    """This replica must stop: `exit_code` says why (errors.py), `message` says it in a line."""

    def __init__(self, exit_code: int, message: str, event: dict[str, Any]) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.event = event


@dataclass
class GuardHook:
    """Detections to events; offences to quarantine; a step nobody can pass to a stop."""

    ctx: StepContext
    ledger: OffenceLedger
    out_dir: Path
    in_fleet: bool
    _failures: dict[tuple[str, int], int] = field(default_factory=dict)

    def __call__(self, report: StepReport) -> None:
        ctx, result = self.ctx, report.round
        for detection in result.detections:
            ctx.events.emit("sdc", observer=ctx.name, step=report.step, **detection)
        if result.tie:
            self._restore_after_tie(report.step)
        if result.resync and ctx.name == report.members[0]:
            ctx.events.emit("resync", replica=ctx.name, step=report.step, replicas=result.resync)
        if self.ledger.record(report.step, result.at_fault) and self.in_fleet:
            raise LeaveFleet(
                EXIT_QUARANTINED,
                f"{ctx.name}: quarantined after {self.ledger.count} offences",
                {
                    "kind": "quarantine",
                    "step": report.step,
                    "offences": self.ledger.count,
                    "reason": "; ".join(self.ledger.reasons),
                },
            )
        self._stop_if_unrecoverable(report)

    def _stop_if_unrecoverable(self, report: StepReport) -> None:
        """Every participant vetoing a step again and again is the data or the model;
        two replicas that still disagree after returning to the newest checkpoint have
        no healthy majority to heal from."""
        result = report.round
        what = "tie" if result.tie else "veto" if result.all_excluded else None
        if what is None:
            if report.committed:
                self._failures = {}
            return
        key = (what, report.step)
        self._failures[key] = self._failures.get(key, 0) + 1
        if self._failures[key] < UNRECOVERABLE_ROUNDS:
            return
        if what == "tie":
            message = (
                f"step {report.step}: two replicas hold different parameters and still "
                f"disagree after returning to the newest checkpoint {UNRECOVERABLE_ROUNDS} "
                "times. Fix: restart the run with --resume on more than two replicas, so a "
                "majority can outvote a bad chip"
            )
        else:
            message = (
                f"step {report.step}: every replica's gradient fails the guard (non-finite) "
                f"{UNRECOVERABLE_ROUNDS} times: a data or model problem, not a chip. Fix: "
                "lower the learning rate, clip gradients, or check this step's samples"
            )
        raise LeaveFleet(
            EXIT_FATAL, message, {"kind": "unrecoverable", "step": report.step, "reason": message}
        )

    def _restore_after_tie(self, step: int) -> None:
        """Two replicas disagree with no majority: both return to the newest checkpoint."""
        loaded = ckpt.load_newest(self.ctx.state, self.out_dir)
        restored = loaded.step if loaded is not None else None
        self.ctx.events.emit(
            "tie_restore", replica=self.ctx.name, step=step, restored_step=restored
        )
        if loaded is not None:
            self.ctx.sync.set_step(loaded.step)


@dataclass
class DeviceHook:
    """The chip's own model and sensors: load/idle time in, readings, heat and re-screens out."""

    ctx: StepContext
    monitor: Any  # runtime.device_monitor.DeviceMonitor
    thermal: ThermalGuard | None
    _last_end_s: float = field(default_factory=time.perf_counter)
    _said_what_is_missing: bool = False

    def __call__(self, report: StepReport) -> None:
        if not report.committed:
            return
        ctx = self.ctx
        now = time.perf_counter()
        step_s, self._last_end_s = now - self._last_end_s, now
        try:
            self.monitor.step_done(report.round.compute_s, step_s)
        except DeviceCrashed as crash:  # e.g. an emulated chip's thermal shutdown
            ctx.events.emit("device_failure", replica=ctx.name, step=report.step, reason=str(crash))
            raise
        readings = self.monitor.readings()
        report.extra.update(readings)
        if not self._said_what_is_missing:
            self._say_what_is_missing(report.step, readings)
        if self.thermal is not None:
            action = self.thermal.update(readings.get("temperature_c"))
            if action is not None:
                ctx.events.emit(
                    "thermal",
                    replica=ctx.name,
                    step=report.step,
                    action=action.action,
                    derate=round(action.derate, 4),
                    temperature_c=round(action.temperature_c, 2),
                    predicted_c=round(action.predicted_c, 2),
                    throttle_c=action.throttle_c,
                )
            ctx.heat = self.thermal.heat
        if self.monitor.rescreen_due():
            self._rescreen(report.step)

    def _say_what_is_missing(self, step: int, readings: dict[str, float | None]) -> None:
        """Once per process: a sensor or knob this device lacks, and what goes without it."""
        self._said_what_is_missing = True
        notes = [*self.monitor.notes, *self.monitor.missing_sensors(readings)]
        if not notes:
            return
        ctx = self.ctx
        ctx.events.emit("device_limits", replica=ctx.name, step=step, notes=notes)
        # CPU replicas share the host's sensors: one line for all of them (the launcher
        # relays a line once); an accelerator is named.
        monitor = self.monitor
        label = "the host CPU" if monitor.device_kind == "cpu" else f"device {monitor.device_id}"
        # One write, newline included: print() writes the text and the newline apart, and
        # torchft's Rust logger, on the same pipe, can land between them; the glued line
        # then differs from the other replicas' and the launcher said it twice.
        sys.stdout.write(f"note: {label}: {'; '.join(notes)}\n")
        sys.stdout.flush()

    def _rescreen(self, step: int) -> None:
        ctx = self.ctx
        result = self.monitor.probe()
        ctx.events.emit(
            "rescreen",
            replica=ctx.name,
            step=step,
            passed=result.passed,
            wrong=result.wrong,
            checked=result.checked,
            duration_s=round(result.duration_s, 4),
        )
        if not result.passed:
            raise LeaveFleet(
                EXIT_QUARANTINED,
                f"{ctx.name}: quarantined: the periodic re-screen failed",
                {
                    "kind": "quarantine",
                    "step": step,
                    "reason": f"re-screen found {result.wrong} wrong of {result.checked} elements",
                },
            )


@dataclass
class StepLogHook:
    """One `step` event per committed step, one `retry` event per failed attempt."""

    ctx: StepContext
    global_batch_size: int

    def __call__(self, report: StepReport) -> None:
        ctx, result = self.ctx, report.round
        if not report.trained:
            return
        if not report.committed:
            ctx.events.emit(
                "retry",
                replica=ctx.name,
                step=report.step,
                participants=report.members,
                reason=report.reason,
            )
            return
        stream_step = ctx.stream_step(report.step)
        # A site's steps lie in the global stream where its round's plan put them.
        site = {"site": ctx.site, "stream_step": stream_step} if ctx.site is not None else {}
        ctx.events.emit(
            "step",
            replica=ctx.name,
            step=report.step,
            **site,
            loss=result.loss,
            participants=result.active,
            members=report.members,
            shares=result.shares,
            ranges=participant_ranges(stream_step, self.global_batch_size, result.shares),
            sps=[abs(result.throughputs_sps[m]) for m in result.active],
            compute_s=round(result.compute_s, 5),
            quorum_s=round(report.quorum_s, 5),
            allreduce_s=round(result.allreduce_s, 5),
            commit_s=round(report.commit_s, 5),
            guard_s=round(result.guard_s, 6),
            grad_norm=result.global_norm,
            **(
                {"loss_scale": result.loss_scale, "overflows": result.overflows}
                if ctx.work.precision.scaled
                else {}
            ),
            **report.extra,
        )


@dataclass
class CheckpointHook:
    """A durable checkpoint every `every` committed steps, written by the first member
    (a group: all its ranks gather the whole state, its first rank writes it)."""

    ctx: StepContext
    state: TrainState
    out_dir: Path
    every: int | None
    keep: int

    def __call__(self, report: StepReport) -> None:
        step = self.state.fleet.step
        due = report.committed and self.every and step % self.every == 0
        if not due or report.members[0] != self.ctx.name:
            return
        started = time.time()
        try:
            path = ckpt.save_checkpoint(self.state, self.out_dir, keep=self.keep)
        except OSError as err:
            # A full disk (ENOSPC) does not stop training: every live replica holds the
            # state in memory, the checkpoints already on disk are intact (the save wrote
            # into a temporary directory), and the next due checkpoint tries again. What
            # is at risk is only the loss of the whole fleet before a save succeeds.
            self.ctx.events.emit(
                "checkpoint_failed", replica=self.ctx.name, step=step, reason=str(err)
            )
            print(f"warning: {err}; training goes on from memory", flush=True)
            return
        if path is None:  # a rank of a group: it gave its slices, its first rank wrote
            return
        self.ctx.events.emit(
            "checkpoint",
            replica=self.ctx.name,
            step=step,
            path=str(path),
            duration_s=time.time() - started,
        )
