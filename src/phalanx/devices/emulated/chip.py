"""An emulated accelerator: computes on the host CPU, behaves like a chip.

Speed: an op lasts (its calibrated host cost) / (speed × heat factors) in
chip time, and the wall clock is padded to match (times `time_scale`, so
tests can run chip time faster than real time; 0 means never wait).

State advances in chip time only, deterministically for a seed: temperature
(thermal model), load seconds, energy. Defects act on that state: bit flips
in matmul/conv outputs, intermittent flips after load or heat, slow-down
under heat, a crash after some load, stuck bits in bad memory regions.

The small API (matmul, conv2d, run, advance_load, memory_window, telemetry)
is what qualification, the SDC guard and the runtime share.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np
import torch

from phalanx.devices.config import (
    DEFAULT_EMULATED_MEMORY_BYTES,
    DeviceConfig,
    PowerCurve,
    ThermalConfig,
)
from phalanx.devices.emulated.host import HostCPU, default_host
from phalanx.devices.emulated.memory import EmulatedMemoryWindow
from phalanx.devices.emulated.thermal import MAX_STEP_S, ThermalModel
from phalanx.devices.memory_window import MemoryWindow
from phalanx.faults.bitflip import flip_random_bits

T = TypeVar("T")
NOMINAL_CLOCK_MHZ = 1500.0


class DeviceCrashed(RuntimeError):
    """The chip stopped working; every later call raises this again."""


class DeviceCancelled(RuntimeError):
    """Someone (a watchdog, Ctrl-C) asked the chip to stop waiting."""


class EmulatedChip:
    def __init__(
        self,
        config: DeviceConfig,
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        host: HostCPU | None = None,
    ) -> None:
        if config.kind != "emulated":
            raise ValueError(f"{config.id} is a {config.kind} device, not an emulated one")
        self.config = config
        self.speed = config.speed or 1.0
        self.defects = config.defects
        self.time_scale = time_scale
        self.host = host or default_host()
        id_hash = zlib.crc32(config.id.encode())  # stable across processes, unlike hash()
        self.rng = np.random.default_rng([seed, id_hash, config.seed or 0])
        self.thermal = ThermalModel(config.thermal or ThermalConfig(), config.power or PowerCurve())
        self.now_s = 0.0  # chip time since power-on
        self.load_s = 0.0  # chip time spent under load
        self.energy_j = 0.0
        self.flips_injected = 0
        self.crashed: str | None = None
        self.memory_in_use_bytes = 0
        self._cancel = threading.Event()
        self._state = threading.Lock()

    # -- the compute API ---------------------------------------------------

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        key = ("matmul", tuple(a.shape), tuple(b.shape), a.dtype)
        return self._compute(lambda: a @ b, key, corrupt=True)

    def conv2d(self, x: torch.Tensor, w: torch.Tensor, padding: int = 1) -> torch.Tensor:
        key = ("conv2d", tuple(x.shape), tuple(w.shape), x.dtype, padding)
        return self._compute(
            lambda: torch.nn.functional.conv2d(x, w, padding=padding), key, corrupt=True
        )

    def run(self, fn: Callable[[], T], cost_key: Hashable | None = None) -> T:
        """Any work (a training step, say) at this chip's speed; no defects applied.

        Give a cost_key for repeatable work so its chip time is calibrated.
        """
        return self._compute(fn, cost_key, corrupt=False)

    def advance_load(self, seconds: float, utilization: float = 1.0) -> None:
        """Stay under load for `seconds` of chip time without computing on the host.

        This is how sustained load is emulated: the chip heats, accumulates
        load time, may start failing or crash, while the host stays free.
        """
        wall_start = time.perf_counter()
        before_s = self.now_s
        try:
            self._advance(seconds, utilization)
        finally:
            self._pace(self.now_s - before_s, wall_start)

    def idle(self, seconds: float) -> None:
        self.advance_load(seconds, utilization=0.0)

    def memory_window(self, size_bytes: int, max_tested_bytes: int) -> EmulatedMemoryWindow:
        self._check_alive()
        size_bytes = min(size_bytes, self.free_memory_bytes())
        window = EmulatedMemoryWindow(
            size_bytes, max_tested_bytes, self.defects.bad_memory, self.rng
        )
        self.memory_in_use_bytes += size_bytes
        return window

    def release_memory(self, window: MemoryWindow) -> None:
        self.memory_in_use_bytes = max(0, self.memory_in_use_bytes - window.size_bytes)
        window.release()

    def cancel(self) -> None:
        self._cancel.set()

    # -- the ComputeDevice protocol (see devices/compute.py) ---------------

    tensor_device = torch.device("cpu")

    def clock_s(self) -> float:
        return self.now_s

    def burn(self, seconds: float) -> None:
        self.advance_load(seconds)

    def synchronize(self) -> None:
        return None

    def close(self) -> None:
        return None

    # -- state -------------------------------------------------------------

    @property
    def memory_bytes(self) -> int:
        # As a fleet file without memory_bytes gives it: a chip built in code has memory too.
        return self.config.memory_bytes or DEFAULT_EMULATED_MEMORY_BYTES

    def free_memory_bytes(self) -> int:
        return max(0, self.memory_bytes - self.memory_in_use_bytes)

    @property
    def temperature_c(self) -> float:
        return self.thermal.temperature_c

    def heat_slowed(self) -> bool:
        slow = self.defects.heat_slowdown
        return slow is not None and self.thermal.temperature_c >= slow.above_c

    @property
    def power_limit_w(self) -> float | None:
        return self.thermal.limit_w

    def set_power_limit_w(self, watts: float | None) -> None:
        """Cap the draw at full load (None: no cap); speed follows the power curve."""
        curve = self.thermal.curve
        if watts is not None and not curve.lowest_limit_w <= watts <= curve.max_w:
            raise ValueError(
                f"{self.config.id}: power limit {watts:g} W outside "
                f"[{curve.lowest_limit_w:g}, {curve.max_w:g}] W"
            )
        self.thermal.limit_w = watts

    def speed_factor(self) -> float:
        """The fraction of nominal speed the chip runs at right now."""
        factor = self.thermal.speed_factor * self.thermal.curve.speed_at_limit(self.power_limit_w)
        if self.heat_slowed():
            assert self.defects.heat_slowdown is not None
            factor *= 1.0 - self.defects.heat_slowdown.fraction
        return factor

    def current_flip_rate(self) -> float:
        rate = self.defects.flip_rate
        fault = self.defects.intermittent
        if fault is not None:
            after_load = fault.after_load_s is not None and self.load_s >= fault.after_load_s
            hot = fault.above_c is not None and self.thermal.temperature_c >= fault.above_c
            if after_load or hot:
                rate += fault.flip_rate
        return rate

    @property
    def telemetry(self):  # type: ignore[no-untyped-def]
        from phalanx.devices.emulated.telemetry import EmulatedTelemetry

        return EmulatedTelemetry(self)

    # -- internals ---------------------------------------------------------

    def _check_alive(self) -> None:
        if self.crashed is not None:
            raise DeviceCrashed(self.crashed)

    def _compute(self, fn: Callable[[], Any], cost_key: Hashable | None, corrupt: bool) -> Any:
        self._check_alive()
        wall_start = time.perf_counter()
        result, cost_s = self.host.run(fn, cost_key)
        duration_s = cost_s / (self.speed * self.speed_factor())
        before_s = self.now_s
        try:
            self._advance(duration_s, 1.0)
            if corrupt and isinstance(result, torch.Tensor):
                with self._state:
                    self.flips_injected += flip_random_bits(
                        result, self.current_flip_rate(), self.rng
                    )
        finally:
            self._pace(self.now_s - before_s, wall_start)
        return result

    def _advance(self, seconds: float, utilization: float) -> None:
        self._check_alive()
        crash_at_s = self.defects.crash_after_load_s
        remaining = seconds
        while remaining > 0:
            step = min(remaining, MAX_STEP_S)
            if crash_at_s is not None and utilization > 0:
                step = min(step, max(crash_at_s - self.load_s, 0.0))
            with self._state:
                self.energy_j += self.thermal.step(step, utilization)
                self.now_s += step
                if utilization > 0:
                    self.load_s += step
            remaining -= step
            if crash_at_s is not None and utilization > 0 and self.load_s >= crash_at_s:
                self.crashed = f"crashed after {self.load_s:.1f} s of load"
            elif self.thermal.over_shutdown:
                self.crashed = f"thermal shutdown at {self.thermal.temperature_c:.1f} °C after {self.load_s:.1f} s of load"
            self._check_alive()

    def _pace(self, chip_s: float, wall_start: float) -> None:
        """Make the wall clock catch up with chip time (scaled)."""
        if self.time_scale <= 0:
            return
        wait_s = chip_s * self.time_scale - (time.perf_counter() - wall_start)
        if wait_s > 0 and self._cancel.wait(wait_s):
            raise DeviceCancelled("cancelled")
