"""Which devices train, and at what power limit: the energy objectives and the power budget.

Pure code. A device is modelled by its full-power speed (relative units of
work per second), its power curve (idle and full-load watts) and its
power-to-speed curve under a limit. With shares that equalise finishing
times every training device is busy for the whole step, so the fleet does

    work rate  X = sum of s_i * speed_fraction(L_i)
    power      P = sum of L_i          (full-load draw under limit L_i)

for the devices chosen, and joules per unit of work are P / X.

The objectives are one family: minimise (P + lambda) / X, where lambda is the
value of time expressed in watts. `energy` is lambda = 0 (joules per unit of
work) with a floor on X (`max_slowdown`, 10% by default) and, as Zeus does,
an optional weight eta between energy and time, lambda = (1 - eta) / eta * P_full.
`cost` prices both: lambda = (fleet cost per hour) / (tariff per kWh) in kW.
`time` maximises X. A power budget caps P in all of them.

The search sweeps a price kappa for a unit of work: at each kappa every
device independently picks the option (off, or a limit) maximising
kappa * speed - power. As kappa grows the chosen configurations trace the
upper hull of (power, work) trade-offs; every configuration on the sweep is
scored and the best feasible one wins. A final greedy pass tops up devices
while the budget allows (the hull alone can leave budget unused).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from phalanx.devices.config import PowerCurve

OBJECTIVES = ("time", "energy", "cost")
DEFAULT_MAX_SLOWDOWN = 0.10
# Limits tried between the lowest accepted limit and full power, as fractions of max_w.
LIMIT_GRID = tuple(round(0.40 + 0.05 * i, 2) for i in range(13))  # 0.40 .. 1.00


@dataclass(frozen=True)
class DeviceEnergyModel:
    device_id: str
    speed: float  # work per second at full power, any unit shared by the fleet
    power: PowerCurve


@dataclass(frozen=True)
class OperatingPoint:
    device_id: str
    train: bool
    limit_w: float | None  # None: no limit set (full power), or the device does not train
    speed: float  # work per second at this point (0 when not training)
    power_w: float  # full-load draw at this point (0 when not training)


@dataclass(frozen=True)
class EnergyChoice:
    objective: str
    points: tuple[OperatingPoint, ...]
    work_rate: float
    power_w: float
    full_work_rate: float  # every device at full power
    full_power_w: float
    notes: tuple[str, ...] = field(default=())

    @property
    def j_per_work(self) -> float:
        return self.power_w / self.work_rate if self.work_rate > 0 else math.inf

    @property
    def full_j_per_work(self) -> float:
        return self.full_power_w / self.full_work_rate if self.full_work_rate > 0 else math.inf

    @property
    def slowdown(self) -> float:
        return 1.0 - self.work_rate / self.full_work_rate if self.full_work_rate else 0.0

    @property
    def training(self) -> list[OperatingPoint]:
        return [p for p in self.points if p.train]


class NoFeasibleChoice(ValueError):
    """No set of devices and limits meets the budget (the message says how close it got)."""


def _options(device: DeviceEnergyModel) -> list[OperatingPoint]:
    curve = device.power
    off = OperatingPoint(device.device_id, False, None, 0.0, 0.0)
    full = OperatingPoint(device.device_id, True, None, device.speed, curve.max_w)
    if not curve.limit_control:
        return [off, full]
    options = [off, full]
    for fraction in LIMIT_GRID[:-1]:
        limit_w = round(fraction * curve.max_w, 1)
        if limit_w < curve.lowest_limit_w or limit_w < curve.idle_w:
            continue
        speed = device.speed * curve.speed_at_limit(limit_w)
        options.append(OperatingPoint(device.device_id, True, limit_w, speed, limit_w))
    return options


def _pick(options: list[OperatingPoint], kappa: float) -> OperatingPoint:
    # Ties go to the lower power (then to not training): never spend watts for nothing.
    return max(options, key=lambda o: (kappa * o.speed - o.power_w, -o.power_w, -o.speed))


def _sweep(all_options: list[list[OperatingPoint]]) -> list[tuple[OperatingPoint, ...]]:
    """Every configuration the price sweep passes through, from all-off to all-full."""
    breaks: set[float] = set()
    for options in all_options:
        for a in options:
            for b in options:
                if a.speed > b.speed and a.power_w > b.power_w:
                    breaks.add((a.power_w - b.power_w) / (a.speed - b.speed))
    ordered = sorted(breaks)
    probes = [0.0]
    probes += [(x + y) / 2 for x, y in itertools.pairwise(ordered)]
    probes += [ordered[-1] * 2 + 1.0] if ordered else [1.0]
    probes += ordered
    seen: dict[tuple[tuple[str, float | None, bool], ...], tuple[OperatingPoint, ...]] = {}
    for kappa in sorted(probes):
        config = tuple(_pick(options, kappa) for options in all_options)
        key = tuple((p.device_id, p.limit_w, p.train) for p in config)
        seen.setdefault(key, config)
    return list(seen.values())


def _top_up(
    config: tuple[OperatingPoint, ...],
    all_options: list[list[OperatingPoint]],
    budget_w: float,
) -> tuple[OperatingPoint, ...]:
    """Raise devices to more work while the budget allows, best work per watt first."""
    current = list(config)
    while True:
        spare_w = budget_w - sum(p.power_w for p in current)
        best: tuple[float, int, OperatingPoint] | None = None
        for i, options in enumerate(all_options):
            for option in options:
                extra_w = option.power_w - current[i].power_w
                gain = option.speed - current[i].speed
                if gain <= 0 or extra_w > spare_w + 1e-9:
                    continue
                score = gain / max(extra_w, 1e-9)
                if best is None or score > best[0]:
                    best = (score, i, option)
        if best is None:
            return tuple(current)
        current[best[1]] = best[2]


def choose_operating_points(
    devices: Sequence[DeviceEnergyModel],
    objective: str = "time",
    power_budget_w: float | None = None,
    max_slowdown: float = DEFAULT_MAX_SLOWDOWN,
    energy_weight: float = 1.0,
    tariff_per_kwh: float | None = None,
    fleet_cost_per_h: float = 0.0,
) -> EnergyChoice:
    """The devices to train and their limits for an objective (see the module docstring)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
    if not devices:
        raise ValueError("no devices")
    all_options = [_options(d) for d in devices]
    full_rate = sum(d.speed for d in devices)
    full_power_w = sum(d.power.max_w for d in devices)
    if objective == "energy":
        time_w = (1.0 - energy_weight) / energy_weight * full_power_w if energy_weight > 0 else 0.0
        floor = (1.0 - max_slowdown) * full_rate
    elif objective == "cost":
        if not tariff_per_kwh:
            raise ValueError("the cost objective needs a tariff")
        time_w = fleet_cost_per_h / tariff_per_kwh * 1000.0
        floor = 0.0
    else:
        time_w, floor = 0.0, 0.0

    candidates = _sweep(all_options)
    if power_budget_w is not None:
        candidates += [_top_up(c, all_options, power_budget_w) for c in candidates]

    def fits(config: tuple[OperatingPoint, ...]) -> bool:
        power_w = sum(p.power_w for p in config)
        rate = sum(p.speed for p in config)
        return rate > 0 and (power_budget_w is None or power_w <= power_budget_w + 1e-9)

    feasible = [c for c in candidates if fits(c)]
    if not feasible:
        lowest = min(o.power_w for options in all_options for o in options if o.train)
        raise NoFeasibleChoice(
            f"a power budget of {power_budget_w:g} W cannot run even one device "
            f"(the least any device draws at full load is {lowest:g} W)"
        )
    notes: list[str] = []
    if objective == "time":
        best = max(feasible, key=lambda c: (_rate(c), -_power(c)))
    else:
        meeting = [c for c in feasible if _rate(c) >= floor - 1e-12]
        if not meeting:
            meeting = [max(feasible, key=_rate)]
            notes.append(
                f"no choice keeps {1 - max_slowdown:.0%} of full speed within the budget; "
                "taking the fastest that fits"
            )
        best = min(meeting, key=lambda c: ((_power(c) + time_w) / _rate(c), -_rate(c)))
    return EnergyChoice(
        objective=objective,
        points=best,
        work_rate=_rate(best),
        power_w=_power(best),
        full_work_rate=full_rate,
        full_power_w=full_power_w,
        notes=tuple(notes),
    )


def _rate(config: Sequence[OperatingPoint]) -> float:
    return sum(p.speed for p in config)


def _power(config: Sequence[OperatingPoint]) -> float:
    return sum(p.power_w for p in config)
