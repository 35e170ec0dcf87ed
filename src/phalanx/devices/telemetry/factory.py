"""Pick the best telemetry for a real device: vendor library first, torch as fallback."""

from __future__ import annotations

from phalanx.devices.config import DeviceConfig
from phalanx.devices.telemetry.amd import AmdSmiTelemetry
from phalanx.devices.telemetry.base import ChainTelemetry, Telemetry
from phalanx.devices.telemetry.host_cpu import HostCpuTelemetry
from phalanx.devices.telemetry.nvml import NvmlTelemetry
from phalanx.devices.telemetry.torch_memory import TorchMemoryTelemetry


def _cuda_uuid(index: int) -> str | None:
    try:
        import torch

        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        return str(uuid) if uuid else None
    except Exception:
        return None


def telemetry_for(device: DeviceConfig) -> Telemetry:
    """Telemetry for a real device. Emulated chips bring their own (see EmulatedChip)."""
    if device.kind == "cpu":
        return HostCpuTelemetry()
    parts: list[Telemetry] = []
    if device.kind == "cuda":
        nvml = NvmlTelemetry.open(device.index, _cuda_uuid(device.index))
        if nvml is not None:
            parts.append(nvml)
    elif device.kind == "rocm":
        amd = AmdSmiTelemetry.open(device.index)
        if amd is not None:
            parts.append(amd)
    if device.kind != "emulated":
        parts.append(TorchMemoryTelemetry(device.kind, device.index))
    return ChainTelemetry(*parts)
