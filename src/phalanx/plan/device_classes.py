"""Plan a qualified fleet: `[[device]]` tables as planner classes.

`phalanx plan --fleet qualified.toml --efficiency 0.4` plans the devices that
passed `phalanx qualify`. Identical devices form one class. A class's memory
is the devices' usable memory (the qualification's cap: untested memory
holds no replica); its speed is the measured float32 matmul rate
(`gflops`) times `efficiency` (the fraction of that rate the model reaches,
which only the user knows) over the model's `flops_per_sample`; its power is
the device's `[device.power]` curve, else the power measured under load.
Devices that failed or were never qualified are left out, by id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phalanx.errors import UsageError
from phalanx.plan.fleet_classes import FleetSpec, parse_fleet
from phalanx.plan.loading import read_table_file
from phalanx.plan.power_curve import DEFAULT_CURVE

if TYPE_CHECKING:
    from phalanx.devices.config import DeviceConfig

DEFAULT_POWER_MAX_W = 300.0  # as for a [[class]] table that gives none
DEFAULT_NETWORK_GBPS = 100.0  # a device table does not say; as for a [[class]] table


@dataclass(frozen=True)
class PlanFleet:
    spec: FleetSpec
    left_out: tuple[str, ...] = ()  # device ids not planned: failed or not qualified
    from_devices: bool = False


def load_plan_fleet(path: str | Path, efficiency: float | None) -> PlanFleet:
    """A fleet file for `phalanx plan`: `[[class]]` tables, else qualified `[[device]]` tables."""
    data = read_table_file(path, "--fleet")
    if "class" in data or "device" not in data:
        if efficiency is not None:
            raise UsageError(
                "--efficiency",
                "applies only to a fleet of qualified [[device]] tables",
                "remove it: each [[class]] table gives its own efficiency",
                efficiency,
            )
        return PlanFleet(parse_fleet(data))
    return fleet_from_devices(data, efficiency)


def fleet_from_devices(data: dict[str, Any], efficiency: float | None) -> PlanFleet:
    # Imported here: phalanx.devices.config itself imports phalanx.plan.power_curve.
    from phalanx.devices.fleet_parse import parse_fleet as parse_devices

    if efficiency is None:
        raise UsageError(
            "--efficiency",
            "is needed to plan a fleet of [[device]] tables",
            "pass --efficiency F: the fraction of each device's measured float32 matmul rate "
            "(qualification gflops) your model reaches, e.g. 0.4",
        )
    if not 0 < efficiency <= 1:
        raise UsageError("--efficiency", "must be > 0 and at most 1", "pass e.g. 0.4", efficiency)
    groups: dict[tuple[Any, ...], list[DeviceConfig]] = {}
    left_out: list[str] = []
    for i, device in enumerate(parse_devices(data).devices):
        q = device.qualification
        if q is None or not q.passed:
            left_out.append(device.id)
            continue
        groups.setdefault(_class_key(device, i), []).append(device)
    if not groups:
        raise UsageError(
            "--fleet",
            "has no device that passed qualification",
            "run `phalanx qualify --fleet FILE --out qualified.toml` and plan qualified.toml",
        )
    # Written as [[class]] tables and parsed as such: one set of defaults and checks.
    tables = [_class_table(key, members, efficiency) for key, members in groups.items()]
    return PlanFleet(parse_fleet({"class": tables}), tuple(left_out), from_devices=True)


def _power(device: DeviceConfig) -> tuple[float, float, tuple[tuple[float, float], ...]]:
    """(idle W, max W, speed curve): the declared curve, else what was measured under load."""
    if device.power is not None:
        return device.power.idle_w, device.power.max_w, device.power.speed_curve
    q = device.qualification
    max_w = (q.max_power_w if q else None) or device.spec.get("tdp_w") or DEFAULT_POWER_MAX_W
    return 0.25 * max_w, max_w, DEFAULT_CURVE


def _class_key(device: DeviceConfig, i: int) -> tuple[Any, ...]:
    """(kind, model, usable memory, gflops, power): devices with the same key form one class."""
    # Imported here for the same reason as above.
    from phalanx.devices.memory_cap import usable_memory_bytes

    q = device.qualification
    assert q is not None
    if not q.gflops:
        raise UsageError(
            f"device[{i}].qualification.gflops",
            "is missing, so the device's speed is unknown",
            "re-run `phalanx qualify` on this fleet",
        )
    memory = usable_memory_bytes(device)
    if memory is None:
        raise UsageError(
            f"device[{i}].memory_bytes",
            "is missing, so the memory a replica may use is unknown",
            "add memory_bytes = <bytes> to the device, or re-run `phalanx qualify`",
        )
    return (device.kind, device.model, memory, q.gflops, _power(device))


def _class_table(
    key: tuple[Any, ...], members: list[DeviceConfig], efficiency: float
) -> dict[str, Any]:
    _kind, _model, memory, gflops, (idle_w, max_w, curve) = key
    first = members[0].id
    return {
        "name": first if len(members) == 1 else f"{first} +{len(members) - 1}",
        "count": len(members),
        "peak_flops": gflops * 1e9,
        "efficiency": efficiency,
        "memory_bytes": memory,  # the qualification's cap, not the device's whole memory
        "power_idle_w": idle_w,
        "power_max_w": max_w,
        "power_curve": [list(point) for point in curve],
        "network_gbps": DEFAULT_NETWORK_GBPS,
    }
