"""`phalanx run`, `phalanx demo` and `phalanx lighthouse`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from phalanx.devices.placement import device_table, place
from phalanx.emulate.spec import parse_emulate, parse_emulate_chips
from phalanx.energy.operating_points import OBJECTIVES
from phalanx.energy.subsidy import parse_per_kwh, subsidy_per_kwh
from phalanx.errors import EXIT_DISK_FULL, UsageError
from phalanx.faults.spec import parse_faults
from phalanx.launch.energy_setup import EnergySettings
from phalanx.launch.flag_check import RunCommand
from phalanx.launch.run_config import load_run_config, script_and_args
from phalanx.launch.site_flags import SiteFlags, site_settings
from phalanx.observe.trackers.spec import parse_log_specs

if TYPE_CHECKING:
    from phalanx.launch.launcher import RunPlan

DEMO_SPEEDS = "1,0.5,0.25x2"
DEMO_FAULTS = [
    "kill:replica=1,step=25,restart_s=2,phase=allreduce",
    "hang:replica=2,step=50,seconds=6",
]


def _fleet_speeds(emulate: str | None, replicas: int | None) -> list[float | None]:
    if emulate and replicas:
        raise UsageError("--replicas", "cannot be combined with --emulate", "give one of them")
    if emulate and "+" in emulate:
        from phalanx.groups.layout import parse_emulate_replicas

        return [r.speed for r in parse_emulate_replicas(emulate)]
    if emulate:
        return list(parse_emulate(emulate))
    if replicas is not None and replicas < 1:
        raise UsageError(
            "--replicas", "must be >= 1", "pass a positive number of replicas", replicas
        )
    return [None] * (replicas or 1)


def _emulated_options(emulate: str | None) -> dict[str, Any]:
    """Per replica: max_share, kind and memory of `--emulate` chips; a group's rank parts."""
    if not emulate:
        return {}
    if "+" not in emulate:
        chips = parse_emulate_chips(emulate)
        return {
            "max_shares": [c.max_share for c in chips],
            "kinds": [c.kind for c in chips],
            "memory_caps": [c.memory_bytes for c in chips],
        }
    from phalanx.groups.layout import apportion_ranks, parse_emulate_replicas, ranks_per_group
    from phalanx.launch.group_slot import rank_parts

    replicas = parse_emulate_replicas(emulate)
    ranks = ranks_per_group(replicas)
    layouts = [
        rank_parts(
            [
                (chip.speed, chip.memory_bytes, hosted)
                for chip, hosted in zip(replica.chips, apportion_ranks(replica.chips, ranks))
            ]
        )
        for replica in replicas
    ]
    return {"group_parts": layouts}


def run_command(
    ctx: typer.Context,
    script: Annotated[Path, typer.Argument(help="Your training script (uses phalanx.Trainer).")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            is_eager=True,
            callback=load_run_config,
            help="A TOML file with any of these flags (flags given here override it).",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Run directory (overrides the script's out_dir).")
    ] = Path("runs/phalanx"),
    emulate: Annotated[
        str | None, typer.Option(help="Emulated chip speeds, e.g. 1,0.5,0.25x2.")
    ] = None,
    replicas: Annotated[
        int | None, typer.Option(help="Plain replicas on this host's own device.")
    ] = None,
    layout_plan: Annotated[
        Path | None,
        typer.Option("--plan", help="Run the layout `phalanx plan --emulate ... --out` wrote."),
    ] = None,
    devices: Annotated[
        str | None,
        typer.Option(help="One replica per device: auto (every accelerator) or e.g. cuda:0,cpu."),
    ] = None,
    fault: Annotated[
        list[str] | None, typer.Option("--fault", help="KIND:replica=R,step=S,... (repeatable).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its newest valid checkpoint.")
    ] = False,
    timeout_s: Annotated[
        float, typer.Option(help="Collective timeout: a frozen replica is dropped after this.")
    ] = 5.0,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Durable checkpoint every N steps (overrides the script).")
    ] = None,
    secret_file: Annotated[
        Path | None,
        typer.Option(help="The fleet secret (mode 600). Default: a new one per run in --out."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Print nothing but errors.")] = False,
    dashboard: Annotated[
        int | None,
        typer.Option(help="Serve a live dashboard on 127.0.0.1:PORT (0: the OS picks)."),
    ] = None,
    dashboard_bind: Annotated[
        str | None,
        typer.Option(
            help="Serve the dashboard on HOST:PORT for other machines (a token protects it)."
        ),
    ] = None,
    log: Annotated[
        list[str] | None,
        typer.Option(
            "--log",
            help="Also log to tensorboard:DIR, wandb:PROJECT or mlflow:URI (repeatable).",
        ),
    ] = None,
    fleet: Annotated[
        Path | None, typer.Option(help="A qualified fleet file: only devices that passed train.")
    ] = None,
    lighthouse: Annotated[
        str | None,
        typer.Option(help="Many hosts: join the `phalanx lighthouse` at HOST:PORT."),
    ] = None,
    host_id: Annotated[
        str | None,
        typer.Option(help="With --lighthouse: names replicas HOST_ID-r0, ... (default: hostname)."),
    ] = None,
    replica_names: Annotated[
        str | None, typer.Option(help="Explicit replica names, comma-separated, unique fleet-wide.")
    ] = None,
    advertise_host: Annotated[
        str | None,
        typer.Option(help="This host's IP that other hosts reach (default: route to lighthouse)."),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(help="32, bf16-mixed or fp16-mixed (overrides the script's Trainer)."),
    ] = None,
    guard: Annotated[
        str | None, typer.Option(help="SDC guard: off, standard (default) or full (adds ABFT).")
    ] = None,
    rescreen_every_s: Annotated[
        float | None,
        typer.Option(help="With --fleet: a correctness probe on each device every S seconds."),
    ] = None,
    tariff: Annotated[
        str | None, typer.Option(help="Electricity price for the cost estimate, e.g. 0.08/kWh.")
    ] = None,
    subsidy: Annotated[
        str | None,
        typer.Option(
            "--subsidy-per-kwh", help="Subsidy per kWh taken off the tariff, e.g. 0.02/kWh."
        ),
    ] = None,
    subsidy_fraction: Annotated[
        float | None,
        typer.Option(help="Share of the power bill paid by a subsidy (0..1); needs --tariff."),
    ] = None,
    co2_g_per_kwh: Annotated[
        float | None, typer.Option(help="Grid intensity for the CO2 estimate (g per kWh).")
    ] = None,
    objective: Annotated[
        str,
        typer.Option(help="time (full power), energy (fewest J/sample) or cost (J and hours)."),
    ] = "time",
    power_budget_w: Annotated[
        float | None,
        typer.Option(help="Fleet power cap: per-device limits and which devices train."),
    ] = None,
    max_slowdown: Annotated[
        float, typer.Option(help="--objective energy: most throughput to give up (0.10 = 10%).")
    ] = 0.10,
    energy_weight: Annotated[
        float,
        typer.Option(help="--objective energy: weight of energy against time, 0 < w <= 1."),
    ] = 1.0,
    fleet_cost_per_h: Annotated[
        float,
        typer.Option(help="--objective cost: what an hour of the fleet costs besides power."),
    ] = 0.0,
    thermal_guard: Annotated[
        bool, typer.Option(help="Move share away from chips nearing their throttle point.")
    ] = True,
    emulation_time_scale: Annotated[
        float | None,
        typer.Option(help="Emulated chips: chip seconds per wall second (default: fit the host)."),
    ] = None,
    site: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Sites run (docs/sites.md): this fleet is site NAME; needs the next three.",
        ),
    ] = None,
    sites: Annotated[
        str | None,
        typer.Option(
            metavar="A,B,...", help="Sites run: every site's name, in the same order on every site."
        ),
    ] = None,
    outer: Annotated[
        str | None, typer.Option(metavar="HOST:PORT", help="Sites run: the outer lighthouse.")
    ] = None,
    outer_every: Annotated[
        int | None, typer.Option(metavar="H", help="Sites run: inner steps between outer steps.")
    ] = None,
    outer_compression: Annotated[
        str | None,
        typer.Option(
            metavar="none|int8|4bit", help="Sites run: what crosses the outer link (default none)."
        ),
    ] = None,
    outer_block_size: Annotated[
        int | None, typer.Option(help="Sites run: values per scale when compressed (default 64).")
    ] = None,
    outer_error_feedback: Annotated[
        bool | None,
        typer.Option(help="Sites run: carry the quantisation error to the next round (default)."),
    ] = None,
    outer_lr: Annotated[
        float | None, typer.Option(help="Sites run: outer learning rate (default 0.7).")
    ] = None,
    outer_momentum: Annotated[
        float | None, typer.Option(help="Sites run: outer Nesterov momentum (default 0.9).")
    ] = None,
    outer_replay: Annotated[
        Path | None,
        typer.Option(help="Sites run: take each round's step counts from this run's --out."),
    ] = None,
) -> None:
    """Train SCRIPT on a fleet. Arguments after the options go to the script."""
    script, arguments = script_and_args(ctx, script)
    site_run = site_settings(
        SiteFlags(
            site, sites, outer, outer_every, outer_compression, outer_block_size,
            outer_error_feedback, outer_lr, outer_momentum, outer_replay,
        )
    )  # fmt: skip
    if rescreen_every_s is not None and (rescreen_every_s <= 0 or fleet is None):
        raise UsageError(
            "--rescreen-every-s",
            "needs --fleet and a positive number of seconds",
            "e.g. --fleet qualified.toml --rescreen-every-s 600",
            rescreen_every_s,
        )
    if guard is not None and guard not in ("off", "standard", "full"):
        raise UsageError("--guard", "unknown guard level", "use off, standard or full", guard)
    if precision is not None and precision not in ("32", "bf16-mixed", "fp16-mixed"):
        raise UsageError(
            "--precision", "unknown precision", "use 32, bf16-mixed or fp16-mixed", precision
        )
    tables: list[dict] = []
    planned: dict[str, Any] = {}
    if layout_plan is not None:
        if emulate or replicas or fleet or devices:
            raise UsageError(
                "--plan", "cannot be combined with --emulate, --replicas, --fleet or --devices",
                "the plan names its chips: give --plan alone",
            )  # fmt: skip
        from phalanx.launch.layout_options import layout_run_options

        speeds, planned = layout_run_options(layout_plan)
    elif devices is not None:
        if emulate or replicas or fleet:
            raise UsageError(
                "--devices", "cannot be combined with --emulate, --replicas or --fleet",
                "give one of them",
            )  # fmt: skip
        placements = place(devices)
        _check_precision_support([p.device for p in placements], precision)
        speeds: list[float | None] = [None] * len(placements)
        tables = [
            {"placement": {"device": p.device, "kind": p.kind}, "device": device_table(p, i)}
            for i, p in enumerate(placements)
        ]
    elif fleet is not None:
        if emulate or replicas:
            raise UsageError(
                "--fleet", "cannot be combined with --emulate or --replicas", "give one of them"
            )
        speeds, tables = _admitted_fleet(fleet, quiet)
        real = [t["placement"]["device"] for t in tables if t.get("placement")]
        _check_precision_support(real, precision)
    else:
        speeds = _fleet_speeds(emulate, replicas)
    speeds, many_hosts = _many_hosts(
        lighthouse,
        host_id,
        replica_names,
        advertise_host,
        speeds,
        bool(emulate or replicas or fleet or devices or layout_plan),
    )
    if timeout_s <= 0:
        raise UsageError("--timeout-s", "must be > 0", "pass e.g. --timeout-s 5", timeout_s)
    if checkpoint_every is not None and checkpoint_every < 0:
        raise UsageError(
            "--checkpoint-every", "must be >= 0", "pass 0 to turn checkpoints off", checkpoint_every
        )
    tariff_kwh = parse_per_kwh("--tariff", tariff)
    subsidy_kwh = subsidy_per_kwh(
        tariff_kwh, subsidy_fraction, parse_per_kwh("--subsidy-per-kwh", subsidy)
    )
    energy = _energy_settings(
        objective, power_budget_w, max_slowdown, energy_weight, fleet_cost_per_h,
        tariff_kwh, subsidy_kwh,
    )  # fmt: skip
    # Imported once the flags are checked: a usage error does not wait for torch.
    from phalanx.launch.launcher import RunPlan

    plan = RunPlan(
        script=script,
        out_dir=out,
        speeds=speeds,
        script_args=arguments,
        faults=parse_faults(fault or [], len(speeds)),
        resume=resume,
        timeout_s=timeout_s,
        checkpoint_every=checkpoint_every,
        secret_file=secret_file,
        quiet=quiet,
        dashboard_port=dashboard,
        dashboard_bind=dashboard_bind,
        logs=parse_log_specs(log or [], out),
        guard=guard,
        precision=precision,
        device_tables=tables,
        **_emulated_options(emulate),
        **planned,
        rescreen_every_s=rescreen_every_s,
        **many_hosts,
        tariff_per_kwh=tariff_kwh,
        subsidy_per_kwh=subsidy_kwh,
        co2_g_per_kwh=_non_negative("--co2-g-per-kwh", co2_g_per_kwh),
        energy=energy,
        thermal_guard=thermal_guard,
        time_scale=_time_scale(emulation_time_scale),
        sites=site_run,
    )
    _check_fault_chips(plan)
    raise typer.Exit(_launch(plan))


def _check_fault_chips(plan: RunPlan) -> None:
    """`--fault ...,chip=C` names a chip of the replica's group: one that exists."""
    for fault in plan.faults:
        if fault.replica < 0 or not fault.chip:
            continue
        parts = plan.group_parts[fault.replica] if plan.group_parts else []
        chips = max((p.chip for p in parts), default=0) + 1
        if fault.chip >= chips:
            raise UsageError(
                f"--fault {fault.kind}: chip",
                f"replica {fault.replica} has {chips} chip{'s' * (chips > 1)}",
                f"use chip=0..{chips - 1} (chips of a group, in the order --emulate or the "
                "plan lists them)"
                if chips > 1
                else "drop chip= (it names a chip of a replica group)",
                fault.chip,
            )


def _launch(plan: RunPlan) -> int:
    """Run the fleet; a disk that is full where the launcher must write is one line, exit 5.

    Writes the run can do without are skipped with a warning where they happen
    (observe/safe_write.py); what reaches here is one the launcher cannot do
    without: the fleet secret or a worker's config before the first launch.
    """
    from phalanx.launch.launcher import Launcher
    from phalanx.observe.safe_write import describe, disk_errno
    from phalanx.runtime.checkpoint import list_checkpoints

    try:
        return Launcher(plan).run()
    except OSError as err:
        code = disk_errno(err)
        if code is None:
            raise
        again = " with --resume" if list_checkpoints(plan.out_dir) else ""
        where = f" ({err.filename})" if err.filename else ""
        typer.echo(
            f"error: --out {plan.out_dir}: {describe(code)}{where}. "
            f"Fix: free disk space there, then run it again{again}",
            err=True,
        )
        return EXIT_DISK_FULL


def _time_scale(value: float | None) -> float | None:
    if value is not None and not 0 < value <= 1:
        raise UsageError(
            "--emulation-time-scale", "must be in (0, 1]", "e.g. --emulation-time-scale 0.2", value
        )
    return value


def _energy_settings(
    objective: str,
    power_budget_w: float | None,
    max_slowdown: float,
    energy_weight: float,
    fleet_cost_per_h: float,
    tariff_per_kwh: float | None,
    subsidy_kwh: float | None,
) -> EnergySettings:
    if objective not in OBJECTIVES:
        raise UsageError(
            "--objective", "unknown objective", f"use one of: {', '.join(OBJECTIVES)}", objective
        )
    if power_budget_w is not None and not power_budget_w > 0:
        raise UsageError(
            "--power-budget-w", "must be positive", "e.g. --power-budget-w 1500", power_budget_w
        )
    if not 0 <= max_slowdown < 1:
        raise UsageError(
            "--max-slowdown", "must be in [0, 1)", "e.g. --max-slowdown 0.1 (10%)", max_slowdown
        )
    if not 0 < energy_weight <= 1:
        raise UsageError(
            "--energy-weight", "must be in (0, 1]", "1 = energy only, 0.5 = equal", energy_weight
        )
    if not fleet_cost_per_h >= 0:
        raise UsageError(
            "--fleet-cost-per-h", "must not be negative", "e.g. 12.5", fleet_cost_per_h
        )
    if objective == "cost" and not tariff_per_kwh:
        raise UsageError("--objective", "cost needs a tariff", "add --tariff 0.08/kWh", objective)
    if tariff_per_kwh is not None and subsidy_kwh:
        # The cost objective weighs the power the fleet pays for, as the planner does.
        tariff_per_kwh = max(0.0, tariff_per_kwh - subsidy_kwh)
        if objective == "cost" and not tariff_per_kwh:
            raise UsageError(
                "--objective",
                "cost weighs the power bill, and the subsidy pays all of it",
                "use --objective time (free power: only speed counts)",
                objective,
            )
    return EnergySettings(
        objective=objective,
        power_budget_w=power_budget_w,
        max_slowdown=max_slowdown,
        energy_weight=energy_weight,
        fleet_cost_per_h=fleet_cost_per_h,
        tariff_per_kwh=tariff_per_kwh,
    )


def _non_negative(flag: str, value: float | None) -> float | None:
    if value is not None and not value >= 0:
        raise UsageError(flag, "must not be negative", f"write e.g. {flag} 0.08", value)
    return value


def _admitted_fleet(path: Path, quiet: bool) -> tuple[list[float | None], list[dict]]:
    """Replicas from a qualified fleet file: only devices that passed train."""
    from phalanx.devices.fleet_file import device_to_dict, load_admitted

    admitted, rejected = load_admitted(path)
    if not quiet:
        for refused in rejected:
            typer.echo(f"not admitted: {refused.device.id}: {'; '.join(refused.reasons)}")
    if not admitted:
        raise UsageError(
            "--fleet",
            "has no device that passed qualification",
            "run `phalanx qualify` and fix or replace devices",
            str(path),
        )
    speeds: list[float | None] = []
    tables: list[dict] = []
    for device in admitted:
        q = device.qualification
        # An emulated chip is paced to its speed; a real device runs at its own.
        speed = (
            (device.speed or (q.measured_speed if q else None) or 1.0) if device.emulated else None
        )
        rates = list(q.profile_samples_per_s) if q else []
        defects = {"flip_rate": device.defects.flip_rate} if device.defects.flip_rate else None
        speeds.append(speed)
        tables.append(
            {
                "id": device.id,
                "hint_sps": max(rates) if rates else None,
                "defects": defects,
                "device": device_to_dict(device),
                **(
                    {}
                    if device.emulated
                    else {"placement": {"device": device.torch_device, "kind": device.kind}}
                ),
            }
        )
    if not quiet:
        typer.echo(f"admitted: {', '.join(d.id for d in admitted)}")
    return speeds, tables


def _many_hosts(
    lighthouse: str | None,
    host_id: str | None,
    replica_names: str | None,
    advertise_host: str | None,
    speeds: list[float | None],
    count_given: bool,
) -> tuple[list[float | None], dict[str, Any]]:
    """RunPlan fields for a fleet spanning hosts; ({}, speeds) for a one-host fleet."""
    from phalanx.fleetnet import hosts

    names = None
    if replica_names is not None:
        names = [hosts.check_name("--replica-names", n.strip()) for n in replica_names.split(",")]
        if len(set(names)) != len(names):
            raise UsageError(
                "--replica-names", "has a name twice", "make each unique", replica_names
            )
        if not count_given:
            speeds = [None] * len(names)
        elif len(names) != len(speeds):
            raise UsageError(
                "--replica-names",
                f"names {len(names)} replicas but the fleet has {len(speeds)}",
                "give one name per replica",
                replica_names,
            )
    if host_id is not None:
        hosts.check_name("--host-id", host_id)
        if names is not None:
            raise UsageError("--host-id", "cannot be combined with --replica-names", "give one")
    if lighthouse is None:
        if advertise_host is not None:
            raise UsageError("--advertise-host", "needs --lighthouse", "add --lighthouse HOST:PORT")
        return speeds, {"host_id": host_id, "replica_names": names}
    host, port = hosts.parse_endpoint("--lighthouse", lighthouse)
    if advertise_host is None:
        advertise_host = hosts.route_address(host, port)
    if names is None and host_id is None:
        host_id = hosts.default_host_id()
    return speeds, {
        "lighthouse": hosts.lighthouse_url(host, port),
        "host_id": host_id,
        "replica_names": names,
        "advertise_host": hosts.check_advertise_host(advertise_host),
    }


def demo_command(
    out: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/demo"),
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 80,
    quiet: Annotated[bool, typer.Option(help="Print nothing but errors.")] = False,
    dashboard: Annotated[
        int | None,
        typer.Option(help="Serve a live dashboard on 127.0.0.1:PORT (0: the OS picks)."),
    ] = None,
) -> None:
    """A small GPT on text that ships with Python, on 4 emulated chips, with a crash and a hang."""
    import shutil

    from phalanx.demo import train_gpt
    from phalanx.launch.launcher import RunPlan

    if steps < 60:
        raise UsageError(
            "--steps", "the demo's faults fire at steps 25 and 50", "use --steps 60 or more", steps
        )
    if out.exists():
        shutil.rmtree(out)  # the demo always starts fresh
    speeds: list[float | None] = list(parse_emulate(DEMO_SPEEDS))
    plan = RunPlan(
        script=Path(train_gpt.__file__),
        out_dir=out,
        speeds=speeds,
        script_args=["--steps", str(steps)],
        faults=parse_faults(DEMO_FAULTS, len(speeds)),
        checkpoint_every=20,
        quiet=quiet,
        dashboard_port=dashboard,
    )
    if not quiet:
        typer.echo(
            "phalanx demo: a character-level GPT trains on 4 emulated chips of speeds 1, 0.5, 0.25, 0.25.\n"
            "Replica r1 is SIGKILLed inside the allreduce of step 25 and restarts 2 s later;\n"
            "replica r2 freezes (SIGSTOP) for 6 s at step 50. Watch the shares follow the speeds."
        )
    raise typer.Exit(_launch(plan))


def lighthouse_command(
    bind: Annotated[
        str, typer.Option(help="HOST:PORT to serve on (port 0: the OS picks).")
    ] = "127.0.0.1:0",
    heartbeat_timeout_ms: Annotated[
        int, typer.Option(help="Drop a replica after this long without heartbeats.")
    ] = 2000,
    min_replicas: Annotated[
        int,
        typer.Option(help="No quorum (and no step) with fewer replicas, the first one included."),
    ] = 1,
    secret_file: Annotated[
        Path | None,
        typer.Option(help="The fleet secret; created (mode 600) if missing. Default: see docs."),
    ] = None,
) -> None:
    """Run the quorum server as a service; replicas join with --lighthouse HOST:PORT.

    Only replicas that hold the fleet secret are admitted (docs/security.md).
    If the lighthouse process dies it is restarted; replicas wait and go on.
    """
    from phalanx.fleetnet.fleet_secret import default_secret_path, load_or_create
    from phalanx.launch.lighthouse import LighthouseSettings
    from phalanx.runtime.liveness import MIN_SHARED_HEARTBEAT_TIMEOUT_MS

    host, sep, port_text = bind.rpartition(":")
    if not sep or not port_text.isdigit() or not host or int(port_text) > 65535:
        raise UsageError("--bind", "is not HOST:PORT", "write e.g. --bind 127.0.0.1:29510", bind)
    if min_replicas < 1:
        raise UsageError("--min-replicas", "must be >= 1", "e.g. --min-replicas 2", min_replicas)
    if heartbeat_timeout_ms < MIN_SHARED_HEARTBEAT_TIMEOUT_MS:
        # Replicas size their stand-still check to this floor (runtime/liveness.py):
        # below it a frozen replica could commit a step its peers retried without it.
        raise UsageError(
            "--heartbeat-timeout-ms",
            f"must be >= {MIN_SHARED_HEARTBEAT_TIMEOUT_MS}",
            f"e.g. --heartbeat-timeout-ms {MIN_SHARED_HEARTBEAT_TIMEOUT_MS}",
            heartbeat_timeout_ms,
        )
    secret_path = (secret_file or default_secret_path()).absolute()
    secret, created = load_or_create(secret_path)
    settings = LighthouseSettings(
        bind_host=host,
        port=int(port_text),
        heartbeat_timeout_ms=heartbeat_timeout_ms,
        min_replicas=min_replicas,
    )
    _serve_gated(settings, secret, secret_path, created)


def _serve_gated(settings: Any, secret: bytes, secret_path: Path, created: bool) -> None:
    """The admission gate on the public address; the lighthouse behind it, restarted if it dies."""
    import tempfile
    import time

    from phalanx.launch.coordinator import GatedLighthouse

    def report(kind: str, **fields: Any) -> None:
        details = ", ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        typer.echo(f"{time.strftime('%H:%M:%S')} {kind}: {details}", file=sys.stderr)

    log_path = Path(tempfile.gettempdir()) / f"phalanx-lighthouse-{os.getpid()}.log"
    try:
        server = GatedLighthouse(settings, secret, log_path, on_event=report)
    except OSError as err:  # an address not on this host, a port in use, a privileged port
        raise UsageError(
            "--bind", f"cannot be bound ({err.strerror or err})",
            "give an address of this host and a free port, e.g. --bind 0.0.0.0:29510",
            f"{settings.bind_host}:{settings.port}",
        ) from None  # fmt: skip
    typer.echo(
        f"fleet secret: {secret_path} ({'created' if created else 'existing'}; copy it, mode 600, "
        "to each training host: phalanx run --lighthouse ... --secret-file FILE)",
        file=sys.stdout,
    )
    typer.echo(f"lighthouse log: {log_path}", file=sys.stdout)
    typer.echo(f"lighthouse serving at {server.address}", file=sys.stdout)
    try:
        while True:
            server.poll()
            time.sleep(0.2)  # supervisor tick: restart a dead lighthouse, not synchronisation
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        cls=RunCommand,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(run_command)
    from phalanx.launch.sites_command import register as register_sites

    register_sites(app)
    app.command("demo")(demo_command)
    app.command("lighthouse")(lighthouse_command)


def _check_precision_support(devices: list[str], precision: str | None) -> None:
    """A precision a listed device lacks is refused before any worker starts."""
    from phalanx.runtime.precision import missing_support

    for device in devices:
        why = missing_support(device, precision or "32")
        if why is not None:
            raise UsageError("--precision", why, "use --precision fp16-mixed on this chip", device)
