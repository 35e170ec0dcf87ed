"""`phalanx run --config run.toml`: every flag of `phalanx run` in one file.

Keys are the flags' names (`timeout_s` or `timeout-s`, `plan`,
`subsidy_per_kwh`, `no_thermal_guard = true`), plus `script` and `script_args`
(the arguments after `--`). A flag given on the command line overrides the
file. An unknown key is one clear error naming it and the closest flag, exit
code 2. `plan` is a path, or the layout itself as `[plan.*]` tables (what
`phalanx plan --emulate ... --out` writes): then the file is its own `--plan`.

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
LAYOUT_PARAM = "layout_plan"  # `--plan`'s parameter


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
    known = flag_names(ctx.command)
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
            close = difflib.get_close_matches(name, sorted({*known, SCRIPT_ARGS}), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UsageError(
                f"--config {value}", f"unknown key {key!r}",
                f"{hint}use the name of a `phalanx run` flag", key,
            )  # fmt: skip
        target, negated = known[name]
        if target == LAYOUT_PARAM and isinstance(item, dict):
            item = str(value)  # the layout is inline: layout_file.read_layout reads [plan]
        elif negated:
            if not isinstance(item, bool):
                raise UsageError(
                    f"--config {value}: {key}", "must be true or false", f"write {key} = true",
                    item,
                )  # fmt: skip
            item = not item
        defaults[target] = item
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def flag_names(command: Any) -> dict[str, tuple[str, bool]]:
    """Each key a config may use -> (the parameter it sets, whether its value is negated).

    A key is a flag's name without the dashes (`plan` for `--plan`, whose parameter
    is `layout_plan`), or the parameter's own name; `--no-X` flags set X to the opposite.
    """
    names: dict[str, tuple[str, bool]] = {}
    for param in command.params:
        if not param.name or param.name == "config":
            continue
        names[param.name] = (param.name, False)
        flags = [(o, False) for o in param.opts] + [(o, True) for o in param.secondary_opts]
        for opt, negated in flags:
            if opt.startswith("--"):
                names[opt[2:].replace("-", "_")] = (param.name, negated)
    return names


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
