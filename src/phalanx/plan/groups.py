"""Replica groups in the plan: chips too small for a replica train one together.

A 7B-parameter model with AdamW needs about 112 GB for weights, gradients and
optimizer state: no 16-80 GiB chip holds it. The planner therefore turns each
class whose chips cannot hold a replica alone into a class of *groups*: k
chips of that class that shard the replica's state between them (sharded
data parallelism inside the group, as FSDP/ZeRO-3 do), k the smallest number
for which each chip's part fits:

    state_bytes / k + activation_bytes_per_sample  <=  chip memory

Groups are built from one class at a time: chips of one class sit in the same
kind of host, and even sharding over unequal chips would cap every chip at the
smallest one's memory and speed. The rest of the planner then sees a group as
one device: speed k x chip speed x in-group efficiency, memory k x chip
memory, power k x chip power, and k times the chip's failure, corruption and
throttle rates (a chip that fails takes its group out of the step; so the
simulator charges a whole group for it). Usable chips that form no full group
are left out as `group` remainders.

In-group efficiency: for each micro-batch each chip sends and receives
about 3 x P x g x (k - 1) / k bytes (the weights gathered for forward and
again for backward, one reduce-scatter of the gradient; P parameters, g
bytes each as the allreduce moves them) over the class's in-group link
(`group_gbps`), against the compute of a full micro-batch (as many samples
as the chips' memory beside their shards holds). Gathers are prefetched
behind compute; `GROUP_OVERLAP` of that traffic is assumed hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from phalanx.plan.fleet_classes import DeviceClass, FleetSpec
from phalanx.plan.model_profile import ModelProfile

MAX_GROUP = 64  # beyond this, sharding traffic dwarfs compute on any link we plan for
GROUP_OVERLAP = 0.5  # fraction of in-group traffic hidden behind compute (prefetched gathers)


@dataclass(frozen=True)
class Grouping:
    """How one fleet class enters the plan."""

    size: int  # chips per replica: 1 alone, 0 none fits even in a group of MAX_GROUP
    groups: int  # replicas this class can form (its usable chips // size)
    chips_left: int  # usable chips that form no full group
    efficiency: float  # group speed / (size x one chip's speed); 1.0 alone
    chip_bytes: float  # what one chip of a replica holds: its state part plus one sample


def chips_per_replica(cls: DeviceClass, model: ModelProfile) -> int:
    """Smallest number of chips of `cls` that hold one replica (0: not even MAX_GROUP)."""
    free = cls.memory_bytes - model.activation_bytes_per_sample
    if free <= 0:
        return 0
    k = max(1, math.ceil(model.state_bytes / free - 1e-12))
    return k if k <= MAX_GROUP else 0


def micro_batch_per_chip(cls: DeviceClass, model: ModelProfile, size: int) -> int:
    """Samples one chip of a group of `size` runs at once next to its state shard."""
    free = cls.memory_bytes - model.state_bytes / size
    if model.activation_bytes_per_sample <= 0:
        return model.global_batch
    return max(0, int(free // model.activation_bytes_per_sample))


def _efficiency(cls: DeviceClass, model: ModelProfile, size: int) -> float:
    """In-group efficiency of a group running full micro-batches (module docstring).

    A property of the class alone (not of the rest of the fleet), so adding
    chips elsewhere never changes a group's speed. A group handed fewer samples
    than one full micro-batch per step pays its traffic for less compute than
    this assumes.
    """
    if size <= 1:
        return 1.0
    samples = min(size * micro_batch_per_chip(cls, model, size), model.global_batch)
    compute_s = max(samples, 1) / (size * cls.speed_sps(model))
    # Weights gathered for forward and for backward; the gradient's reduce-scatter
    # once per step, counted here as if every step were one micro-batch.
    moved_bytes = 3 * model.grad_bytes * (size - 1) / size
    comm_s = moved_bytes / cls.group_bytes_per_s
    return compute_s / (compute_s + (1.0 - GROUP_OVERLAP) * comm_s)


@dataclass(frozen=True)
class GroupedFleet:
    fleet: FleetSpec  # one class per original class, groups as devices
    groupings: tuple[Grouping, ...]


def group_fleet(fleet: FleetSpec, model: ModelProfile) -> GroupedFleet:
    """The fleet as the planner and simulator see it: classes of replicas (module docstring)."""
    sizes = [chips_per_replica(c, model) for c in fleet.classes]
    classes: list[DeviceClass] = []
    groupings: list[Grouping] = []
    for cls, size in zip(fleet.classes, sizes, strict=True):
        if size <= 1:
            classes.append(cls)
            chip_bytes = model.state_bytes + model.activation_bytes_per_sample
            groupings.append(Grouping(size, cls.usable if size else 0, 0, 1.0, chip_bytes))
            continue
        groups, left = divmod(cls.usable, size)
        eff = _efficiency(cls, model, size)
        chip_bytes = model.state_bytes / size + model.activation_bytes_per_sample
        groupings.append(Grouping(size, groups, left, eff, chip_bytes))
        classes.append(
            replace(
                cls,
                name=cls.name,
                count=groups,
                throughput_sps=size * cls.speed_sps(model) * eff,
                peak_flops=None,
                efficiency=None,
                memory_bytes=size * cls.memory_bytes,
                power_idle_w=size * cls.power_idle_w,
                power_max_w=size * cls.power_max_w,
                mtbf_h=cls.mtbf_h / size,
                defect_rate=0.0,  # applied to the chips already: groups are of usable chips
                sdc_rate=size * cls.sdc_rate,
                throttle_per_h=size * cls.throttle_per_h,
            )
        )
    return GroupedFleet(FleetSpec(classes=tuple(classes), sync=fleet.sync), tuple(groupings))
