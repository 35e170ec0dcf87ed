"""events.jsonl: one JSON object per line, appended by every process of a run.

Each line is written with one `write` on a file opened with O_APPEND under an
exclusive lock, so lines from concurrent workers never interleave, and a
line written before a SIGKILL is already in the page cache and survives.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"


class EventLog:
    def __init__(self, run_dir: str | Path, source: str) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.source = source
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"t": time.time(), "kind": kind, "source": self.source, **fields}
        line = (json.dumps(record, separators=(",", ":"), default=_jsonable) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
        finally:
            os.close(fd)
        return record


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_events(run_dir: str | Path, warn: bool = True) -> list[dict[str, Any]]:
    """All events of a run; a truncated last line (a writer killed mid-line) is skipped."""
    path = Path(run_dir) / EVENTS_FILE
    if not path.exists():
        return []
    events = []
    bad = 0
    cut_last = False
    with path.open("rb") as handle:
        for raw in handle:
            try:
                events.append(json.loads(raw))
                cut_last = False
            except ValueError:
                bad += 1
                cut_last = not raw.endswith(b"\n")
    if bad and warn:
        why = " (the last line is cut: a writer stopped mid-line)" if cut_last else ""
        warnings.warn(
            f"{path}: skipped {bad} unreadable line(s){why}; using {len(events)} events",
            stacklevel=2,
        )
    return events
