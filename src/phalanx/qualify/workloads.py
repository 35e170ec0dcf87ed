"""Sizes of the probe workloads per device, and the host's reference speed."""

from __future__ import annotations

import torch

from phalanx.devices.compute import ComputeDevice
from phalanx.devices.emulated.host import default_host
from phalanx.devices.exact_matmul import is_host_compute


def throughput_side(device: ComputeDevice) -> int:
    if device.config.emulated:
        return 512  # the chip's clock is calibrated: a small op measures it exactly
    return 1024 if is_host_compute(device) else 8192


def square_operands(side: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(side)
    a = torch.randn(side, side, generator=g)
    return a.to(device), a.t().contiguous().to(device)


def host_reference_gflops(side: int = 512) -> float:
    """float32 GFLOP/s of one host thread, on the calibrated clock emulated chips use.

    A device's measured speed is its GFLOP/s over this, so an emulated chip of
    speed 0.5 measures 0.5 (and less when it slows down).
    """
    a, b = square_operands(side, torch.device("cpu"))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, cost_s = default_host().run(
            lambda: a @ b, ("matmul", (side, side), (side, side), torch.float32)
        )
    finally:
        torch.set_num_threads(previous)
    return 2 * side**3 / cost_s / 1e9
