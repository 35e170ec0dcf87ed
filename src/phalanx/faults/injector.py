"""Fires faults inside a worker at the planned step and phase.

Faults are real: a kill is SIGKILL of this process, a hang is SIGSTOP with a
detached helper that sends SIGCONT after the given seconds. Each fault fires
once per run: a marker file is created (O_EXCL) before firing, so neither a
restarted worker nor a resumed fleet repeats it (faults/markers.py; on a full
disk the fault is skipped rather than risk firing it twice).

A corruption of the gradient (`sdc` on the gradient, `nan`) needs a gradient:
on a replica that computes no samples at the planned step (a slow chip given
a share of 0, a replica that was healing) it waits for the first later step
where the replica computes, and its event names both steps. A weight flip
likewise fires at the first step at or after the planned one that the
replica takes part in. A corruption never fires where it could not be seen,
and at most one gradient and one weight corruption fire in a step: faults that
waited for the same step fire on the following ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import torch

from phalanx.faults.bitflip import flip_bit
from phalanx.faults.markers import MARKER_DIR, claim_once
from phalanx.faults.spec import FaultSpec
from phalanx.observe.events import EventLog


class FaultInjector:
    def __init__(
        self, faults: list[FaultSpec], run_dir: str | Path, events: EventLog | None
    ) -> None:
        self.faults = faults
        self.marker_dir = Path(run_dir) / MARKER_DIR
        self.events = events

    def _claim(self, fault: FaultSpec) -> bool:
        # On a full disk the marker cannot be written and the fault does not fire (markers.py).
        return claim_once(self.marker_dir.parent, fault.key)

    def _due(self, kinds: tuple[str, ...], phase: str | None, step: int) -> list[FaultSpec]:
        return [
            f
            for f in self.faults
            if f.kind in kinds and f.step == step and (phase is None or f.phase == phase)
        ]

    def _pending(self, kinds: tuple[str, ...], step: int) -> list[FaultSpec]:
        """Corruptions planned at or before `step` (those already fired are claimed)."""
        return [f for f in self.faults if f.kind in kinds and f.step <= step]

    def _record(self, fault: FaultSpec, step: int | None = None) -> None:
        if self.events is not None:
            data = fault.to_json()
            data.pop("replica")
            data["fault"] = data.pop("kind")
            if step is not None and step != fault.step:
                data["planned_step"], data["step"] = fault.step, step
            # The worker's name (its events' source): `hN-r0` on a host, not the spec's index.
            self.events.emit("fault", replica=self.events.source, **data)

    def at(self, phase: str, step: int) -> None:
        """Fire any kill or hang planned for this step and phase."""
        for fault in self._due(("kill", "hang"), phase, step):
            if not self._claim(fault):
                continue
            self._record(fault)
            if fault.kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            else:
                seconds = float(fault.params["seconds"])
                # The waker must outlive our stop: its own session, no pipes to us.
                subprocess.Popen(
                    ["/bin/sh", "-c", f"sleep {seconds}; kill -CONT {os.getpid()}"],
                    start_new_session=True,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                os.kill(os.getpid(), signal.SIGSTOP)

    def speed_at(self, step: int, base_speed: float | None) -> float | None:
        """Emulated speed at `step`: the last `slow` fault at or before it wins."""
        speed = base_speed
        for fault in sorted(self.faults, key=lambda f: f.step):
            if fault.kind == "slow" and fault.step <= step:
                if fault.step == step and self._claim(fault):
                    self._record(fault)
                speed = float(fault.params["speed"])
        return speed

    def gradient_fault_due(self, step: int) -> bool:
        """Is a gradient corruption due at this step (or waiting since an earlier one)?

        The step then computes without overlap, so that the corruption lands
        before any of the gradient leaves (a real fault happens during compute).
        """
        return any(
            (f.kind == "nan" or f.params.get("target", "grad") == "grad")
            and not (self.marker_dir / f.key).exists()
            for f in self._pending(("nan", "sdc"), step)
        )

    def corrupt_gradient(self, step: int, params: list[torch.nn.Parameter]) -> None:
        """`nan` and `sdc:target=grad` faults: poison this replica's gradient once.

        Call it only when the replica computed samples this step: a planned
        corruption waits for such a step.
        """
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        for fault in self._pending(("nan", "sdc"), step):
            if fault.kind == "sdc" and fault.params.get("target", "grad") != "grad":
                continue
            if self._claim(fault):
                self._record(fault, step)
                if fault.kind == "nan":
                    grads[0].view(-1)[0] = float("nan")
                else:
                    flip_bit(grads[0], fault.params.get("bit"))
                # One corruption per step: two that waited for the same step would land on
                # the same element, and a top-bit flip of a NaN is a finite, plausible
                # number (0x7FF8... -> 1.5): no fault anyone planned. The next waits.
                return

    def corrupt_weights(self, step: int, params: list[torch.nn.Parameter]) -> None:
        """`sdc:target=weight` faults: flip a bit of this replica's first parameter once."""
        for fault in self._pending(("sdc",), step):
            if fault.params.get("target", "grad") == "weight" and params and self._claim(fault):
                self._record(fault, step)
                with torch.no_grad():
                    flip_bit(params[0], fault.params.get("bit"))
                return  # one per step: a second flip of the same bit would undo the first
