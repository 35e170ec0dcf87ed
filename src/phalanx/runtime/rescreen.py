"""Periodic re-screening during training: a short correctness probe every N seconds.

A chip that passed qualification can start computing wrong answers once it is
hot or has been under load for long. The replica's device (for an emulated
chip: its model, defects and thermal state, fed the replica's compute time as
load) runs `phalanx.qualify.probe.correctness_probe`; a failure makes the
replica leave the fleet and quarantines its device.
"""

from __future__ import annotations

import time
from typing import Any

from phalanx.qualify.probe import ProbeResult, correctness_probe


class Rescreener:
    def __init__(self, device_table: dict[str, Any], index: int, every_s: float) -> None:
        from phalanx.devices.compute import open_device
        from phalanx.devices.fleet_parse import parse_device

        config = parse_device(device_table, index)
        # time_scale 0: the emulated chip's clock advances without wall-clock waits.
        self.device = open_device(config, seed=index, time_scale=0.0)
        self.every_s = every_s
        self._last_s = time.monotonic()

    def add_load(self, seconds: float) -> None:
        """Training compute heats the chip and counts towards load-triggered faults."""
        advance = getattr(self.device, "advance_load", None)
        if advance is not None and seconds > 0:
            advance(seconds)

    def due(self) -> bool:
        return time.monotonic() - self._last_s >= self.every_s

    def probe(self) -> ProbeResult:
        self._last_s = time.monotonic()
        return correctness_probe(self.device)
