"""Parsing `--log KIND[:TARGET]`: which tracker, where it writes, whether it is installed."""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from phalanx.errors import UsageError

# kind -> (the package it needs, what TARGET names, the default when TARGET is left out)
TRACKERS: dict[str, tuple[str, str, str]] = {
    "tensorboard": ("tensorboard", "DIR", "<out>/tensorboard"),
    "wandb": ("wandb", "PROJECT", "phalanx"),
    "mlflow": ("mlflow", "URI", "./mlruns"),
}


@dataclass(frozen=True)
class LogSpec:
    kind: str  # tensorboard, wandb or mlflow
    target: str  # a directory, a W&B project, an MLflow tracking URI or directory

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


def parse_log_specs(texts: list[str], out_dir: Path) -> list[LogSpec]:
    """Every `--log` value, checked before anything starts (exit 2 on a bad one)."""
    specs = [parse_log_spec(text, out_dir) for text in texts]
    kinds = [s.kind for s in specs]
    for kind in kinds:
        if kinds.count(kind) > 1:
            raise UsageError("--log", f"{kind} is given twice", "give each tracker once", texts)
    return specs


def parse_log_spec(text: str, out_dir: Path) -> LogSpec:
    kind, _, target = text.strip().partition(":")
    if kind not in TRACKERS:
        close = difflib.get_close_matches(kind, TRACKERS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise UsageError(
            "--log", f"unknown tracker {kind!r}",
            f"{hint}use tensorboard:DIR, wandb:PROJECT or mlflow:URI", text,
        )  # fmt: skip
    package, what, _default = TRACKERS[kind]
    if importlib.util.find_spec(package) is None:
        raise UsageError(
            "--log", f"{kind} needs the {package} package, which is not installed",
            f"pip install 'phalanx[trackers]' (or pip install {package})", text,
        )  # fmt: skip
    if text.strip().endswith(":") or (target and not target.strip()):
        raise UsageError("--log", f"{kind}: {what} is empty", f"write {kind}:{what}", text)
    return LogSpec(kind, target.strip() or _default_target(kind, out_dir))


def _default_target(kind: str, out_dir: Path) -> str:
    if kind == "tensorboard":
        return str(out_dir / "tensorboard")
    if kind == "mlflow":
        return str(Path("mlruns").resolve())
    return "phalanx"
