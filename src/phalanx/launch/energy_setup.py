"""`--objective`, `--power-budget-w`: turn the launcher's fleet into operating points.

The launcher knows each device's power model (from fleet.toml, or the
default curve for `--emulate` chips); `energy.operating_points` picks which
devices train and at what power limit. Devices left out are not launched:
replica numbers (r0, r1, ...) count the devices that train, in fleet order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phalanx.devices.config import PowerCurve
from phalanx.energy.operating_points import (
    DeviceEnergyModel,
    EnergyChoice,
    NoFeasibleChoice,
    choose_operating_points,
)
from phalanx.errors import UsageError


@dataclass
class EnergySettings:
    objective: str = "time"
    power_budget_w: float | None = None
    max_slowdown: float = 0.10
    energy_weight: float = 1.0
    fleet_cost_per_h: float = 0.0
    tariff_per_kwh: float | None = None

    @property
    def active(self) -> bool:
        return self.objective != "time" or self.power_budget_w is not None


@dataclass
class EnergyPlan:
    """The outcome: per training device its limit, plus what was left out and why."""

    choice: EnergyChoice
    kept: list[int]  # indices into the launcher's fleet, in order
    limits_w: list[float | None]  # per kept device
    left_out: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        c = self.choice
        return {
            "objective": c.objective,
            "points": [
                {"device": p.device_id, "train": p.train, "limit_w": p.limit_w, "speed": p.speed}
                for p in c.points
            ],
            "predicted_power_w": round(c.power_w, 1),
            "predicted_j_per_work_vs_full": round(c.j_per_work / c.full_j_per_work, 4),
            "predicted_slowdown": round(c.slowdown, 4),
            "left_out": self.left_out,
            "notes": list(c.notes),
        }


def device_models(
    speeds: list[float | None], tables: list[dict[str, Any]]
) -> list[DeviceEnergyModel]:
    """Each device's energy model; refuses devices without one (plain `--replicas`)."""
    from phalanx.devices.fleet_parse import parse_device

    models = []
    for index, speed in enumerate(speeds):
        table = tables[index].get("device") if index < len(tables) else None
        if table is not None:
            config = parse_device(table, index)
            name, power = config.id, config.power or PowerCurve()
        elif speed is not None:
            name, power = f"r{index}", PowerCurve()
        else:
            raise UsageError(
                "--objective/--power-budget-w",
                "needs a power model for every device",
                "use emulated chips (--emulate, or --fleet with [device.power] tables)",
            )
        models.append(DeviceEnergyModel(name, float(speed or 1.0), power))
    return models


def plan_energy(
    settings: EnergySettings, speeds: list[float | None], tables: list[dict[str, Any]]
) -> EnergyPlan:
    models = device_models(speeds, tables)
    try:
        choice = choose_operating_points(
            models,
            settings.objective,
            power_budget_w=settings.power_budget_w,
            max_slowdown=settings.max_slowdown,
            energy_weight=settings.energy_weight,
            tariff_per_kwh=settings.tariff_per_kwh,
            fleet_cost_per_h=settings.fleet_cost_per_h,
        )
    except NoFeasibleChoice as err:
        raise UsageError(
            "--power-budget-w",
            str(err),
            "raise the budget or add devices that draw less",
            settings.power_budget_w,
        ) from None
    kept = [i for i, p in enumerate(choice.points) if p.train]
    left_out = [p.device_id for p in choice.points if not p.train]
    return EnergyPlan(choice, kept, [choice.points[i].limit_w for i in kept], left_out)


def describe(plan: EnergyPlan) -> list[str]:
    """Clear lines for the user: what runs at what limit, what was left out."""
    c = plan.choice
    points = ", ".join(
        f"{p.device_id}@{p.limit_w:g}W" if p.limit_w is not None else f"{p.device_id}@full"
        for p in c.training
    )
    lines = [
        f"objective {c.objective}: {points}; predicted {c.power_w:.0f} W "
        f"(full power {c.full_power_w:.0f} W), {c.slowdown:.1%} slower, "
        f"{1 - c.j_per_work / c.full_j_per_work:.1%} fewer joules per sample"
    ]
    if plan.left_out:
        lines.append(f"left out (not worth their power here): {', '.join(plan.left_out)}")
    lines += list(c.notes)
    return lines


def apply_energy_plan(plan: Any) -> EnergyPlan:
    """Choose operating points for a RunPlan and keep only the devices that train.

    Faults name replicas by number among the devices that train; one aimed at
    a replica that no longer exists is refused here, before anything starts.
    """
    settings: EnergySettings = plan.energy
    if settings.objective == "cost" and settings.tariff_per_kwh is None:
        settings.tariff_per_kwh = plan.tariff_per_kwh
    if settings.objective == "cost" and not settings.tariff_per_kwh:
        raise UsageError("--objective", "cost needs a tariff", "add --tariff 0.08/kWh", "cost")
    tables = plan.device_tables or []
    energy = plan_energy(settings, plan.speeds, tables)
    plan.speeds = [plan.speeds[i] for i in energy.kept]
    if tables:
        plan.device_tables = [tables[i] for i in energy.kept]
    plan.power_limits_w = list(energy.limits_w)
    for fault in plan.faults:
        if isinstance(fault.replica, int) and fault.replica >= len(plan.speeds):
            raise UsageError(
                "--fault",
                f"replica {fault.replica} does not train under this objective "
                f"({len(plan.speeds)} devices train; left out: {', '.join(energy.left_out)})",
                "number faults among the devices that train, or drop --objective",
                fault.replica,
            )
    return energy


def effective_speeds(
    speeds: list[float | None], tables: list[dict[str, Any]], limits_w: list[float | None]
) -> list[float | None]:
    """Emulated speeds after power limits (what the emulation's time scale must cover)."""
    from phalanx.devices.fleet_parse import parse_device

    out: list[float | None] = []
    for index, (speed, limit_w) in enumerate(zip(speeds, limits_w)):
        if speed is None or limit_w is None:
            out.append(speed)
            continue
        table = tables[index].get("device") if index < len(tables) else None
        config = parse_device(table or {"id": f"r{index}", "kind": "emulated"}, index)
        out.append(speed * (config.power or PowerCurve()).speed_at_limit(limit_w))
    return out
