"""Emulated chips: speed, power, heat and defects, computed on the host CPU."""

from phalanx.devices.emulated.chip import DeviceCancelled, DeviceCrashed, EmulatedChip
from phalanx.devices.emulated.host import HostCPU, default_host

__all__ = ["DeviceCancelled", "DeviceCrashed", "EmulatedChip", "HostCPU", "default_host"]
