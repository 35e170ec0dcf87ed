"""Turn a parsed fleet.toml document into `DeviceConfig`s, or one clear error.

Only `[fleet]` and `[[device]]` belong to this module. Other top-level tables
(the planner's `[[class]]`, for one) are left to their owners and ignored.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from phalanx.devices.config import (
    DEFAULT_EMULATED_MEMORY_BYTES,
    Defects,
    DeviceConfig,
    HeatSlowdown,
    IntermittentFault,
    MemoryRegion,
    PowerCurve,
    Qualification,
    ThermalConfig,
)
from phalanx.devices.kinds import DTYPE_NAMES, KINDS
from phalanx.devices.table_reader import TableReader
from phalanx.errors import UsageError
from phalanx.plan.power_curve import parse_curve

COMMON_KEYS = (
    "id", "kind", "index", "model", "host", "memory_bytes", "dtypes",
    "capabilities", "spec", "qualification",
)  # fmt: skip
EMULATED_KEYS = ("speed", "seed", "power", "thermal", "defects")
POWER_KEYS = ("idle_w", "max_w", "speed_curve", "min_limit_w", "limit_control")
QUALIFICATION_KEYS = tuple(f.name for f in dataclasses.fields(Qualification))


@dataclasses.dataclass(frozen=True)
class Fleet:
    meta: dict[str, Any]
    devices: tuple[DeviceConfig, ...]


def parse_fleet(doc: dict[str, Any], source: str = "fleet.toml") -> Fleet:
    meta = doc.get("fleet", {})
    if not isinstance(meta, dict):
        raise UsageError(
            "fleet", "must be a table", "write [fleet] with key = value lines under it", meta
        )
    raw_devices = doc.get("device", [])
    if not isinstance(raw_devices, list):
        raise UsageError(
            "device",
            "must be an array of tables",
            "write each device as a [[device]] table",
            raw_devices,
        )
    devices = [parse_device(raw, i) for i, raw in enumerate(raw_devices)]
    seen: dict[str, int] = {}
    for i, device in enumerate(devices):
        if device.id in seen:
            raise UsageError(
                f"device[{i}].id",
                f"duplicates device[{seen[device.id]}].id",
                "give every device a unique id",
                device.id,
            )
        seen[device.id] = i
    return Fleet(meta=dict(meta), devices=tuple(devices))


def parse_device(raw: Any, i: int) -> DeviceConfig:
    where = f"device[{i}]"
    if not isinstance(raw, dict):
        raise UsageError(where, "must be a table", "write it as a [[device]] table", raw)
    # Read the kind first: it decides which other keys are allowed.
    kind = TableReader({"kind": raw.get("kind")} if "kind" in raw else {}, where, ("kind",)).string(
        "kind", required=True, choices=KINDS
    )
    assert kind is not None
    if kind != "emulated":
        misplaced = [key for key in EMULATED_KEYS if key in raw]
        if misplaced:
            raise UsageError(
                f"{where}.{misplaced[0]}",
                f'is only allowed for kind = "emulated" (this device is {kind!r})',
                f'remove {misplaced[0]} or set kind = "emulated"',
            )
    allowed = COMMON_KEYS + (EMULATED_KEYS if kind == "emulated" else ())
    t = TableReader(raw, where, allowed)
    index = t.integer("index", minimum=0) or 0
    default_id = f"emu{i}" if kind == "emulated" else f"{kind}{index}"
    device_id = t.string("id") or default_id
    if not device_id.strip():
        raise UsageError(
            t.field("id"), "must not be empty", "give the device a short unique name", device_id
        )
    memory_bytes = t.integer("memory_bytes", minimum=1)
    common: dict[str, Any] = {
        "id": device_id,
        "kind": kind,
        "index": index,
        "model": t.string("model") or ("emulated" if kind == "emulated" else ""),
        "host": t.string("host"),
        "dtypes": t.array("dtypes", str, choices=DTYPE_NAMES) or (),
        "capabilities": t.scalar_map("capabilities", bool),
        "spec": t.scalar_map("spec", float),
        "qualification": _qualification(
            t.table("qualification", QUALIFICATION_KEYS),
            memory_bytes or (DEFAULT_EMULATED_MEMORY_BYTES if kind == "emulated" else None),
        ),
    }
    if kind != "emulated":
        return DeviceConfig(memory_bytes=memory_bytes, **common)
    return DeviceConfig(
        memory_bytes=memory_bytes or DEFAULT_EMULATED_MEMORY_BYTES,
        speed=t.number("speed", positive=True) or 1.0,
        seed=t.integer("seed"),
        power=_power(t.table("power", POWER_KEYS)),
        thermal=_thermal(t.table("thermal", [f.name for f in dataclasses.fields(ThermalConfig)])),
        defects=_defects(
            t.table(
                "defects",
                ("flip_rate", "bad_memory", "crash_after_load_s", "intermittent", "heat_slowdown"),
            ),
            memory_bytes or DEFAULT_EMULATED_MEMORY_BYTES,
        ),
        **common,
    )


def _power(t: TableReader | None) -> PowerCurve:
    if t is None:
        return PowerCurve()
    default = PowerCurve()
    idle_w = t.number("idle_w", minimum=0.0)
    max_w = t.number("max_w", positive=True)
    raw_curve = t.raw("speed_curve")
    control = t.boolean("limit_control")
    curve = PowerCurve(
        idle_w=default.idle_w if idle_w is None else idle_w,
        max_w=max_w or default.max_w,
        speed_curve=default.speed_curve
        if raw_curve is None
        else parse_curve(_plain(raw_curve), t.field("speed_curve")),
        min_limit_w=t.number("min_limit_w", positive=True),
        limit_control=True if control is None else control,
    )
    if curve.max_w < curve.idle_w:
        raise UsageError(
            t.field("max_w"),
            f"is below idle_w ({curve.idle_w:g})",
            "make max_w >= idle_w",
            curve.max_w,
        )
    if not curve.idle_w <= curve.lowest_limit_w <= curve.max_w:
        raise UsageError(
            t.field("min_limit_w"),
            f"must lie between idle_w ({curve.idle_w:g}) and max_w ({curve.max_w:g})",
            "pick the lowest power limit the board accepts",
            curve.min_limit_w,
        )
    return curve


def _plain(value: Any) -> Any:
    """Tuples (from a dict written back by device_to_dict) as the lists TOML gives."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _thermal(t: TableReader | None) -> ThermalConfig:
    if t is None:
        return ThermalConfig()
    default = ThermalConfig()
    values = {
        "ambient_c": t.number("ambient_c", minimum=-50.0, maximum=100.0),
        "resistance_c_per_w": t.number("resistance_c_per_w", minimum=0.0),
        "time_constant_s": t.number("time_constant_s", positive=True),
        "throttle_c": t.number("throttle_c"),
        "throttle_slowdown": t.number("throttle_slowdown", minimum=0.0, maximum=0.95),
        "shutdown_c": t.number("shutdown_c"),
    }
    thermal = dataclasses.replace(default, **{k: v for k, v in values.items() if v is not None})
    if thermal.shutdown_c <= thermal.throttle_c:
        raise UsageError(
            t.field("shutdown_c"),
            f"must be above throttle_c ({thermal.throttle_c:g})",
            "raise shutdown_c or lower throttle_c",
            thermal.shutdown_c,
        )
    return thermal


def _defects(t: TableReader | None, memory_bytes: int) -> Defects:
    if t is None:
        return Defects()
    regions = []
    raw_regions = t.data.get("bad_memory", [])
    if not isinstance(raw_regions, list):
        raise UsageError(
            t.field("bad_memory"),
            "must be an array of tables",
            "write bad_memory = [{ offset_bytes = ..., length_bytes = ... }]",
            raw_regions,
        )
    for j, raw in enumerate(raw_regions):
        r = TableReader(raw, f"{t.field('bad_memory')}[{j}]", ("offset_bytes", "length_bytes"))
        offset = r.integer("offset_bytes", required=True, minimum=0)
        length = r.integer("length_bytes", required=True, minimum=1)
        assert offset is not None and length is not None
        if offset + length > memory_bytes:
            raise UsageError(
                r.field("offset_bytes"),
                f"region ends past the device's memory_bytes ({memory_bytes})",
                "keep the region inside the device memory",
                offset,
            )
        regions.append(MemoryRegion(offset_bytes=offset, length_bytes=length))
    intermittent = None
    it = t.table("intermittent", ("flip_rate", "after_load_s", "above_c"))
    if it is not None:
        rate = it.number("flip_rate", required=True, minimum=0.0, maximum=1.0)
        after = it.number("after_load_s", minimum=0.0)
        above = it.number("above_c")
        if after is None and above is None:
            raise UsageError(
                it.field("after_load_s"),
                "is missing (and so is above_c)",
                "say when the fault appears: after_load_s, above_c or both",
            )
        assert rate is not None
        intermittent = IntermittentFault(flip_rate=rate, after_load_s=after, above_c=above)
    slowdown = None
    hs = t.table("heat_slowdown", ("fraction", "above_c"))
    if hs is not None:
        fraction = hs.number("fraction", required=True, minimum=0.0, maximum=0.95)
        above = hs.number("above_c", required=True)
        assert fraction is not None and above is not None
        slowdown = HeatSlowdown(fraction=fraction, above_c=above)
    return Defects(
        flip_rate=t.number("flip_rate", minimum=0.0, maximum=1.0) or 0.0,
        bad_memory=tuple(regions),
        crash_after_load_s=t.number("crash_after_load_s", minimum=0.0),
        intermittent=intermittent,
        heat_slowdown=slowdown,
    )


# Qualification fields with a range; the others take any value of their type.
_QUALIFICATION_MIN_INT = {"usable_memory_bytes": 1}
_QUALIFICATION_RANGE = {"memory_tested_fraction": (0.0, 1.0)}


def _qualification(t: TableReader | None, memory_bytes: int | None) -> Qualification | None:
    if t is None:
        return None
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Qualification):
        if not t.has(f.name):
            continue
        kind = str(f.type)
        if kind == "bool" or kind == "bool | None":
            values[f.name] = t.boolean(f.name)
        elif kind == "str":
            values[f.name] = t.string(f.name)
        elif kind in ("int", "int | None"):
            values[f.name] = t.integer(f.name, minimum=_QUALIFICATION_MIN_INT.get(f.name))
        elif kind == "float | None":
            low, high = _QUALIFICATION_RANGE.get(f.name, (None, None))
            values[f.name] = t.number(f.name, minimum=low, maximum=high)
        elif kind == "tuple[str, ...]":
            values[f.name] = t.array(f.name, str)
        elif kind == "tuple[int, ...]":
            values[f.name] = t.array(f.name, int)
        elif kind == "tuple[float, ...]":
            values[f.name] = t.array(f.name, float)
        else:  # pragma: no cover - a new field type needs a reader here
            raise TypeError(f"no reader for Qualification.{f.name}: {kind}")
    for required in ("passed", "level"):
        if required not in values:
            raise UsageError(
                t.field(required), "is missing", "re-run phalanx qualify to write a complete table"
            )
    usable = values.get("usable_memory_bytes")
    if usable is not None and memory_bytes is not None and usable > memory_bytes:
        # A cap above the device's memory caps nothing: most likely a hand edit gone wrong.
        raise UsageError(
            t.field("usable_memory_bytes"),
            f"is more than the device's memory_bytes ({memory_bytes})",
            "use at most memory_bytes, or re-run phalanx qualify to write the bytes it tested",
            usable,
        )
    return Qualification(**values)
