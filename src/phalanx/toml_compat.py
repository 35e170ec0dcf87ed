"""`tomllib` (Python 3.11+) or, on Python 3.10, the `tomli` package it was taken from."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["tomllib"]
