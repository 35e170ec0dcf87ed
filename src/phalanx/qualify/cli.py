"""`phalanx qualify`: burn-in qualification of a fleet's devices (docs/qualification.md)."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path
from typing import Annotated

import typer

from phalanx.errors import UsageError

Level = Annotated[
    str,
    typer.Option(
        "--level",
        help="quick (~1 min), standard (~2 min), long (~20 min); see docs/qualification.md",
    ),
]


def register(app: typer.Typer) -> None:
    app.command("qualify")(qualify)


def qualify(
    fleet: Annotated[Path | None, typer.Option("--fleet", help="fleet.toml to qualify")] = None,
    emulate: Annotated[
        str | None, typer.Option("--emulate", help="emulated chips by speed, e.g. 1,0.5,0.25x2")
    ] = None,
    level: Level = "standard",
    out: Annotated[Path, typer.Option("--out", help="where to write the qualified fleet")] = Path(
        "qualified.toml"
    ),
    seed: Annotated[
        int, typer.Option("--seed", help="seed for test data and emulated defects")
    ] = 0,
    time_scale: Annotated[
        float,
        typer.Option(
            "--time-scale",
            help="wall seconds per emulated-chip second (1 = real time, 0 = as fast as possible)",
        ),
    ] = 1.0,
    script: Annotated[
        Path | None,
        typer.Option(
            "--script", help="profile this training script's model (samples/s per micro-batch)"
        ),
    ] = None,
) -> None:
    """Burn in devices: compute correctness, memory, sustained load, model profile.

    Writes every device with a [device.qualification] table. Exit code 0 when at
    least one device passed, 1 when none did, 2 for bad input.
    """
    from phalanx.qualify.levels import get_level

    chosen = get_level(level)
    if fleet is not None and emulate is not None:
        raise UsageError(
            "--emulate",
            "cannot be combined with --fleet",
            "declare emulated chips in the fleet file, or drop --fleet",
        )
    if time_scale < 0:
        raise UsageError(
            "--time-scale",
            "must not be negative",
            "use 1 for real time, 0.1 for ten times faster",
            time_scale,
        )
    if script is not None and not script.is_file():
        raise UsageError(
            "--script", "does not exist", "give the path of your training script", str(script)
        )
    devices, meta = _devices(fleet, emulate)
    if not devices:
        raise UsageError(
            "--fleet" if fleet else "devices",
            "lists no devices",
            "add [[device]] tables, or use --emulate",
        )

    from phalanx.devices.fleet_file import save_fleet
    from phalanx.qualify.display import ProgressView, print_summary
    from phalanx.qualify.runner import Qualifier

    with ProgressView() as view:
        results = Qualifier(
            devices, chosen, seed=seed, time_scale=time_scale, on_progress=view, script=script
        ).run()
    meta.update(
        qualified_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        qualified_level=chosen.name,
        qualified_seed=seed,
    )
    save_fleet(out, results, meta)
    print_summary(results)
    passed = sum(1 for d in results if d.qualification and d.qualification.passed)
    typer.echo(f"{passed} of {len(results)} devices passed; wrote {out}")
    if passed == 0:
        raise SystemExit(1)


def _devices(fleet: Path | None, emulate: str | None) -> tuple[list, dict]:
    if fleet is not None:
        from phalanx.devices.fleet_file import load_fleet

        loaded = load_fleet(fleet)
        return list(loaded.devices), dict(loaded.meta)
    if emulate is not None:
        from phalanx.devices.emulate_spec import parse_emulate

        return parse_emulate(emulate), {"emulated": emulate}
    from phalanx.devices.discovery import discover

    return discover().devices, {"host": socket.gethostname()}
