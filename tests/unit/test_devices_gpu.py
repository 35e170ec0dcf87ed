"""Real-accelerator checks: run only where torch sees a CUDA or ROCm GPU."""

from __future__ import annotations

import pytest
import torch

from phalanx.devices.discovery import discover
from phalanx.devices.telemetry import telemetry_for
from phalanx.qualify import Qualifier, get_level

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA or ROCm GPU"),
]


def test_discovery_and_telemetry_of_a_real_gpu():
    found = discover()
    gpus = [d for d in found.devices if d.kind in ("cuda", "rocm")]
    assert gpus and gpus[0].memory_bytes and gpus[0].memory_bytes > 2**30
    telemetry = telemetry_for(gpus[0])
    caps = telemetry.capabilities()
    assert caps["memory"]
    sample = telemetry.sample()
    print(f"{gpus[0].model}: source={telemetry.source} caps={caps} sample={sample}")


@pytest.mark.timeout(600)
def test_quick_qualification_of_gpu0():
    gpu = next(d for d in discover().devices if d.kind in ("cuda", "rocm"))
    (result,) = Qualifier([gpu], get_level("quick")).run()
    q = result.qualification
    print(f"{gpu.model}: {q}")
    assert q.passed, q.reasons
    assert q.gflops and q.gflops > 100 and q.memory_checked_bytes > 2**30


@pytest.mark.timeout(300)
def test_energy_power_and_temperature_during_a_short_training_run():
    """Energy issue: on a real NVIDIA GPU, read power, energy and temperature while training."""
    from phalanx.devices.energy import PowerSampler

    gpu = next(d for d in discover().devices if d.kind in ("cuda", "rocm"))
    telemetry = telemetry_for(gpu)
    model = torch.nn.Sequential(
        torch.nn.Linear(4096, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 4096)
    ).to(gpu.torch_device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    data = torch.randn(512, 4096, device=gpu.torch_device)
    temperatures_c = []
    with PowerSampler(telemetry, interval_s=0.05) as sampler:
        for step in range(300):
            optimizer.zero_grad()
            model(data).square().mean().backward()
            optimizer.step()
            if step % 50 == 0:
                torch.cuda.synchronize()
                temperatures_c.append(telemetry.temperature_c())
        torch.cuda.synchronize()
    reading = sampler.reading
    print(
        f"{gpu.model}: {reading.energy_j} J over {reading.duration_s:.2f} s "
        f"({reading.source}, {reading.samples} samples), mean {reading.mean_power_w} W, "
        f"max {reading.max_power_w} W, temperatures {temperatures_c} C, "
        f"throttle at {telemetry.throttle_temperature_c()} C"
    )
    assert reading.energy_j is not None and reading.energy_j > 0
    assert reading.max_power_w is not None and reading.max_power_w > 0
    assert all(t is not None and 0 < t < 120 for t in temperatures_c)


@pytest.mark.timeout(600)
def test_a_gpu_and_a_cpu_replica_train_together_with_a_kill(tmp_path):
    """The GPU check's fp32 case (bench/gpu_check.py): GPU + 2 CPU replicas, a kill, a hang."""
    from bench.gpu_check import check_precision

    record = check_precision("cuda:0", "32", steps=30, work=tmp_path)
    assert record["ok"], record
