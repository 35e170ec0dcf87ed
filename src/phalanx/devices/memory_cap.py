"""How much device memory training may use, and holding a process to it.

`phalanx qualify` writes the device bytes its memory check tested as
`usable_memory_bytes` in `[device.qualification]`: memory that was never
tested must not train. Everything that reads a fleet file asks
`usable_memory_bytes(device)` instead of reading `memory_bytes`: the planner
sizes replicas and micro-batches with it, and a worker calls
`apply_memory_cap` once, before it allocates its model, so that the
allocator refuses to go past the cap (an out-of-memory error, which fails
the step like any other, rather than training on untested memory).

On a real device the cap bounds how many bytes the process holds, not which
physical pages the driver hands it; that is why `--level standard` tests all
the memory that is free (docs/qualification.md). Host memory (cpu, mps) is
never capped: the OS places pages anywhere in RAM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from phalanx.devices.config import DeviceConfig
from phalanx.devices.fleet_parse import parse_device

if TYPE_CHECKING:
    import torch

GIB = 2**30

# torch device type -> the torch module whose allocator takes a per-process limit.
# (torch.npu exists once torch_npu is imported; a missing module means "cannot cap".)
_ALLOCATOR_MODULES = {"cuda": "cuda", "xpu": "xpu", "npu": "npu"}


class MemoryCapExceeded(RuntimeError):
    """A share or micro-batch would need more memory than qualification allows."""


def usable_memory_bytes(device: DeviceConfig) -> int | None:
    """Bytes of device memory training may use; None when nothing is known.

    The qualification's cap when it has one, else the device's memory_bytes
    (host memory, or a fleet file written before caps existed).
    """
    q = device.qualification
    cap = q.usable_memory_bytes if q is not None else None
    if cap is None:
        return device.memory_bytes
    return cap if device.memory_bytes is None else min(cap, device.memory_bytes)


def usable_memory_of_table(table: Mapping[str, Any]) -> int | None:
    """`usable_memory_bytes` of one `[[device]]` table as a dict (what a worker is handed).

    The table is validated as a fleet file's would be: a bad value is a
    UsageError naming the field.
    """
    return usable_memory_bytes(parse_device(dict(table), 0))


def apply_memory_cap(device: torch.device | str, usable_bytes: int | None) -> float | None:
    """Hold this process's allocations on `device` to `usable_bytes`.

    Returns the fraction of the device's memory now allowed, or None when
    nothing was capped: no cap given, host memory (cpu, mps; emulated chips
    compute there too), or a backend whose allocator takes no per-process
    limit. The caller should say so in its log when it had a cap to apply.
    """
    import torch  # here, not above: the planner reads caps and must not import torch

    d = torch.device(device)
    if usable_bytes is None or d.type not in _ALLOCATOR_MODULES:
        return None
    module = getattr(torch, _ALLOCATOR_MODULES[d.type], None)
    set_fraction = getattr(module, "set_per_process_memory_fraction", None)
    properties = getattr(module, "get_device_properties", None)
    if set_fraction is None or properties is None:
        return None
    total_bytes = int(properties(d).total_memory)
    fraction = min(1.0, usable_bytes / total_bytes)
    set_fraction(fraction, d)
    return fraction


def check_within_cap(device_id: str, usable_bytes: int | None, need_bytes: int, what: str) -> None:
    """Refuse work whose memory need exceeds the cap (emulated chips have no allocator to do it).

    `what` names the work in the message, e.g. "a share of 96 samples".
    """
    if usable_bytes is not None and need_bytes > usable_bytes:
        raise MemoryCapExceeded(
            f"{device_id}: {what} needs {need_bytes / GIB:.2f} GiB, more than the "
            f"{usable_bytes / GIB:.2f} GiB qualification tested and allows"
        )
