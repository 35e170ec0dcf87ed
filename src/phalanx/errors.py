"""User-facing errors: one clear line, exit code 2, no traceback.

Every validation in phalanx raises `UsageError` with the field that is wrong,
the value it had and how to fix it. The CLI catches it at the top and prints
`error: <field>: <problem> (got <value>). Fix: <fix>` — nothing else.
"""

from __future__ import annotations

from typing import Any

EXIT_USAGE = 2
# Worker exit codes the launcher acts on (shared here: the launcher must not import torch).
EXIT_QUARANTINED = 3  # the replica quarantined itself; it is not restarted
EXIT_FATAL = 4  # training cannot go on; the launcher stops the run
# A write the run cannot finish without (the final model) failed on a full, over-quota or
# read-only disk. Worker and `phalanx run` alike: free space, then run again with --resume.
EXIT_DISK_FULL = 5
# The replica's state (or one sample beside it) does not fit its chip's memory: it leaves
# with a line naming chip, need and cap, and is not restarted. `phalanx run` exits with it
# when no replica can hold the model (emulate/memory.py).
EXIT_OUT_OF_MEMORY = 6
# SIGTERM (a scheduler's pre-emption): every replica stopped at a step boundary, the newest
# committed step is checkpointed; `--resume` goes on exactly. 75 is sysexits' EX_TEMPFAIL,
# "try again later": what a requeue rule (Slurm, a Kubernetes podFailurePolicy) matches.
EXIT_PREEMPTED = 75


class UsageError(Exception):
    """Bad input from the user: a flag, a config file, a spec string."""

    def __init__(self, field: str, problem: str, fix: str, value: Any = None) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        self.value = value
        super().__init__(self.message())

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in a loader worker process, it crosses back pickled: keep every field.
        return (type(self), (self.field, self.problem, self.fix, self.value))

    def message(self) -> str:
        got = "" if self.value is None else f" (got {_short_repr(self.value)})"
        # One line, always: a key or value from a file may itself contain a newline.
        return f"{self.field}: {self.problem}{got}. Fix: {self.fix}".replace("\n", "\\n")


def _short_repr(value: Any, limit: int = 300) -> str:
    """The offending value, cut short: a whole 10 MB string from a file is not one clear line."""
    try:
        text = repr(value)
    except ValueError:  # an int of over 4300 digits cannot be turned into text
        return f"<{type(value).__name__} too long to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
