"""A real device's energy during a run, and what it says when a sensor or knob is missing."""

from __future__ import annotations

import sys

import pytest

from phalanx.devices.energy import RunEnergy
from phalanx.devices.telemetry.base import Telemetry
from phalanx.devices.telemetry.nvml import NvmlTelemetry, reset_nvml_cache

from .devices_fake_nvml import FakeGpu, make_pynvml


class _Sensors(Telemetry):
    def __init__(self, counter_j: float | None, power_w: float | None) -> None:
        self.counter_j, self.power = counter_j, power_w

    def energy_j(self) -> float | None:
        return self.counter_j

    def power_w(self) -> float | None:
        return self.power


def test_a_counter_counts_from_the_run_start_not_from_its_own_origin():
    sensors = _Sensors(counter_j=5e6, power_w=300.0)  # e.g. NVML: since the driver loaded
    energy = RunEnergy(sensors)
    assert energy.energy_j == 0.0 and energy.source == "counter"
    sensors.counter_j += 150.0
    energy.step_done(0.5)
    assert energy.energy_j == pytest.approx(150.0) and energy.mean_power_w == pytest.approx(300.0)
    sensors.counter_j += 100.0
    energy.step_done(0.5)
    assert energy.energy_j == pytest.approx(250.0) and energy.mean_power_w == pytest.approx(200.0)


def test_a_shared_package_is_split_by_the_replicas_share_of_it():
    sensors = _Sensors(counter_j=1000.0, power_w=None)
    energy = RunEnergy(sensors, host_share=0.25)
    sensors.counter_j += 400.0
    energy.step_done(1.0)
    assert energy.energy_j == pytest.approx(100.0)


def test_without_a_counter_power_is_integrated_over_the_steps():
    sensors = _Sensors(counter_j=None, power_w=100.0)
    energy = RunEnergy(sensors)
    assert energy.energy_j is None
    energy.step_done(2.0)
    sensors.power = 200.0
    energy.step_done(2.0)
    # 100 W for the first step (one reading), the trapezoid 100 -> 200 W for the second
    assert energy.source == "sampled" and energy.energy_j == pytest.approx(200.0 + 300.0)


def test_no_sensor_means_unknown_energy_not_zero():
    energy = RunEnergy(_Sensors(counter_j=None, power_w=None))
    energy.step_done(1.0)
    assert energy.energy_j is None and energy.mean_power_w is None and energy.source == "none"


@pytest.fixture
def unprivileged_gpu(monkeypatch):
    gpu = FakeGpu(energy_step_mj=50_000, permission=False)  # 50 J per read
    monkeypatch.setitem(sys.modules, "pynvml", make_pynvml(gpu))
    reset_nvml_cache()
    telemetry = NvmlTelemetry.open(0, None)
    assert telemetry is not None
    monkeypatch.setattr("phalanx.devices.compute.telemetry_for", lambda config: telemetry)
    yield gpu
    reset_nvml_cache()


def test_a_device_monitor_counts_a_real_devices_energy_and_says_what_it_cannot_do(
    unprivileged_gpu,
):
    from phalanx.runtime.device_monitor import DeviceMonitor

    # kind cpu: the torch device exists here; its sensors are the fake GPU's NVML.
    monitor = DeviceMonitor({"id": "gpu0", "kind": "cpu"}, 0, power_limit_w=300.0)
    assert len(monitor.notes) == 1 and "cannot set a power limit of 300 W" in monitor.notes[0]
    assert "Insufficient Permissions" in monitor.notes[0]
    monitor.step_done(compute_s=0.4, step_s=0.5)
    readings = monitor.readings()
    # 50 J per counter read, counted from the run's start (not 1000 J since the driver loaded)
    assert readings["energy_j"] == pytest.approx(50.0)
    assert readings["mean_power_w"] == pytest.approx(100.0)
    assert readings["temperature_c"] == 83.0
    assert monitor.missing_sensors(readings) == []
    assert monitor.missing_sensors({"energy_j": None, "temperature_c": None}) == [
        "no power or energy sensor readable, its energy is not counted",
        "no temperature sensor readable, the thermal guard does not watch it",
    ]
