"""Fleet description at scale: `[[class]]` tables, each many identical chips.

    [[class]]
    name = "old-a"
    count = 4000
    peak_flops = 1.25e14        # or throughput_sps = 2.7 (samples/s for this model)
    efficiency = 0.35
    memory_gib = 32             # or memory_bytes
    power_idle_w = 50
    power_max_w = 300
    power_curve = [[0.5, 0.8], [1.0, 1.0]]
    mtbf_h = 25000              # mean time between failures, per chip
    weibull_shape = 1.0         # 1 = memoryless; < 1 infant mortality
    restart_s = 900             # until a failed chip can rejoin
    defect_rate = 0.02          # fraction rejected at qualification
    sdc_rate = 1e-6             # silent data corruptions per chip-hour
    throttle_per_h = 0.05       # thermal episodes per chip-hour
    throttle_s = 600            # mean episode length
    throttle_speed = 0.6        # speed fraction while throttled
    network_gbps = 100          # per host
    group_gbps = 100            # between chips of one replica group (PCIe, NVLink)

    [sync]                      # optional, fleet-wide
    latency_s = 2e-5            # per allreduce hop
    overhead_s = 0.005          # control plane per step (quorum, commit vote)
    overlap = 0.0               # fraction of the gradient transfer hidden behind backward

Other top-level tables (`[fleet]`, `[[device]]`, ...) belong to other parts of
phalanx and are ignored here. Unknown keys inside `[[class]]` are errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx.errors import UsageError
from phalanx.plan.fields import number, number_or, reject_unknown_keys, text
from phalanx.plan.loading import read_table_file
from phalanx.plan.model_profile import ModelProfile
from phalanx.plan.power_curve import DEFAULT_CURVE, parse_curve

GIB = 1024**3

_CLASS_KEYS = (
    "name",
    "count",
    "throughput_sps",
    "peak_flops",
    "efficiency",
    "memory_bytes",
    "memory_gib",
    "power_idle_w",
    "power_max_w",
    "power_curve",
    "mtbf_h",
    "weibull_shape",
    "restart_s",
    "defect_rate",
    "sdc_rate",
    "throttle_per_h",
    "throttle_s",
    "throttle_speed",
    "network_gbps",
    "group_gbps",
)
_SYNC_KEYS = ("latency_s", "overhead_s", "overlap")


@dataclass(frozen=True)
class DeviceClass:
    name: str
    count: int
    throughput_sps: float | None
    peak_flops: float | None
    efficiency: float | None
    memory_bytes: float
    power_idle_w: float
    power_max_w: float
    power_curve: tuple[tuple[float, float], ...]
    mtbf_h: float  # math.inf: never fails
    weibull_shape: float
    restart_s: float
    defect_rate: float
    sdc_rate: float
    throttle_per_h: float
    throttle_s: float
    throttle_speed: float
    network_gbps: float
    index: int = 0
    group_gbps: float = 100.0  # chip to chip inside a replica group (plan/groups.py)

    @property
    def where(self) -> str:
        return f"class[{self.index}]"

    @property
    def usable(self) -> int:
        """Chips expected to pass qualification."""
        return self.count - round(self.count * self.defect_rate)

    @property
    def network_bytes_per_s(self) -> float:
        return self.network_gbps * 1e9 / 8

    @property
    def group_bytes_per_s(self) -> float:
        return self.group_gbps * 1e9 / 8

    def speed_sps(self, model: ModelProfile) -> float:
        """Samples/s of one chip of this class on `model`, at full power."""
        if self.throughput_sps is not None:
            return self.throughput_sps
        if model.flops_per_sample is None:
            raise UsageError(
                "model.flops_per_sample",
                f"needed because {self.where} gives peak_flops instead of throughput_sps",
                "add flops_per_sample to the model profile",
            )
        assert self.peak_flops is not None and self.efficiency is not None
        return self.peak_flops * self.efficiency / model.flops_per_sample


@dataclass(frozen=True)
class SyncParams:
    latency_s: float = 2e-5
    overhead_s: float = 0.005
    overlap: float = 0.0


@dataclass(frozen=True)
class FleetSpec:
    classes: tuple[DeviceClass, ...]
    sync: SyncParams

    @property
    def device_count(self) -> int:
        return sum(c.count for c in self.classes)


def _parse_class(table: Any, index: int) -> DeviceClass:
    where = f"class[{index}]"
    if not isinstance(table, dict):
        raise UsageError(where, "must be a table", "write it as [[class]] with key = value lines")
    reject_unknown_keys(table, _CLASS_KEYS, where)

    def num(key: str, **kw: Any) -> Any:
        return number(table, key, where, **kw)

    has_sps = "throughput_sps" in table
    has_flops = "peak_flops" in table or "efficiency" in table
    if has_sps == has_flops:
        raise UsageError(
            f"{where}.throughput_sps",
            "give either throughput_sps, or peak_flops and efficiency",
            "add throughput_sps = <samples/s> (or peak_flops + efficiency)",
        )
    if "memory_bytes" in table and "memory_gib" in table:
        raise UsageError(
            f"{where}.memory_gib", "given together with memory_bytes", "keep one of them"
        )
    if "memory_gib" in table:
        memory_bytes = num("memory_gib", min_value=0, min_inclusive=False) * GIB
    else:
        memory_bytes = num("memory_bytes", required=True, min_value=0, min_inclusive=False)
    power_max_w = num("power_max_w", default=300.0, min_value=0, min_inclusive=False)
    power_idle_w = num("power_idle_w", default=0.25 * power_max_w, min_value=0)
    if power_idle_w > power_max_w:
        raise UsageError(
            f"{where}.power_idle_w", "is above power_max_w", "swap or fix them", power_idle_w
        )
    return DeviceClass(
        name=text(table, "name", where, default=f"class{index}"),
        count=num("count", required=True, min_value=1, integer=True),
        throughput_sps=num("throughput_sps", min_value=0, min_inclusive=False),
        peak_flops=num("peak_flops", required=has_flops, min_value=0, min_inclusive=False),
        efficiency=num(
            "efficiency", required=has_flops, min_value=0, min_inclusive=False, max_value=1
        ),
        memory_bytes=memory_bytes,
        power_idle_w=power_idle_w,
        power_max_w=power_max_w,
        power_curve=parse_curve(table["power_curve"], f"{where}.power_curve")
        if "power_curve" in table
        else DEFAULT_CURVE,
        mtbf_h=num("mtbf_h", default=math.inf, min_value=0, min_inclusive=False, allow_inf=True),
        weibull_shape=num("weibull_shape", default=1.0, min_value=0.1, max_value=10),
        restart_s=num("restart_s", default=300.0, min_value=0),
        defect_rate=num("defect_rate", default=0.0, min_value=0, max_value=1),
        sdc_rate=num("sdc_rate", default=0.0, min_value=0),
        throttle_per_h=num("throttle_per_h", default=0.0, min_value=0),
        throttle_s=num("throttle_s", default=600.0, min_value=0),
        throttle_speed=num(
            "throttle_speed", default=0.7, min_value=0, min_inclusive=False, max_value=1
        ),
        network_gbps=num("network_gbps", default=100.0, min_value=0, min_inclusive=False),
        index=index,
        group_gbps=num("group_gbps", default=100.0, min_value=0, min_inclusive=False),
    )


def _parse_sync(table: Any) -> SyncParams:
    if table is None:
        return SyncParams()
    if not isinstance(table, dict):
        raise UsageError("sync", "must be a table", "write it as [sync] with key = value lines")
    reject_unknown_keys(table, _SYNC_KEYS, "sync")
    d = SyncParams()
    return SyncParams(
        latency_s=number_or(table, "latency_s", "sync", d.latency_s, min_value=0),
        overhead_s=number_or(table, "overhead_s", "sync", d.overhead_s, min_value=0),
        overlap=number_or(table, "overlap", "sync", d.overlap, min_value=0, max_value=1),
    )


def parse_fleet(data: dict[str, Any]) -> FleetSpec:
    tables = data.get("class")
    if tables is None:
        raise UsageError(
            "class",
            "the fleet file has no [[class]] tables",
            "describe each kind of chip as [[class]] with name, count, throughput and memory",
        )
    if not isinstance(tables, list) or not tables:
        raise UsageError("class", "must be an array of tables", "write each as [[class]]")
    classes = tuple(_parse_class(t, i) for i, t in enumerate(tables))
    names = [c.name for c in classes]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise UsageError(
                f"class[{i}].name",
                "repeats an earlier class name",
                "give each class its own name",
                name,
            )
    return FleetSpec(classes=classes, sync=_parse_sync(data.get("sync")))


def load_fleet(path: str | Path) -> FleetSpec:
    return parse_fleet(read_table_file(path, "--fleet"))
