"""Pads a compute phase so that it lasts its real CPU time divided by the chip's speed.

CPU time of the computing thread (not wall time) is the measure of work, so
that other workers sharing the host's cores do not make a chip look slower
than it is emulated to be. Workers run torch with one intra-op thread, which
keeps all of a phase's compute on the calling thread.
"""

from __future__ import annotations

import time


class ComputePacer:
    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self._wall_start = 0.0
        self._cpu_start = 0.0

    def begin(self) -> None:
        self._wall_start = time.perf_counter()
        self._cpu_start = time.thread_time()

    def end(self) -> float:
        """Sleep out the rest of the emulated duration; return the phase's wall seconds."""
        if self.speed is not None:
            target_s = (time.thread_time() - self._cpu_start) / self.speed
            remaining_s = target_s - (time.perf_counter() - self._wall_start)
            if remaining_s > 0:
                time.sleep(remaining_s)  # emulating a slow chip, not synchronising
        return time.perf_counter() - self._wall_start
