"""Sites as network namespaces: each runs one `phalanx run` of the bench workload.

A site is one host (namespace) with its own emulated chips. Alone, it runs
with its own local lighthouse; in a fleet, every site joins one `phalanx
lighthouse` service. Everything is waited for with a deadline, and the
caller's `Network.cleanup()` kills whatever is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.timeline import WARMUP_STEPS, read_jsonl, steady_rate_sps, step_times
from bench.workload import Workload
from phalanx.chaos.netns import Host, Network

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "phalanx_script.py"
# A step's allreduce over a 20 Mbit/s link takes seconds (phalanx's default collective
# timeout is 5 s); a collective that outlasts the timeout fails the step, so this is
# far above any step here and only bounds a real hang.
COLLECTIVE_TIMEOUT_S = 60.0
LIGHTHOUSE_START_S = 60.0
POLL_S = 0.2  # how often a waiting bench looks at its processes again


@dataclass(frozen=True)
class Site:
    label: str  # the host id: its replicas are LABEL-r0, LABEL-r1, ...
    speeds: tuple[float, ...]  # emulated chips, relative to one host core

    @property
    def spec(self) -> str:
        return ",".join(f"{s:g}" for s in self.speeds)


@dataclass(frozen=True)
class Lighthouse:
    address: str  # IP:PORT that sites dial
    secret_file: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """End the service (its own session) once its fleet is done."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


class RunFailed(RuntimeError):
    pass


def start_lighthouse(
    network: Network, host: Host, min_replicas: int, secret_file: Path, log: Path
) -> Lighthouse:
    """`phalanx lighthouse` in `host`, on a port the OS picks, once it serves.

    No quorum forms before `min_replicas` replicas asked (all of the fleet's):
    every site starts at step 0 together, none trains a first step alone.
    """
    argv = [
        sys.executable, "-m", "phalanx", "lighthouse", "--bind", f"{host.address}:0",
        "--min-replicas", str(min_replicas), "--secret-file", str(secret_file),
    ]  # fmt: skip
    process = network.spawn(host, argv, log, cwd=ROOT)
    deadline = time.monotonic() + LIGHTHOUSE_START_S
    while "serving at" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RunFailed(f"the lighthouse did not start: {_tail(log)}")
        time.sleep(POLL_S)  # polling its log, with a deadline
    port = log.read_text().split("serving at", 1)[1].split()[0].rsplit(":", 1)[1]
    return Lighthouse(f"{host.address}:{port}", secret_file, process)


def site_argv(
    site: Site,
    work: Workload,
    out: Path,
    time_scale: float,
    lighthouse: Lighthouse | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The site's `phalanx run`: alone (its own local lighthouse) or joining `lighthouse`.

    `extra`: more `phalanx run` flags (a sites run's `--site ...`).
    """
    joins = (
        []
        if lighthouse is None
        else [
            "--lighthouse", lighthouse.address, "--host-id", site.label,
            "--secret-file", str(lighthouse.secret_file),
        ]
    )  # fmt: skip
    return [
        sys.executable, "-m", "phalanx", "run", str(SCRIPT), "--out", str(out),
        "--emulate", site.spec,
        # One scale for every run of the bench: a chip is equally fast alone and in the fleet.
        "--emulation-time-scale", f"{time_scale:.6f}",
        "--timeout-s", f"{COLLECTIVE_TIMEOUT_S:g}", "--quiet", *joins, *extra,
        "--", *work.to_args(),
    ]  # fmt: skip


def run_sites(
    network: Network,
    runs: dict[str, tuple[Host, list[str]]],
    logs: Path,
    deadline_s: float,
) -> float:
    """Start every run at once and wait for all of them; returns the wall seconds.

    A run that fails or outlasts the deadline stops the bench (the caller's
    cleanup kills the rest).
    """
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    processes = {
        name: network.spawn(host, argv, logs / f"{name}.out", cwd=ROOT)
        for name, (host, argv) in runs.items()
    }
    deadline = started + deadline_s
    while any(p.poll() is None for p in processes.values()):
        for name, process in processes.items():
            if process.returncode not in (None, 0):  # one site failed: the fleet cannot finish
                raise RunFailed(
                    f"{name} exited {process.returncode}: {_tail(logs / f'{name}.out')}"
                )
        if time.monotonic() > deadline:
            raise RunFailed(f"runs still going after {deadline_s:.0f} s: {sorted(processes)}")
        time.sleep(POLL_S)  # polling the processes, with a deadline
    for name, process in processes.items():
        if process.returncode != 0:
            raise RunFailed(f"{name} exited {process.returncode}: {_tail(logs / f'{name}.out')}")
    return time.monotonic() - started


@dataclass(frozen=True)
class Steady:
    """A run's steady state: from the commit of step WARMUP_STEPS to the last commit."""

    samples_per_s: float
    start_t: float
    end_t: float
    samples: int  # trained between the two commits
    fewest_replicas: int  # in any step of the window: fewer than the fleet's means one dropped


def steady_state(run_dirs: list[Path], batch: int) -> Steady:
    """From the step events of every site of one run (each logs its own replicas' steps).

    A step's commit time is its first participant's event, as everywhere in bench/.
    """
    records = [r for run in run_dirs for r in read_jsonl(run / "events.jsonl")]
    times = step_times(records, first_writer=True)
    steps = sorted(s for s in times if s >= WARMUP_STEPS)
    if len(steps) < 2:
        raise RunFailed(f"too few steps after warm-up in {run_dirs}: {sorted(times)}")
    in_window = [r for r in records if r.get("kind") == "step" and r["step"] >= steps[0]]
    return Steady(
        samples_per_s=steady_rate_sps(times, batch),
        start_t=times[steps[0]],
        end_t=times[steps[-1]],
        samples=batch * (steps[-1] - steps[0]),
        fewest_replicas=min(len(r["participants"]) for r in in_window),
    )


def _tail(log: Path, lines: int = 5) -> str:
    if not log.exists():
        return f"(no {log.name})"
    return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])


def tc_classes(host: Host) -> str:
    """What shapes the host's link, as tc shows it (for the results' record)."""
    shown = subprocess.run(
        ["tc", "class", "show", "dev", host.outer], capture_output=True, text=True, timeout=30
    )
    return shown.stdout.strip()
