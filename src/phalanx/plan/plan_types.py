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
    count: int  # chips
    usable: int  # chips expected to pass qualification
    used: int  # replicas: chips alone, or groups of `group_size` chips
    speed_sps: float
    share_hi: int  # used - n_lo devices get share_hi samples per step
    n_lo: int  # ... and n_lo devices get share_hi - 1
    micro_batch: int
    micro_batches: int
    max_micro_batch: int  # per replica, what memory allows; 0: no replica fits
    memory_bytes: float  # one chip's
    replica_bytes: float  # state plus one sample of activations
    compute_s: float  # busy time of a device with share_hi
    network_gbps: float
    power_max_w: float
    j_per_sample: float  # at full power
    best_power_frac: float  # power limit with the fewest J/sample on its curve
    best_j_per_sample: float
    break_even_usd_per_h: float | None  # worth its power only above this time value
    excluded: tuple[Exclusion, ...]
    # Chips per replica (plan/groups.py): 1 alone; k > 1 a group sharding one replica;
    # 0 none holds a replica even in the largest group.
    group_size: int = 1
    group_efficiency: float = 1.0  # group speed / (group_size x chip speed)
    chip_bytes: float = 0.0  # what each chip of a replica holds (state part + one sample)

    @property
    def needs_group(self) -> bool:
        """Too little memory for a replica alone: its chips train in groups."""
        return self.group_size != 1

    @property
    def chips_used(self) -> int:
        return self.used * max(self.group_size, 1)

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
    devices_total: int  # chips
    devices_used: int  # chips, groups counted chip by chip
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
    replicas_used: int = 0  # chips alone plus groups
    # Every healthy chip's own speed on the model, as if its memory were enough: what
    # a fleet of groups is measured against (issue 15's "sum of solo speeds").
    solo_sps: float = 0.0
    # Ranks (shards, one process each) of every replica group, fleet-wide: rank j of
    # every group holds the same slice, as torchft's rank-by-rank replication needs
    # (docs/groups.md). The least common multiple of the group sizes, so a chip of a
    # class grouped by k hosts exactly ranks_per_group / k of them: 1/k of the state.
    ranks_per_group: int = 1

    def used_counts(self) -> list[int]:
        return [c.used for c in self.classes]
