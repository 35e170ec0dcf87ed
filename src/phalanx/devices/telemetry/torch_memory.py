"""Memory telemetry from torch itself, for devices without a vendor library here."""

from __future__ import annotations

from phalanx.devices.telemetry.base import MemoryInfo, Telemetry


class TorchMemoryTelemetry(Telemetry):
    source = "torch"

    def __init__(self, kind: str, index: int) -> None:
        self.kind = kind
        self.index = index

    def memory(self) -> MemoryInfo | None:
        import torch

        if self.kind == "mps":
            total = int(torch.mps.recommended_max_memory())
            return MemoryInfo(
                total_bytes=total,
                free_bytes=max(total - int(torch.mps.driver_allocated_memory()), 0),
            )
        module = {"cuda": torch.cuda, "rocm": torch.cuda}.get(self.kind) or getattr(
            torch, self.kind, None
        )
        mem_get_info = getattr(module, "mem_get_info", None)
        if mem_get_info is None:
            return None
        free, total = mem_get_info(self.index)
        return MemoryInfo(total_bytes=int(total), free_bytes=int(free))
