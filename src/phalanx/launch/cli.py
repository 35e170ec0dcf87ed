"""`phalanx run`, `phalanx demo` and `phalanx lighthouse`."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from phalanx.emulate.spec import parse_emulate
from phalanx.errors import UsageError
from phalanx.faults.spec import parse_faults

DEMO_SPEEDS = "1,0.5,0.25x2"
DEMO_FAULTS = [
    "kill:replica=1,step=25,restart_s=2,phase=allreduce",
    "hang:replica=2,step=50,seconds=6",
]


def _fleet_speeds(emulate: str | None, replicas: int | None) -> list[float | None]:
    if emulate and replicas:
        raise UsageError("--replicas", "cannot be combined with --emulate", "give one of them")
    if emulate:
        return list(parse_emulate(emulate))
    if replicas is not None and replicas < 1:
        raise UsageError(
            "--replicas", "must be >= 1", "pass a positive number of replicas", replicas
        )
    return [None] * (replicas or 1)


def run_command(
    ctx: typer.Context,
    script: Annotated[Path, typer.Argument(help="Your training script (uses phalanx.Trainer).")],
    out: Annotated[
        Path, typer.Option("--out", help="Run directory (overrides the script's out_dir).")
    ] = Path("runs/phalanx"),
    emulate: Annotated[
        str | None, typer.Option(help="Emulated chip speeds, e.g. 1,0.5,0.25x2.")
    ] = None,
    replicas: Annotated[
        int | None, typer.Option(help="Plain replicas on this host's own device.")
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
    quiet: Annotated[bool, typer.Option(help="Print nothing but errors.")] = False,
    dashboard: Annotated[
        int | None,
        typer.Option(help="Serve a live dashboard on 127.0.0.1:PORT (0: the OS picks)."),
    ] = None,
    fleet: Annotated[
        Path | None, typer.Option(help="A qualified fleet file: only devices that passed train.")
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
        str | None, typer.Option(help="Subsidy per kWh taken off the tariff, e.g. 0.02/kWh.")
    ] = None,
    co2_g_per_kwh: Annotated[
        float | None, typer.Option(help="Grid intensity for the CO2 estimate (g per kWh).")
    ] = None,
) -> None:
    """Train SCRIPT on a fleet. Arguments after the options go to the script."""
    from phalanx.launch.launcher import Launcher, RunPlan

    if rescreen_every_s is not None and (rescreen_every_s <= 0 or fleet is None):
        raise UsageError(
            "--rescreen-every-s",
            "needs --fleet and a positive number of seconds",
            "e.g. --fleet qualified.toml --rescreen-every-s 600",
            rescreen_every_s,
        )
    if guard is not None and guard not in ("off", "standard", "full"):
        raise UsageError("--guard", "unknown guard level", "use off, standard or full", guard)
    tables: list[dict] = []
    if fleet is not None:
        if emulate or replicas:
            raise UsageError(
                "--fleet", "cannot be combined with --emulate or --replicas", "give one of them"
            )
        speeds, tables = _admitted_fleet(fleet, quiet)
    else:
        speeds = _fleet_speeds(emulate, replicas)
    if timeout_s <= 0:
        raise UsageError("--timeout-s", "must be > 0", "pass e.g. --timeout-s 5", timeout_s)
    if checkpoint_every is not None and checkpoint_every < 0:
        raise UsageError(
            "--checkpoint-every", "must be >= 0", "pass 0 to turn checkpoints off", checkpoint_every
        )
    plan = RunPlan(
        script=script,
        out_dir=out,
        speeds=speeds,
        script_args=list(ctx.args),
        faults=parse_faults(fault or [], len(speeds)),
        resume=resume,
        timeout_s=timeout_s,
        checkpoint_every=checkpoint_every,
        quiet=quiet,
        dashboard_port=dashboard,
        guard=guard,
        device_tables=tables,
        rescreen_every_s=rescreen_every_s,
        tariff_per_kwh=_per_kwh("--tariff", tariff),
        subsidy_per_kwh=_per_kwh("--subsidy", subsidy),
        co2_g_per_kwh=_non_negative("--co2-g-per-kwh", co2_g_per_kwh),
    )
    raise typer.Exit(Launcher(plan).run())


def _per_kwh(flag: str, text: str | None) -> float | None:
    """'0.08/kWh' or '0.08' -> 0.08 (a price per kWh)."""
    if text is None:
        return None
    number = text.strip().lower().removesuffix("/kwh")
    try:
        value = float(number)
    except ValueError:
        raise UsageError(
            flag, "is not a price per kWh", f"write e.g. {flag} 0.08/kWh", text
        ) from None
    return _non_negative(flag, value)


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
    if any(not d.emulated for d in admitted):
        raise UsageError(
            "--fleet",
            "real devices are not yet driven by `phalanx run`",
            "use emulated devices, or --replicas",
            str(path),
        )
    speeds: list[float | None] = []
    tables: list[dict] = []
    for device in admitted:
        q = device.qualification
        speed = device.speed or (q.measured_speed if q else None) or 1.0
        rates = list(q.profile_samples_per_s) if q else []
        defects = {"flip_rate": device.defects.flip_rate} if device.defects.flip_rate else None
        speeds.append(speed)
        tables.append(
            {
                "id": device.id,
                "hint_sps": max(rates) if rates else None,
                "defects": defects,
                "device": device_to_dict(device),
            }
        )
    if not quiet:
        typer.echo(f"admitted: {', '.join(d.id for d in admitted)}")
    return speeds, tables


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
    from phalanx.launch.launcher import Launcher, RunPlan

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
    raise typer.Exit(Launcher(plan).run())


def lighthouse_command(
    bind: Annotated[
        str, typer.Option(help="HOST:PORT to serve on (port 0: the OS picks).")
    ] = "127.0.0.1:0",
    heartbeat_timeout_ms: Annotated[
        int, typer.Option(help="Drop a replica after this long without heartbeats.")
    ] = 2000,
) -> None:
    """Run the quorum server as a service; replicas join with --lighthouse HOST:PORT."""
    from phalanx.launch.lighthouse import Lighthouse, LighthouseSettings

    host, sep, port_text = bind.rpartition(":")
    if not sep or not port_text.isdigit() or not host or int(port_text) > 65535:
        raise UsageError("--bind", "is not HOST:PORT", "write e.g. --bind 127.0.0.1:29510", bind)
    server = Lighthouse(
        LighthouseSettings(
            bind_host=host, port=int(port_text), heartbeat_timeout_ms=heartbeat_timeout_ms
        )
    )
    typer.echo(f"lighthouse serving at {server.address}", file=sys.stdout)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


def register(app: typer.Typer) -> None:
    app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        run_command
    )
    app.command("demo")(demo_command)
    app.command("lighthouse")(lighthouse_command)
