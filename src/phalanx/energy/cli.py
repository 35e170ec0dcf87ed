"""`phalanx power-helper`: the privileged helper that sets power limits for unprivileged runs."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("power-helper")(power_helper)


def power_helper(
    socket_path: Annotated[
        str,
        typer.Option("--socket", help="Unix socket to listen on, e.g. /run/phalanx/power.sock"),
    ],
    group: Annotated[
        str | None,
        typer.Option("--group", help="group whose members may connect (and so set limits)"),
    ] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="octal mode of the socket file; 0660 = owner and group")
    ] = "0660",
) -> None:
    """Run as root, once per host: apply power limits asked for by phalanx runs.

    Serves get/set/restore of NVML and amdsmi power limits and nothing else;
    puts back every limit it changed when it stops (SIGTERM, Ctrl-C).
    See docs/energy.md.
    """
    from phalanx.energy.power_helper import parse_mode, run_helper

    failures = run_helper(socket_path, group=group, mode=parse_mode(mode))
    if failures:
        raise typer.Exit(1)  # each failure is already logged, naming the device
