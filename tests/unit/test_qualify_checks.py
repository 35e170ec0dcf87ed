"""Each qualification check on its own, the verdicts, the watchdog, and the NVIDIA path."""

from __future__ import annotations

import dataclasses
import sys
import threading

import pytest
import torch

from phalanx.devices.compute import TorchCompute
from phalanx.devices.config import Defects, DeviceConfig, HeatSlowdown, MemoryRegion
from phalanx.devices.emulated import EmulatedChip
from phalanx.devices.operands import DTYPES, exact_operands
from phalanx.devices.probe import correctness_probe
from phalanx.devices.telemetry.base import TelemetrySample
from phalanx.devices.telemetry.nvml import NvmlTelemetry, reset_nvml_cache
from phalanx.qualify import Qualifier, get_level
from phalanx.qualify import runner as runner_module
from phalanx.qualify.compute_check import check_compute
from phalanx.qualify.levels import Level
from phalanx.qualify.memory_check import check_memory
from phalanx.qualify.profile import max_microbatch_for, memory_needed_bytes, profile_reference
from phalanx.qualify.sustained_check import SustainedResult, Window, check_sustained
from phalanx.qualify.verdict import Findings, judge_sustained

from .devices_fake_nvml import FakeGpu, make_pynvml

TINY = Level(
    name="tiny",
    exact_elements=2**21,
    tolerance_repeats=1,
    memory_fraction=0.001,
    host_memory_cap_bytes=2**22,
    emulated_tested_bytes=2**20,
    sustained_s=60.0,
    windows=6,
    probe_matmuls=1,
    profile_microbatches=(4, 16),
    profile_repeats=1,
)
quiet = lambda _msg: None  # noqa: E731


def emulated(speed: float = 1.0, **defects) -> EmulatedChip:
    config = DeviceConfig(
        id="emu", kind="emulated", speed=speed, memory_bytes=2**32, defects=Defects(**defects)
    )
    return EmulatedChip(config, seed=3, time_scale=0)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_exact_operands_have_an_exactly_representable_product(dtype):
    a, b, ref = exact_operands(dtype, 256, 0)
    exact = a.double() @ b.double()
    assert torch.equal(ref.double(), exact)
    assert torch.equal((a @ b).double(), exact)  # and the host computes it exactly too


def test_compute_check_passes_a_healthy_chip():
    result = check_compute(emulated(), TINY, 0, quiet)
    assert result.wrong_elements == 0 and not result.errors
    assert all(count.checked >= TINY.exact_elements for count in result.exact.values())


def test_compute_check_counts_flips_at_the_declared_rate():
    result = check_compute(emulated(flip_rate=1e-4), TINY, 0, quiet)
    expected = 1e-4 * result.elements_checked
    assert abs(result.wrong_elements - expected) < 6 * expected**0.5


def test_memory_check_finds_the_bad_region_at_its_address():
    offset = 3 * 2**29 + 12345
    chip = emulated(bad_memory=(MemoryRegion(offset_bytes=offset, length_bytes=64),))
    level = dataclasses.replace(TINY, memory_fraction=1.0)
    result = check_memory(chip, level, 0, quiet)
    assert result.checked_bytes == 2**32 and result.tested_bytes == 2**20
    assert result.bad_bytes > 0
    assert abs(result.first_bad_offset - offset) <= result.scale
    assert check_memory(emulated(), level, 0, quiet).bad_bytes == 0


def test_sustained_check_sees_heat_slowdown_and_not_on_a_healthy_chip():
    slow = check_sustained(
        emulated(heat_slowdown=HeatSlowdown(fraction=0.4, above_c=50)), TINY, 0, quiet
    )
    assert slow.throughput_drop() == pytest.approx(0.4, abs=0.01)
    healthy = check_sustained(emulated(), TINY, 0, quiet)
    assert healthy.throughput_drop() == pytest.approx(0.0, abs=1e-9)
    assert healthy.duration_s == pytest.approx(TINY.sustained_s, rel=0.01)
    assert healthy.energy.source == "counter" and healthy.energy.energy_j > 0


def _windows(gflops: list[float]) -> SustainedResult:
    sample = TelemetrySample(0, None, None, None, None, None)
    return SustainedResult(windows=[Window(i, g, 0, 0, sample) for i, g in enumerate(gflops)])


def test_one_slow_window_is_a_hiccup_a_lasting_drop_is_not():
    assert _windows([100, 100, 30, 100, 100, 100]).throughput_drop() == 0.0
    assert _windows([100, 100, 100, 60, 60, 60]).throughput_drop() == pytest.approx(0.4)


def test_a_throughput_drop_fails_an_accelerator_but_only_warns_on_the_host_cpu():
    for kind, failed in (("cuda", ["sustained_slowdown"]), ("cpu", [])):
        findings = Findings(sustained=_windows([100, 100, 100, 50, 50, 50]))
        judge_sustained(findings, TINY, kind)
        assert findings.failed == failed
        assert bool(findings.warnings) == (kind == "cpu")


def test_a_crash_fails_with_the_load_it_happened_at():
    config = DeviceConfig(
        id="c", kind="emulated", speed=1.0, defects=Defects(crash_after_load_s=25.0)
    )
    (result,) = Qualifier([config], TINY, time_scale=0).run()
    q = result.qualification
    assert not q.passed and q.failed_checks == ("crash",)
    assert "crashed after 25.0 s of load (during sustained)" in q.reasons[0]


def test_a_hung_device_fails_instead_of_stalling_the_fleet(monkeypatch):
    release = threading.Event()

    class Hanging(EmulatedChip):
        def matmul(self, a, b):
            release.wait(30)
            raise RuntimeError("released")

    def open_device(config, **kwargs):
        return (
            Hanging(config, time_scale=0)
            if config.id == "stuck"
            else EmulatedChip(config, time_scale=0)
        )

    monkeypatch.setattr(runner_module, "open_device", open_device)
    configs = [DeviceConfig(id=i, kind="emulated", speed=1.0) for i in ("stuck", "fine")]
    try:
        stuck, fine = Qualifier(configs, TINY, time_scale=0, hang_timeout_s=1.0).run()
    finally:
        release.set()
    assert stuck.qualification.failed_checks == ("hang",)
    assert "no progress" in stuck.qualification.reasons[0]
    assert fine.qualification.passed


class _CpuBackedGpu(TorchCompute):
    """A "cuda" device whose math runs on the CPU and whose telemetry is (fake) NVML."""

    def __init__(self, config: DeviceConfig) -> None:
        super().__init__(dataclasses.replace(config, kind="cpu"))
        self.config = config
        self._telemetry = NvmlTelemetry.open(0)


def test_nvidia_qualification_path_against_mocked_nvml(monkeypatch):
    gpu = FakeGpu(energy_step_mj=50_000)
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(gpu))
    reset_nvml_cache()
    monkeypatch.setattr(runner_module, "open_device", lambda config, **kw: _CpuBackedGpu(config))
    level = dataclasses.replace(TINY, sustained_s=0.6, windows=3, memory_fraction=1e-5)
    config = DeviceConfig(id="cuda0", kind="cuda", model="NVIDIA H200")
    try:
        (result,) = Qualifier([config], level).run()
    finally:
        reset_nvml_cache()
    q = result.qualification
    assert q.passed, q.reasons
    assert (
        q.throttled is True
        and q.max_temperature_c == 83.0
        and q.max_power_w == pytest.approx(612.5)
    )
    assert q.energy_j and q.energy_j > 0  # from the NVML energy counter
    assert any("thermal throttling" in w for w in q.warnings)
    assert any("datasheet peak" in w for w in q.warnings)  # CPU math is far below an H200
    assert q.memory_checked_bytes == int(gpu.free_bytes * 1e-5)
    assert q.gflops and q.gflops > 0


def test_profile_follows_speed_and_memory():
    fast = profile_reference(emulated(1.0), TINY, quiet)
    slow = profile_reference(emulated(0.5), TINY, quiet)
    assert fast.microbatches == slow.microbatches == (4, 16)
    for f, s in zip(fast.samples_per_s, slow.samples_per_s, strict=True):
        assert f == pytest.approx(2 * s)
    assert (
        memory_needed_bytes(max_microbatch_for(2**30))
        <= 0.9 * 2**30
        < memory_needed_bytes(max_microbatch_for(2**30) + 1)
    )
    assert max_microbatch_for(2**20) == 0  # too small for the model itself


def test_correctness_probe_for_re_screening():
    assert correctness_probe(emulated()).passed
    probe = correctness_probe(emulated(flip_rate=1e-4))
    assert not probe.passed and probe.wrong > 0


def test_levels_are_ordered_and_unknown_ones_rejected():
    quick, standard, long = (get_level(n) for n in ("quick", "standard", "long"))
    assert quick.sustained_s < standard.sustained_s < long.sustained_s
    assert 1e-6 * standard.exact_elements > 20  # a 1e-6 flip rate shows up many times
    from phalanx.errors import UsageError

    with pytest.raises(UsageError):
        get_level("extreme")
