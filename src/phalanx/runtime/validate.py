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


def aligned_microbatch(
    value: Any, global_batch_size: int, max_microbatch: int | None
) -> int | None:
    """`Trainer(aligned_microbatch=...)`: a positive divisor of the global batch."""
    name = "aligned_microbatch"
    if value is None:
        return None
    value = positive_int(name, value, "pass None or a divisor of global_batch_size")
    if global_batch_size % value:
        raise UsageError(
            f"Trainer({name}=...)", f"does not divide global_batch_size {global_batch_size}",
            "pass a divisor of the global batch (its blocks are whole micro-batches)", value,
        )  # fmt: skip
    if max_microbatch is not None:
        raise UsageError(
            f"Trainer({name}=...)", "is given with max_microbatch",
            "pass one of them: an aligned micro-batch is also the largest one", value,
        )  # fmt: skip
    return value


def check_fleet_blocks(global_batch_size: int, aligned: int | None, fleet_size: int) -> None:
    """Every replica must be able to get at least one whole block."""
    if aligned is None or global_batch_size // aligned >= fleet_size:
        return
    raise UsageError(
        "Trainer(aligned_microbatch=...)",
        f"cuts the global batch into {global_batch_size // aligned} blocks, fewer than the "
        f"{fleet_size} replicas of the fleet",
        f"use aligned_microbatch <= {global_batch_size // fleet_size} or fewer replicas",
        aligned,
    )


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
