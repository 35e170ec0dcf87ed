"""The host CPU that emulated chips share: compute slots and calibrated op costs.

Emulated chips compute on the host with torch. Two things keep many chips on
a small host honest:

- slots: at most one chip computes per host core at a time, so chips do not
  thrash each other's caches (waiting for a slot is not chip time);
- calibrated costs: an op's host CPU time is measured once per op signature
  (the fastest of three runs) and reused. Host timing on a shared or virtual
  machine jitters by tens of percent from one call to the next; a chip whose
  clock inherited that jitter would look unstable when it is not. With a
  calibrated cost, a chip's op lasts cost / speed in chip time, every time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
_CALIBRATION_RUNS = 3


def _cpu_clock() -> Callable[[], float]:
    import torch

    # With one intra-op thread torch computes on the calling thread, so its CPU
    # time is the op's cost. With more, the work leaves this thread: use wall time.
    return time.thread_time if torch.get_num_threads() == 1 else time.perf_counter


class HostCPU:
    def __init__(self, slots: int | None = None) -> None:
        self.slots = threading.BoundedSemaphore(slots or os.cpu_count() or 1)
        self._costs_s: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def cost_s(self, key: Hashable) -> float | None:
        with self._lock:
            return self._costs_s.get(key)

    def run(self, fn: Callable[[], T], cost_key: Hashable | None = None) -> tuple[T, float]:
        """Run `fn` in a host slot; return its result and its cost in host seconds.

        Without a cost key the cost is this run's measured time (jitter and all).
        With one, `fn` must be repeatable: the first time a key is seen it is
        run again to calibrate.
        """
        clock = _cpu_clock()
        with self.slots:
            start = clock()
            result = fn()
            measured_s = clock() - start
            if cost_key is None:
                return result, measured_s
            known = self.cost_s(cost_key)
            if known is not None:
                return result, known
            samples = [measured_s]
            for _ in range(_CALIBRATION_RUNS - 1):
                start = clock()
                fn()
                samples.append(clock() - start)
        with self._lock:
            cost = self._costs_s.setdefault(cost_key, max(min(samples), 1e-6))
        return result, cost


_default_host: HostCPU | None = None
_default_lock = threading.Lock()


def default_host() -> HostCPU:
    """The process-wide host, shared by every emulated chip unless one is given."""
    global _default_host
    with _default_lock:
        if _default_host is None:
            _default_host = HostCPU()
        return _default_host


def measure(fn: Callable[[], Any]) -> float:
    """Host seconds for one call of fn, on the clock the chips use."""
    clock = _cpu_clock()
    start = clock()
    fn()
    return clock() - start
