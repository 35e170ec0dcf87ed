"""The fleet's progress, kept by the admission gate for replicas on hosts of their own.

A replica restarted on a host of its own cannot see the fleet's progress on
its own disk: the other hosts' checkpoints and `.complete` markers are on
theirs. If it came back after the others finished, the lighthouse (still
serving) would give it a quorum of one and it would train the whole run again,
alone: a second history (docs/reliability.md, bug 6). So every replica tells
the gate when it finishes, and asks the gate before it trains on a quorum that
changed; the gate answers with the fleet's highest reported step and whether
the run is complete.

On many hosts a replica also reports every step it commits, so the gate
knows the fleet's newest committed step. A quorum whose members are all
behind it (the replicas that hold the newest state are cut off, or frozen)
must not train on: that would be a second history of the same steps. It
waits for them, and only after a bound goes on from its older state and
says so (`rewind`).

Which run? The gate serves one fleet, but an operator may start a new run
against the same `phalanx lighthouse` service. A replica belongs to the
finished run if its launcher started before the run completed; a launcher
started later is a new run, and its first report clears the record. The
replica sends its launcher's *age* rather than a start time, so the hosts'
clocks need not agree: the gate places the start on its own clock.
"""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass

# purpose | step | complete | launcher age in ms
_REPORT = struct.Struct(">BQ?Q")
# incarnation | fleet step | complete
_ANSWER = struct.Struct(">QQ?")
REPORT_BYTES = _REPORT.size
ANSWER_BYTES = _ANSWER.size

PURPOSE_LIGHTHOUSE = 1  # pipe the connection to the lighthouse (torchft's client)
PURPOSE_PROGRESS = 2  # report and read the fleet's progress, then close
# As PURPOSE_PROGRESS, and the reported step replaces the fleet's: the replicas that
# held the newer state stayed away too long, and the fleet goes on from an older one.
PURPOSE_REWIND = 3
PURPOSES = (PURPOSE_LIGHTHOUSE, PURPOSE_PROGRESS, PURPOSE_REWIND)


@dataclass(frozen=True)
class ProgressReport:
    """What a replica tells the gate with each connection."""

    purpose: int = PURPOSE_LIGHTHOUSE
    step: int = 0  # the replica's committed steps (0 when it only asks)
    complete: bool = False  # it committed the run's last step
    launcher_age_s: float = 0.0  # how long ago its launcher started

    def pack(self) -> bytes:
        age_ms = max(0, round(self.launcher_age_s * 1000))
        return _REPORT.pack(self.purpose, max(0, self.step), self.complete, age_ms)

    @classmethod
    def unpack(cls, data: bytes) -> ProgressReport:
        purpose, step, complete, age_ms = _REPORT.unpack(data)
        return cls(purpose, step, complete, age_ms / 1000)


@dataclass(frozen=True)
class FleetProgress:
    """The gate's answer: the fleet's highest reported step, and whether the run is done."""

    step: int = 0
    complete: bool = False


def pack_answer(incarnation: int, progress: FleetProgress) -> bytes:
    return _ANSWER.pack(incarnation, progress.step, progress.complete)


def unpack_answer(data: bytes) -> tuple[int, FleetProgress]:
    incarnation, step, complete = _ANSWER.unpack(data)
    return incarnation, FleetProgress(step, complete)


class ProgressRecord:
    """The gate's record; thread-safe (the gate's loop writes, the service reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._step = 0
        self._completed_at: float | None = None  # monotonic, on the gate's clock
        self.runs = 1  # runs seen (a report from a launcher newer than the completion starts one)

    def update(self, report: ProgressReport, now_s: float | None = None) -> FleetProgress:
        now_s = time.monotonic() if now_s is None else now_s
        launched_at = now_s - report.launcher_age_s
        with self._lock:
            if self._completed_at is not None and launched_at > self._completed_at:
                # Launched after the run finished: a new run on the same service.
                self._step, self._completed_at = 0, None
                self.runs += 1
            if report.purpose == PURPOSE_REWIND and self._completed_at is None:
                self._step = report.step
            self._step = max(self._step, report.step)
            if report.complete and self._completed_at is None:
                self._completed_at = now_s
            return FleetProgress(self._step, self._completed_at is not None)

    @property
    def progress(self) -> FleetProgress:
        with self._lock:
            return FleetProgress(self._step, self._completed_at is not None)
