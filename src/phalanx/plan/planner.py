"""The planner: which chips to use, how to split the batch, what it will cost.

`make_plan(fleet, model, options)` is pure and fast: per-class arrays, one
vectorised search (see candidates.py), then one exact evaluation. Every chip
left out gets a reason: defective, memory, network, sync or power.
"""

from __future__ import annotations

import math

import numpy as np

from phalanx.errors import UsageError
from phalanx.plan.candidates import ClassArrays, Evaluated, best_set, evaluate
from phalanx.plan.fleet_classes import GIB, DeviceClass, FleetSpec
from phalanx.plan.model_profile import ModelProfile
from phalanx.plan.plan_types import ClassPlan, Exclusion, Plan, PlanOptions
from phalanx.plan.power_curve import best_energy_point


def max_micro_batch(cls: DeviceClass, model: ModelProfile) -> int:
    """Largest micro-batch that fits next to a full replica (0: not even one)."""
    free = cls.memory_bytes - model.state_bytes
    if free < model.activation_bytes_per_sample or free < 0:
        return 0
    if model.activation_bytes_per_sample <= 0:
        return model.global_batch
    return int(min(free // model.activation_bytes_per_sample, model.global_batch))


def class_arrays(fleet: FleetSpec, model: ModelProfile) -> ClassArrays:
    fits = np.array([max_micro_batch(c, model) >= 1 for c in fleet.classes])
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
    model: ModelProfile,
    mmb: int,
    used: int,
    n_fast: int,
    ring_bytes_s: float,
    fast_ideal_sps: float,
) -> tuple[Exclusion, ...]:
    """Why chips of `cls` are not in the plan, as (reason, count, detail) entries.

    `n_fast` is how many the throughput-optimal plan would use: chips it uses
    but the chosen plan does not are left out for their power.
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
    if mmb < 1 and cls.usable > 0:
        need = model.replica_bytes(1) / GIB
        out.append(
            Exclusion(
                "memory",
                cls.usable,
                f"needs {need:.1f} GiB for a replica plus one sample, has {cls.memory_bytes / GIB:.1f} GiB: cannot hold a replica alone (group it with others later)",
            )
        )
        return tuple(out)
    if n_fast > used:
        out.append(
            Exclusion(
                "power",
                n_fast - used,
                f"{cls.power_max_w / cls.speed_sps(model):.1f} J/sample: the time it saves is worth less than its electricity at this tariff and time value",
            )
        )
    rest = cls.usable - max(used, n_fast)
    if rest > 0:
        if cls.network_bytes_per_s < ring_bytes_s:
            out.append(
                Exclusion(
                    "network",
                    rest,
                    f"its hosts' {cls.network_gbps:g} Gb/s network would slow every step's allreduce more than its compute helps",
                )
            )
        else:
            speed = cls.speed_sps(model)
            share = model.global_batch * speed / (fast_ideal_sps + speed)
            out.append(
                Exclusion(
                    "sync",
                    rest,
                    f"too slow to pay for its sync: its share would be about {share:.2f} samples, "
                    "which with integer shares does not shorten the step enough to cover the sync it adds",
                )
            )
    return tuple(out)


def make_plan(fleet: FleetSpec, model: ModelProfile, options: PlanOptions | None = None) -> Plan:
    opts = options or PlanOptions()
    arr = class_arrays(fleet, model)
    if arr.available.sum() == 0:
        raise UsageError(
            "fleet",
            f"no chip can hold a replica of {model.name} ({model.replica_bytes(1) / GIB:.1f} GiB with one sample)",
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
    for c, cls in enumerate(fleet.classes):
        mmb = max_micro_batch(cls, model)
        used = int(chosen.counts[c])
        share = int(chosen.share_hi[c])
        n_micro = max(1, math.ceil(share / mmb)) if used and mmb else 0
        speed = float(arr.speed_sps[c])
        p_frac, s_frac = best_energy_point(cls.power_curve)
        classes.append(
            ClassPlan(
                name=cls.name,
                index=c,
                count=cls.count,
                usable=cls.usable,
                used=used,
                speed_sps=speed,
                share_hi=share,
                n_lo=int(chosen.n_lo[c]),
                micro_batch=math.ceil(share / n_micro) if n_micro else 0,
                micro_batches=n_micro,
                max_micro_batch=mmb,
                memory_bytes=cls.memory_bytes,
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
                    cls, model, mmb, used, int(fast.counts[c]), fast.bandwidth_bytes_s, fast_ideal
                ),
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
        devices_total=fleet.device_count,
        devices_used=int(chosen.counts.sum()),
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
    )
