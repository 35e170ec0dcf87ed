"""`phalanx run --devices auto|LIST`: one replica per device, each bound to its own.

`auto` takes every accelerator `phalanx fleet scan` finds (and no CPU); a
list names torch devices, e.g. `cuda:0,cuda:1,npu:0,cpu`. A device named
twice is an error, except `cpu`: several CPU replicas share the host, each
with its fair part of the cores (one intra-op thread each would leave most
of a many-core host idle; all of them each would oversubscribe it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from phalanx.errors import UsageError

ACCELERATOR_TYPES = ("cuda", "xpu", "npu", "mps")
FIX = "name torch devices, e.g. --devices cuda:0,cuda:1,cpu (or auto)"


@dataclass(frozen=True)
class Placement:
    device: str  # the torch device string, e.g. "cuda:1" or "cpu"
    kind: str  # what rounds alike: the device type ("cuda", "cpu", ...)
    threads: int  # intra-op threads for this replica


def fair_threads(cpu_replicas: int, host_cores: int | None = None) -> int:
    """Intra-op threads for each of `cpu_replicas` plain CPU replicas sharing this host."""
    cores = host_cores or os.cpu_count() or 1
    return max(1, cores // max(1, cpu_replicas))


def _available(device_type: str, index: int) -> bool:
    import torch

    if device_type == "cpu":
        return True
    if device_type == "mps":
        return bool(torch.backends.mps.is_available()) and index == 0
    module = getattr(torch, device_type, None)
    try:
        return module is not None and module.is_available() and index < module.device_count()
    except Exception:  # a half-installed vendor plugin has no such device
        return False


def _parse_one(text: str, spec: str) -> tuple[str, int]:
    device_type, _, index_text = text.strip().partition(":")
    if device_type not in (*ACCELERATOR_TYPES, "cpu"):
        raise UsageError("--devices", f"unknown device type {device_type!r}", FIX, spec)
    if device_type == "cpu":
        if index_text:
            raise UsageError("--devices", "cpu takes no index", "write cpu", spec)
        return "cpu", 0
    if index_text and not index_text.isdigit():
        raise UsageError("--devices", f"bad device index in {text!r}", FIX, spec)
    return device_type, int(index_text or 0)


def place(spec: str, host_cores: int | None = None) -> list[Placement]:
    """The replicas' devices for `--devices SPEC`."""
    names: list[tuple[str, int]] = []
    if spec.strip() == "auto":
        from phalanx.devices.discovery import discover

        found = [d for d in discover(include_cpu=False).devices if d.kind != "cpu"]
        if not found:
            raise UsageError(
                "--devices auto", "found no accelerator on this host",
                "pass --devices cpu (or cpu,cpu for two CPU replicas)", spec,
            )  # fmt: skip
        names = [_parse_one(d.torch_device, spec) for d in found]
    else:
        names = [_parse_one(item, spec) for item in spec.split(",") if item.strip()]
        if not names:
            raise UsageError("--devices", "is empty", FIX, spec)
    seen = [n for n in names if n[0] != "cpu"]
    if len(set(seen)) < len(seen):
        raise UsageError("--devices", "names an accelerator twice", "name each device once", spec)
    for device_type, index in names:
        if not _available(device_type, index):
            label = device_type if device_type == "cpu" else f"{device_type}:{index}"
            raise UsageError(
                "--devices", f"{label} is not available on this host",
                "check `phalanx fleet scan`, or name another device", spec,
            )  # fmt: skip
    threads = fair_threads(sum(1 for t, _ in names if t == "cpu"), host_cores)
    placements = []
    for device_type, index in names:
        if device_type == "cpu":
            placements.append(Placement("cpu", "cpu", threads))
        else:
            placements.append(Placement(f"{device_type}:{index}", device_type, 1))
    return placements


def device_table(placement: Placement, position: int) -> dict[str, object]:
    """The `[[device]]` table a replica's device monitor reads: kind and index, so it
    finds the device's own sensors (NVML, amdsmi, RAPL) during training."""
    device_type, _, index_text = placement.device.partition(":")
    kind = device_type
    if device_type == "cuda":
        import torch

        kind = "rocm" if getattr(torch.version, "hip", None) else "cuda"
    index = int(index_text or 0)
    name = f"cpu{position}" if device_type == "cpu" else f"{kind}{index}"
    return {"id": name, "kind": kind, "index": index}


def bind(device: str) -> None:
    """Make `device` this process's current device (kernels and allocations go there)."""
    import torch

    # Parsed by hand: a vendor type (npu) is only known to torch once its plugin is imported.
    device_type, _, index_text = device.partition(":")
    if device_type == "cpu" or not index_text.isdigit():
        return
    index = int(index_text)
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "set_device_index"):
        accelerator.set_device_index(index)
        return
    module = getattr(torch, device_type, None)
    if module is not None and hasattr(module, "set_device"):
        module.set_device(index)


def bind_with_cap(device: str, table: Mapping[str, Any] | None) -> None:
    """Bind `device`; with its `[[device]]` table, cap its memory to what qualification
    tested (memory it never tested must not train: devices/memory_cap.py)."""
    bind(device)
    if table:
        from phalanx.devices.memory_cap import apply_memory_cap, usable_memory_of_table

        apply_memory_cap(device, usable_memory_of_table(table))
