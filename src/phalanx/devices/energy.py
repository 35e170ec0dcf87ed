"""Energy for devices with and without an energy counter.

Where the device has a counter we difference it; elsewhere we sample power
and integrate it over time (trapezoid rule). `PowerSampler` does either in a
background thread, so the runtime can wrap any phase of work with it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from phalanx.devices.telemetry.base import Telemetry


def integrate_power_j(times_s: Sequence[float], powers_w: Sequence[float]) -> float:
    """Joules from power samples by the trapezoid rule (samples in time order)."""
    if len(times_s) != len(powers_w):
        raise ValueError("times_s and powers_w differ in length")
    energy_j = 0.0
    for i in range(1, len(times_s)):
        energy_j += 0.5 * (powers_w[i] + powers_w[i - 1]) * (times_s[i] - times_s[i - 1])
    return energy_j


@dataclass(frozen=True)
class EnergyReading:
    energy_j: float | None  # None: the device reports neither power nor energy
    duration_s: float
    mean_power_w: float | None
    max_power_w: float | None
    source: str  # "counter", "sampled" or "none"
    samples: int


class PowerSampler:
    """Samples a device's power every `interval_s` between start() and stop()."""

    def __init__(self, telemetry: Telemetry, interval_s: float = 0.1) -> None:
        self.telemetry = telemetry
        self.interval_s = interval_s
        self._times_s: list[float] = []
        self._powers_w: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_s = 0.0
        self._counter_start_j: float | None = None

    def start(self) -> PowerSampler:
        self._start_s = self.telemetry.now_s()
        self._counter_start_j = _try(self.telemetry.energy_j)
        self.sample_once()
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)
        self._thread.start()
        return self

    def sample_once(self) -> None:
        power_w = _try(self.telemetry.power_w)
        if power_w is not None:
            self._times_s.append(self.telemetry.now_s())
            self._powers_w.append(power_w)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample_once()

    def stop(self) -> EnergyReading:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.sample_once()
        duration_s = self.telemetry.now_s() - self._start_s
        mean_w = sum(self._powers_w) / len(self._powers_w) if self._powers_w else None
        max_w = max(self._powers_w) if self._powers_w else None
        counter_end_j = _try(self.telemetry.energy_j)
        if self._counter_start_j is not None and counter_end_j is not None:
            energy_j, source = counter_end_j - self._counter_start_j, "counter"
        elif len(self._powers_w) >= 2:
            energy_j, source = integrate_power_j(self._times_s, self._powers_w), "sampled"
        else:
            energy_j, source = None, "none"
        return EnergyReading(energy_j, duration_s, mean_w, max_w, source, len(self._powers_w))

    def __enter__(self) -> PowerSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            self.reading = self.stop()


def _try(query):  # type: ignore[no-untyped-def]
    try:
        return query()
    except Exception:
        return None


class RunEnergy:
    """A real device's energy over a training run, read at the end of every step.

    A vendor counter counts from an origin of its own (NVML: since the driver
    loaded; RAPL: since boot), so what a run used is the counter's difference
    from its value when the run started. Without a counter, the power read at
    each step's end is integrated over the steps (coarser: it misses peaks
    inside a step). `host_share`: the part of the device this replica answers
    for, e.g. its cores' part of a CPU package that other replicas share.
    """

    def __init__(self, telemetry: Telemetry, host_share: float = 1.0) -> None:
        self.telemetry = telemetry
        self.host_share = host_share
        self._counter_start_j = _try(telemetry.energy_j)
        self.source = "counter" if self._counter_start_j is not None else "none"
        self._last_power_w: float | None = None
        self.energy_j: float | None = 0.0 if self._counter_start_j is not None else None
        self.mean_power_w: float | None = None

    def step_done(self, step_s: float) -> None:
        before_j = self.energy_j
        counter_j = _try(self.telemetry.energy_j) if self._counter_start_j is not None else None
        if counter_j is not None:
            self.energy_j = (counter_j - self._counter_start_j) * self.host_share
        else:
            power_w = _try(self.telemetry.power_w)
            if power_w is not None:
                power_w *= self.host_share
                last_w = power_w if self._last_power_w is None else self._last_power_w
                self.energy_j = (self.energy_j or 0.0) + 0.5 * (last_w + power_w) * step_s
                self.source = "sampled"
                self._last_power_w = power_w
        if before_j is not None and self.energy_j is not None and step_s > 0:
            self.mean_power_w = (self.energy_j - before_j) / step_s
