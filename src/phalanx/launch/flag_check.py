"""`phalanx run`: a flag before `--` that phalanx does not know is a typo, not the script's.

Without this, `phalanx run train.py --emualte 1x4` passed `--emualte 1x4` to the
script (click's `ignore_unknown_options`, which `run` needs for what follows
`--`), and the fleet silently ran on the default devices.
"""

from __future__ import annotations

import difflib
from typing import Any

from typer.core import TyperCommand

from phalanx.errors import UsageError


def _looks_like_a_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def reject_unknown_flags(command: Any, args: list[str], name: str = "run") -> None:
    known = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    known.add("--help")
    before = args[: args.index("--")] if "--" in args else args
    for token in before:
        if not token.startswith("-") or token == "-" or _looks_like_a_number(token):
            continue
        flag = token.split("=", 1)[0]
        if flag in known:
            continue
        close = difflib.get_close_matches(flag, sorted(known - {"--help"}), n=1, cutoff=0.75)
        hint = f"did you mean {close[0]}? The" if close else "the"
        raise UsageError(
            flag,
            f"is not a flag of phalanx {name}",
            f"{hint} script's own arguments go after --, e.g. phalanx {name} train.py -- {token}",
        )


class RunCommand(TyperCommand):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        reject_unknown_flags(self, args)
        return super().parse_args(ctx, args)


class SitesCommand(TyperCommand):
    """`phalanx sites`: the same check (the script's arguments go after --, too)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        reject_unknown_flags(self, args, name="sites")
        return super().parse_args(ctx, args)
