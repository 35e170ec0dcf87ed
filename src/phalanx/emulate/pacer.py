"""Pads a compute phase so that it lasts its CPU time divided by the chip's speed.

CPU time of the computing thread (not wall time) is the measure of work, so
that other workers sharing the host's cores do not make a chip look slower
than it is emulated to be. Workers run torch with one intra-op thread, which
keeps all of a phase's compute on the calling thread.

The CPU time of the same work still varies from step to step with what the
other workers do on the host (caches, a shared core's other hyperthread).
Measured with four paced workers on a 2-core host: 85-137 ms for the same
32 samples. A real accelerator's kernels take the same time for the same
work; this noise is the host's, not the chip's, and a lockstep fleet would
wait for the unluckiest chip every step. So a phase that names its work
(`begin(units=samples)`) is paced to the *least* CPU time of that work over
its last few runs: a neighbour only ever adds CPU time to a phase (it never
does the phase's work for it), so the least is the work's own cost. Runs of
other sizes bound it too (`_typical_cpu_s`), so a new share is not paced from
its one noisy first run. A median of the last five (the earlier rule) still
let the paced time wander by 10-20% and left chips run slower in a fleet than
alone; with the least, the same chip's paced time varies by about 2%. A real
change of work (another share) is paced from its own runs and the bounds the
chip's other shares give, and a change of speed (a slow fault, a thermal
derate) still acts through `speed` at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque

# Recent runs kept per pacing point (all shares together): a few steps' worth, so a
# lasting change of the work's cost (a user's longer sequences at the same sample
# count) is followed.
SMOOTHING_WINDOW = 9


class ComputePacer:
    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        # Set for a rank of a replica group (runtime/compute_probe.py): its chip computes
        # a unit (sample) in this many CPU seconds at speed 1, whatever else its thread
        # does meanwhile (FSDP2's host work is not the chip's).
        self.cpu_per_unit_s: float | None = None
        self._wall_start = 0.0
        self._cpu_start = 0.0
        self._began_on: int | None = None
        self._units: int | None = None
        self._ends = 0  # end() calls since begin(): DDP's hook paces each gradient bucket
        # Per end() of a phase (a bucket's launch, the phase's end): recent (units, CPU s).
        self._cpu_history: dict[int, deque[tuple[int, float]]] = {}

    def begin(self, units: int | None = None) -> None:
        """Start a phase; `units` (e.g. its samples) names the work, for smoothing."""
        self._wall_start = time.perf_counter()
        self._cpu_start = time.thread_time()
        # Thread CPU clocks differ per thread: only this thread can measure the phase.
        self._began_on = threading.get_ident()
        self._units = units
        self._ends = 0

    def end(self) -> float:
        """Sleep out the rest of the emulated duration; return the phase's wall seconds."""
        if self.speed is not None:
            if self.cpu_per_unit_s is not None and self._units is not None:
                cpu_s = self._units * self.cpu_per_unit_s
            else:
                cpu_s = self._typical_cpu_s(time.thread_time() - self._cpu_start)
            target_s = cpu_s / self.speed
            remaining_s = target_s - (time.perf_counter() - self._wall_start)
            if remaining_s > 0:
                time.sleep(remaining_s)  # emulating a slow chip, not synchronising
        return time.perf_counter() - self._wall_start

    def pace_so_far(self) -> None:
        """Sleep out the emulated time of the phase so far (a gradient bucket leaving
        mid-backward leaves when the chip would have made it, as `end` paces DDP's hook).

        Nothing when pacing by samples (`cpu_per_unit_s`: a group rank's thread also
        runs FSDP2's host work) or from another thread than the phase began on (a
        user's own loop runs backward on its thread, whose CPU clock is not this phase's).
        """
        if (
            self.speed is not None
            and self.cpu_per_unit_s is None
            and self._began_on == threading.get_ident()
        ):
            self.end()

    def _typical_cpu_s(self, cpu_s: float) -> float:
        """The work's own cost: the least upper bound its recent CPU times give.

        Every measured time is an upper bound on its work's cost (a neighbour only
        adds). A bound carries over to other work of the same phase: n samples cost
        no more than k samples did for k > n, nor more than n/k times their cost for
        k <= n (a sample never costs more in a bigger batch). So a new share is paced
        from the chip's earlier shares at once, not from one noisy first measurement.
        """
        if self._units is None:
            return cpu_s
        units = self._units
        history = self._cpu_history.setdefault(self._ends, deque(maxlen=SMOOTHING_WINDOW))
        self._ends += 1
        history.append((units, cpu_s))
        return min(cost * units / known if known <= units else cost for known, cost in history)
