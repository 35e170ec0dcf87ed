"""Devices: discovery, telemetry, specs, emulated chips and fleet files.

Importing this package does not import torch; the submodules that compute do.
"""

from phalanx.devices.config import (
    Defects,
    DeviceConfig,
    HeatSlowdown,
    IntermittentFault,
    MemoryRegion,
    PowerCurve,
    Qualification,
    ThermalConfig,
)
from phalanx.devices.fleet_file import Rejected, load_admitted, load_fleet, save_fleet
from phalanx.devices.specs import SPEC_TABLE, ChipSpec, spec_for

__all__ = [
    "SPEC_TABLE",
    "ChipSpec",
    "Defects",
    "DeviceConfig",
    "HeatSlowdown",
    "IntermittentFault",
    "MemoryRegion",
    "PowerCurve",
    "Qualification",
    "Rejected",
    "ThermalConfig",
    "load_admitted",
    "load_fleet",
    "save_fleet",
    "spec_for",
]
