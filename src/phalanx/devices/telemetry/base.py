"""The telemetry interface every device offers, and its null object.

Each query returns None when the device (or this host) cannot answer it; a
caller never needs to know which vendor library, if any, sits behind it.
`capabilities()` probes each query once so tools can say what is supported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

CAPABILITY_NAMES = (
    "memory",
    "power",
    "energy_counter",
    "temperature",
    "clocks",
    "throttle_reasons",
    "power_limit",
    "power_limit_control",
)
# Throttle reasons that mean "too hot", whatever the vendor calls them.
THERMAL_REASONS = frozenset({"sw_thermal", "hw_thermal", "hw_slowdown", "thermal"})


class TelemetryUnsupported(Exception):
    """Raised by the few calls that change hardware state (power limits)."""


@dataclass(frozen=True)
class MemoryInfo:
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class Clocks:
    compute_mhz: float | None
    memory_mhz: float | None


@dataclass(frozen=True)
class TelemetrySample:
    time_s: float
    power_w: float | None
    energy_j: float | None
    temperature_c: float | None
    compute_mhz: float | None
    throttle_reasons: tuple[str, ...] | None


class Telemetry:
    """The null object: supports nothing, never fails. Backends override queries."""

    source = "none"

    def memory(self) -> MemoryInfo | None:
        return None

    def power_w(self) -> float | None:
        return None

    def energy_j(self) -> float | None:
        """A monotonic energy counter (joules since an arbitrary origin)."""
        return None

    def temperature_c(self) -> float | None:
        return None

    def clocks(self) -> Clocks | None:
        return None

    def throttle_reasons(self) -> tuple[str, ...] | None:
        """Active reasons the clocks are held down; () means none, None unknown."""
        return None

    def throttle_temperature_c(self) -> float | None:
        """Where the device starts to throttle for heat (None: unknown)."""
        return None

    def power_limit_w(self) -> float | None:
        return None

    def can_set_power_limit(self) -> bool:
        return False

    def set_power_limit_w(self, watts: float) -> None:
        raise TelemetryUnsupported(f"{self.source}: power-limit control is not supported")

    def now_s(self) -> float:
        """The clock telemetry samples are stamped with (emulated chips have their own)."""
        return time.monotonic()

    def close(self) -> None:
        return None

    def capabilities(self) -> dict[str, bool]:
        probes = {
            "memory": self.memory,
            "power": self.power_w,
            "energy_counter": self.energy_j,
            "temperature": self.temperature_c,
            "clocks": self.clocks,
            "throttle_reasons": self.throttle_reasons,
            "power_limit": self.power_limit_w,
        }
        caps = {name: _answers(query) for name, query in probes.items()}
        caps["power_limit_control"] = caps["power_limit"] and _safe_bool(self.can_set_power_limit)
        return caps

    def sample_memory(self) -> MemoryInfo | None:
        """memory(), or None if the query fails."""
        return _safe(self.memory)

    def sample(self) -> TelemetrySample:
        """All sensors at once; a sensor that fails reads as None."""
        clocks = _safe(self.clocks)
        return TelemetrySample(
            time_s=self.now_s(),
            power_w=_safe(self.power_w),
            energy_j=_safe(self.energy_j),
            temperature_c=_safe(self.temperature_c),
            compute_mhz=clocks.compute_mhz if clocks else None,
            throttle_reasons=_safe(self.throttle_reasons),
        )


NullTelemetry = Telemetry


def _safe(query):  # type: ignore[no-untyped-def]
    try:
        return query()
    except Exception:  # a sensor that errors is a sensor we do not have
        return None


def _answers(query) -> bool:  # type: ignore[no-untyped-def]
    return _safe(query) is not None


def _safe_bool(query) -> bool:  # type: ignore[no-untyped-def]
    return bool(_safe(query))


class ChainTelemetry(Telemetry):
    """Asks each backend in turn and takes the first answer (e.g. NVML, then torch)."""

    def __init__(self, *parts: Telemetry) -> None:
        self.parts = parts
        self.source = "+".join(p.source for p in parts) or "none"

    def _first(self, name: str):  # type: ignore[no-untyped-def]
        for part in self.parts:
            value = _safe(getattr(part, name))
            if value is not None:
                return value
        return None

    def memory(self) -> MemoryInfo | None:
        return self._first("memory")

    def power_w(self) -> float | None:
        return self._first("power_w")

    def energy_j(self) -> float | None:
        return self._first("energy_j")

    def temperature_c(self) -> float | None:
        return self._first("temperature_c")

    def clocks(self) -> Clocks | None:
        return self._first("clocks")

    def throttle_reasons(self) -> tuple[str, ...] | None:
        return self._first("throttle_reasons")

    def throttle_temperature_c(self) -> float | None:
        return self._first("throttle_temperature_c")

    def power_limit_w(self) -> float | None:
        return self._first("power_limit_w")

    def can_set_power_limit(self) -> bool:
        return any(_safe_bool(p.can_set_power_limit) for p in self.parts)

    def set_power_limit_w(self, watts: float) -> None:
        for part in self.parts:
            if _safe_bool(part.can_set_power_limit):
                part.set_power_limit_w(watts)
                return
        super().set_power_limit_w(watts)

    def close(self) -> None:
        for part in self.parts:
            part.close()
