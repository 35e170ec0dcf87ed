"""A warm spare worker: a process that has already imported torch, waiting for a job.

A restarted replica used to pay a whole interpreter start before it could
rejoin: about 2 s of the 2.6 s from launch to its first line of the script
on these machines was importing torch and torchft, the same for every worker
and known before any fault. So the launcher keeps one spare process per host
that has imported them and waits on its stdin. On a restart the launcher
hands it the worker's environment, script and arguments in one JSON line;
the spare becomes that worker, exactly as `python script.py ARGS` would
start it (the script's directory first on `sys.path`, `__main__`, stdin from
/dev/null), and the launcher starts the next spare. First launches stay
cold: they start together anyway.

With `--priority N` (where the workers fill the cores, launch/spare_pool.py)
its imports run at the lowest CPU priority (nice 19), so they take only the
time the workers leave idle; when it becomes a worker, every thread of it goes
back to N, the priority a cold worker would have started with. A thread's nice
alone is not enough where the kernel groups tasks by session (autogroup, on in
most desktop and cloud kernels): the spare runs in a session of its own, like
every worker, and the scheduler shares the CPU between sessions first, so a
nice-19 spare still took a whole worker's share (the bench's first steps took
0.9 s instead of 0.4). So the session's group is lowered too, and raised back
to a new session's default when the spare becomes a worker.

Run as `python -m phalanx.launch.warm_spare [--priority N]`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import runpy
import sys
import time
from pathlib import Path

IMPORT_PRIORITY = 19  # nice: the lowest, the imports run in the workers' idle time
READY = b"ready\n"  # said once the imports are done (launch/spare_pool.py reads it)
SESSION_DEFAULT_NICE = 0  # a new session's autogroup: what a cold worker gets
AUTOGROUP = Path("/proc/self/autogroup")
# The kernel lets a process without CAP_SYS_ADMIN change a group's nice once per
# 100 ms (system-wide; EAGAIN before): retry for this long.
GROUP_RETRY_S = 2.0


def _warm_up() -> None:
    # What every worker imports before its first step, in the order a worker does.
    import torch
    import torch._dynamo  # noqa: F401  (every optimizer's constructor imports it: 0.5 s)
    import torchft  # noqa: F401

    import phalanx
    import phalanx.runtime.sync_fleet
    import phalanx.runtime.trainer  # noqa: F401


def _set_priority(nice: int) -> None:
    """`nice` for every thread of this process (Linux keeps a priority per thread, and
    a thread started during the imports took the import priority)."""
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.setpriority(os.PRIO_PROCESS, int(task.name), nice)


def set_group_nice(nice: int, group: Path = AUTOGROUP, retry_s: float = GROUP_RETRY_S) -> None:
    """`nice` for a session's scheduling group (this one's by default), where the kernel
    has them (autogroup); the launcher raises a spare's through /proc/<pid>/autogroup.

    Raises if the group exists and refuses for longer than the kernel's rate limit: a
    worker must not run in a group at nice 19.
    """
    if not group.exists():
        return  # no autogroup: the threads' own nice is what counts
    deadline = time.monotonic() + retry_s
    while True:
        try:
            group.write_text(f"{nice}\n")
            return
        except OSError as err:
            if err.errno != errno.EAGAIN or time.monotonic() > deadline:
                raise
            time.sleep(0.02)  # the kernel's rate limit, not synchronisation


def _become(job: dict, priority: int | None) -> None:
    """Turn this process into the worker `job` describes, then run its script."""
    if priority is not None:
        _set_priority(priority)  # raises if it cannot: a worker must not run at nice 19
        set_group_nice(SESSION_DEFAULT_NICE)
    os.environ.clear()
    os.environ.update(job["env"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # as the launcher starts a cold worker: stdin=DEVNULL
    os.close(devnull)
    script = os.path.abspath(job["script"])
    sys.argv = [job["script"], *job["args"]]  # argv[0] as given, as `python script.py`
    sys.path[0] = os.path.dirname(script)  # the script's directory first, as Python does
    runpy.run_path(script, run_name="__main__")


def main() -> None:
    # `--priority N`: import at nice 19, run the worker at N (launch/spare_pool.py probed
    # that this process may raise its priority back).
    priority = int(sys.argv[sys.argv.index("--priority") + 1]) if "--priority" in sys.argv else None
    if priority is not None:
        os.setpriority(os.PRIO_PROCESS, 0, IMPORT_PRIORITY)
        with contextlib.suppress(OSError):  # a spare in a normal group only imports slower
            set_group_nice(IMPORT_PRIORITY)
    _warm_up()
    # One write: the launcher may read between two (print writes the newline apart).
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), READY)
    line = sys.stdin.readline()
    if not line.strip():  # the launcher closed our stdin without a job: it is done
        return
    # A worker's output must not start with the spare's own line: the launcher reads
    # "ready" before it attaches the worker's log.
    _become(json.loads(line), priority)


if __name__ == "__main__":
    main()
