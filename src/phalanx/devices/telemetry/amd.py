"""AMD telemetry through amdsmi (ROCm's SMI library, optional extra).

`import amdsmi` raises KeyError, not ImportError, when its shared library is
missing, hence the broad except: any failure just means "no amdsmi here".
Field names differ between amdsmi releases, so readers try the known ones.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

from phalanx.devices.telemetry.base import Clocks, MemoryInfo, Telemetry, TelemetryUnsupported

_lock = threading.Lock()
_state: dict[str, Any] = {}


def load_amdsmi() -> ModuleType | None:
    with _lock:
        if "module" not in _state:
            try:
                import amdsmi

                amdsmi.amdsmi_init()
                _state["module"] = amdsmi
            except Exception:
                _state["module"] = None
        return _state["module"]


def reset_amdsmi_cache() -> None:
    with _lock:
        _state.clear()


def _first_number(info: Any, *keys: str) -> float | None:
    if isinstance(info, dict):
        for key in keys:
            value = info.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
    return None


class AmdSmiTelemetry(Telemetry):
    source = "amdsmi"

    def __init__(self, smi: ModuleType, handle: Any) -> None:
        self.smi = smi
        self.handle = handle

    @classmethod
    def open(cls, index: int) -> AmdSmiTelemetry | None:
        smi = load_amdsmi()
        if smi is None:
            return None
        try:
            handles = smi.amdsmi_get_processor_handles()
            return cls(smi, handles[index])
        except Exception:
            return None

    def memory(self) -> MemoryInfo | None:
        vram = self.smi.AmdSmiMemoryType.VRAM
        total = int(self.smi.amdsmi_get_gpu_memory_total(self.handle, vram))
        used = int(self.smi.amdsmi_get_gpu_memory_usage(self.handle, vram))
        return MemoryInfo(total_bytes=total, free_bytes=total - used)

    def power_w(self) -> float | None:
        info = self.smi.amdsmi_get_power_info(self.handle)
        return _first_number(info, "current_socket_power", "average_socket_power", "socket_power")

    def energy_j(self) -> float | None:
        info = self.smi.amdsmi_get_energy_count(self.handle)
        count = _first_number(info, "energy_accumulator", "power")
        resolution_uj = _first_number(info, "counter_resolution")
        if count is None or resolution_uj is None:
            return None
        return count * resolution_uj / 1e6

    def temperature_c(self) -> float | None:
        value = self.smi.amdsmi_get_temp_metric(
            self.handle,
            self.smi.AmdSmiTemperatureType.HOTSPOT,
            self.smi.AmdSmiTemperatureMetric.CURRENT,
        )
        return float(value)

    def clocks(self) -> Clocks | None:
        gfx = self.smi.amdsmi_get_clock_info(self.handle, self.smi.AmdSmiClkType.GFX)
        mem = self.smi.amdsmi_get_clock_info(self.handle, self.smi.AmdSmiClkType.MEM)
        return Clocks(
            compute_mhz=_first_number(gfx, "clk", "cur_clk"),
            memory_mhz=_first_number(mem, "clk", "cur_clk"),
        )

    def power_limit_w(self) -> float | None:
        cap_uw = _first_number(self.smi.amdsmi_get_power_cap_info(self.handle), "power_cap")
        return None if cap_uw is None else cap_uw / 1e6

    def can_set_power_limit(self) -> bool:
        return hasattr(self.smi, "amdsmi_set_power_cap")

    def set_power_limit_w(self, watts: float) -> None:
        try:
            self.smi.amdsmi_set_power_cap(self.handle, 0, int(watts * 1e6))
        except Exception as err:
            raise TelemetryUnsupported(f"amdsmi: cannot set power cap: {err}") from err
