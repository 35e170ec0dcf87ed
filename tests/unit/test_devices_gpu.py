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
