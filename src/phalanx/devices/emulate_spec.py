"""`--emulate 1,0.5,0.25x2` as fleet entries: emulated chips with default models."""

from __future__ import annotations

from phalanx.devices.config import (
    DEFAULT_EMULATED_MEMORY_BYTES,
    DeviceConfig,
    PowerCurve,
    ThermalConfig,
)
from phalanx.emulate.spec import parse_emulate as parse_speeds


def parse_emulate(spec: str) -> list[DeviceConfig]:
    """Four healthy chips for "1,0.5,0.25x2": speeds 1, 0.5, 0.25, 0.25, ids emu0..emu3."""
    return [
        DeviceConfig(
            id=f"emu{i}",
            kind="emulated",
            index=i,
            model="emulated",
            speed=speed,
            memory_bytes=DEFAULT_EMULATED_MEMORY_BYTES,
            power=PowerCurve(),
            thermal=ThermalConfig(),
        )
        for i, speed in enumerate(parse_speeds(spec))
    ]
