"""The compute interface qualification (and the SDC guard) drive a device through.

`ComputeDevice` is implemented by `TorchCompute` for real devices and by
`EmulatedChip` for emulated ones, so every check runs the same code on both.
Tensors given to a device must already be on `tensor_device`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Protocol, TypeVar

import torch

from phalanx.devices.config import DeviceConfig
from phalanx.devices.memory_window import MemoryWindow, TorchMemoryWindow
from phalanx.devices.telemetry import Telemetry, telemetry_for

T = TypeVar("T")


class ComputeDevice(Protocol):
    config: DeviceConfig
    tensor_device: torch.device

    @property
    def telemetry(self) -> Telemetry: ...

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor: ...

    def conv2d(self, x: torch.Tensor, w: torch.Tensor, padding: int = 1) -> torch.Tensor: ...

    def run(self, fn: Callable[[], T], cost_key: Hashable | None = None) -> T: ...

    def clock_s(self) -> float:
        """The device's clock: wall time for real devices, chip time for emulated ones."""
        ...

    def burn(self, seconds: float) -> None:
        """Keep the device under full load for `seconds` of its clock."""
        ...

    def synchronize(self) -> None: ...

    def free_memory_bytes(self) -> int | None: ...

    def memory_window(self, size_bytes: int, max_tested_bytes: int) -> MemoryWindow: ...

    def release_memory(self, window: MemoryWindow) -> None: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


class TorchCompute:
    """A real device driven through torch (cpu, cuda, rocm, xpu, mps, npu)."""

    def __init__(self, config: DeviceConfig) -> None:
        self.config = config
        self.tensor_device = torch.device(config.torch_device)
        # Fail here, with the device's own error, rather than in the middle of a check.
        torch.empty(1, device=self.tensor_device)
        self._telemetry = telemetry_for(config)
        self._cancelled = False
        self._burn_operands: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def telemetry(self) -> Telemetry:
        return self._telemetry

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    def conv2d(self, x: torch.Tensor, w: torch.Tensor, padding: int = 1) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, w, padding=padding)

    def run(self, fn: Callable[[], T], cost_key: Hashable | None = None) -> T:
        return fn()

    def synchronize(self) -> None:
        kind = self.tensor_device.type
        if kind == "cpu":
            return
        if kind == "mps":
            torch.mps.synchronize()
            return
        getattr(torch, kind).synchronize(self.tensor_device)

    def clock_s(self) -> float:
        self.synchronize()
        return time.perf_counter()

    def _burn_pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._burn_operands is None:
            # Big enough to saturate an accelerator, small enough for a CPU to
            # check the deadline several times a second.
            side = 1024 if self.tensor_device.type == "cpu" else 8192
            dtype = torch.float32 if self.tensor_device.type == "cpu" else torch.float16
            g = torch.Generator(device="cpu").manual_seed(1234)
            a = torch.randn(side, side, generator=g).to(self.tensor_device, dtype)
            self._burn_operands = (a, a.t().contiguous())
        return self._burn_operands

    def burn(self, seconds: float) -> None:
        a, b = self._burn_pair()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline and not self._cancelled:
            a @ b
            self.synchronize()

    def free_memory_bytes(self) -> int | None:
        if self.tensor_device.type == "cuda":
            # Blocks torch keeps cached from earlier checks count as used in the driver's
            # figure; hand them back so the memory check can test (and admit) them too.
            torch.cuda.empty_cache()
        info = self._telemetry.memory()
        return info.free_bytes if info else None

    def memory_window(self, size_bytes: int, max_tested_bytes: int) -> MemoryWindow:
        return TorchMemoryWindow(self.tensor_device, min(size_bytes, max_tested_bytes))

    def release_memory(self, window: MemoryWindow) -> None:
        window.release()
        if self.tensor_device.type == "cuda":
            torch.cuda.empty_cache()

    def cancel(self) -> None:
        self._cancelled = True

    def close(self) -> None:
        self._burn_operands = None
        self._telemetry.close()


def open_device(config: DeviceConfig, *, seed: int = 0, time_scale: float = 1.0) -> ComputeDevice:
    """A ComputeDevice for a fleet entry. `time_scale` only affects emulated chips."""
    if config.emulated:
        from phalanx.devices.emulated import EmulatedChip

        return EmulatedChip(config, seed=seed, time_scale=time_scale)
    return TorchCompute(config)
