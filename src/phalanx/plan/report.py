"""Plans as JSON-ready dicts and as rich tables for people."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from phalanx.plan.fleet_classes import GIB
from phalanx.plan.plan_types import ClassPlan, Plan

SCHEMA = "phalanx.plan/1"


def _finite(x: Any) -> Any:
    """JSON has no inf: write it as null."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    out = asdict(plan)
    out["schema"] = SCHEMA
    for c, cp in zip(out["classes"], plan.classes, strict=True):
        c["shares"] = [{"share": s, "devices": n} for s, n in cp.shares]
        c["needs_group"] = cp.needs_group
        c["chips_used"] = cp.chips_used
        c["break_even_usd_per_h"] = _finite(c["break_even_usd_per_h"])
    return out


def describe_group(c: ClassPlan, ranks_per_group: int) -> str:
    """One line on a class that trains in replica groups (plan/groups.py)."""
    hosted = ranks_per_group // c.group_size
    return (
        f"{c.name}: {c.used:,} groups of {c.group_size} chips; each chip holds "
        f"{c.chip_bytes / GIB:.1f} of its {c.memory_bytes / GIB:.0f} GiB: a 1/{c.group_size} "
        f"shard of the state ({hosted} of the group's {ranks_per_group} ranks) plus one "
        f"sample's activations; in-group traffic leaves {c.group_efficiency:.0%} of the "
        "group's compute speed"
    )


def plan_table(plan: Plan) -> Group:
    t = Table(
        title=f"plan for {plan.model_name}: {plan.devices_used:,} of {plan.devices_total:,} chips"
        + (
            f" in {plan.replicas_used:,} replicas"
            if plan.replicas_used != plan.devices_used
            else ""
        )
        + f", batch {plan.global_batch:,}"
    )
    for col in (
        "class",
        "chips",
        "used",
        "replica",
        "samples/s",
        "share",
        "micro-batch",
        "memory GiB",
        "J/sample",
        "left out",
    ):
        t.add_column(col, justify="left" if col in ("class", "left out") else "right")
    for c in plan.classes:
        share = " / ".join(f"{s}x{n}" for s, n in c.shares) or "-"
        mb = f"{c.micro_batch}x{c.micro_batches}" if c.used else "-"
        left = "; ".join(f"{e.count} {e.reason}" for e in c.excluded) or "-"
        replica = (
            "1 chip"
            if c.group_size == 1
            else (f"{c.group_size} chips" if c.group_size else "does not fit")
        )
        t.add_row(
            c.name,
            f"{c.count:,}",
            f"{c.chips_used:,}",
            replica,
            f"{c.speed_sps:.3g}",
            share,
            mb,
            f"{c.memory_bytes / GIB:.0f}",
            f"{c.j_per_sample:.1f}",
            left,
        )
    lines = [
        f"step {plan.step_s:.3f} s = compute {plan.compute_s:.3f} s + sync {plan.sync_s:.3f} s "
        f"(ring at {plan.ring_gbps:g} Gb/s)",
        f"throughput {plan.throughput_sps:,.0f} samples/s; ideal {plan.ideal_sps:,.0f}; "
        f"efficiency {plan.efficiency:.1%}",
        f"healthy chips' solo speeds add up to {plan.solo_sps:,.0f} samples/s "
        f"(as if each held a replica): the plan reaches {plan.throughput_sps / plan.solo_sps:.1%}"
        if plan.solo_sps > 0
        else "",
        f"energy {plan.energy_j_per_step / 1e3:,.1f} kJ/step, {plan.power_w / 1e3:,.1f} kW, "
        f"{plan.j_per_sample:.1f} J/sample; ${plan.usd_per_hour:,.2f}/h, "
        f"${plan.usd_per_million_samples:,.2f} per million samples "
        f"at ${plan.options.tariff_usd_per_kwh:g}/kWh (subsidy {plan.options.subsidy:.0%})",
    ]
    reasons = [
        f"{c.name}: {e.count} {e.reason}: {e.detail}" for c in plan.classes for e in c.excluded
    ]
    worth = [
        f"{c.name}: worth its power only if an hour of the run is worth more than ${c.break_even_usd_per_h:,.2f}"
        for c in plan.classes
        if c.break_even_usd_per_h is not None
        and c.break_even_usd_per_h > 0
        and math.isfinite(c.break_even_usd_per_h)
    ]
    groups = [
        describe_group(c, plan.ranks_per_group) for c in plan.classes if c.group_size > 1 and c.used
    ]
    parts: list[Any] = [t, Text("\n".join(line for line in lines if line))]
    if groups:
        parts.append(
            Text("replica groups (sharded data parallel inside a group):\n  " + "\n  ".join(groups))
        )
    if reasons:
        parts.append(Text("why chips are left out:\n  " + "\n  ".join(reasons)))
    if worth:
        parts.append(Text("power advice:\n  " + "\n  ".join(worth)))
    return Group(*parts)
