"""The replica's own device, watched while it trains: telemetry, energy, re-screening.

For an emulated chip this is its model from fleet.toml (or `--emulate`): its
power curve, thermal state and defects advance with the replica's measured
compute time (load) and the rest of each step (idle), in the chip's own
time (wall time undone of the emulation's common slow-down). A real device
reports what its vendor library can read (NVML, amdsmi, RAPL); missing
sensors stay None rather than 0.

Re-screening runs `phalanx.devices.probe.correctness_probe` every N seconds:
a chip that started to compute wrong answers (hot, or after long load) fails.
"""

from __future__ import annotations

import time
from typing import Any

from phalanx.devices.energy import RunEnergy
from phalanx.devices.probe import ProbeResult, correctness_probe


class DeviceMonitor:
    def __init__(
        self,
        device_table: dict[str, Any],
        index: int,
        time_scale: float = 1.0,
        rescreen_every_s: float | None = None,
        power_limit_w: float | None = None,
        host_share: float = 1.0,
    ) -> None:
        from phalanx.devices.compute import open_device
        from phalanx.devices.fleet_parse import parse_device

        config = parse_device(device_table, index)
        self.device_id, self.device_kind = config.id, config.kind
        # time_scale 0: the emulated chip's clock advances without wall-clock waits.
        self.device = open_device(config, seed=index, time_scale=0.0)
        self.time_scale = time_scale
        self.rescreen_every_s = rescreen_every_s
        self._last_probe_s = time.monotonic()
        self._telemetry = self.device.telemetry
        self._busy_power_w: float | None = None
        self._mean_power_w: float | None = None
        self._last_energy_j: float | None = None
        # A real device's energy since the run started (its counter has its own origin).
        self._run_energy = None if config.emulated else RunEnergy(self._telemetry, host_share)
        # What this device cannot do here: said once, then the run carries on without it.
        self.notes: list[str] = []
        if power_limit_w is not None:
            try:
                self._telemetry.set_power_limit_w(power_limit_w)
            except Exception as err:  # no permission, no such knob, out of the board's range
                self.notes.append(
                    f"cannot set a power limit of {power_limit_w:g} W ({err}), "
                    "it runs at its own limit"
                )

    def speed_factor(self) -> float:
        """Fraction of full speed right now: power limit, thermal throttling, heat defects."""
        factor = getattr(self.device, "speed_factor", None)
        return float(factor()) if factor is not None else 1.0

    def throttle_c(self) -> float | None:
        try:
            return self._telemetry.throttle_temperature_c()
        except Exception:  # an unreadable threshold means no thermal guard, not a crash
            return None

    def step_done(self, compute_s: float, step_s: float) -> None:
        """Account one step: compute time under load, the rest of the step idle."""
        advance = getattr(self.device, "advance_load", None)
        if advance is None:  # a real device: its own sensors
            if self._run_energy is not None:
                self._run_energy.step_done(step_s)
                self._mean_power_w = self._run_energy.mean_power_w
            return
        busy_s = max(0.0, compute_s) * self.time_scale
        idle_s = max(0.0, step_s - compute_s) * self.time_scale
        if busy_s:
            advance(busy_s)
            # The draw while computing: what a power budget must hold (the end-of-step
            # reading is the idle draw, which says nothing about the peak).
            self._busy_power_w = self._telemetry.power_w()
        if idle_s:
            advance(idle_s, utilization=0.0)
        energy_j = self._telemetry.energy_j()
        if self._last_energy_j is not None and energy_j is not None and busy_s + idle_s > 0:
            # The step's mean draw: what a power plot should show (an instantaneous
            # reading at the end of a step only ever sees the idle wait).
            self._mean_power_w = (energy_j - self._last_energy_j) / (busy_s + idle_s)
        self._last_energy_j = energy_j

    def readings(self) -> dict[str, float | None]:
        def read(name: str) -> float | None:
            try:
                value = getattr(self._telemetry, name)()
            except Exception:  # a sensor that fails reads as absent, never as a crash
                return None
            return None if value is None else round(float(value), 3)

        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        # A real device's counter has an origin of its own: its energy is the run's account.
        run = self._run_energy
        return {
            "temperature_c": read("temperature_c"),
            "power_w": read("power_w"),
            "energy_j": read("energy_j") if run is None else rounded(run.energy_j),
            "power_limit_w": read("power_limit_w"),
            "busy_power_w": rounded(self._busy_power_w),
            "mean_power_w": rounded(self._mean_power_w),
        }

    def missing_sensors(self, readings: dict[str, float | None]) -> list[str]:
        """What a real device could not report in its first step (said once)."""
        if self._run_energy is None:
            return []
        missing = []
        if readings.get("energy_j") is None:
            missing.append("no power or energy sensor readable, its energy is not counted")
        if readings.get("temperature_c") is None:
            missing.append("no temperature sensor readable, the thermal guard does not watch it")
        return missing

    def rescreen_due(self) -> bool:
        return self.rescreen_every_s is not None and (
            time.monotonic() - self._last_probe_s >= self.rescreen_every_s
        )

    def probe(self) -> ProbeResult:
        self._last_probe_s = time.monotonic()
        return correctness_probe(self.device)
