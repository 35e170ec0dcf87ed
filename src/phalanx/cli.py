"""The `phalanx` command. Each subsystem registers its own commands here."""

from __future__ import annotations

import sys

import typer

from phalanx.errors import EXIT_USAGE, UsageError

app = typer.Typer(
    name="phalanx",
    help="Train one PyTorch model on a mixed, unreliable fleet of accelerators.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    # Each subsystem owns its commands in its own `cli.py` with a `register(app)`.
    from phalanx.launch.cli import register as _reg_launch

    _reg_launch(app)
    from phalanx.plan.cli import register as _reg_plan

    _reg_plan(app)
    from phalanx.devices.cli import register as _reg_dev

    _reg_dev(app)
    from phalanx.observe.cli import register as _reg_observe

    _reg_observe(app)
    from phalanx.energy.cli import register as _reg_energy

    _reg_energy(app)


def main(argv: list[str] | None = None) -> None:
    _register_all()
    try:
        # Standalone mode: typer reports bad flags itself (one message, exit 2).
        app(args=argv)
    except UsageError as err:
        typer.echo(f"error: {err.message()}", err=True)
        sys.exit(EXIT_USAGE)
