"""A worker's one-line error: on its log, and in a file of its own for the launcher.

The launcher repeats a worker's error line to the user. Reading it back from
the worker's log is fragile: torch's C++ code writes warnings to the same file
descriptor from its own threads, without line buffering, and a line of ours can
land in the middle of one of theirs (seen once in CI, where the launcher then
printed its generic line instead). So the line also goes to the file named by
`PHALANX_ERROR_FILE`, which the launcher sets for each worker and reads first.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TextIO

ERROR_FILE_ENV = "PHALANX_ERROR_FILE"


def say_error(message: str, stream: TextIO | None = None) -> None:
    """Write `error: message` (one line) to the stream (stderr) and the launcher's file."""
    path = os.environ.get(ERROR_FILE_ENV)
    if path:
        with contextlib.suppress(OSError):  # a full disk must not hide the line on stderr
            Path(path).write_text(message.splitlines()[0] if message else message)
    out = stream or sys.stderr
    out.write(f"error: {message}\n")
    out.flush()
