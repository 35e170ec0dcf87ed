"""Runs one schedule as a real `phalanx run` (a subprocess), and the one-process reference."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from phalanx.chaos.schedule import Schedule


@dataclass(frozen=True)
class Workload:
    """The script and arguments every schedule of a campaign trains."""

    script: Path
    steps: int
    batch: int = 48
    samples: int = 500
    checkpoint_every: int = 10
    timeout_s: float = 2.0  # the collective timeout of `phalanx run`
    # Wider than the script's default, so that per-sample compute outweighs the fixed cost
    # of a call: otherwise the shares (rightly) give the slow chips no samples at all, and
    # gradient faults on a chip without samples cannot fire.
    width: int = 512
    repeat: int = 2

    def script_args(self) -> list[str]:
        # float64: exact math can be asserted to 1e-9, far above summation-order noise.
        return [
            "--dtype", "float64",
            "--steps", str(self.steps),
            "--batch", str(self.batch),
            "--samples", str(self.samples),
            "--checkpoint-every", str(self.checkpoint_every),
            "--width", str(self.width),
            "--repeat", str(self.repeat),
        ]  # fmt: skip


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    returncode: int | None  # None: killed at the deadline
    wall_s: float
    output_tail: str


def fleet_command(schedule: Schedule, workload: Workload, run_dir: Path) -> list[str]:
    """The exact command line: also the repro printed for a violation."""
    command = [
        "phalanx", "run", _relative(workload.script), "--out", str(run_dir),
        "--emulate", schedule.emulate, "--timeout-s", f"{workload.timeout_s:g}", "--quiet",
    ]  # fmt: skip
    for fault in schedule.faults:
        command += ["--fault", fault.spec]
    return [*command, "--", *workload.script_args()]


def _relative(path: Path) -> str:
    """The script as a repro should name it: relative to here when it lies below."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _run(argv: list[str], deadline_s: float) -> tuple[int | None, str]:
    # Own session: at the deadline the launcher and every worker it started go together.
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=deadline_s)
        return process.returncode, output[-4000:]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, (output or "")[-4000:]


def run_schedule(
    schedule: Schedule, workload: Workload, run_dir: Path, deadline_s: float
) -> RunResult:
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a schedule always starts from an empty run directory
    argv = fleet_command(schedule, workload, run_dir)
    started = time.monotonic()
    code, tail = _run([sys.executable, "-m", "phalanx", *argv[1:]], deadline_s)
    return RunResult(run_dir, code, time.monotonic() - started, tail)


def run_reference(workload: Workload, run_dir: Path, deadline_s: float = 600) -> Path:
    """The script alone in one process: what every schedule must reproduce."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    argv = [sys.executable, str(workload.script), *workload.script_args(), "--out", str(run_dir)]
    code, tail = _run(argv, deadline_s)
    if code != 0:
        raise RuntimeError(f"the reference run failed (code {code}):\n{tail}")
    return run_dir
