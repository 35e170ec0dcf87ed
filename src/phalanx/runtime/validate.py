"""Checks on Trainer arguments: one clear UsageError naming the argument."""

from __future__ import annotations

from typing import Any

from phalanx.errors import UsageError


def positive_int(name: str, value: Any, fix: str, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"Trainer({name}=...)", "must be an integer", fix, value)
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"Trainer({name}=...)", "must be positive", fix, value)
    return value


def optional_positive_int(name: str, value: Any, fix: str) -> int | None:
    return None if value is None else positive_int(name, value, fix)


def check_fleet_batch(global_batch_size: int, fleet_size: int) -> None:
    if global_batch_size < fleet_size:
        raise UsageError(
            "Trainer(global_batch_size=...)",
            f"is smaller than the {fleet_size} replicas of the fleet (each needs >= 1 sample)",
            f"use global_batch_size >= {fleet_size} or fewer replicas",
            global_batch_size,
        )


def one_of(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UsageError(
            f"Trainer({name}=...)", f"unknown {name} {value!r}", f"use one of {', '.join(allowed)}",
            value,
        )  # fmt: skip
    return str(value)
