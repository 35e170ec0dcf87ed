"""Sustained load: does the device keep its speed and its answers when hot?

The level's duration is cut into windows. Each window starts with a probe
(square matmuls for throughput, exact matmuls for correctness, one telemetry
sample) and fills the rest with full load (`device.burn`). Throughput is
judged on a rolling median of three windows, so one slow window (a hiccup
of the host) does not fail a device, but a lasting slow-down does.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from phalanx.devices.compute import ComputeDevice
from phalanx.devices.energy import EnergyReading, PowerSampler
from phalanx.devices.exact_matmul import exact_matmuls
from phalanx.devices.telemetry import THERMAL_REASONS, TelemetrySample
from phalanx.qualify.levels import Level
from phalanx.qualify.workloads import square_operands, throughput_side

THROUGHPUT_REPEATS = 3


@dataclass
class Window:
    end_s: float  # device clock since the start of the sustained phase
    gflops: float
    checked: int
    wrong: int
    sample: TelemetrySample


@dataclass
class SustainedResult:
    windows: list[Window] = field(default_factory=list)
    duration_s: float = 0.0
    energy: EnergyReading | None = None

    @property
    def wrong(self) -> int:
        return sum(w.wrong for w in self.windows)

    @property
    def checked(self) -> int:
        return sum(w.checked for w in self.windows)

    def first_wrong(self) -> Window | None:
        return next((w for w in self.windows if w.wrong), None)

    def rolling_gflops(self) -> list[float]:
        values = [w.gflops for w in self.windows]
        if len(values) < 3:
            return values
        return [statistics.median(values[i : i + 3]) for i in range(len(values) - 2)]

    def throughput_drop(self) -> float:
        """1 - worst/best of the rolling medians (0 = perfectly steady)."""
        rolling = self.rolling_gflops()
        if not rolling or max(rolling) <= 0:
            return 0.0
        return 1.0 - min(rolling) / max(rolling)

    def steady_gflops(self) -> float | None:
        """Throughput at the end of the load, what the device will train at."""
        if not self.windows:
            return None
        return statistics.median(w.gflops for w in self.windows[-3:])

    def max_temperature_c(self) -> float | None:
        temps = [w.sample.temperature_c for w in self.windows if w.sample.temperature_c is not None]
        return max(temps) if temps else None

    def max_power_w(self) -> float | None:
        powers = [w.sample.power_w for w in self.windows if w.sample.power_w is not None]
        return max(powers) if powers else None

    def throttle_reasons(self) -> set[str] | None:
        samples = [
            w.sample.throttle_reasons for w in self.windows if w.sample.throttle_reasons is not None
        ]
        if not samples:
            return None
        return {reason for reasons in samples for reason in reasons}

    def thermally_throttled(self) -> bool:
        return bool((self.throttle_reasons() or set()) & THERMAL_REASONS)


def measure_gflops(device: ComputeDevice, side: int, operands: tuple) -> float:
    """Best of a few timed square matmuls, on the device's clock."""
    a, b = operands
    best_s = float("inf")
    for _ in range(
        1 if device.config.emulated else THROUGHPUT_REPEATS
    ):  # calibrated clock: once is exact
        start = device.clock_s()
        device.matmul(a, b)
        best_s = min(best_s, device.clock_s() - start)
    return 2 * side**3 / max(best_s, 1e-9) / 1e9


def check_sustained(
    device: ComputeDevice,
    level: Level,
    seed: int,
    progress: Callable[[str], None],
    partial: SustainedResult | None = None,
) -> SustainedResult:
    """Run the sustained phase. Pass `partial` to keep what was measured if the device dies."""
    result = partial if partial is not None else SustainedResult()
    side = throughput_side(device)
    operands = square_operands(side, device.tensor_device)
    window_s = level.sustained_s / level.windows
    telemetry = device.telemetry
    sampler = PowerSampler(telemetry, interval_s=0.25).start()
    start_s = device.clock_s()
    try:
        for i in range(level.windows):
            window_start = device.clock_s()
            gflops = measure_gflops(device, side, operands)
            exact = exact_matmuls(device, "float32", level.probe_matmuls, seed, first_variant=i)
            sample = telemetry.sample()
            device.burn(max(0.0, window_s - (device.clock_s() - window_start)))
            result.windows.append(
                Window(device.clock_s() - start_s, gflops, exact.checked, exact.wrong, sample)
            )
            temp = f", {sample.temperature_c:.0f} °C" if sample.temperature_c is not None else ""
            progress(f"{i + 1}/{level.windows}: {gflops:.1f} GFLOP/s{temp}, {result.wrong} wrong")
    finally:
        result.duration_s = result.windows[-1].end_s if result.windows else 0.0
        result.energy = sampler.stop()
    return result
