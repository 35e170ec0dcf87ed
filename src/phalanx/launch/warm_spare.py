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

Run as `python -m phalanx.launch.warm_spare`.
"""

from __future__ import annotations

import json
import os
import runpy
import sys


def _warm_up() -> None:
    # What every worker imports before its first step, in the order a worker does.
    import torch  # noqa: F401
    import torchft  # noqa: F401

    import phalanx
    import phalanx.runtime.sync_fleet
    import phalanx.runtime.trainer  # noqa: F401


def _become(job: dict) -> None:
    """Turn this process into the worker `job` describes, then run its script."""
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
    _warm_up()
    print("ready", flush=True)  # the launcher hands out only a spare that said so
    line = sys.stdin.readline()
    if not line.strip():  # the launcher closed our stdin without a job: it is done
        return
    # A worker's output must not start with the spare's own line: the launcher reads
    # "ready" before it attaches the worker's log.
    _become(json.loads(line))


if __name__ == "__main__":
    main()
