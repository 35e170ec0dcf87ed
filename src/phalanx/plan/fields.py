"""Reading one value out of a config table, with a clear error naming the field.

Every check raises `UsageError(field, problem, fix, value)`, so a typo or a
negative count in a 10,000-chip fleet file stops the command with one line
that says which table and key to fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from phalanx.errors import UsageError


def reject_unknown_keys(table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """A misspelt key must not silently fall back to a default."""
    allowed_set = set(allowed)
    for key in table:
        if key not in allowed_set:
            raise UsageError(
                f"{where}.{key}",
                "unknown key",
                f"use one of: {', '.join(sorted(allowed_set))}",
                None,
            )


def number(
    table: Mapping[str, Any],
    key: str,
    where: str,
    *,
    default: float | None = None,
    required: bool = False,
    min_value: float | None = None,
    min_inclusive: bool = True,
    max_value: float | None = None,
    integer: bool = False,
    allow_inf: bool = False,
) -> float | None:
    """Return table[key] as a number within bounds (or `default` when absent)."""
    field = f"{where}.{key}"
    if key not in table:
        if required:
            raise UsageError(field, "missing", f"add `{key} = ...` to {where}")
        return default
    value = table[key]
    # TOML booleans are ints in Python: `count = true` must not mean 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if integer else "a number"
        raise UsageError(field, f"must be {kind}", f"write `{key} = <{kind[2:]}>`", value)
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        # JSON (and Python's tomllib) integers are unbounded; float() of one overflows.
        raise UsageError(
            field,
            f"is an integer beyond 64 bits ({value.bit_length()} bits)",
            f"write {key} as a float (e.g. 1.3e9) or a smaller integer",
        )
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise UsageError(field, "must be a finite number", f"give {key} a finite value", value)
    if integer and not isinstance(value, int) and not value.is_integer():
        whole = round(value) if math.isfinite(value) else "<whole number>"
        raise UsageError(field, "must be a whole number", f"write `{key} = {whole}`", value)
    if min_value is not None:
        too_low = value < min_value if min_inclusive else value <= min_value
        if too_low:
            bound = ">=" if min_inclusive else ">"
            raise UsageError(
                field, f"must be {bound} {min_value:g}", f"set {key} {bound} {min_value:g}", value
            )
    if max_value is not None and value > max_value:
        raise UsageError(field, f"must be <= {max_value:g}", f"set {key} <= {max_value:g}", value)
    return int(value) if integer else float(value)


def text(table: Mapping[str, Any], key: str, where: str, *, default: str | None = None) -> str:
    field = f"{where}.{key}"
    if key not in table:
        if default is None:
            raise UsageError(field, "missing", f'add `{key} = "..."` to {where}')
        return default
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise UsageError(field, "must be a non-empty string", f'write `{key} = "..."`', value)
    return value


def required_number(table: Mapping[str, Any], key: str, where: str, **bounds: Any) -> float:
    """Like `number(..., required=True)`, typed as never None."""
    value = number(table, key, where, required=True, **bounds)
    assert value is not None
    return value


def number_or(
    table: Mapping[str, Any], key: str, where: str, default: float, **bounds: Any
) -> float:
    """Like `number(..., default=default)`, typed as never None."""
    value = number(table, key, where, default=default, **bounds)
    assert value is not None
    return value
