"""run.toml: what `phalanx plan --out` writes for `phalanx run --config`.

Every key is a `phalanx run` flag (`RUN_KEYS`; a test checks each against
run's own parser), so the file is accepted as is and flags on the command
line override it. A comment header says which plan wrote it, what the plan
decided, and what `run` will not do as planned (`not_carried`): a plan
predicts shares and micro-batches, but `run` measures the devices and sets
them itself; the global batch is the script's, not a flag.

The emulated-chip layout (`plan --emulate`) goes in as `[plan.*]` tables:
`plan` is run's `--plan` flag, given the layout inline, so one file serves
both `phalanx run --config FILE` and `phalanx run --plan FILE`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phalanx.devices.toml_write import dumps
from phalanx.errors import UsageError
from phalanx.plan.layout import Layout
from phalanx.plan.layout_file import layout_toml

# The only keys written here: flags of `phalanx run` (`plan` as the [plan.*] tables), and
# script_args, what follows `--` (tests/unit/test_plan_run_file.py checks each against
# run's --config parser). A key run does not know would make the whole file unusable.
RUN_KEYS = frozenset(
    {"script", "script_args", "fleet", "objective", "tariff", "fleet_cost_per_h",
     "subsidy_fraction", "plan"}
)  # fmt: skip


@dataclass(frozen=True)
class RunFile:
    keys: dict[str, Any]  # run flags by name, in the order written
    about: list[str]  # what the plan decided, one line each
    not_carried: list[str] = field(default_factory=list)  # what run will not do as planned
    tail: str = ""  # TOML tables after the keys: an inline layout


def layout_run_file(layout: Layout, script: Path | None, script_args: list[str]) -> RunFile:
    """`plan --emulate`: the layout itself, and the script it was measured on."""
    keys: dict[str, Any] = {}
    if script is not None:
        keys["script"] = str(script.resolve())
        if script_args:
            keys["script_args"] = list(script_args)
    chips = sum(len(r.chips) for r in layout.replicas)
    s = layout.ranks_per_group
    about = [
        f"{_count(len(layout.replicas), 'replica')} of {layout.model.name} on "
        f"{_count(chips, 'emulated chip')}, "
        f"{s} rank{'s' * (s > 1)} per replica: the [plan.*] tables, which run starts as "
        "written (`phalanx run --plan` reads this file too)"
    ]
    about += [f"left out: chip {chip.id}: {why}" for chip, why in layout.left_out]
    if script is not None:
        not_carried = [
            f"the layout fits {layout.model.name} as measured with these script_args (global "
            f"batch {layout.model.global_batch}): arguments after `--` replace them all, and "
            "others (a wider model, a larger batch) may not fit its chips: plan again with them"
        ]
    else:
        not_carried = [batch_line(layout.model.global_batch)]
    return RunFile(keys, about, not_carried, tail=layout_toml(layout))


def render(run_file: RunFile, command: str, path: Path) -> str:
    """The whole file: the header comments, the keys, then any tables."""
    unknown = set(run_file.keys) - RUN_KEYS
    if unknown:  # a bug here, not bad input: refuse to write a file run would reject
        raise ValueError(f"not phalanx run flags: {sorted(unknown)}")
    named = "script" in run_file.keys
    run = f"phalanx run --config {path}" if named else f"phalanx run SCRIPT --config {path}"
    lines = [
        f"# Written by: {command}",
        f"# Run it: {run}  (flags on the command line override this file)",
        "# The plan:",
        *(f"#   - {line}" for line in run_file.about),
    ]
    if run_file.not_carried:
        lines.append("# Not carried (phalanx run does not act on it as planned):")
        lines += [f"#   - {line}" for line in run_file.not_carried]
    # A newline in a path or device id would end the comment and start TOML of its own.
    lines = [line.replace("\r", "\\r").replace("\n", "\\n") for line in lines]
    body = dumps({k: v for k, v in run_file.keys.items() if v is not None}) if run_file.keys else ""
    parts = ["\n".join(lines) + "\n", body, run_file.tail]
    return "\n".join(part for part in parts if part)


def write_run_file(path: Path, text: str) -> None:
    """Write it whole or not at all; a path that cannot be written is one line, exit 2."""
    if not path.name or path.is_dir():  # `--out .`: Path('.').name is empty
        raise UsageError("--out", "is a directory", "give a file, e.g. --out run.toml", str(path))
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UsageError(
            "--out", f"cannot be written ({err.strerror or err})",
            "give a path in a writable directory", str(path),
        ) from None  # fmt: skip


def batch_line(batch: int) -> str:
    return (
        f"the global batch of {batch} (the model profile's): phalanx run takes the batch from "
        f"the script, e.g. `-- --batch {batch}` for examples/mlp.py"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"
