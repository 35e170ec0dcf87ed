"""events.jsonl: one JSON object per line, appended by every process of a run.

Each line is written with one `write` on a file opened with O_APPEND under an
exclusive lock, so lines from concurrent workers never interleave, and a
line written before a SIGKILL is already in the page cache and survives.

On a full disk an event is dropped, never the run: `emit` says so once
(observe/safe_write.py) and returns as usual. A line the disk took only part
of is cut off again, so the next line does not start in the middle of it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phalanx.observe.safe_write import write_or_warn

EVENTS_FILE = "events.jsonl"


class UnreadableEventsWarning(UserWarning):
    """Lines of events.jsonl were skipped: its own class, so a report collects these and
    not whatever else Python warns about meanwhile (a file the collector closes)."""


class EventLog:
    def __init__(self, run_dir: str | Path, source: str, file_name: str = EVENTS_FILE) -> None:
        self.path = Path(run_dir) / file_name
        self.source = source
        self._write_or_warn(lambda: self.path.parent.mkdir(parents=True, exist_ok=True))

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one event; on a full disk it is dropped with one warning per process."""
        record = {"t": time.time(), "kind": kind, "source": self.source, **fields}
        line = (json.dumps(record, separators=(",", ":"), default=_jsonable) + "\n").encode()
        self._write_or_warn(lambda: self._append(line))
        return record

    def _write_or_warn(self, write: Callable[[], object]) -> bool:
        return write_or_warn(
            "events",
            self.path,
            write,
            "training goes on; events not recorded are missing from summary.json and "
            "report.html (checkpoints and the model do not depend on them)",
            "free space there; recording goes on by itself",
        )

    def _append(self, line: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            end = os.lseek(fd, 0, os.SEEK_END)
            rest = memoryview(line)
            try:
                while rest:  # a nearly full disk takes part of a line, then refuses the rest
                    written = os.write(fd, rest)
                    if written == 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
                    rest = rest[written:]
            except OSError:
                with contextlib.suppress(OSError):  # shrinking a file needs no space
                    os.ftruncate(fd, end)
                raise
        finally:
            os.close(fd)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_events(
    run_dir: str | Path, warn: bool = True, file_name: str = EVENTS_FILE
) -> list[dict[str, Any]]:
    """All events of a run; a truncated last line (a writer killed mid-line) is skipped."""
    path = Path(run_dir) / file_name
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
            UnreadableEventsWarning,
            stacklevel=2,
        )
    return events
