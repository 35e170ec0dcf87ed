"""A first-order thermal model: deterministic, advanced in simulated time.

The die temperature relaxes exponentially towards ambient + R·P with time
constant tau. Above `throttle_c` the chip throttles (loses a fraction of its
speed and of its dynamic power) until it cools 5 °C below; at `shutdown_c`
it shuts down. Integrating in steps of at most `MAX_STEP_S` keeps threshold
crossings accurate to well under a second.
"""

from __future__ import annotations

import math

from phalanx.devices.config import PowerCurve, ThermalConfig

MAX_STEP_S = 0.25
THROTTLE_HYSTERESIS_C = 5.0


class ThermalModel:
    def __init__(self, config: ThermalConfig, power: PowerCurve) -> None:
        self.config = config
        self.curve = power
        self.temperature_c = config.ambient_c
        self.throttled = False
        self.power_w = power.idle_w
        self.limit_w: float | None = None  # a power limit caps the draw at full load

    def power_at(self, utilization: float) -> float:
        dynamic_w = self.curve.power_w(utilization, self.limit_w) - self.curve.idle_w
        if self.throttled:
            dynamic_w *= 1.0 - self.config.throttle_slowdown
        return self.curve.idle_w + dynamic_w

    def step(self, dt_s: float, utilization: float) -> float:
        """Advance dt_s (<= MAX_STEP_S for accuracy) at a utilisation; return joules used."""
        cfg = self.config
        self.power_w = self.power_at(utilization)
        target_c = cfg.ambient_c + cfg.resistance_c_per_w * self.power_w
        decay = math.exp(-dt_s / cfg.time_constant_s)
        self.temperature_c = target_c + (self.temperature_c - target_c) * decay
        if self.temperature_c >= cfg.throttle_c:
            self.throttled = True
        elif self.temperature_c < cfg.throttle_c - THROTTLE_HYSTERESIS_C:
            self.throttled = False
        return self.power_w * dt_s

    @property
    def speed_factor(self) -> float:
        return 1.0 - self.config.throttle_slowdown if self.throttled else 1.0

    @property
    def over_shutdown(self) -> bool:
        return self.temperature_c >= self.config.shutdown_c
