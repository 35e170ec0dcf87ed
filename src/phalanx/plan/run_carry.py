"""What a fleet plan (`phalanx plan --fleet F --model M --out run.toml`) carries into `run`.

`phalanx run` starts devices, so only a fleet of devices can be carried: the
`[[device]]` tables `phalanx qualify` wrote. `fleet` is that file, and run
admits the same qualified devices the plan planned. Two plans are refused,
one line and exit 2, rather than written as a file that fails or silently
runs something else: a `[[class]]` fleet (chips by count, for forecasts: no
device run could start), and a plan that trains devices in replica groups
(run forms groups only from `--emulate` or a `--plan` layout; alone, each
device would run out of memory).

The economics carry as run's own objective: `--time-value V` is run's
`--objective cost --fleet-cost-per-h V` at the same tariff, the same trade
of watts against hours (run picks devices and power limits itself at start).
Devices the plan leaves out for other reasons (a slow network, too slow to
pay for their sync, too little memory) are named in the header: `run --fleet`
trains every qualified device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phalanx.errors import UsageError
from phalanx.plan.device_classes import PlanFleet
from phalanx.plan.plan_types import ClassPlan, Plan
from phalanx.plan.run_file import RunFile, batch_line


def check_runnable_fleet(planned: PlanFleet, fleet: Path) -> None:
    """Before planning: a fleet of classes has no device `phalanx run` could start."""
    if not planned.from_devices:
        raise UsageError(
            "--out",
            f"{fleet.name} describes chips by class and count ([[class]] tables), which "
            "phalanx run cannot start: a run config needs devices",
            "drop --out for the forecast, or plan devices run can start: a qualified fleet "
            "(phalanx qualify, then plan --fleet qualified.toml --efficiency F --out run.toml) "
            "or emulated chips (plan --emulate SPEC --model M --out run.toml)",
            str(fleet),
        )


def fleet_run_file(plan: Plan, planned: PlanFleet, fleet: Path) -> RunFile:
    """The run flags of a plan of qualified devices, and what run will not do as planned."""
    for c in plan.classes:
        if c.used and c.needs_group:
            raise UsageError(
                "--out",
                f"the plan trains {c.chips_used} devices of {c.name} in replica groups of "
                f"{c.group_size} (too little tested memory for a replica alone), and phalanx "
                "run --fleet trains each device alone",
                "drop --out to see the plan; to run it, use devices with more memory or a "
                "smaller model (run forms groups only from --emulate or a --plan layout)",
                str(fleet),
            )
    opts = plan.options
    keys: dict[str, Any] = {"fleet": str(fleet.resolve())}
    if plan.objective == "cost":
        keys |= {"objective": "cost", "fleet_cost_per_h": opts.time_value_usd_per_h}
        objective = (
            f'objective = "cost", fleet_cost_per_h = {opts.time_value_usd_per_h:g} (the '
            "plan's --time-value): run weighs watts against hours as the plan did"
        )
    else:
        keys["objective"] = "time"
        objective = 'objective = "time": every device at full power, as planned'
    keys["tariff"] = f"{opts.tariff_usd_per_kwh}/kWh"
    if opts.subsidy > 0:
        keys["subsidy_fraction"] = opts.subsidy
    groups = plan.replicas_used != plan.devices_used  # never here: refused above
    replicas = f" in {plan.replicas_used} replicas" if groups else ""
    about = [
        f"{plan.devices_used} of {plan.devices_total} qualified devices{replicas} for "
        f"{plan.model_name}, global batch {plan.global_batch}; predicted "
        f"{plan.throughput_sps:.4g} samples/s, {plan.step_s:.3g} s a step, {plan.power_w:.0f} W",
        f"fleet = {fleet.name}: run admits its qualified devices, as the plan did"
        + (f" (not qualified: {', '.join(planned.left_out)})" if planned.left_out else ""),
        objective,
    ]
    not_carried = [
        batch_line(plan.global_batch),
        "shares and micro-batches (the plan's predictions): run measures each device and "
        "sets them itself",
    ]
    for c in plan.classes:
        not_carried += _left_out(c, fleet, plan.objective == "cost")
    return RunFile(keys, about, not_carried)


def _left_out(c: ClassPlan, fleet: Path, cost: bool) -> list[str]:
    """Header lines on the devices of class `c` the plan does not train."""
    lines = []
    for ex in c.excluded:
        who = f"{ex.count} device{'s' * (ex.count > 1)} of {c.name}"
        if ex.reason == "power" and cost:
            lines.append(
                f"which devices to leave out for their power ({who} in this plan): run's cost "
                "objective chooses them, and their power limits, itself at start"
            )
        elif ex.reason in ("memory", "group"):
            lines.append(
                f"{who} left out ({ex.reason}: {ex.detail}): run --fleet starts every qualified "
                "device, and these leave at start with an out-of-memory line"
            )
        elif ex.reason != "defective":  # run qualifies nothing itself: the file already did
            lines.append(
                f"{who} left out ({ex.reason}: {ex.detail}): run --fleet trains every "
                f"qualified device; remove them from {fleet.name} to follow the plan"
            )
    return lines
