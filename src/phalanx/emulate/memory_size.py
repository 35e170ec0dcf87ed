"""Memory sizes as people write them (`2GiB`, `512MiB`, `1.5GB`): no torch needed."""

from __future__ import annotations

import re

GIB = 1024**3
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size_bytes(text: str) -> int | None:
    """'2GiB', '512MiB', '1.5GB', '3e9' -> bytes; None when it is not a size."""
    match = _SIZE.match(text)
    if match is None or match.group(2).lower() not in _UNITS:
        return None
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    return int(value) if value >= 1 else None


def describe_bytes(size: float) -> str:
    if size >= GIB:
        return f"{size / GIB:.2f} GiB"
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 1024:.0f} KiB"
