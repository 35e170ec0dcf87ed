"""Read a TOML or JSON file into a dict, turning syntax errors into UsageError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tomllib

from phalanx.errors import UsageError


def read_table_file(path: str | Path, field: str) -> dict[str, Any]:
    """Parse `path` as TOML (or JSON when it ends in .json)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(field, "file not found", "give the path of an existing file", str(p))
    raw = p.read_text(encoding="utf-8")
    try:
        data = json.loads(raw) if p.suffix.lower() == ".json" else tomllib.loads(raw)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise UsageError(field, f"cannot parse {p.name}: {err}", "fix the syntax", str(p)) from None
    if not isinstance(data, dict):
        raise UsageError(field, "must hold a table at the top level", "wrap it in {...}", str(p))
    return data
