"""The `phalanx` command. Each subsystem registers its own commands here."""

from __future__ import annotations

import sys
from typing import Any

import typer

from phalanx import quick_exit
from phalanx.errors import EXIT_USAGE, UsageError

app = typer.Typer(
    name="phalanx",
    help="Train one PyTorch model on a mixed, unreliable fleet of accelerators.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain: rich markup would eat TOML names such as [[class]] and
    # [device.qualification].
    rich_markup_mode=None,
)


def _register_all() -> None:
    # Each subsystem owns its commands in its own `cli.py` with a `register(app)`.
    from phalanx.launch.cli import register as _reg_launch

    _reg_launch(app)
    from phalanx.plan.cli import register as _reg_plan

    _reg_plan(app)
    from phalanx.sim.cli import register as _reg_sim

    _reg_sim(app)
    from phalanx.devices.cli import register as _reg_dev

    _reg_dev(app)
    from phalanx.qualify.cli import register as _reg_qualify

    _reg_qualify(app)
    from phalanx.observe.cli import register as _reg_observe

    _reg_observe(app)
    from phalanx.energy.cli import register as _reg_energy

    _reg_energy(app)


_command: Any = None  # the click command typer builds from `app`, built once per process


def main(argv: list[str] | None = None) -> None:
    global _command
    quick_exit.install()
    if _command is None:  # tests call main() many times; building it costs ~0.1 s
        _register_all()
        _command = typer.main.get_command(app)
    try:
        # Not standalone: typer would print its own errors as a framed, multi-line box.
        # Here every bad flag, missing argument or unparsable value is one line, exit 2.
        result = _command.main(args=argv, standalone_mode=False)
    except UsageError as err:
        typer.echo(f"error: {err.message()}", err=True)
        sys.exit(EXIT_USAGE)
    except typer.TyperException as err:  # click's own: unknown option, missing argument...
        sys.exit(_report_flag_error(err, sys.argv[1:] if argv is None else argv))
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    # A command that raised typer.Exit(code) (or --help: 0) comes back as its code.
    sys.exit(result if type(result) is int else 0)


def _report_flag_error(err: typer.TyperException, argv: list[str]) -> int:
    """Print click's usage error as one line naming the help to read; return its exit code."""
    code = getattr(err, "exit_code", EXIT_USAGE)
    if type(err).__name__ == "NoArgsIsHelpError":
        return code  # `phalanx` alone: the help is already printed (typer checks the same way)
    message = " ".join(err.format_message().split()).rstrip(".")
    typer.echo(f"error: {message}. Fix: see '{_command_path(argv)} --help'", err=True)
    return code


def _command_path(argv: list[str]) -> str:
    """`phalanx fleet scan` for argv ['fleet', 'scan', '--bogus']: the leading command words."""
    words, group = ["phalanx"], _command
    for word in argv:
        group = getattr(group, "commands", {}).get(word)
        if group is None:
            break
        words.append(word)
    return " ".join(words)
