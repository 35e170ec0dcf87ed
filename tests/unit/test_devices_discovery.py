"""Discovery on this host, the spec table, and the capability report of a scan."""

from __future__ import annotations

import sys

import pytest
import torch

from phalanx.devices.discovery import discover
from phalanx.devices.specs import SPEC_TABLE, spec_for
from phalanx.devices.telemetry.nvml import reset_nvml_cache

from .devices_fake_nvml import FakeGpu, make_pynvml


def test_discovery_lists_the_cpu_when_there_is_no_accelerator():
    found = discover()
    kinds = [d.kind for d in found.devices]
    if not torch.cuda.is_available():
        assert kinds == ["cpu"]
        assert any(note.startswith(("cuda", "rocm")) for note in found.notes)
    cpu = discover(include_cpu=True).devices[-1]
    assert cpu.kind == "cpu" and cpu.memory_bytes and cpu.memory_bytes > 2**28
    assert cpu.capabilities["memory"] is True
    assert set(cpu.capabilities) >= {
        "power",
        "energy_counter",
        "temperature",
        "clocks",
        "throttle_reasons",
        "power_limit",
    }


def test_a_broken_backend_does_not_hide_the_others(monkeypatch):
    def broken():
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(torch.cuda, "is_available", broken)
    found = discover()
    assert [d.kind for d in found.devices] == ["cpu"]
    assert any("driver exploded" in note for note in found.notes)


def test_discovered_cuda_devices_get_specs_and_nvml_capabilities(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(FakeGpu()))
    reset_nvml_cache()

    class Props:
        name = "NVIDIA H200"
        total_memory = 150_000_000_000

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    monkeypatch.setattr(torch.version, "hip", None)
    try:
        found = discover()
    finally:
        reset_nvml_cache()
    (gpu,) = found.devices
    assert (gpu.id, gpu.kind, gpu.model) == ("cuda0", "cuda", "NVIDIA H200")
    assert gpu.spec["tdp_w"] == 700.0
    assert gpu.capabilities["power"] and gpu.capabilities["throttle_reasons"]


def test_rocm_builds_report_rocm_devices(monkeypatch):
    class Props:
        name = "AMD Instinct MI300X"
        total_memory = 192 * 2**30

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    monkeypatch.setattr(torch.version, "hip", "6.2")
    found = discover()
    assert [(d.id, d.kind, d.torch_device) for d in found.devices] == [
        ("rocm0", "rocm", "cuda:0"),
        ("rocm1", "rocm", "cuda:1"),
    ]
    assert found.devices[0].spec["peak_flops_bfloat16"] == pytest.approx(1307.4e12)


def test_spec_table_is_keyed_by_exact_model_name():
    h100 = spec_for("NVIDIA H100 80GB HBM3")
    assert h100 is not None and h100.peak_flops("bfloat16") == pytest.approx(989e12)
    assert h100.memory_bandwidth_bytes_s == pytest.approx(3.35e12)
    assert spec_for("A100") is None  # no substring matching
    assert (
        spec_for("NVIDIA A100-SXM4-80GB ").tdp_w == 400
    )  # surrounding blanks are not part of the name
    assert spec_for("Tesla V100-SXM2-32GB").peak_flops("bfloat16") is None  # Volta has no bf16


def test_every_spec_is_plausible():
    for model, spec in SPEC_TABLE.items():
        assert model == spec.model
        assert spec.peak_flops_float16 >= spec.peak_flops_float32 > 0
        assert (
            spec.memory_bandwidth_bytes_s > 1e11
            and spec.memory_bytes >= 16 * 2**30
            and spec.tdp_w > 0
        )
