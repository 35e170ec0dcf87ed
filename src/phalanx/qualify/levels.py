"""Qualification levels: how hard and how long each check runs.

Durations are in the device's own clock: wall time for real devices, chip
time for emulated ones (which `--time-scale` maps onto the wall clock).
"""

from __future__ import annotations

from dataclasses import dataclass

from phalanx.errors import UsageError

MIB = 2**20
GIB = 2**30


@dataclass(frozen=True)
class Level:
    name: str
    exact_elements: int  # matmul outputs checked bit-exactly, per dtype
    tolerance_repeats: int  # random-input matmul + conv checks per dtype
    # Of the device's free memory. What is tested is all a device may use in
    # training (verdict.py caps it there): below 1 the check is faster, and the
    # device gives up the rest. Memory tests are cheap on accelerators (seconds
    # at their bandwidth) and emulated chips test through a fixed host buffer,
    # so only `quick` trades memory for time.
    memory_fraction: float
    host_memory_cap_bytes: int  # never more than this of the host's RAM (cpu, mps)
    emulated_tested_bytes: int  # host bytes that stand for an emulated chip's memory
    sustained_s: float
    windows: int  # throughput/correctness probes spread over the sustained load
    probe_matmuls: int  # exact matmuls per probe
    profile_microbatches: tuple[int, ...]
    profile_repeats: int
    max_throughput_drop: float = 0.2  # more than this from best to worst = unstable


LEVELS: dict[str, Level] = {
    "quick": Level(
        name="quick",
        exact_elements=4 * MIB,
        tolerance_repeats=1,
        memory_fraction=0.25,
        host_memory_cap_bytes=256 * MIB,
        emulated_tested_bytes=8 * MIB,
        sustained_s=10.0,
        windows=5,
        probe_matmuls=2,
        profile_microbatches=(8, 32, 128),
        profile_repeats=2,
    ),
    "standard": Level(
        name="standard",
        # 24 Mi elements: a chip flipping 1e-6 of its outputs shows ~25 flips
        # here; the chance it shows none is e^-25.
        exact_elements=24 * MIB,
        tolerance_repeats=3,
        memory_fraction=1.0,
        host_memory_cap_bytes=1 * GIB,
        emulated_tested_bytes=32 * MIB,
        sustained_s=60.0,
        windows=12,
        probe_matmuls=4,
        profile_microbatches=(1, 8, 32, 128, 512),
        profile_repeats=3,
    ),
    "long": Level(
        name="long",
        exact_elements=256 * MIB,
        tolerance_repeats=10,
        memory_fraction=1.0,
        host_memory_cap_bytes=4 * GIB,
        emulated_tested_bytes=256 * MIB,
        sustained_s=900.0,
        windows=60,
        probe_matmuls=8,
        profile_microbatches=(1, 8, 32, 128, 512, 2048),
        profile_repeats=5,
    ),
}


def get_level(name: str) -> Level:
    if name not in LEVELS:
        raise UsageError(
            "--level", "is not a known level", f"use one of: {', '.join(LEVELS)}", name
        )
    return LEVELS[name]
