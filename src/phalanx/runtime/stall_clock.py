"""Did this process stand still? A ticking thread notices the gaps.

A replica that was frozen (SIGSTOP, a suspended VM, a host that hung) cannot
tell from its own code: it simply resumes. But its peers may have given up on
it meanwhile (runtime/freeze_watch.py) and retried the step without it, while
the collective it was in is still open and completes when it wakes. Its
commit of that step would then be a second history. This clock ticks every
`TICK_S` on a thread of its own; a gap much longer than a tick means the
whole process stood still, and the replica then does not commit the step.
"""

from __future__ import annotations

import threading
import time

TICK_S = 0.05


class StallClock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._gaps: list[tuple[float, float]] = []  # (resumed at, gap seconds), recent only
        threading.Thread(target=self._run, name="stall-clock", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(TICK_S)  # a tick: the gap between ticks is what is measured
            now = time.monotonic()
            with self._lock:
                gap = now - self._last
                self._last = now
                if gap > 4 * TICK_S:
                    self._gaps = [g for g in self._gaps if g[0] > now - 600.0]
                    self._gaps.append((now, gap))

    def longest_gap_since(self, since: float) -> float:
        """The longest stretch since `since` (monotonic) in which this process did not run."""
        now = time.monotonic()
        with self._lock:
            current = now - self._last  # a gap the ticker has not woken up from yet
            past = [gap for resumed, gap in self._gaps if resumed > since]
        return max([current, *past])
