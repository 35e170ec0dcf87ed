"""Profile mode: `phalanx qualify --script train.py` runs the user's script with
PHALANX_PROFILE set; `Trainer.fit()` then measures the model instead of training.

It measures samples/s of forward+backward at growing micro-batch sizes on the
given device (paced like an emulated chip when a speed is given) and the
largest micro-batch that fits, writes them as JSON and ends the script.
`phalanx plan --script` also asks what a replica holds (state and
activations, as an emulated chip counts them) to size replica groups.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from phalanx.data.feed import BatchFeed
from phalanx.emulate.memory import ChipMemory, state_bytes
from phalanx.emulate.pacer import ComputePacer
from phalanx.errors import UsageError
from phalanx.runtime.compute import LossFn, Workload, batches_gradient, trainable_parameters
from phalanx.runtime.memory_probe import probe_activations

ENV_VAR = "PHALANX_PROFILE"


@dataclass
class ProfileRequest:
    result_path: str
    device: str = "cpu"
    speed: float | None = None
    microbatches: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128])
    repeats: int = 3
    # `phalanx plan --script`: also what the model holds on a chip (state, activations).
    memory: bool = False

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


def _memory_profile(
    model: torch.nn.Module, loss_fn: LossFn, feed: BatchFeed, optimizer: Any, global_batch: int
) -> dict[str, Any]:
    """What a replica holds (as an emulated chip counts it) and the batch it trains."""
    work = Workload(model, loss_fn, None, feed.num_samples, 1, None, torch.device("cpu"), 0,
                    feed=feed)  # fmt: skip
    memory = ChipMemory("profile", 1 << 62, model, optimizer)
    probe_activations(memory, work)
    state = state_bytes(model, optimizer)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "weight_bytes": state.weights,
        "gradient_bytes": state.gradients,
        "optimizer_bytes": state.optimizer,
        "activation_fixed_bytes": memory.fixed_bytes,
        "activation_bytes_per_sample": memory.per_sample_bytes,
        "global_batch": global_batch,
    }


def run_profile(
    request: ProfileRequest,
    model: torch.nn.Module,
    loss_fn: LossFn,
    feed: BatchFeed,
    optimizer: Any = None,
    global_batch: int = 0,
) -> dict[str, Any]:
    device = torch.device(request.device)
    model.to(device)
    held = (
        _memory_profile(model, loss_fn, feed, optimizer, global_batch) if request.memory else None
    )
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
        "memory": held,
    }
    Path(request.result_path).write_text(json.dumps(result))
    return result


def profile_script_process(
    script: Path, device: str = "cpu", memory: bool = False, arguments: list[str] | None = None
) -> dict[str, Any]:
    """Run `script` in profile mode in a child process; its measurements as a dict.

    The script builds its `phalanx.Trainer` as always; `fit()` sees PHALANX_PROFILE,
    measures and ends the script (one thread, as a worker trains).
    """
    with tempfile.TemporaryDirectory() as tmp:
        request = ProfileRequest(str(Path(tmp) / "profile.json"), device=device, memory=memory)
        request_path = Path(tmp) / "request.json"
        request_path.write_text(json.dumps(asdict(request)))
        env = {**os.environ, ENV_VAR: str(request_path), "OMP_NUM_THREADS": "1"}
        done = subprocess.run(
            [sys.executable, str(script), *(arguments or [])],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        result_file = Path(request.result_path)
        if done.returncode != 0 or not result_file.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UsageError(
                "--script",
                f"profiling failed ({last})",
                "check that the script builds a phalanx.Trainer and calls fit()",
                str(script),
            )
        return json.loads(result_file.read_text())
