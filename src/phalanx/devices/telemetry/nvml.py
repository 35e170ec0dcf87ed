"""NVIDIA telemetry through NVML (the `pynvml` module of nvidia-ml-py).

pynvml is an optional extra: it is imported on first use, and any failure
(missing module, missing driver library, no permission) leaves NVML
unavailable instead of breaking the caller.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

from phalanx.devices.telemetry.base import Clocks, MemoryInfo, Telemetry, TelemetryUnsupported

_lock = threading.Lock()
_state: dict[str, Any] = {}

# NVML's clock-throttle ("clocks event") reason bits. They are part of the
# NVML ABI, so they are spelled out here rather than looked up by name.
_REASON_BITS: tuple[tuple[int, str], ...] = (
    (0x1, "idle"),
    (0x2, "applications_clocks"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal"),
    (0x40, "hw_thermal"),
    (0x80, "hw_power_brake"),
    (0x100, "display_clocks"),
)
_NVML_TEMPERATURE_GPU = 0
_NVML_THRESHOLD_SLOWDOWN = 1  # NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
_NVML_CLOCK_SM = 1
_NVML_CLOCK_MEM = 2


def load_nvml() -> ModuleType | None:
    """The initialised pynvml module, or None when NVML cannot be used here."""
    with _lock:
        if "module" not in _state:
            try:
                import pynvml

                pynvml.nvmlInit()
                _state["module"] = pynvml
            except Exception:
                _state["module"] = None
        return _state["module"]


def reset_nvml_cache() -> None:
    """Forget the cached import (tests swap in a fake pynvml)."""
    with _lock:
        _state.clear()


def decode_throttle_reasons(mask: int) -> tuple[str, ...]:
    return tuple(name for bit, name in _REASON_BITS if mask & bit)


class NvmlTelemetry(Telemetry):
    source = "nvml"

    def __init__(self, nvml: ModuleType, handle: Any) -> None:
        self.nvml = nvml
        self.handle = handle

    @classmethod
    def open(cls, index: int, uuid: str | None = None) -> NvmlTelemetry | None:
        """NVML telemetry for CUDA device `index`, or None without NVML.

        NVML numbers devices in PCI order while CUDA may not (CUDA_VISIBLE_DEVICES,
        CUDA_DEVICE_ORDER), so the UUID is preferred when torch reports one.
        """
        nvml = load_nvml()
        if nvml is None:
            return None
        try:
            if uuid:
                name = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
                handle = nvml.nvmlDeviceGetHandleByUUID(name)
            else:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:
            return None
        return cls(nvml, handle)

    def model(self) -> str | None:
        name = self.nvml.nvmlDeviceGetName(self.handle)
        return name.decode() if isinstance(name, bytes) else str(name)

    def memory(self) -> MemoryInfo | None:
        info = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
        return MemoryInfo(total_bytes=int(info.total), free_bytes=int(info.free))

    def power_w(self) -> float | None:
        return self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0  # milliwatts

    def energy_j(self) -> float | None:
        # Volta and newer; millijoules since the driver loaded.
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0

    def temperature_c(self) -> float | None:
        return float(self.nvml.nvmlDeviceGetTemperature(self.handle, _NVML_TEMPERATURE_GPU))

    def throttle_temperature_c(self) -> float | None:
        # The board's own slowdown threshold: where it starts to throttle for heat.
        return float(
            self.nvml.nvmlDeviceGetTemperatureThreshold(self.handle, _NVML_THRESHOLD_SLOWDOWN)
        )

    def clocks(self) -> Clocks | None:
        sm = self.nvml.nvmlDeviceGetClockInfo(self.handle, _NVML_CLOCK_SM)
        mem = self.nvml.nvmlDeviceGetClockInfo(self.handle, _NVML_CLOCK_MEM)
        return Clocks(compute_mhz=float(sm), memory_mhz=float(mem))

    def throttle_reasons(self) -> tuple[str, ...] | None:
        # Renamed "clocks event reasons" in newer NVML; the old name remains in older ones.
        query = (
            getattr(self.nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or self.nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        reasons = decode_throttle_reasons(int(query(self.handle)))
        return tuple(r for r in reasons if r != "idle")

    def power_limit_w(self) -> float | None:
        return self.nvml.nvmlDeviceGetPowerManagementLimit(self.handle) / 1000.0

    def power_limit_range_w(self) -> tuple[float, float]:
        low_mw, high_mw = self.nvml.nvmlDeviceGetPowerManagementLimitConstraints(self.handle)
        return low_mw / 1000.0, high_mw / 1000.0

    def can_set_power_limit(self) -> bool:
        # Setting needs root; the constraints query at least tells us the knob exists.
        self.power_limit_range_w()
        return True

    def set_power_limit_w(self, watts: float) -> None:
        low, high = self.power_limit_range_w()
        if not low <= watts <= high:
            raise TelemetryUnsupported(
                f"nvml: power limit {watts:g} W outside [{low:g}, {high:g}] W"
            )
        try:
            self.nvml.nvmlDeviceSetPowerManagementLimit(self.handle, int(watts * 1000))
        except Exception as err:
            raise TelemetryUnsupported(f"nvml: cannot set power limit: {err}") from err
