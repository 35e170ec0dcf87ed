"""Telemetry: one interface over NVML, amdsmi, sysfs, torch and emulated chips."""

from phalanx.devices.telemetry.base import (
    CAPABILITY_NAMES,
    THERMAL_REASONS,
    ChainTelemetry,
    Clocks,
    MemoryInfo,
    NullTelemetry,
    Telemetry,
    TelemetrySample,
    TelemetryUnsupported,
)
from phalanx.devices.telemetry.factory import telemetry_for

__all__ = [
    "CAPABILITY_NAMES",
    "THERMAL_REASONS",
    "ChainTelemetry",
    "Clocks",
    "MemoryInfo",
    "NullTelemetry",
    "Telemetry",
    "TelemetrySample",
    "TelemetryUnsupported",
    "telemetry_for",
]
