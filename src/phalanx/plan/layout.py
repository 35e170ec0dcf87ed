"""A concrete layout for a handful of known chips: which chips form each replica.

`phalanx plan --emulate 1:mem=800KB,1x4:mem=400KB --script train.py` plans
chips one by one (the class planner, plan/planner.py, plans thousands by
class). What a replica group runs is fixed by the runtime (docs/groups.md):
every replica is S ranks (processes); rank j of every replica holds the same
1/S of the model's state, and a chip hosts one or more of its replica's
ranks, each with an equal part of the chip's memory and speed. One rank of S
holds

    state / S  +  the weights it gathers (all of them, once each, as FSDP2
                  gathers a unit for its forward and keeps it for backward)
               +  its micro-batch's activations

so a chip of memory m hosts at most h = floor(m / need(1 sample)) ranks. For
each S the planner keeps every chip that hosts S ranks as a replica alone,
forms groups of the others (largest chip first, topped up with the smallest
until its ranks reach S), gives each group's ranks to its chips in proportion
to speed within what their memory allows, and scores the layout by its
compute rate: a replica runs at the pace of its slowest chip, speed x S /
ranks. Traffic inside a group is not charged (on one host it is a memory
copy; `make bench` measures what it costs). The S with the best rate wins;
ties go to the smaller S, which moves fewer bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from phalanx.emulate.memory_size import describe_bytes
from phalanx.errors import UsageError

MAX_RANKS = 16  # processes per replica; beyond this one host runs out of cores first


@dataclass(frozen=True)
class ModelNeeds:
    """What one replica of the model holds on a chip, as an emulated chip counts it."""

    name: str
    state_bytes: int  # weights, gradients and optimizer state of the whole model
    weight_bytes: int  # the weights alone: what a rank of a group gathers
    activation_fixed_bytes: int
    activation_bytes_per_sample: int
    global_batch: int
    samples_per_s: float | None = None  # one speed-1 chip training it alone; None: unknown

    def rank_bytes(self, ranks: int, samples: int = 1) -> float:
        """What one of `ranks` ranks holds while it runs `samples` samples at once."""
        shard = self.state_bytes / ranks
        gathered = self.weight_bytes if ranks > 1 else 0
        return (
            shard
            + gathered
            + self.activation_fixed_bytes
            + samples * self.activation_bytes_per_sample
        )

    def describe_rank(self, ranks: int) -> str:
        parts = [f"1/{ranks} of the state {describe_bytes(self.state_bytes / ranks)}"]
        if ranks > 1:
            parts.append(f"the gathered weights {describe_bytes(self.weight_bytes)}")
        act = self.activation_fixed_bytes + self.activation_bytes_per_sample
        parts.append(f"one sample's activations {describe_bytes(act)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Chip:
    id: str
    speed: float  # relative to this host
    memory_bytes: int


@dataclass(frozen=True)
class PlacedChip:
    chip: Chip
    ranks: int
    micro_batch: int  # samples one of its ranks runs at once (memory's limit)

    def need_bytes(self, model: ModelNeeds, ranks_per_group: int) -> float:
        """What the chip holds: its ranks, each at the micro-batch it may run."""
        return self.ranks * model.rank_bytes(ranks_per_group, self.micro_batch)


@dataclass(frozen=True)
class Replica:
    chips: tuple[PlacedChip, ...]

    def speed(self, ranks_per_group: int) -> float:
        """Relative to one speed-1 chip training alone: the slowest chip sets the pace."""
        return min(p.chip.speed * ranks_per_group / p.ranks for p in self.chips)


@dataclass(frozen=True)
class Layout:
    model: ModelNeeds
    ranks_per_group: int
    replicas: tuple[Replica, ...]
    left_out: tuple[tuple[Chip, str], ...]  # (chip, why)

    @property
    def speed(self) -> float:
        return sum(r.speed(self.ranks_per_group) for r in self.replicas)

    @property
    def predicted_samples_per_s(self) -> float | None:
        rate = self.model.samples_per_s
        return None if rate is None else rate * self.speed


def hosted_ranks(chip: Chip, model: ModelNeeds, ranks_per_group: int) -> int:
    """The most ranks of S the chip holds with one sample each (0: not even one)."""
    need = model.rank_bytes(ranks_per_group, 1)
    return min(int(chip.memory_bytes // need), ranks_per_group) if need > 0 else ranks_per_group


def micro_batch(chip: Chip, ranks: int, model: ModelNeeds, ranks_per_group: int) -> int:
    """Samples each of the chip's ranks may run at once beside its share of the state."""
    free = chip.memory_bytes / ranks - model.rank_bytes(ranks_per_group, 0)
    per = model.activation_bytes_per_sample
    most = max(1, math.ceil(model.global_batch / ranks_per_group))
    return most if per <= 0 else max(0, min(most, int(free // per)))


def _ranks_by_speed(chips: list[Chip], caps: list[int], ranks_per_group: int) -> list[int]:
    """Each chip one rank, the rest one by one to the chip that stays fastest per rank."""
    ranks = [1] * len(chips)
    for _ in range(ranks_per_group - len(chips)):
        open_ = [i for i in range(len(chips)) if ranks[i] < caps[i]]
        best = max(open_, key=lambda i: (chips[i].speed / (ranks[i] + 1), -i))
        ranks[best] += 1
    return ranks


def _groups(chips: list[Chip], caps: dict[str, int], ranks_per_group: int) -> list[list[Chip]]:
    """Largest chip first, topped up with the smallest until its ranks cover S."""
    pool = sorted(chips, key=lambda c: (-caps[c.id], -c.speed, c.id))
    groups: list[list[Chip]] = []
    while pool and sum(caps[c.id] for c in pool) >= ranks_per_group:
        group = [pool.pop(0)]
        while sum(caps[c.id] for c in group) < ranks_per_group:
            group.append(pool.pop())
        groups.append(group)
    return groups


def layout_for(chips: list[Chip], model: ModelNeeds, ranks_per_group: int) -> Layout:
    """The layout with S = `ranks_per_group` ranks per replica (module docstring)."""
    caps = {c.id: hosted_ranks(c, model, ranks_per_group) for c in chips}
    replicas: list[Replica] = []
    left: list[tuple[Chip, str]] = []
    one_rank = describe_bytes(model.rank_bytes(ranks_per_group))
    left += [(c, f"holds no rank: one needs {one_rank}") for c in chips if caps[c.id] == 0]
    small = [c for c in chips if 0 < caps[c.id] < ranks_per_group]
    for chip in chips:
        if caps[chip.id] >= ranks_per_group:
            mb = micro_batch(chip, ranks_per_group, model, ranks_per_group)
            replicas.append(Replica((PlacedChip(chip, ranks_per_group, mb),)))
    grouped = _groups(small, caps, ranks_per_group)
    for group in grouped:
        ranks = _ranks_by_speed(group, [caps[c.id] for c in group], ranks_per_group)
        replicas.append(
            Replica(
                tuple(
                    PlacedChip(c, r, micro_batch(c, r, model, ranks_per_group))
                    for c, r in zip(group, ranks, strict=True)
                )
            )
        )
    in_groups = {c.id for g in grouped for c in g}
    left += [(c, "no full group left for it") for c in small if c.id not in in_groups]
    return Layout(model, ranks_per_group, tuple(replicas), tuple(left))


def plan_layout(chips: list[Chip], model: ModelNeeds) -> Layout:
    """The fastest layout over S = 1 .. MAX_RANKS; UsageError when none holds the model."""
    best: Layout | None = None
    for ranks in range(1, MAX_RANKS + 1):
        layout = layout_for(chips, model, ranks)
        if layout.replicas and (best is None or layout.speed > best.speed * (1 + 1e-9)):
            best = layout
    if best is None:
        need = model.rank_bytes(MAX_RANKS)
        hosted = sum(hosted_ranks(c, model, MAX_RANKS) for c in chips)
        raise UsageError(
            "--emulate",
            f"no layout of these chips holds {model.name}: split {MAX_RANKS} ways, one rank "
            f"needs {describe_bytes(need)} ({model.describe_rank(MAX_RANKS)}) and the chips "
            f"together host {hosted} of the {MAX_RANKS} ranks",
            "give the chips more memory (mem=) or add chips",
        )
    return best
