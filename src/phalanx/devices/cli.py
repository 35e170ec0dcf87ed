"""`phalanx fleet scan` and `phalanx qualify`."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    fleet_app = typer.Typer(help="Describe the devices of a fleet.", no_args_is_help=True)
    fleet_app.command("scan")(scan)
    app.add_typer(fleet_app, name="fleet")


def scan(
    out: Annotated[Path, typer.Option("--out", help="where to write the fleet file")] = Path(
        "fleet.toml"
    ),
    cpu: Annotated[
        bool | None,
        typer.Option(
            "--cpu/--no-cpu", help="list the host CPU (default: only when no accelerator is found)"
        ),
    ] = None,
) -> None:
    """Find this host's devices and write them, with capabilities and specs, to a fleet file."""
    from rich.console import Console
    from rich.table import Table

    from phalanx.devices.discovery import discover
    from phalanx.devices.fleet_file import save_fleet

    found = discover(include_cpu=cpu)
    meta = {
        "host": socket.gethostname(),
        "scanned_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    save_fleet(out, found.devices, meta)
    table = Table(title=f"devices on {meta['host']}")
    for column in ("id", "kind", "model", "memory GiB", "telemetry"):
        table.add_column(column)
    for d in found.devices:
        supported = ", ".join(name for name, ok in d.capabilities.items() if ok) or "none"
        table.add_row(d.id, d.kind, d.model, f"{(d.memory_bytes or 0) / 2**30:.1f}", supported)
    console = Console()
    console.print(table)
    for note in found.notes:
        console.print(f"  {note}", style="dim", markup=False, highlight=False)
    console.print(f"wrote {out}", markup=False, highlight=False)
