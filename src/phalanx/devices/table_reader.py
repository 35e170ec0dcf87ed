"""Typed reads from one parsed TOML table, with errors that name the field.

Every problem becomes a `UsageError` whose field is the full path
(`device[3].thermal.throttle_c`), so a user sees exactly what to change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from phalanx.errors import UsageError


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(
        type(value), type(value).__name__
    )


class TableReader:
    """Reads keys of one table; `finish()` rejects every key that was not read."""

    def __init__(self, data: Any, where: str, allowed: Iterable[str]) -> None:
        if not isinstance(data, dict):
            raise UsageError(
                where,
                f"must be a table, not a {_type_name(data)}",
                "write it as a TOML table",
                data,
            )
        self.data = data
        self.where = where
        self.allowed = tuple(allowed)
        unknown = [key for key in data if key not in self.allowed]
        if unknown:
            raise UsageError(
                f"{where}.{unknown[0]}",
                "unknown key",
                f"remove it; allowed keys here: {', '.join(self.allowed)}",
            )

    def field(self, key: str) -> str:
        return f"{self.where}.{key}"

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.data:
            if required:
                raise UsageError(
                    self.field(key), "is missing", f"add `{key} = ...` to {self.where}"
                )
            return None
        return self.data[key]

    def raw(self, key: str) -> Any:
        """The value as written (None when absent), for fields with their own parser."""
        return self._get(key, False)

    def string(
        self, key: str, *, required: bool = False, choices: tuple[str, ...] = ()
    ) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise UsageError(
                self.field(key),
                f"must be a string, not a {_type_name(value)}",
                'quote it: "..."',
                value,
            )
        if choices and value not in choices:
            raise UsageError(
                self.field(key),
                "is not one of the known values",
                f"use one of: {', '.join(choices)}",
                value,
            )
        return value

    def integer(
        self, key: str, *, required: bool = False, minimum: int | None = None
    ) -> int | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(
                self.field(key),
                f"must be an integer, not a {_type_name(value)}",
                "write a whole number without quotes",
                value,
            )
        if minimum is not None and value < minimum:
            raise UsageError(
                self.field(key), f"must be at least {minimum}", f"use a value >= {minimum}", value
            )
        return value

    def number(
        self,
        key: str,
        *,
        required: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
        positive: bool = False,
    ) -> float | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(
                self.field(key),
                f"must be a number, not a {_type_name(value)}",
                "write a number without quotes",
                value,
            )
        value = float(value)
        if not math.isfinite(value):
            raise UsageError(self.field(key), "must be finite", "use a finite number", value)
        if positive and value <= 0:
            raise UsageError(self.field(key), "must be positive", "use a value > 0", value)
        if minimum is not None and value < minimum:
            raise UsageError(
                self.field(key),
                f"must be at least {minimum:g}",
                f"use a value >= {minimum:g}",
                value,
            )
        if maximum is not None and value > maximum:
            raise UsageError(
                self.field(key),
                f"must be at most {maximum:g}",
                f"use a value <= {maximum:g}",
                value,
            )
        return value

    def boolean(self, key: str, *, required: bool = False) -> bool | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise UsageError(
                self.field(key),
                f"must be true or false, not a {_type_name(value)}",
                "write true or false",
                value,
            )
        return value

    def array(
        self, key: str, item_type: type, *, choices: tuple[str, ...] = ()
    ) -> tuple[Any, ...] | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, list):
            raise UsageError(
                self.field(key),
                f"must be an array, not a {_type_name(value)}",
                "write [a, b, ...]",
                value,
            )
        for i, item in enumerate(value):
            ok = isinstance(item, item_type) and not (
                item_type is not bool and isinstance(item, bool)
            )
            if item_type is float and isinstance(item, int) and not isinstance(item, bool):
                ok = True
            if not ok:
                raise UsageError(
                    f"{self.field(key)}[{i}]",
                    f"must be a {item_type.__name__}",
                    f"write an array of {item_type.__name__} values",
                    item,
                )
            if choices and item not in choices:
                raise UsageError(
                    f"{self.field(key)}[{i}]",
                    "is not one of the known values",
                    f"use one of: {', '.join(choices)}",
                    item,
                )
        if item_type is float:
            return tuple(float(item) for item in value)
        return tuple(value)

    def table(self, key: str, allowed: Iterable[str]) -> TableReader | None:
        value = self._get(key, False)
        if value is None:
            return None
        return TableReader(value, self.field(key), allowed)

    def scalar_map(self, key: str, value_type: type) -> dict[str, Any]:
        """A table of free-form keys with scalar values of one type (informational tables)."""
        value = self._get(key, False)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise UsageError(
                self.field(key),
                f"must be a table, not a {_type_name(value)}",
                "write it as a TOML table",
                value,
            )
        out: dict[str, Any] = {}
        for name, item in value.items():
            numeric = (
                value_type is float
                and isinstance(item, (int, float))
                and not isinstance(item, bool)
            )
            if not (numeric or (value_type is bool and isinstance(item, bool))):
                raise UsageError(
                    f"{self.field(key)}.{name}",
                    f"must be a {'number' if value_type is float else 'boolean'}",
                    "fix the value type",
                    item,
                )
            out[name] = float(item) if value_type is float else item
        return out
