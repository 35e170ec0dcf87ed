"""Host CPU telemetry from Linux sysfs/procfs; every reader degrades to None.

Energy comes from the RAPL package counter when it is readable (often root
only); temperature from the x86 package thermal zone when there is one.
"""

from __future__ import annotations

from pathlib import Path

from phalanx.devices.telemetry.base import MemoryInfo, Telemetry

_RAPL_DIR = Path("/sys/class/powercap/intel-rapl:0")
_THERMAL_ROOT = Path("/sys/class/thermal")


def read_meminfo(path: Path = Path("/proc/meminfo")) -> MemoryInfo | None:
    fields: dict[str, int] = {}
    for line in path.read_text().splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0]) * 1024  # the file says kB and means KiB
    if "MemTotal" not in fields:
        return None
    free = fields.get("MemAvailable", fields.get("MemFree", 0))
    return MemoryInfo(total_bytes=fields["MemTotal"], free_bytes=free)


class HostCpuTelemetry(Telemetry):
    source = "host"

    def __init__(self, rapl_dir: Path = _RAPL_DIR, thermal_root: Path = _THERMAL_ROOT) -> None:
        self.rapl_dir = rapl_dir
        self.thermal_root = thermal_root
        self._energy_wraps = 0
        self._last_uj: int | None = None

    def memory(self) -> MemoryInfo | None:
        return read_meminfo()

    def energy_j(self) -> float | None:
        raw = int((self.rapl_dir / "energy_uj").read_text())
        max_uj = int((self.rapl_dir / "max_energy_range_uj").read_text())
        if self._last_uj is not None and raw < self._last_uj:
            self._energy_wraps += 1  # the counter wraps every few minutes at full load
        self._last_uj = raw
        return (raw + self._energy_wraps * max_uj) / 1e6

    def temperature_c(self) -> float | None:
        for zone in sorted(self.thermal_root.glob("thermal_zone*")):
            if (zone / "type").read_text().strip() == "x86_pkg_temp":
                return int((zone / "temp").read_text()) / 1000.0
        return None
