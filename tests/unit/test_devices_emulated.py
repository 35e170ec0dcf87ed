"""Emulated chips: speed, thermal model, defects, memory faults, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from phalanx.devices.config import (
    Defects,
    DeviceConfig,
    HeatSlowdown,
    IntermittentFault,
    MemoryRegion,
    PowerCurve,
    ThermalConfig,
)
from phalanx.devices.emulate_spec import parse_emulate
from phalanx.devices.emulated import DeviceCrashed, EmulatedChip, HostCPU
from phalanx.devices.emulated.thermal import ThermalModel
from phalanx.errors import UsageError
from phalanx.faults.bitflip import flip_random_bits as flip_bits

HOST = HostCPU(slots=1)  # one host: chips share its calibrated op costs


def chip(speed: float = 1.0, seed: int = 0, **defects) -> EmulatedChip:
    config = DeviceConfig(
        id="emu", kind="emulated", speed=speed, memory_bytes=2**30, defects=Defects(**defects)
    )
    return EmulatedChip(config, seed=seed, time_scale=0, host=HOST)


def operands() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(-4, 5, (256, 32), generator=g).float(), torch.randint(
        -4, 5, (32, 256), generator=g
    ).float()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_flip_bits_changes_about_rate_times_numel_elements(dtype):
    out = torch.ones(1_000_000, dtype=dtype)
    flips = flip_bits(out, 1e-3, np.random.default_rng(1))
    changed = int((out != 1).sum()) + int(torch.isnan(out).sum()) * 0
    assert 800 < flips < 1200
    # a flip of the sign bit of 1.0 or of any other bit always changes the value
    assert changed == pytest.approx(flips, abs=5)  # rare duplicates land twice on one element


def test_flip_bits_is_a_no_op_at_rate_zero():
    out = torch.ones(1000)
    assert flip_bits(out, 0.0, np.random.default_rng(0)) == 0
    assert torch.equal(out, torch.ones(1000))


def test_a_chip_computes_right_and_its_clock_follows_its_speed():
    a, b = operands()
    fast, slow = chip(1.0), chip(0.25)
    assert torch.equal(fast.matmul(a, b), a @ b)
    slow.matmul(a, b)
    # one shared calibrated cost per op: a quarter-speed chip takes four times as long
    assert slow.now_s == pytest.approx(4 * fast.now_s)
    assert slow.load_s == slow.now_s


def test_flip_rate_corrupts_outputs_deterministically_for_a_seed():
    a, b = operands()
    results = []
    for _ in range(2):
        c = chip(seed=7, flip_rate=1e-2)
        results.append(c.matmul(a, b))
        assert c.flips_injected > 0
    assert torch.equal(results[0].view(torch.int32), results[1].view(torch.int32))
    assert int((results[0] != a @ b).sum()) > 0
    other = chip(seed=8, flip_rate=1e-2).matmul(a, b)
    assert not torch.equal(other.view(torch.int32), results[0].view(torch.int32))


def test_thermal_model_heats_towards_steady_state_and_throttles():
    model = ThermalModel(
        ThermalConfig(resistance_c_per_w=0.4, throttle_c=85, shutdown_c=200),
        PowerCurve(idle_w=40, max_w=250),
    )
    temps = []
    for _ in range(400):
        model.step(0.25, 1.0)
        temps.append(model.temperature_c)
    assert (
        temps == sorted(temps[: temps.index(max(temps)) + 1]) + temps[temps.index(max(temps)) + 1 :]
    )
    assert model.throttled and model.speed_factor == pytest.approx(0.7)
    assert max(temps) < 25 + 0.4 * 250  # throttling cuts power before the unthrottled steady state
    for _ in range(400):
        model.step(0.25, 0.0)
    assert not model.throttled and model.temperature_c < 45


def test_heat_slowdown_starts_above_its_temperature():
    c = chip(heat_slowdown=HeatSlowdown(fraction=0.4, above_c=50.0))
    assert c.speed_factor() == 1.0
    c.advance_load(60.0)
    assert c.temperature_c > 50 and c.speed_factor() == pytest.approx(0.6)
    assert c.telemetry.throttle_reasons() == ()  # silent: only throughput shows it


def test_crash_happens_at_the_declared_load_and_sticks():
    a, b = operands()
    c = chip(crash_after_load_s=10.0)
    c.advance_load(9.0)
    with pytest.raises(DeviceCrashed, match=r"after 10\.0 s of load"):
        c.advance_load(5.0)
    assert c.load_s == pytest.approx(10.0)
    with pytest.raises(DeviceCrashed):
        c.matmul(a, b)


def test_thermal_shutdown_is_a_crash():
    config = DeviceConfig(
        id="hot",
        kind="emulated",
        speed=1.0,
        thermal=ThermalConfig(
            resistance_c_per_w=0.5, throttle_c=90, throttle_slowdown=0.0, shutdown_c=100
        ),
    )
    c = EmulatedChip(config, time_scale=0)
    with pytest.raises(DeviceCrashed, match="thermal shutdown"):
        c.advance_load(120.0)


def test_intermittent_fault_appears_only_after_sustained_load():
    a, b = operands()
    c = chip(intermittent=IntermittentFault(flip_rate=0.05, after_load_s=20.0))
    assert torch.equal(c.matmul(a, b), a @ b)
    c.advance_load(20.0)
    assert c.current_flip_rate() == 0.05
    assert not torch.equal(c.matmul(a, b), a @ b)


def test_intermittent_fault_can_be_triggered_by_heat():
    c = chip(intermittent=IntermittentFault(flip_rate=0.01, above_c=50.0))
    assert c.current_flip_rate() == 0
    c.advance_load(60.0)
    assert c.current_flip_rate() == 0.01


def test_bad_memory_region_survives_scaling_and_is_found_at_its_address():
    c = chip(bad_memory=(MemoryRegion(offset_bytes=512 * 2**20, length_bytes=1),))
    window = c.memory_window(2**30, max_tested_bytes=2**20)  # 1024:1
    assert window.scale == 1024
    bad_offsets = []
    for pattern in (0x00, 0xFF):
        for span in window.spans:
            window.write(span, pattern)
            data = window.read(span)
            for i in (data != pattern).nonzero().flatten().tolist():
                bad_offsets.append(window.device_offset(span, i))
    assert bad_offsets and all(off == 512 * 2**20 for off in bad_offsets)
    c.release_memory(window)
    assert c.free_memory_bytes() == 2**30


def test_healthy_memory_reads_back_what_was_written():
    c = chip()
    window = c.memory_window(2**30, max_tested_bytes=2**20)
    for span in window.spans:
        window.write(span, 0xA5)
        assert bool((window.read(span) == 0xA5).all())


def test_energy_and_telemetry_follow_the_power_curve():
    c = chip()
    c.advance_load(10.0)
    assert c.energy_j == pytest.approx(250.0 * 10.0)
    t = c.telemetry
    assert t.now_s() == pytest.approx(10.0)
    assert t.capabilities() == {
        "memory": True,
        "power": True,
        "energy_counter": True,
        "temperature": True,
        "clocks": True,
        "throttle_reasons": True,
        "power_limit": False,
        "power_limit_control": False,
    }
    c.idle(10.0)
    assert c.energy_j == pytest.approx(2500.0 + 400.0)
    assert c.load_s == pytest.approx(10.0)


def test_emulate_spec_gives_emulated_configs():
    chips = parse_emulate("1,0.5,0.25x2")
    assert [c.speed for c in chips] == [1.0, 0.5, 0.25, 0.25]
    assert [c.id for c in chips] == ["emu0", "emu1", "emu2", "emu3"]
    assert all(c.kind == "emulated" and c.memory_bytes for c in chips)
    with pytest.raises(UsageError):
        parse_emulate("1,-2")


def test_chip_refuses_a_real_device_config():
    with pytest.raises(ValueError):
        EmulatedChip(dataclasses.replace(DeviceConfig(id="x", kind="cpu")))
