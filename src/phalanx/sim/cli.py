"""`phalanx simulate`: a planned fleet over weeks, failures and heat included (docs/simulator.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from phalanx.errors import UsageError
from phalanx.plan.cli import (
    FleetOpt,
    JsonOpt,
    ModelOpt,
    SubsidyOpt,
    SubsidyPerKwhOpt,
    TariffOpt,
    _check_rate,
    _console,
    _subsidy_fraction,
    _write_json,
)


def simulate_cmd(
    fleet: FleetOpt,
    model: ModelOpt,
    days: Annotated[float, typer.Option("--days", help="simulated horizon in days")] = 30.0,
    seed: Annotated[int, typer.Option("--seed", help="random seed: same seed, same result")] = 0,
    policies: Annotated[
        str,
        typer.Option(
            "--policies",
            help="comma-separated: phalanx, phalanx-nobalance, ddp-restart[:interval_s=S]",
        ),
    ] = "phalanx,ddp-restart,phalanx-nobalance",
    samples: Annotated[
        float | None,
        typer.Option(
            "--samples",
            help="samples to train (default: the model's train_samples, else the whole horizon)",
        ),
    ] = None,
    tariff: TariffOpt = 0.08,
    subsidy: SubsidyOpt = None,
    subsidy_per_kwh: SubsidyPerKwhOpt = None,
    checkpoint_s: Annotated[
        float,
        typer.Option("--checkpoint-s", help="restart policy: seconds to write one checkpoint"),
    ] = 120.0,
    world_restart_s: Annotated[
        float,
        typer.Option("--world-restart-s", help="restart policy: seconds to relaunch the world"),
    ] = 600.0,
    stall_s: Annotated[
        float, typer.Option("--stall-s", help="fault-tolerant policies: stall per failure")
    ] = 3.0,
    json_out: JsonOpt = None,
    plots: Annotated[
        Path | None,
        typer.Option("--plots", help="write progress and goodput PNGs into this folder"),
    ] = None,
) -> None:
    """Simulate the planned fleet for weeks under several policies, side by side."""
    from phalanx.plan.fleet_classes import load_fleet
    from phalanx.plan.model_profile import load_model
    from phalanx.plan.plan_types import PlanOptions
    from phalanx.plan.planner import make_plan
    from phalanx.sim.engine import simulate
    from phalanx.sim.policies import SimConfig, parse_policies
    from phalanx.sim.report import sim_table, sim_to_dict

    if not 0 < days <= 3650:
        raise UsageError("--days", "must be > 0 and at most 3650", "pass --days 30", days)
    for name, value in (
        ("--tariff", tariff),
        ("--checkpoint-s", checkpoint_s),
        ("--world-restart-s", world_restart_s),
        ("--stall-s", stall_s),
    ):
        _check_rate(name, value)
    subsidy = _subsidy_fraction(tariff, subsidy, subsidy_per_kwh)
    if samples is not None and samples <= 0:
        raise UsageError("--samples", "must be > 0", "pass --samples 2.5e9", samples)
    pols = parse_policies(policies)
    fleet_spec, model_spec = load_fleet(fleet), load_model(model)
    plan = make_plan(fleet_spec, model_spec, PlanOptions(tariff, subsidy))
    cfg = SimConfig(
        days=days,
        seed=seed,
        target_samples=samples if samples is not None else model_spec.train_samples,
        tariff_usd_per_kwh=tariff,
        subsidy=subsidy,
        stall_s=stall_s,
        world_restart_s=world_restart_s,
        checkpoint_s=checkpoint_s,
    )
    result = simulate(fleet_spec, model_spec, plan, cfg, pols)
    _console().print(sim_table(result))
    if json_out is not None:
        _write_json(json_out, sim_to_dict(result))
    if plots is not None:
        from phalanx.sim.plots import write_plots

        for path in write_plots(result, plots):
            _console().print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)
