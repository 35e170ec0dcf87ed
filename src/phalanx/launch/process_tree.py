"""A process and all its descendants, from /proc: what a signal to a whole site must reach.

`phalanx run` starts its workers, its lighthouse and its warm spares each in a
session of their own (launch/workers.py, launch/lighthouse.py), so a signal to
the launcher's process group misses them; they are still its descendants.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

PROC = Path("/proc")


def children_of(pid: int) -> list[int]:
    """The direct children of `pid` (every thread's list: a child is listed by its creator)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in (PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _children_by_stat() -> dict[int, list[int]]:
    """parent -> children, read from every /proc/PID/stat (where `children` is missing)."""
    tree: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])  # after "pid (comm) state"
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """`pid`'s descendants, parents before children (those alive when read)."""
    has_children_file = (PROC / "self" / "task" / str(os.getpid()) / "children").exists()
    tree = None if has_children_file else _children_by_stat()
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop(0)
        kids = children_of(parent) if tree is None else tree.get(parent, [])
        for kid in kids:
            if kid not in found:
                found.append(kid)
                todo.append(kid)
    return found


def signal_tree(pid: int, signum: int, done: set[int] | None = None) -> list[int]:
    """Send `signum` to `pid` and every descendant, parents first; the pids signalled.

    With SIGSTOP, a stopped parent starts no new child, so a second walk finds
    any child started between the walk and the stop: it walks until nothing is new.
    `done`: pids signalled already (skipped).
    """
    sent: list[int] = []
    seen = set(done or ())
    while True:
        fresh = [p for p in [pid, *descendants(pid)] if p not in seen]
        if not fresh:
            return sent
        for target in fresh:
            seen.add(target)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, signum)
                sent.append(target)


def stop_tree(pid: int) -> list[int]:
    """Freeze `pid` and its descendants (SIGSTOP); the pids to wake again."""
    return signal_tree(pid, signal.SIGSTOP)


def continue_pids(pids: list[int]) -> None:
    """Wake processes frozen by `stop_tree` (those that still exist)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGCONT)


def close_pipes(process: subprocess.Popen[bytes]) -> None:
    """Close the parent's ends of a finished child's stdin and stdout.

    Left to the garbage collector they raise ResourceWarning, and a long-lived
    launcher that restarts children would hold a descriptor per restart.
    """
    for pipe in (process.stdin, process.stdout):
        with contextlib.suppress(OSError):
            if pipe is not None:
                pipe.close()
