"""What the planner decides and predicts, as plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlanOptions:
    tariff_usd_per_kwh: float = 0.08
    subsidy: float = 0.0  # fraction of the electricity bill paid by someone else
    # What an hour of the whole run is worth (rent, staff, deadline). When set,
    # the planner minimises cost per sample and may leave power-hungry chips
    # out; when None it maximises throughput.
    time_value_usd_per_h: float | None = None

    @property
    def usd_per_j(self) -> float:
        return self.tariff_usd_per_kwh * (1.0 - self.subsidy) / 3.6e6


@dataclass(frozen=True)
class Exclusion:
    reason: str  # defective | memory | network | sync | power
    count: int
    detail: str


@dataclass(frozen=True)
class ClassPlan:
    name: str
    index: int
    count: int
    usable: int  # expected to pass qualification
    used: int
    speed_sps: float
    share_hi: int  # used - n_lo devices get share_hi samples per step
    n_lo: int  # ... and n_lo devices get share_hi - 1
    micro_batch: int
    micro_batches: int
    max_micro_batch: int  # what memory allows; 0: cannot hold a replica alone
    memory_bytes: float
    replica_bytes: float  # state plus one sample of activations
    compute_s: float  # busy time of a device with share_hi
    network_gbps: float
    power_max_w: float
    j_per_sample: float  # at full power
    best_power_frac: float  # power limit with the fewest J/sample on its curve
    best_j_per_sample: float
    break_even_usd_per_h: float | None  # worth its power only above this time value
    excluded: tuple[Exclusion, ...]

    @property
    def needs_group(self) -> bool:
        """Too little memory for a replica alone: to be grouped (FSDP) later."""
        return self.max_micro_batch < 1

    @property
    def shares(self) -> list[tuple[int, int]]:
        """(share, number of devices) pairs of this class, largest share first."""
        out = [(self.share_hi, self.used - self.n_lo), (self.share_hi - 1, self.n_lo)]
        return [(s, n) for s, n in out if n > 0]


@dataclass(frozen=True)
class Plan:
    model_name: str
    global_batch: int
    objective: str  # throughput | cost
    options: PlanOptions
    classes: tuple[ClassPlan, ...]
    devices_total: int
    devices_used: int
    compute_s: float
    sync_s: float
    step_s: float
    throughput_sps: float
    ideal_sps: float  # sum of the used devices' speeds: no sync, no rounding
    fleet_sps: float  # sum of every device's speed that passed qualification and fits
    efficiency: float  # throughput / ideal
    energy_j_per_step: float
    power_w: float
    j_per_sample: float
    usd_per_hour: float
    usd_per_million_samples: float
    ring_gbps: float  # the slowest host network among the used classes

    def used_counts(self) -> list[int]:
        return [c.used for c in self.classes]
