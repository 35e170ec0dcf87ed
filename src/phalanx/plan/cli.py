"""`phalanx plan` and `phalanx simulate`: thin wrappers over the pure planner and simulator."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from phalanx.errors import UsageError

if TYPE_CHECKING:
    from phalanx.plan.layout import Layout
    from phalanx.plan.run_file import RunFile


def _check_rate(field: str, value: float, max_value: float | None = None) -> None:
    if value < 0 or (max_value is not None and value > max_value):
        bound = f"between 0 and {max_value:g}" if max_value is not None else ">= 0"
        raise UsageError(field, f"must be {bound}", f"pass {field} with a value {bound}", value)


def _console() -> Console:
    # Piped output gets rich's 80 columns by default: too narrow for the tables.
    probe = Console()
    return probe if probe.is_terminal else Console(width=150)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


FleetOpt = Annotated[Path, typer.Option("--fleet", help="fleet.toml with [[class]] tables")]
PlanFleetOpt = Annotated[
    Path | None,
    typer.Option(
        "--fleet", help="fleet.toml with [[class]] tables, or a qualified fleet ([[device]] tables)"
    ),
]
ModelOpt = Annotated[Path, typer.Option("--model", help="model profile (TOML or JSON)")]
PlanModelOpt = Annotated[Path | None, typer.Option("--model", help="model profile (TOML or JSON)")]
TariffOpt = Annotated[float, typer.Option("--tariff", help="electricity price, USD per kWh")]
SubsidyOpt = Annotated[
    float | None,
    typer.Option("--subsidy-fraction", help="fraction of the power bill paid by a subsidy (0..1)"),
]
SubsidyPerKwhOpt = Annotated[
    str | None,
    typer.Option("--subsidy-per-kwh", help="subsidy per kWh taken off the tariff, e.g. 0.02/kWh"),
]


def _subsidy_fraction(tariff: float, fraction: float | None, per_kwh: str | None) -> float:
    """Both subsidy flags mean the same in run, plan and simulate (energy/subsidy.py)."""
    from phalanx.energy.subsidy import parse_per_kwh, subsidy_fraction

    return subsidy_fraction(tariff, fraction, parse_per_kwh("--subsidy-per-kwh", per_kwh))


JsonOpt = Annotated[Path | None, typer.Option("--json", help="also write the result as JSON here")]


def plan_cmd(
    ctx: typer.Context,
    fleet: PlanFleetOpt = None,
    model: PlanModelOpt = None,
    emulate: Annotated[
        str | None,
        typer.Option(
            "--emulate",
            help="plan these emulated chips one by one, e.g. 1:mem=800KB,0.5x4:mem=400KB",
        ),
    ] = None,
    script: Annotated[
        Path | None,
        typer.Option(
            "--script",
            help="with --emulate: measure this training script's model (its arguments after --)",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="write the plan as a phalanx run --config file (with --emulate: also --plan)",
        ),
    ] = None,
    tariff: TariffOpt = 0.08,
    subsidy: SubsidyOpt = None,
    subsidy_per_kwh: SubsidyPerKwhOpt = None,
    time_value: Annotated[
        float | None,
        typer.Option(
            "--time-value",
            help="USD an hour of the run is worth; then chips not worth their power are left out",
        ),
    ] = None,
    json_out: JsonOpt = None,
    efficiency: Annotated[
        float | None,
        typer.Option(
            "--efficiency",
            help="qualified [[device]] fleets: fraction of each device's measured matmul rate the model reaches",
        ),
    ] = None,
) -> None:
    """Choose chips, shares and micro-batches for a fleet; predict step time, throughput and energy.

    With --emulate: which chips form each replica (groups for a model no chip holds).
    """
    if ctx.args and script is None:
        raise UsageError(
            "arguments", "are passed to a --script only", "drop them, or add --script", ctx.args
        )
    if emulate is not None:
        layout = _plan_chips(emulate, script, list(ctx.args), model, fleet, json_out)
        if out is not None:
            from phalanx.plan.run_file import layout_run_file

            _write_run_file(out, layout_run_file(layout, script, list(ctx.args)), ctx)
        return
    if fleet is None or model is None:
        raise UsageError(
            "--fleet" if fleet is None else "--model",
            "is needed",
            "give --fleet FILE --model FILE, or --emulate SPEC with --script or --model",
        )
    if script is not None:
        raise UsageError(
            "--script",
            "applies only to --emulate (a layout of known chips)",
            "plan emulated chips with --emulate SPEC, or drop the option",
        )
    from phalanx.plan.device_classes import load_plan_fleet
    from phalanx.plan.model_profile import load_model
    from phalanx.plan.plan_types import PlanOptions
    from phalanx.plan.planner import make_plan
    from phalanx.plan.report import plan_table, plan_to_dict

    _check_rate("--tariff", tariff)
    subsidy = _subsidy_fraction(tariff, subsidy, subsidy_per_kwh)
    if time_value is not None:
        _check_rate("--time-value", time_value)
    planned = load_plan_fleet(fleet, efficiency)
    if out is not None:
        from phalanx.plan.run_carry import check_runnable_fleet

        check_runnable_fleet(planned, fleet)
    profile = load_model(model)
    if planned.from_devices and profile.flops_per_sample is None:
        raise UsageError(
            "model.flops_per_sample",
            "is needed to plan qualified devices: their speed is measured in FLOP/s",
            "add flops_per_sample (forward + backward FLOPs of one sample) to the model profile",
        )
    plan = make_plan(planned.spec, profile, PlanOptions(tariff, subsidy, time_value))
    # Carried before printing: a plan that run cannot carry out is refused alone, exit 2.
    carried: RunFile | None = None
    if out is not None:
        from phalanx.plan.run_carry import fleet_run_file

        carried = fleet_run_file(plan, planned, fleet)
    if planned.left_out:
        _console().print(
            f"not planned (failed or not qualified): {', '.join(planned.left_out)}",
            markup=False,
            highlight=False,
        )
    _console().print(plan_table(plan))
    if json_out is not None:
        _write_json(json_out, plan_to_dict(plan))
    if out is not None and carried is not None:  # both or neither: mypy sees only `carried`
        _write_run_file(out, carried, ctx)


def _command_line(ctx: typer.Context) -> str:
    """The plan command as given (its options that differ from their defaults), for run.toml."""
    words = ["phalanx", ctx.info_name or "plan"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is not None and value != param.default and param.opts:
            words += [param.opts[0], str(value)]
    return shlex.join(words + (["--", *ctx.args] if ctx.args else []))


def _write_run_file(out: Path, carried: RunFile, ctx: typer.Context) -> None:
    from phalanx.plan.run_file import render, write_run_file

    write_run_file(out, render(carried, _command_line(ctx), out))
    script = "" if "script" in carried.keys else " SCRIPT"
    _console().print(
        f"wrote {out}: phalanx run{script} --config {out}",
        markup=False,
        highlight=False,
        soft_wrap=True,  # a long path stays one line to copy
    )


def _plan_chips(
    emulate: str,
    script: Path | None,
    script_args: list[str],
    model: Path | None,
    fleet: Path | None,
    json_out: Path | None,
) -> Layout:
    from phalanx.plan.layout import plan_layout
    from phalanx.plan.layout_file import layout_document
    from phalanx.plan.layout_needs import chips_of, needs_of_profile, needs_of_script
    from phalanx.plan.layout_report import layout_lines, layout_table

    if fleet is not None:
        raise UsageError("--fleet", "cannot be combined with --emulate", "give one of them")
    if (script is None) == (model is None):
        raise UsageError(
            "--emulate",
            "needs the model: --script (measured) or --model (a profile), one of them",
            "add --script train.py",
        )
    chips = chips_of(emulate)
    needs = needs_of_script(script, script_args) if script is not None else needs_of_profile(model)
    layout = plan_layout(chips, needs)
    console = _console()
    console.print(layout_table(layout))
    for line in layout_lines(layout):
        console.print(line, markup=False, highlight=False)
    if json_out is not None:
        _write_json(json_out, layout_document(layout))
    return layout


def register(app: typer.Typer) -> None:
    """Add `plan` to the main `phalanx` app (`simulate` is sim/cli.py's)."""
    app.command("plan", context_settings={"allow_extra_args": True})(plan_cmd)
