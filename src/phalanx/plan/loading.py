"""Read a TOML or JSON file into a dict, turning every way it can be unreadable into UsageError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from phalanx.errors import UsageError
from phalanx.toml_compat import tomllib

# TOML integers are 64-bit signed; Python's tomllib and json accept any size, and a
# 400-digit integer overflows the first float() a parser does on it.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def read_table_file(path: str | Path, field: str) -> dict[str, Any]:
    """Parse `path` as TOML (or JSON when it ends in .json)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(field, "file not found", "give the path of an existing file", str(p))
    raw = read_utf8(p, field)
    try:
        data = json.loads(raw) if p.suffix.lower() == ".json" else tomllib.loads(raw)
        if not isinstance(data, dict):
            raise UsageError(
                field, "must hold a table at the top level", "wrap it in {...}", str(p)
            )
        check_integer_range(data, p.name)
    except RecursionError:
        raise UsageError(
            field, f"{p.name} nests arrays or tables too deeply", "flatten the file", str(p)
        ) from None
    except ValueError as err:  # JSONDecodeError, TOMLDecodeError, an over-long integer
        raise UsageError(field, f"cannot parse {p.name}: {err}", "fix the syntax", str(p)) from None
    return data


def read_utf8(path: Path, field: str) -> str:
    """The text of a config file; a binary or Latin-1 file is bad input, not a crash."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(
            field,
            f"{path.name} is not UTF-8 text (byte {err.start} is {err.object[err.start]:#04x})",
            "save the file as UTF-8 (TOML and JSON files must be UTF-8)",
            str(path),
        ) from None
    except OSError as err:
        raise UsageError(
            field,
            f"cannot read {path.name} ({err.strerror})",
            "check the path and its permissions",
            str(path),
        ) from None


def check_integer_range(tree: Any, source: str, where: str = "") -> None:
    """Refuse any integer beyond 64 bits, naming its place (`class[0].count`)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            check_integer_range(value, source, f"{where}.{key}" if where else str(key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            check_integer_range(value, source, f"{where}[{i}]")
    elif isinstance(tree, int) and not isinstance(tree, bool) and not INT_MIN <= tree <= INT_MAX:
        raise UsageError(
            where or source,
            f"is an integer beyond 64 bits ({tree.bit_length()} bits) in {source}",
            "write a smaller number, or a float such as 1.3e9",
        )
