"""Writes a run can do without: on a full disk, one line, and training goes on.

A full disk (ENOSPC), a used-up quota (EDQUOT) or a file system that turned
read-only (EROFS) mid-run must not end a run whose state lives in memory on
every replica: events, logs, the summary, the report and fault markers are
records about the run, not the run. Every such write goes through
`write_or_warn`: on one of these errors it says once per kind of file (per
process) what was not written, what that costs and how to recover, and
returns False; any other error is raised as before (a bug, not the disk).

The line goes to stderr; in a fleet that is the worker's output, which the
launcher copies into `logs/NAME.log` and, while that cannot be written,
relays to the user's console (`launch/output_pump.py`). The launcher routes
its own lines to its console with `set_reporter`.

Writes a run cannot do without (the final model) are the caller's: it uses
`disk_errno` to tell a full disk from other failures and stops with
`EXIT_DISK_FULL` (errors.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
_WHY = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
}
# safetensors reports a failed write as SafetensorError("... (os error 28)"), not OSError.
_OS_ERROR_TEXT = re.compile(r"os error (\d+)")

Reporter = Callable[[str], None]


def disk_errno(err: BaseException) -> int | None:
    """The errno of a disk problem (full, over quota, read-only) behind `err`; None otherwise."""
    code = err.errno if isinstance(err, OSError) else None
    if code is None and type(err).__name__ == "SafetensorError":
        found = _OS_ERROR_TEXT.search(str(err))
        code = int(found.group(1)) if found else None
    return code if code in DISK_ERRNOS else None


def describe(code: int) -> str:
    """`the disk is full (No space left on device)` for ENOSPC, and so on."""
    return f"{_WHY.get(code, 'the disk cannot be written')} ({os.strerror(code)})"


def _to_stderr(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # stderr itself may be a file on that disk
        print(line, file=sys.stderr, flush=True)


_KIND = re.compile(r"warning: (.+?) not written to ")


class _Warnings:
    """What this process has said already: each kind once, each exact line once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # output pumps write from their own threads
        self.kinds: set[str] = set()
        self.lines: set[str] = set()
        self.reporter: Reporter = _to_stderr

    def say(self, line: str, kind: str | None = None, prefix: str = "") -> bool:
        # A line relayed from a worker names its kind too ("warning: KIND not written to
        # ..."): whichever process hits the full disk first, the user reads it once.
        relayed = _KIND.match(line) if kind is None else None
        kind = relayed.group(1) if relayed else kind
        with self.lock:
            if (kind is not None and kind in self.kinds) or line in self.lines:
                return False
            if kind is not None:
                self.kinds.add(kind)
            self.lines.add(line)
            reporter = self.reporter
        reporter(prefix + line)
        return True


_said = _Warnings()


def set_reporter(reporter: Reporter | None) -> None:
    """Where this process's disk warnings go (None: stderr). The launcher passes its console."""
    _said.reporter = reporter or _to_stderr


def say_once(line: str, prefix: str = "") -> bool:
    """Say `prefix + line` unless this process said exactly `line` before (relayed lines)."""
    return _said.say(line, prefix=prefix)


def reset() -> None:
    """Forget what was said (tests run many runs in one process)."""
    with _said.lock:
        _said.kinds.clear()
        _said.lines.clear()


def write_or_warn(
    kind: str,
    path: str | Path,
    write: Callable[[], object],
    consequence: str,
    fix: str,
    cleanup: Path | None = None,
) -> bool:
    """Run `write`; on a full, over-quota or read-only disk say once per `kind` and return False.

    `kind` names what was not written (`events`, `summary.json`); `consequence`
    says what the run loses by it, `fix` how to get it back. `cleanup` is a
    temporary file to remove after a failure: on a full disk a half-written
    file holds exactly the space that is missing. Other errors propagate.
    """
    try:
        write()
    except Exception as err:  # SafetensorError is not an OSError: disk_errno decides
        code = disk_errno(err)
        if code is None:
            raise
        if cleanup is not None:
            with contextlib.suppress(OSError):
                cleanup.unlink(missing_ok=True)
        _said.say(
            f"warning: {kind} not written to {path}: {describe(code)}; {consequence}. Fix: {fix}",
            kind=kind,
        )
        return False
    return True
