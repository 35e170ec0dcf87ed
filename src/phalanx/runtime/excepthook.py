"""Uncaught UsageError: one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import os
import sys
from types import TracebackType

from phalanx.errors import EXIT_USAGE, UsageError
from phalanx.runtime.error_line import say_error

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], err: BaseException, tb: TracebackType | None) -> None:
        if isinstance(err, UsageError):
            sys.stdout.flush()
            say_error(err.message())
            # Exiting from inside an excepthook: SystemExit would be reported, not obeyed.
            os._exit(EXIT_USAGE)
        previous(kind, err, tb)

    sys.excepthook = hook
    _installed = True
