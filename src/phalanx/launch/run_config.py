"""`phalanx run --config run.toml`: every flag of `phalanx run` in one file.

Keys are the flags' names (`timeout_s` or `timeout-s`), plus `script` and
`script_args` (the arguments after `--`). A flag given on the command line
overrides the file. An unknown key is one clear error naming it and the
closest flag, exit code 2.

    script = "train.py"
    emulate = "1,0.5,0.25x2"
    out = "runs/a"
    fault = ["kill:replica=1,step=20,restart_s=2"]
    script_args = ["--steps", "200"]
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import typer

from phalanx.errors import UsageError
from phalanx.toml_compat import tomllib

SCRIPT_ARGS = "script_args"


def load_run_config(
    ctx: typer.Context, param: typer.CallbackParam, value: Path | None
) -> Path | None:
    """Eager `--config` callback: the file's values become the command's defaults."""
    if value is None:
        return None
    try:
        data = tomllib.loads(Path(value).read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(
            "--config", f"cannot read it ({err.strerror})", "check the path", str(value)
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(
            "--config", f"is not valid TOML ({err})", "fix the file", str(value)
        ) from None
    known = {p.name for p in ctx.command.params if p.name and p.name != "config"}
    defaults: dict[str, Any] = {}
    for key, item in data.items():
        name = key.replace("-", "_")
        if name == SCRIPT_ARGS:
            if not isinstance(item, list) or not all(isinstance(a, str) for a in item):
                raise UsageError(
                    f"--config {value}: {key}", "must be a list of strings",
                    'write script_args = ["--steps", "200"]', item,
                )  # fmt: skip
            ctx.meta[SCRIPT_ARGS] = item
            continue
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known | {SCRIPT_ARGS}), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UsageError(
                f"--config {value}", f"unknown key {key!r}",
                f"{hint}use the name of a `phalanx run` flag", key,
            )  # fmt: skip
        defaults[name] = item
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def script_and_args(ctx: typer.Context, script: Path) -> tuple[Path, list[str]]:
    """The script and its arguments: the command line's, else the config file's.

    `phalanx run --config run.toml -- --steps 9` names no script on the command
    line, so the first argument after `--` landed in SCRIPT: it belongs to the
    script's arguments, and the script is the file's.
    """
    configured = (ctx.default_map or {}).get("script")
    given = list(ctx.args)
    if configured is not None and Path(configured) != script and not script.exists():
        return Path(configured), [str(script), *given]
    return script, given or list(ctx.meta.get(SCRIPT_ARGS, []))
