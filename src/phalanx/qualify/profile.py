"""Model profile: samples/s at several micro-batch sizes, and the largest that fits.

Until the runtime's Trainer can hand its model over, the profile runs a
built-in reference workload (a small MLP's forward and backward pass). The
runtime uses it for initial shares and memory caps; shares then follow the
throughput measured in training.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from phalanx.devices.compute import ComputeDevice
from phalanx.errors import UsageError
from phalanx.qualify.levels import Level

WIDTHS = (256, 1024, 1024, 10)  # input, hidden, hidden, classes
BYTES_PER_FLOAT = 4
MAX_MICROBATCH = 1 << 20  # beyond this the answer stops mattering
MEMORY_HEADROOM = 0.9  # leave room for the allocator and the framework


@dataclass(frozen=True)
class Profile:
    microbatches: tuple[int, ...]
    samples_per_s: tuple[float, ...]
    max_microbatch: int


def reference_model() -> nn.Module:
    layers: list[nn.Module] = []
    for i in range(len(WIDTHS) - 1):
        layers.append(nn.Linear(WIDTHS[i], WIDTHS[i + 1]))
        if i < len(WIDTHS) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def memory_needed_bytes(microbatch: int) -> int:
    """Estimate for the reference workload under AdamW in float32.

    Fixed: weights, gradients and two optimizer moments. Per sample: each
    layer's input and output kept for backward, plus their gradients.
    """
    params = sum(WIDTHS[i] * WIDTHS[i + 1] + WIDTHS[i + 1] for i in range(len(WIDTHS) - 1))
    activations = WIDTHS[0] + 2 * sum(WIDTHS[1:-1]) + WIDTHS[-1]  # ReLU keeps its own output
    return BYTES_PER_FLOAT * (4 * params + 2 * activations * microbatch)


def max_microbatch_for(memory_bytes: int) -> int:
    usable = int(memory_bytes * MEMORY_HEADROOM) - memory_needed_bytes(0)
    per_sample = memory_needed_bytes(1) - memory_needed_bytes(0)
    return max(0, min(MAX_MICROBATCH, usable // per_sample))


def _step_fn(model: nn.Module, microbatch: int, device: torch.device) -> Callable[[], None]:
    g = torch.Generator().manual_seed(microbatch)
    x = torch.randn(microbatch, WIDTHS[0], generator=g).to(device)
    y = torch.randint(0, WIDTHS[-1], (microbatch,), generator=g).to(device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()

    return step


def profile_reference(
    device: ComputeDevice,
    level: Level,
    progress: Callable[[str], None],
    usable_memory_bytes: int | None = None,
) -> Profile:
    """`usable_memory_bytes`: the memory check's cap; the largest micro-batch fits within it."""
    memory = device.free_memory_bytes()
    if device.config.emulated and device.config.memory_bytes:
        memory = device.config.memory_bytes
    if usable_memory_bytes is not None:
        memory = min(memory, usable_memory_bytes) if memory else usable_memory_bytes
    max_mb = max_microbatch_for(memory) if memory else MAX_MICROBATCH
    model = reference_model().to(device.tensor_device)
    sizes, rates = [], []
    for mb in level.profile_microbatches:
        if mb > max_mb:
            break
        step = _step_fn(model, mb, device.tensor_device)
        # An emulated chip's clock is calibrated (one cost per op): repeating
        # measures nothing new. A real device warms up, then takes the best of a few.
        repeats = 1 if device.config.emulated else level.profile_repeats
        try:
            if not device.config.emulated:
                device.run(step)  # warm-up: first calls allocate and pick kernels
            best_s = float("inf")
            for _ in range(repeats):
                start = device.clock_s()
                device.run(step, cost_key=("reference_step", mb))
                best_s = min(best_s, device.clock_s() - start)
        except torch.OutOfMemoryError:
            max_mb = mb - 1  # the estimate was optimistic: trust the device
            break
        sizes.append(mb)
        rates.append(mb / max(best_s, 1e-9))
        progress(f"micro-batch {mb}: {rates[-1]:.0f} samples/s")
    return Profile(tuple(sizes), tuple(rates), max_mb)


_SCRIPT_PROFILES: dict[tuple[str, str], Profile] = {}
_SCRIPT_LOCK = threading.Lock()  # devices are qualified in parallel threads: profile once


def profile_script(path: str | Path, device: ComputeDevice) -> Profile:
    """Profile the model of a training script on `device`.

    The script runs in a child process with PHALANX_PROFILE set, so its own
    `phalanx.Trainer(...).fit()` measures samples/s at growing micro-batch
    sizes instead of training. An emulated chip is the host scaled by its
    speed, so the host is measured once per script and scaled.
    """
    script = Path(path)
    if not script.is_file():
        raise UsageError(
            "--script", "does not exist", "give the path of your training script", str(path)
        )
    emulated = device.config.emulated
    target = "cpu" if emulated else str(device.tensor_device)
    key = (str(script.resolve()), target)
    with _SCRIPT_LOCK:
        if key not in _SCRIPT_PROFILES:
            _SCRIPT_PROFILES[key] = _measure_script(script, target)
    measured = _SCRIPT_PROFILES[key]
    scale = float(device.config.speed or 1.0) if emulated else 1.0
    return Profile(
        measured.microbatches,
        tuple(r * scale for r in measured.samples_per_s),
        measured.max_microbatch,
    )


def _measure_script(script: Path, target: str) -> Profile:
    from phalanx.runtime.profile_mode import profile_script_process

    data = profile_script_process(script, target)
    return Profile(
        tuple(data["microbatches"]), tuple(data["samples_per_s"]), int(data["max_microbatch"])
    )
