"""Run one contender's command with a deadline; a timeout kills its whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

ENV = {
    "OMP_NUM_THREADS": "1",  # one intra-op thread per emulated chip, for every contender
    "GLOO_SOCKET_IFNAME": "lo",
    "PYTHONUNBUFFERED": "1",
}


class RunFailed(RuntimeError):
    pass


def run_logged(cmd: list[str], log_path: Path, timeout_s: float) -> float:
    """Run `cmd`, output to `log_path`; return its wall seconds. Raise RunFailed on error."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **ENV}
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise RunFailed(f"timed out after {timeout_s:.0f} s; see {log_path}") from None
        finally:
            # Stragglers of the group (e.g. a fault's waker) must not outlive the run.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
    wall_s = time.perf_counter() - started
    if code != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-5:]
        raise RunFailed(f"exit code {code}; see {log_path}: " + " | ".join(tail))
    return wall_s
