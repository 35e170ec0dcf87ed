"""Find every device torch can drive on this host.

Each backend is probed on its own and any failure there (a missing driver,
a half-installed plugin) only means that backend has no devices: discovery
never raises because one vendor stack is broken.
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from phalanx.devices.config import DeviceConfig
from phalanx.devices.specs import ChipSpec, spec_for
from phalanx.devices.telemetry import telemetry_for


@dataclass
class Discovery:
    devices: list[DeviceConfig] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why a backend found nothing


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _host_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def spec_fields(spec: ChipSpec | None) -> dict[str, float]:
    if spec is None:
        return {}
    return {
        "peak_flops_float32": spec.peak_flops_float32,
        "peak_flops_bfloat16": spec.peak_flops_bfloat16,
        "peak_flops_float16": spec.peak_flops_float16,
        "memory_bandwidth_bytes_s": spec.memory_bandwidth_bytes_s,
        "tdp_w": spec.tdp_w,
    }


def _cuda_like(kind: str, found: Discovery) -> None:
    import torch

    if not torch.cuda.is_available():
        found.notes.append(f"{kind}: torch.cuda.is_available() is False")
        return
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        found.devices.append(
            DeviceConfig(
                id=f"{kind}{index}",
                kind=kind,
                index=index,
                model=props.name,
                memory_bytes=int(props.total_memory),
            )
        )


def _generic(kind: str, found: Discovery) -> None:
    import torch

    module = getattr(torch, kind, None)
    if module is None or not module.is_available():
        found.notes.append(f"{kind}: not available in this torch")
        return
    for index in range(module.device_count()):
        props = module.get_device_properties(index)
        memory = getattr(props, "total_memory", None)
        found.devices.append(
            DeviceConfig(
                id=f"{kind}{index}",
                kind=kind,
                index=index,
                model=str(props.name),
                memory_bytes=int(memory) if memory else None,
            )
        )


def _npu(found: Discovery) -> None:
    try:
        import torch_npu  # noqa: F401  (registers torch.npu)
    except Exception:
        found.notes.append("npu: torch_npu is not installed")
        return
    import torch

    npu: Any = getattr(torch, "npu")  # noqa: B009  (an attribute torch_npu adds at import)
    for index in range(npu.device_count()):
        found.devices.append(
            DeviceConfig(
                id=f"npu{index}",
                kind="npu",
                index=index,
                model=str(npu.get_device_name(index)),
            )
        )


def _mps(found: Discovery) -> None:
    import torch

    if not torch.backends.mps.is_available():
        found.notes.append("mps: not available")
        return
    found.devices.append(
        DeviceConfig(id="mps0", kind="mps", index=0, model=f"Apple {platform.machine()} GPU")
    )


def discover(include_cpu: bool | None = None) -> Discovery:
    """Devices of this host. The CPU is listed when asked, or when nothing else is found."""
    import torch

    found = Discovery()
    gpu_kind = "rocm" if getattr(torch.version, "hip", None) else "cuda"
    probes = [
        (gpu_kind, lambda: _cuda_like(gpu_kind, found)),
        ("xpu", lambda: _generic("xpu", found)),
        ("mps", lambda: _mps(found)),
        ("npu", lambda: _npu(found)),
    ]
    for name, probe in probes:
        try:
            probe()
        except Exception as err:  # a broken backend must not hide the others
            found.notes.append(f"{name}: probe failed: {type(err).__name__}: {err}")
    if include_cpu or (include_cpu is None and not found.devices):
        found.devices.append(
            DeviceConfig(
                id="cpu0",
                kind="cpu",
                index=0,
                model=cpu_model_name(),
                memory_bytes=_host_memory_bytes(),
            )
        )
    host = socket.gethostname()
    found.devices = [_describe(replace(d, host=host)) for d in found.devices]
    return found


def _describe(device: DeviceConfig) -> DeviceConfig:
    """Add capabilities (probed) and datasheet facts (by exact model name)."""
    telemetry = telemetry_for(device)
    try:
        capabilities = telemetry.capabilities()
        memory = telemetry.sample_memory() if device.memory_bytes is None else None
    finally:
        telemetry.close()
    return replace(
        device,
        capabilities=capabilities,
        spec=spec_fields(spec_for(device.model)),
        memory_bytes=device.memory_bytes if memory is None else memory.total_bytes,
    )
