"""What one simulated policy produced, as plain data for tables, JSON and plots."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PolicyResult:
    name: str
    finished: bool  # reached the target within the horizon
    time_to_target_s: float | None
    wall_s: float  # simulated time until the target or the horizon
    samples: float  # useful (committed) samples
    goodput_sps: float  # samples / wall_s
    goodput_frac: float  # goodput / ideal (sum of the planned chips' speeds)
    energy_kwh: float
    cost_usd: float  # at the tariff, less the subsidy
    failures: int
    restarts: int  # whole-world restarts (restart policy, or whole-fleet loss)
    lost_samples: float  # work thrown away by rollbacks to a checkpoint
    sdc_detected: int
    sdc_undetected: int
    throttle_episodes: int
    checkpoint_interval_s: float | None
    curve_t_s: list[float] = field(repr=False)
    curve_samples: list[float] = field(repr=False)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("curve_t_s")
        out.pop("curve_samples")
        return out


@dataclass(frozen=True)
class SimResult:
    days: float
    seed: int
    target_samples: float | None
    devices: int  # replicas: chips alone, or groups of chips
    planned_sps: float  # the planner's fault-free throughput
    ideal_sps: float
    fleet_mtbf_h: float
    young_daly_interval_s: float | None
    events: dict[str, int]
    policies: list[PolicyResult]
    chips: int = 0  # every chip of those replicas

    def to_dict(self, with_curves: bool = False) -> dict[str, Any]:
        out = asdict(self)
        out["policies"] = [asdict(p) if with_curves else p.summary() for p in self.policies]
        return out
