"""A small TOML writer for the documents phalanx writes (fleet.toml, qualified.toml).

The standard library reads TOML (tomllib) but does not write it. This covers
exactly what our documents hold: scalars, arrays of scalars, arrays of small
inline tables, nested tables and top-level arrays of tables.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_scalar(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _emit_table(lines: list[str], path: str, table: dict[str, Any], header: str | None) -> None:
    if header is not None:
        lines.append(header)
    subtables = []
    for key, value in table.items():
        if value is None:
            continue  # TOML has no null: an absent key means "unknown"
        if isinstance(value, dict):
            subtables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_scalar(value)}")
    for key, value in subtables:
        sub = f"{path}.{_key(key)}"
        lines.append("")
        _emit_table(lines, sub, value, f"[{sub}]")


def dumps(doc: dict[str, Any]) -> str:
    """Top-level scalars first, then tables, then arrays of tables."""
    lines: list[str] = []
    scalars = {k: v for k, v in doc.items() if not isinstance(v, dict) and not _is_table_array(v)}
    _emit_table(lines, "", scalars, None)
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append("")
            _emit_table(lines, _key(key), value, f"[{_key(key)}]")
    for key, value in doc.items():
        if _is_table_array(value):
            for item in value:
                lines.append("")
                _emit_table(lines, _key(key), item, f"[[{_key(key)}]]")
    return "\n".join(lines).lstrip("\n") + "\n"


def dumps_table(path: str, table: dict[str, Any], *, array: bool = False) -> str:
    """One table under a dotted name: `[plan.model]`, or `[[plan.replica]]` with `array`.

    `dumps` writes arrays of tables only at the top level; a document that nests
    them (run.toml's `[[plan.replica]]`) is written table by table with this.
    """
    lines: list[str] = []
    _emit_table(lines, path, table, f"[[{path}]]" if array else f"[{path}]")
    return "\n".join(lines) + "\n"
