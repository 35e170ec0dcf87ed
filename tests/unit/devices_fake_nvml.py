"""A fake `pynvml` module for tests: what NVML would report for one busy, hot GPU."""

from __future__ import annotations

import types
from dataclasses import dataclass

# NVML return codes the fake uses (values from nvml.h); pynvml errors carry them in `.value`.
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
_MESSAGES = {
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
}


class NVMLError(Exception):
    """Like pynvml's: the return code in `.value`, NVML's own wording as the message."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML error {self.value}")


@dataclass
class FakeGpu:
    name: str = "NVIDIA H200"
    total_bytes: int = 150_000_000_000
    free_bytes: int = 140_000_000_000
    power_mw: int = 612_500
    energy_mj: int = 1_000_000
    energy_step_mj: int = 0  # added on every read, so a counter can advance
    temperature_c: int = 83
    sm_mhz: int = 1755
    mem_mhz: int = 2619
    throttle_mask: int = 0x40 | 0x1  # hw thermal slowdown, and idle (ignored)
    limit_mw: int = 700_000
    limit_range_mw: tuple[int, int] = (200_000, 700_000)
    energy_supported: bool = True
    permission: bool = True


def make_pynvml(gpu: FakeGpu, permission: bool | None = None) -> types.ModuleType:
    """A pynvml over `gpu`. `permission` overrides gpu.permission for this module only:
    two modules over one GPU model an unprivileged process and a root helper."""
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    m.calls = []

    def nvmlInit():
        m.calls.append("init")

    def nvmlDeviceGetHandleByIndex(index):
        if index != 0:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return "handle0"

    def nvmlDeviceGetHandleByUUID(uuid):
        return "handle0"

    def energy(handle):
        if not gpu.energy_supported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        gpu.energy_mj += gpu.energy_step_mj
        return gpu.energy_mj

    def set_limit(handle, milliwatts):
        if not (gpu.permission if permission is None else permission):
            raise NVMLError(NVML_ERROR_NO_PERMISSION)
        low_mw, high_mw = gpu.limit_range_mw
        if not low_mw <= milliwatts <= high_mw:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu.limit_mw = milliwatts

    m.nvmlInit = nvmlInit
    m.nvmlDeviceGetHandleByIndex = nvmlDeviceGetHandleByIndex
    m.nvmlDeviceGetHandleByUUID = nvmlDeviceGetHandleByUUID
    m.nvmlDeviceGetCount = lambda: 1
    m.nvmlDeviceGetIndex = lambda h: 0
    m.nvmlDeviceGetName = lambda h: gpu.name.encode()
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        total=gpu.total_bytes, free=gpu.free_bytes, used=gpu.total_bytes - gpu.free_bytes
    )
    m.nvmlDeviceGetPowerUsage = lambda h: gpu.power_mw
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    m.nvmlDeviceGetTemperature = lambda h, sensor: gpu.temperature_c
    m.nvmlDeviceGetTemperatureThreshold = lambda h, kind: {1: 87, 0: 92}[kind]
    m.nvmlDeviceGetClockInfo = lambda h, clock: gpu.sm_mhz if clock == 1 else gpu.mem_mhz
    m.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: gpu.throttle_mask
    m.nvmlDeviceGetPowerManagementLimit = lambda h: gpu.limit_mw
    m.nvmlDeviceGetPowerManagementLimitConstraints = lambda h: gpu.limit_range_mw
    m.nvmlDeviceSetPowerManagementLimit = set_limit
    return m
