"""Telemetry read from an emulated chip's simulated state, stamped in chip time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from phalanx.devices.emulated.chip import NOMINAL_CLOCK_MHZ
from phalanx.devices.telemetry.base import Clocks, MemoryInfo, Telemetry, TelemetryUnsupported

if TYPE_CHECKING:
    from phalanx.devices.emulated.chip import EmulatedChip


class EmulatedTelemetry(Telemetry):
    source = "emulated"

    def __init__(self, chip: EmulatedChip) -> None:
        self.chip = chip

    def now_s(self) -> float:
        return self.chip.now_s

    def memory(self) -> MemoryInfo | None:
        return MemoryInfo(
            total_bytes=self.chip.memory_bytes, free_bytes=self.chip.free_memory_bytes()
        )

    def power_w(self) -> float | None:
        return self.chip.thermal.power_w

    def energy_j(self) -> float | None:
        return self.chip.energy_j

    def temperature_c(self) -> float | None:
        return self.chip.thermal.temperature_c

    def clocks(self) -> Clocks | None:
        # A throttled chip lowers its clock; a heat-slowed defective one does not
        # (the defect is silent: only the measured throughput shows it).
        return Clocks(
            compute_mhz=NOMINAL_CLOCK_MHZ * self.chip.thermal.speed_factor, memory_mhz=None
        )

    def throttle_reasons(self) -> tuple[str, ...] | None:
        return ("sw_thermal",) if self.chip.thermal.throttled else ()

    def throttle_temperature_c(self) -> float | None:
        return self.chip.thermal.config.throttle_c

    def power_limit_w(self) -> float | None:
        return self.chip.power_limit_w

    def power_limit_range_w(self) -> tuple[float, float]:
        curve = self.chip.thermal.curve
        return curve.lowest_limit_w, curve.max_w

    def can_set_power_limit(self) -> bool:
        return self.chip.thermal.curve.limit_control

    def set_power_limit_w(self, watts: float) -> None:
        if not self.can_set_power_limit():
            super().set_power_limit_w(watts)
        try:
            self.chip.set_power_limit_w(watts)
        except ValueError as err:
            raise TelemetryUnsupported(str(err)) from err
