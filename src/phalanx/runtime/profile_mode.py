"""Profile mode: `phalanx qualify --script train.py` runs the user's script with
PHALANX_PROFILE set; `Trainer.fit()` then measures the model instead of training.

It measures samples/s of forward+backward at growing micro-batch sizes on the
given device (paced like an emulated chip when a speed is given) and the
largest micro-batch that fits, writes them as JSON and ends the script.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from phalanx.data.feed import BatchFeed
from phalanx.emulate.pacer import ComputePacer
from phalanx.runtime.compute import LossFn, Workload, batches_gradient, trainable_parameters

ENV_VAR = "PHALANX_PROFILE"


@dataclass
class ProfileRequest:
    result_path: str
    device: str = "cpu"
    speed: float | None = None
    microbatches: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128])
    repeats: int = 3

    @classmethod
    def from_environment(cls) -> ProfileRequest | None:
        path = os.environ.get(ENV_VAR)
        return cls(**json.loads(Path(path).read_text())) if path else None


def _is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def _gradient_of_first(model: torch.nn.Module, loss_fn: LossFn, feed: BatchFeed, size: int,
                       device: torch.device) -> None:  # fmt: skip
    """Fresh `.grad` of the stream's first `size` samples, as one micro-batch."""
    for param in trainable_parameters(model):
        param.grad = None
    work = Workload(model, loss_fn, None, feed.num_samples, size, None, device, 0, feed=feed)
    batches_gradient(work, feed.read_now(0, size, whole=True))


def run_profile(
    request: ProfileRequest, model: torch.nn.Module, loss_fn: LossFn, feed: BatchFeed
) -> dict[str, Any]:
    device = torch.device(request.device)
    model.to(device)
    pacer = ComputePacer(request.speed)
    sizes: list[int] = []
    rates: list[float] = []
    max_microbatch = 0
    for size in request.microbatches:
        if feed.num_samples is not None and size > feed.num_samples:
            break
        try:
            _gradient_of_first(model, loss_fn, feed, size, device)  # warm-up
            best_s = float("inf")
            for _ in range(request.repeats):
                pacer.begin()
                _gradient_of_first(model, loss_fn, feed, size, device)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                best_s = min(best_s, pacer.end())
        except (RuntimeError, torch.OutOfMemoryError) as err:
            if not _is_out_of_memory(err):
                raise
            break  # this micro-batch does not fit: the previous one is the largest
        sizes.append(size)
        rates.append(size / max(best_s, 1e-9))
        max_microbatch = size
    result = {
        "microbatches": sizes,
        "samples_per_s": rates,
        "max_microbatch": max_microbatch,
        "device": request.device,
        "speed": request.speed,
        "measured_at": time.time(),
    }
    Path(request.result_path).write_text(json.dumps(result))
    return result
