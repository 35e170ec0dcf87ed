"""What a fleet.toml `[[device]]` table says, as typed, validated values.

Real devices need little more than kind and index; emulated chips carry the
models of their speed, power, heat and defects. `qualification` is filled in
by `phalanx qualify` and read back by the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from phalanx.devices.kinds import DEFAULT_DTYPES, torch_device_string
from phalanx.plan.power_curve import DEFAULT_CURVE, speed_at_power

GIB = 2**30
DEFAULT_EMULATED_MEMORY_BYTES = 16 * GIB


@dataclass(frozen=True)
class PowerCurve:
    """Electrical power drawn as a linear function of utilisation (0..1), and
    what a power limit costs in speed.

    Under a limit L the chip draws at most L at full load and runs at
    `speed_at_limit(L)` of its full speed: `speed_curve` holds measured
    (L / max_w, speed fraction) points, interpolated linearly. The default is
    a typical GPU shape (half the power keeps about 80% of the speed).
    """

    idle_w: float = 40.0
    max_w: float = 250.0
    speed_curve: tuple[tuple[float, float], ...] = DEFAULT_CURVE
    min_limit_w: float | None = None  # lowest limit the chip accepts; None: half of max_w
    limit_control: bool = True  # False: the chip has no power-limit knob (old boards)

    def power_w(self, utilization: float, limit_w: float | None = None) -> float:
        top_w = self.max_w if limit_w is None else max(self.idle_w, min(limit_w, self.max_w))
        return self.idle_w + (top_w - self.idle_w) * min(max(utilization, 0.0), 1.0)

    @property
    def lowest_limit_w(self) -> float:
        return self.min_limit_w if self.min_limit_w is not None else 0.5 * self.max_w

    def speed_at_limit(self, limit_w: float | None) -> float:
        """Fraction of full speed kept under a power limit (1.0 without one)."""
        if limit_w is None or limit_w >= self.max_w:
            return 1.0
        return speed_at_power(self.speed_curve, limit_w / self.max_w)


@dataclass(frozen=True)
class ThermalConfig:
    """First-order thermal model: the die relaxes towards ambient + R·P.

    With the defaults a chip at 250 W settles at 25 + 0.16·250 = 65 °C, well
    below throttling; a badly cooled chip has a larger resistance.
    """

    ambient_c: float = 25.0
    resistance_c_per_w: float = 0.16
    time_constant_s: float = 15.0
    throttle_c: float = 85.0
    throttle_slowdown: float = 0.3  # fraction of speed lost while throttled
    shutdown_c: float = 100.0


@dataclass(frozen=True)
class MemoryRegion:
    """Bytes [offset_bytes, offset_bytes + length_bytes) of device memory are bad."""

    offset_bytes: int
    length_bytes: int


@dataclass(frozen=True)
class IntermittentFault:
    """Bit flips that only appear once the chip is loaded long enough or hot enough.

    The fault is active once either condition set holds.
    """

    flip_rate: float
    after_load_s: float | None = None
    above_c: float | None = None


@dataclass(frozen=True)
class HeatSlowdown:
    """The chip loses `fraction` of its speed whenever it is above `above_c`."""

    fraction: float
    above_c: float


@dataclass(frozen=True)
class Defects:
    flip_rate: float = 0.0  # bit flips per matmul/conv output element, always
    bad_memory: tuple[MemoryRegion, ...] = ()
    crash_after_load_s: float | None = None
    intermittent: IntermittentFault | None = None
    heat_slowdown: HeatSlowdown | None = None

    def any(self) -> bool:
        return bool(
            self.flip_rate
            or self.bad_memory
            or self.crash_after_load_s is not None
            or self.intermittent
            or self.heat_slowdown
        )


@dataclass(frozen=True)
class Qualification:
    """What `phalanx qualify` found. Every number is optional: a check that did
    not run (or a sensor the device lacks) leaves its field None."""

    passed: bool
    level: str
    seed: int = 0
    failed_checks: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    duration_s: float | None = None
    time_scale: float | None = None
    gflops: float | None = None
    measured_speed: float | None = None
    elements_checked: int | None = None
    wrong_elements: int | None = None
    memory_checked_bytes: int | None = None  # device bytes the memory check wrote and read back
    memory_scale: float | None = None
    bad_memory_bytes: int | None = None
    memory_tested_fraction: float | None = None  # memory_checked_bytes / the device's memory
    # The most device memory training may use: the tested bytes. None: not capped (host
    # RAM, whose pages the OS places anywhere) or not known. See devices/memory_cap.py.
    usable_memory_bytes: int | None = None
    sustained_s: float | None = None
    throughput_drop: float | None = None
    max_temperature_c: float | None = None
    max_power_w: float | None = None
    throttled: bool | None = None
    energy_j: float | None = None
    profile_microbatches: tuple[int, ...] = ()
    profile_samples_per_s: tuple[float, ...] = ()
    max_microbatch: int | None = None


@dataclass(frozen=True)
class DeviceConfig:
    id: str
    kind: str
    index: int = 0
    model: str = ""
    host: str | None = None
    memory_bytes: int | None = None
    dtypes: tuple[str, ...] = ()
    # emulated chips only
    speed: float | None = None
    seed: int | None = None
    power: PowerCurve | None = None
    thermal: ThermalConfig | None = None
    defects: Defects = field(default_factory=Defects)
    # informational, written by `phalanx fleet scan`
    capabilities: dict[str, bool] = field(default_factory=dict)
    spec: dict[str, float] = field(default_factory=dict)
    qualification: Qualification | None = None

    @property
    def torch_device(self) -> str:
        return torch_device_string(self.kind, self.index)

    @property
    def effective_dtypes(self) -> tuple[str, ...]:
        return self.dtypes or DEFAULT_DTYPES[self.kind]

    @property
    def emulated(self) -> bool:
        return self.kind == "emulated"
