"""Simulation results as a rich table and a JSON-ready dict."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from phalanx.sim.results import SimResult

SCHEMA = "phalanx.simulate/1"


def _days(s: float | None) -> str:
    return "-" if s is None else f"{s / 86400:.2f}"


def sim_to_dict(result: SimResult) -> dict[str, Any]:
    out = result.to_dict()
    out["schema"] = SCHEMA
    if out["fleet_mtbf_h"] is not None and not math.isfinite(out["fleet_mtbf_h"]):
        out["fleet_mtbf_h"] = None
    return out


def sim_table(result: SimResult) -> Group:
    target = (
        "the horizon" if result.target_samples is None else f"{result.target_samples:,.3g} samples"
    )
    t = Table(
        title=f"simulated {result.days:g} days, {_units(result)}, seed {result.seed}: time to {target}"
    )
    for col in (
        "policy",
        "days",
        "samples",
        "goodput/s",
        "of ideal",
        "energy MWh",
        "cost $",
        "failures",
        "restarts",
        "lost samples",
        "SDC caught/missed",
    ):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for p in result.policies:
        t.add_row(
            p.name,
            _days(p.time_to_target_s if p.finished else p.wall_s)
            + ("" if p.finished or result.target_samples is None else " (not done)"),
            f"{p.samples:,.3g}",
            f"{p.goodput_sps:,.0f}",
            f"{p.goodput_frac:.1%}",
            f"{p.energy_kwh / 1e3:,.1f}",
            f"{p.cost_usd:,.0f}",
            f"{p.failures:,}",
            f"{p.restarts:,}",
            f"{p.lost_samples:,.3g}",
            f"{p.sdc_detected}/{p.sdc_undetected}",
        )
    mtbf = (
        "never fails" if not math.isfinite(result.fleet_mtbf_h) else f"{result.fleet_mtbf_h:.2f} h"
    )
    daly = "-" if result.young_daly_interval_s is None else f"{result.young_daly_interval_s:,.0f} s"
    notes = (
        f"planned {result.planned_sps:,.0f} samples/s (ideal {result.ideal_sps:,.0f}); fleet MTBF {mtbf}; "
        f"Young/Daly checkpoint interval {daly}; events: "
        + ", ".join(f"{k} {v:,}" for k, v in result.events.items())
    )
    return Group(t, Text(notes))


def _units(result: SimResult) -> str:
    """'N chips', or 'N replicas (M chips)' when some replicas are groups of chips."""
    if result.chips and result.chips != result.devices:
        return f"{result.devices:,} replicas ({result.chips:,} chips)"
    return f"{result.devices:,} chips"
