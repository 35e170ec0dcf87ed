"""The planner: which chips to use, how to split the batch, what it will cost.

`make_plan(fleet, model, options)` is pure and fast: chips too small for a
replica become groups (groups.py), then per-class arrays, one vectorised
search (see candidates.py), then one exact evaluation. Every chip left out
gets a reason: defective, memory, group (a remainder), network, sync or power.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from phalanx.errors import UsageError
from phalanx.plan.candidates import ClassArrays, Evaluated, best_set, evaluate
from phalanx.plan.fleet_classes import GIB, DeviceClass, FleetSpec
from phalanx.plan.groups import MAX_GROUP, Grouping, group_fleet, micro_batch_per_chip
from phalanx.plan.model_profile import ModelProfile
from phalanx.plan.plan_types import ClassPlan, Exclusion, Plan, PlanOptions
from phalanx.plan.power_curve import best_energy_point


def max_micro_batch(cls: DeviceClass, model: ModelProfile, size: int = 1) -> int:
    """Largest micro-batch a replica runs at once (0: not even one sample).

    `cls` is a class of replicas (groups.py): a group of `size` chips runs a
    whole number of samples on each chip, beside that chip's shard of the state.
    """
    if size > 1:
        chip = replace(cls, memory_bytes=cls.memory_bytes / size)
        return min(size * micro_batch_per_chip(chip, model, size), model.global_batch)
    free = cls.memory_bytes - model.state_bytes
    if free < model.activation_bytes_per_sample or free < 0:
        return 0
    if model.activation_bytes_per_sample <= 0:
        return model.global_batch
    return int(min(free // model.activation_bytes_per_sample, model.global_batch))


def class_arrays(
    fleet: FleetSpec, model: ModelProfile, sizes: list[int] | None = None
) -> ClassArrays:
    """Per-class search inputs; `sizes`: chips per replica of each class (None: 1 each)."""
    sizes = sizes or [1] * len(fleet.classes)
    fits = np.array(
        [k > 0 and max_micro_batch(c, model, k) >= 1 for c, k in zip(fleet.classes, sizes)]
    )
    return ClassArrays(
        speed_sps=np.array([c.speed_sps(model) for c in fleet.classes], dtype=np.float64),
        available=np.where(fits, [c.usable for c in fleet.classes], 0).astype(np.int64),
        bandwidth_bytes_s=np.array([c.network_bytes_per_s for c in fleet.classes]),
        power_max_w=np.array([c.power_max_w for c in fleet.classes]),
        power_idle_w=np.array([c.power_idle_w for c in fleet.classes]),
    )


def _break_even_usd_per_h(
    arr: ClassArrays, ev: Evaluated, c: int, model: ModelProfile, fleet: FleetSpec, usd_per_j: float
) -> float | None:
    """Time value (USD/h) above which class c pays for its electricity in this plan."""
    without = ev.counts.copy()
    without[c] = 0
    if without.sum() == 0:
        return None
    wo = evaluate(arr, without, model.global_batch, model.grad_bytes, fleet.sync)
    saved_s = wo.step_s - ev.step_s
    extra_usd = usd_per_j * (ev.energy_j - wo.energy_j)
    if extra_usd <= 0:
        return 0.0
    if saved_s <= 0:
        return math.inf
    return extra_usd / saved_s * 3600.0


def _exclusions(
    cls: DeviceClass,
    grouping: Grouping,
    model: ModelProfile,
    used: int,
    n_fast: int,
    ring_bytes_s: float,
    fast_ideal_sps: float,
) -> tuple[Exclusion, ...]:
    """Why chips of `cls` are not in the plan, as (reason, count, detail) entries.

    `used` and `n_fast` count replicas (groups of `grouping.size` chips);
    `n_fast` is how many the throughput-optimal plan would use: replicas it
    uses but the chosen plan does not are left out for their power.
    """
    out: list[Exclusion] = []
    if cls.count > cls.usable:
        out.append(
            Exclusion(
                "defective",
                cls.count - cls.usable,
                f"expected to fail qualification (defect_rate {cls.defect_rate:.1%})",
            )
        )
    size = grouping.size
    if size == 0 and cls.usable > 0:
        need = model.replica_bytes(1) / GIB
        out.append(
            Exclusion(
                "memory",
                cls.usable,
                f"a replica plus one sample needs {need:.1f} GiB; even split over {MAX_GROUP} chips "
                f"of {cls.memory_bytes / GIB:.1f} GiB it does not fit next to one sample's activations",
            )
        )
        return tuple(out)
    if grouping.groups == 0 and cls.usable > 0:
        need = model.replica_bytes(1) / GIB
        out.append(
            Exclusion(
                "memory",
                cls.usable,
                f"needs {need:.1f} GiB for a replica plus one sample, has {cls.memory_bytes / GIB:.1f} GiB: "
                f"{size} of these chips would hold one together, and there are {cls.usable}",
            )
        )
        return tuple(out)
    if grouping.chips_left > 0:
        out.append(
            Exclusion(
                "group",
                grouping.chips_left,
                f"a replica takes {size} of these chips; the rest form no full group",
            )
        )
    if n_fast > used:
        out.append(
            Exclusion(
                "power",
                (n_fast - used) * size,
                f"{cls.power_max_w / cls.speed_sps(model):.1f} J/sample: the time it saves is worth less than its electricity at this tariff and time value",
            )
        )
    rest = grouping.groups - max(used, n_fast)
    if rest > 0:
        unit = "group" if size > 1 else "chip"
        if cls.network_bytes_per_s < ring_bytes_s:
            out.append(
                Exclusion(
                    "network",
                    rest * size,
                    f"its hosts' {cls.network_gbps:g} Gb/s network would slow every step's allreduce more than its compute helps",
                )
            )
        else:
            speed = size * cls.speed_sps(model) * grouping.efficiency
            share = model.global_batch * speed / (fast_ideal_sps + speed)
            out.append(
                Exclusion(
                    "sync",
                    rest * size,
                    f"too slow to pay for its sync: a {unit}'s share would be about {share:.2f} samples, "
                    "which with integer shares does not shorten the step enough to cover the sync it adds",
                )
            )
    return tuple(out)


def make_plan(fleet: FleetSpec, model: ModelProfile, options: PlanOptions | None = None) -> Plan:
    opts = options or PlanOptions()
    chips = fleet
    grouped = group_fleet(chips, model)
    fleet = grouped.fleet  # replicas as devices: chips alone, or groups
    sizes = [g.size for g in grouped.groupings]
    arr = class_arrays(fleet, model, sizes)
    if arr.available.sum() == 0:
        raise UsageError(
            "fleet",
            f"no replica of {model.name} ({model.replica_bytes(1) / GIB:.1f} GiB with one sample) "
            f"fits on these chips, alone or in groups of up to {MAX_GROUP} of a class",
            "add chips with more memory, or shrink the model profile",
        )
    batch, grad = model.global_batch, model.grad_bytes
    fast = evaluate(
        arr, best_set(arr, batch, grad, fleet.sync, opts.usd_per_j, None), batch, grad, fleet.sync
    )
    fast_ideal = float((fast.counts * arr.speed_sps).sum())
    chosen = fast
    if opts.time_value_usd_per_h is not None:
        counts = best_set(arr, batch, grad, fleet.sync, opts.usd_per_j, opts.time_value_usd_per_h)
        chosen = evaluate(arr, counts, batch, grad, fleet.sync)

    classes = []
    for c, (cls, chip, grouping) in enumerate(
        zip(fleet.classes, chips.classes, grouped.groupings, strict=True)
    ):
        mmb = max_micro_batch(cls, model, grouping.size) if grouping.size else 0
        used = int(chosen.counts[c])
        share = int(chosen.share_hi[c])
        n_micro = max(1, math.ceil(share / mmb)) if used and mmb else 0
        speed = float(arr.speed_sps[c])
        p_frac, s_frac = best_energy_point(cls.power_curve)
        classes.append(
            ClassPlan(
                name=cls.name,
                index=c,
                count=chip.count,
                usable=chip.usable,
                used=used,
                speed_sps=speed,
                share_hi=share,
                n_lo=int(chosen.n_lo[c]),
                micro_batch=math.ceil(share / n_micro) if n_micro else 0,
                micro_batches=n_micro,
                max_micro_batch=mmb,
                memory_bytes=chip.memory_bytes,
                replica_bytes=model.replica_bytes(1),
                compute_s=share / speed if used else 0.0,
                network_gbps=cls.network_gbps,
                power_max_w=cls.power_max_w,
                j_per_sample=cls.power_max_w / speed,
                best_power_frac=p_frac,
                best_j_per_sample=p_frac * cls.power_max_w / (s_frac * speed),
                break_even_usd_per_h=_break_even_usd_per_h(
                    arr, chosen, c, model, fleet, opts.usd_per_j
                )
                if used
                else None,
                excluded=_exclusions(
                    chip,
                    grouping,
                    model,
                    used,
                    int(fast.counts[c]),
                    fast.bandwidth_bytes_s,
                    fast_ideal,
                ),
                group_size=grouping.size,
                group_efficiency=grouping.efficiency,
                chip_bytes=grouping.chip_bytes,
            )
        )
    ideal = float((chosen.counts * arr.speed_sps).sum())
    power_w = chosen.energy_j / chosen.step_s
    usd_per_h = power_w * 3600.0 * opts.usd_per_j
    return Plan(
        model_name=model.name,
        global_batch=batch,
        objective="throughput" if opts.time_value_usd_per_h is None else "cost",
        options=opts,
        classes=tuple(classes),
        devices_total=chips.device_count,
        devices_used=sum(c.chips_used for c in classes),
        compute_s=chosen.compute_s,
        sync_s=chosen.sync_s,
        step_s=chosen.step_s,
        throughput_sps=chosen.throughput_sps,
        ideal_sps=ideal,
        fleet_sps=float((arr.available * arr.speed_sps).sum()),
        efficiency=chosen.throughput_sps / ideal,
        energy_j_per_step=chosen.energy_j,
        power_w=power_w,
        j_per_sample=chosen.energy_j / batch,
        usd_per_hour=usd_per_h,
        usd_per_million_samples=usd_per_h / (chosen.throughput_sps * 3600.0) * 1e6,
        ring_gbps=chosen.bandwidth_bytes_s * 8 / 1e9,
        replicas_used=int(chosen.counts.sum()),
        solo_sps=sum(c.usable * c.speed_sps(model) for c in chips.classes),
        ranks_per_group=math.lcm(*(c.group_size for c in classes if c.needs_group and c.used)),
    )
