"""Telemetry backends behind one interface: null object, NVML (mocked), amdsmi, host, energy."""

from __future__ import annotations

import sys
import types

import pytest

from phalanx.devices.config import DeviceConfig
from phalanx.devices.energy import PowerSampler, integrate_power_j
from phalanx.devices.telemetry import NullTelemetry, Telemetry, TelemetryUnsupported, telemetry_for
from phalanx.devices.telemetry.amd import AmdSmiTelemetry, load_amdsmi, reset_amdsmi_cache
from phalanx.devices.telemetry.host_cpu import HostCpuTelemetry, read_meminfo
from phalanx.devices.telemetry.nvml import (
    NvmlTelemetry,
    decode_throttle_reasons,
    load_nvml,
    reset_nvml_cache,
)

from .devices_fake_nvml import FakeGpu, make_pynvml


@pytest.fixture
def fake_nvml(monkeypatch):
    gpu = FakeGpu()
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(gpu))
    reset_nvml_cache()
    yield gpu
    reset_nvml_cache()


def test_null_telemetry_supports_nothing_and_never_fails():
    t = NullTelemetry()
    assert not any(t.capabilities().values())
    sample = t.sample()
    assert (sample.power_w, sample.temperature_c, sample.throttle_reasons) == (None, None, None)
    with pytest.raises(TelemetryUnsupported):
        t.set_power_limit_w(100)


def test_a_sensor_that_raises_reads_as_unsupported():
    class Flaky(Telemetry):
        def power_w(self):
            raise OSError("gone")

        def temperature_c(self):
            return 50.0

    caps = Flaky().capabilities()
    assert caps["power"] is False and caps["temperature"] is True
    assert Flaky().sample().temperature_c == 50.0


def test_nvml_readings_are_converted_to_si_units(fake_nvml):
    t = NvmlTelemetry.open(0)
    assert t is not None and t.model() == "NVIDIA H200"
    assert t.power_w() == pytest.approx(612.5)
    assert t.energy_j() == pytest.approx(1000.0)
    assert t.temperature_c() == 83.0
    assert t.throttle_temperature_c() == 87.0  # the slowdown threshold the thermal guard uses
    assert t.clocks().compute_mhz == 1755.0
    assert t.memory().free_bytes == 140_000_000_000
    assert t.throttle_reasons() == ("hw_thermal",)
    assert t.power_limit_w() == 700.0
    assert all(t.capabilities().values())


def test_nvml_capabilities_follow_what_the_gpu_supports(fake_nvml):
    fake_nvml.energy_supported = False
    caps = NvmlTelemetry.open(0).capabilities()
    assert caps["energy_counter"] is False and caps["power"] is True


def test_nvml_power_limit_control(fake_nvml):
    t = NvmlTelemetry.open(0)
    t.set_power_limit_w(450)
    assert fake_nvml.limit_mw == 450_000
    with pytest.raises(TelemetryUnsupported, match="outside"):
        t.set_power_limit_w(900)
    fake_nvml.permission = False
    with pytest.raises(TelemetryUnsupported, match="Permissions"):
        t.set_power_limit_w(300)


def test_throttle_reason_bits_decode():
    assert decode_throttle_reasons(0x4 | 0x20 | 0x80) == (
        "sw_power_cap",
        "sw_thermal",
        "hw_power_brake",
    )
    assert decode_throttle_reasons(0) == ()


def test_cuda_devices_use_nvml_when_it_loads(fake_nvml):
    t = telemetry_for(DeviceConfig(id="cuda0", kind="cuda", index=0))
    assert t.source == "nvml+torch"
    assert t.temperature_c() == 83.0 and t.power_w() == pytest.approx(612.5)


def test_without_pynvml_cuda_telemetry_degrades_to_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    reset_nvml_cache()
    try:
        assert load_nvml() is None
        t = telemetry_for(DeviceConfig(id="cuda0", kind="cuda", index=0))
        assert t.source == "torch"
        assert t.capabilities()["power"] is False  # and nothing raised
    finally:
        reset_nvml_cache()


def test_amdsmi_raising_keyerror_on_import_means_no_amdsmi(monkeypatch):
    class Exploding(types.ModuleType):
        def __getattr__(self, name):
            raise KeyError("ROCM_PATH")  # what amdsmi does without its library

    monkeypatch.setitem(sys.modules, "amdsmi", Exploding("amdsmi"))
    reset_amdsmi_cache()
    try:
        assert load_amdsmi() is None
        assert telemetry_for(DeviceConfig(id="rocm0", kind="rocm", index=0)).source == "torch"
    finally:
        reset_amdsmi_cache()


def test_amdsmi_readings(monkeypatch):
    smi = types.ModuleType("amdsmi")
    smi.amdsmi_init = lambda: None
    smi.amdsmi_get_processor_handles = lambda: ["h0"]
    smi.AmdSmiMemoryType = types.SimpleNamespace(VRAM=0)
    smi.AmdSmiTemperatureType = types.SimpleNamespace(HOTSPOT=1)
    smi.AmdSmiTemperatureMetric = types.SimpleNamespace(CURRENT=0)
    smi.AmdSmiClkType = types.SimpleNamespace(GFX=0, MEM=1)
    smi.amdsmi_get_gpu_memory_total = lambda h, t: 192 * 2**30
    smi.amdsmi_get_gpu_memory_usage = lambda h, t: 2 * 2**30
    smi.amdsmi_get_power_info = lambda h: {
        "current_socket_power": 512,
        "average_socket_power": "N/A",
    }
    smi.amdsmi_get_energy_count = lambda h: {
        "energy_accumulator": 1_000_000,
        "counter_resolution": 15.3,
    }
    smi.amdsmi_get_temp_metric = lambda h, t, m: 71
    smi.amdsmi_get_clock_info = lambda h, c: {"clk": 2100 if c == 0 else 1300}
    smi.amdsmi_get_power_cap_info = lambda h: {"power_cap": 750_000_000}
    monkeypatch.setitem(sys.modules, "amdsmi", smi)
    reset_amdsmi_cache()
    try:
        t = AmdSmiTelemetry.open(0)
        assert t.memory().free_bytes == 190 * 2**30
        assert t.power_w() == 512.0
        assert t.energy_j() == pytest.approx(15.3)
        assert t.temperature_c() == 71.0
        assert t.clocks().compute_mhz == 2100.0
        assert t.power_limit_w() == 750.0
        assert t.capabilities()["power_limit_control"] is False  # no setter in this amdsmi
    finally:
        reset_amdsmi_cache()


def test_host_cpu_reads_meminfo_rapl_with_wraparound_and_package_temperature(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal:       16000 kB\nMemFree:         1000 kB\nMemAvailable:    8000 kB\n"
    )
    assert read_meminfo(meminfo).free_bytes == 8000 * 1024
    rapl = tmp_path / "rapl"
    rapl.mkdir()
    (rapl / "max_energy_range_uj").write_text("1000000\n")
    zone = tmp_path / "thermal" / "thermal_zone3"
    zone.mkdir(parents=True)
    (zone / "type").write_text("x86_pkg_temp\n")
    (zone / "temp").write_text("47000\n")
    t = HostCpuTelemetry(rapl_dir=rapl, thermal_root=tmp_path / "thermal")
    (rapl / "energy_uj").write_text("900000\n")
    assert t.energy_j() == pytest.approx(0.9)
    (rapl / "energy_uj").write_text("100000\n")  # wrapped past 1 J
    assert t.energy_j() == pytest.approx(1.1)
    assert t.temperature_c() == 47.0


def test_host_cpu_without_rapl_reports_no_energy(tmp_path):
    t = HostCpuTelemetry(rapl_dir=tmp_path / "none", thermal_root=tmp_path / "none")
    caps = t.capabilities()
    assert caps["energy_counter"] is False and caps["temperature"] is False


def test_trapezoid_integration():
    assert integrate_power_j([0.0, 1.0, 3.0], [100.0, 200.0, 200.0]) == pytest.approx(150.0 + 400.0)
    assert integrate_power_j([], []) == 0.0


class _Clocked(Telemetry):
    """Power rises by 10 W per reading; time advances 1 s per reading."""

    def __init__(self, counter: bool) -> None:
        self.t = 0.0
        self.counter = counter

    def now_s(self):
        self.t += 1.0
        return self.t

    def power_w(self):
        return 100.0

    def energy_j(self):
        return 5000.0 + self.t * 100.0 if self.counter else None


def test_power_sampler_integrates_power_when_there_is_no_counter():
    sampler = PowerSampler(_Clocked(counter=False), interval_s=3600).start()
    reading = sampler.stop()
    assert reading.source == "sampled" and reading.samples == 2
    assert reading.energy_j == pytest.approx(100.0 * 1.0)  # two samples 1 s apart at 100 W
    assert reading.mean_power_w == 100.0


def test_power_sampler_prefers_the_energy_counter():
    reading = PowerSampler(_Clocked(counter=True), interval_s=3600).start().stop()
    assert reading.source == "counter" and reading.energy_j > 0
