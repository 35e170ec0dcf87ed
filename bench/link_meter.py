"""Bytes across one host's link over a time window, from its counters read in the background.

The window (a run's steady state) is known only after the run, from its step
events; so the counters are sampled all along, stamped with the wall clock
the events use (`time.time()`), and read back at the window's ends by linear
interpolation between the two nearest samples.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from phalanx.chaos.netns import LinkBytes

SAMPLE_EVERY_S = 0.1  # at 20 Mbit/s a window end is then off by at most ~250 kB


@dataclass(frozen=True)
class Sample:
    t: float  # time.time(), the clock of events.jsonl
    crossed: LinkBytes


def bytes_at(samples: list[Sample], t: float) -> LinkBytes:
    """The counters at time `t`, linear between the samples around it (inside their span)."""
    if not samples or not samples[0].t <= t <= samples[-1].t:
        span = f"{samples[0].t:.2f}..{samples[-1].t:.2f}" if samples else "no samples"
        raise ValueError(f"t={t:.2f} is outside the sampled span ({span})")
    after = bisect.bisect_left([s.t for s in samples], t)
    if samples[after].t == t:
        return samples[after].crossed
    low, high = samples[after - 1], samples[after]
    weight = (t - low.t) / (high.t - low.t)

    def between(a: int, b: int) -> int:
        return round(a + weight * (b - a))

    return LinkBytes(
        between(low.crossed.sent_bytes, high.crossed.sent_bytes),
        between(low.crossed.received_bytes, high.crossed.received_bytes),
    )


def busy_shares(
    samples: list[Sample], start_t: float, end_t: float, rate_bytes_per_s: float
) -> dict[str, float]:
    """Share of [start_t, end_t] in which the link ran above half its rate: up, down, both.

    Per interval between two samples: a direction is busy when it carried more
    than half of what the rate allows in that interval (a saturated direction
    carries about all of it; an idle one only the other direction's ACKs).
    """
    busy = {"up": 0.0, "down": 0.0, "both": 0.0}
    inside = [s for s in samples if start_t <= s.t <= end_t]
    for low, high in itertools.pairwise(inside):
        allowed = 0.5 * rate_bytes_per_s * (high.t - low.t)
        up = high.crossed.sent_bytes - low.crossed.sent_bytes > allowed
        down = high.crossed.received_bytes - low.crossed.received_bytes > allowed
        for key, flag in (("up", up), ("down", down), ("both", up and down)):
            busy[key] += (high.t - low.t) if flag else 0.0
    span = inside[-1].t - inside[0].t if len(inside) > 1 else 0.0
    return {key: (value / span if span else 0.0) for key, value in busy.items()}


class LinkMeter:
    """Samples `read()` every SAMPLE_EVERY_S from `start()` to `stop()` on a thread of its own."""

    def __init__(self, read: Callable[[], LinkBytes]) -> None:
        self._read = read
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="link-meter", daemon=True)

    def start(self) -> LinkMeter:
        self._sample()  # the first sample before anything runs: every window lies inside
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()

    def crossed_between(self, start_t: float, end_t: float) -> LinkBytes:
        return bytes_at(self.samples, end_t) - bytes_at(self.samples, start_t)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self._sample()

    def _sample(self) -> None:
        self.samples.append(Sample(time.time(), self._read()))
