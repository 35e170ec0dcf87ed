"""Runs one schedule as a real `phalanx run` (a subprocess), and the one-process reference."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx.chaos import netns
from phalanx.chaos.schedule import HARNESS_CATEGORIES, Schedule

# Set when the campaign is interrupted: every running schedule kills its fleet and ends
# (as at its deadline), so no fleet, namespace or bridge outlives the campaign.
STOP = threading.Event()


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
    run_dir: Path  # events.jsonl of the whole fleet (merged from its hosts in a hosts run)
    returncode: int | None  # None: killed at the deadline
    wall_s: float
    output_tail: str
    outputs: tuple[Path, ...] = ()  # where summary.json and model.safetensors are: every host
    host_codes: tuple[int | None, ...] = ()  # each host's `phalanx run` exit code (hosts runs)


def fleet_command(schedule: Schedule, workload: Workload, run_dir: Path) -> list[str]:
    """The exact command line: also the repro printed for a violation."""
    command = [
        "phalanx", "run", _relative(workload.script), "--out", str(run_dir),
        "--emulate", schedule.emulate, "--timeout-s", f"{workload.timeout_s:g}", "--quiet",
    ]  # fmt: skip
    for fault in schedule.faults:
        if fault.category in HARNESS_CATEGORIES:
            raise ValueError(f"{fault.spec} is fired by the campaign, not by phalanx run")
        command += ["--fault", fault.spec]
    return [*command, "--", *workload.script_args()]


def campaign_repro(schedule: Schedule, workload: Workload, run_dir: Path) -> list[str]:
    """The repro of any schedule (also a hosts one): the campaign runs just that index."""
    return [
        "python", "-m", "phalanx.chaos", "--seed", str(schedule.seed),
        "--only", str(schedule.index), "--steps", str(workload.steps),
        "--timeout-s", f"{workload.timeout_s:g}", "--out", str(run_dir),
        "--results", str(run_dir / "chaos.json"), "--table", str(run_dir / "chaos.md"),
    ]  # fmt: skip


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
    end = time.monotonic() + deadline_s
    while True:
        try:  # in slices, so that a stopped campaign (STOP) does not wait for the deadline
            output, _ = process.communicate(timeout=min(1.0, max(0.0, end - time.monotonic())))
            return process.returncode, output[-4000:]
        except subprocess.TimeoutExpired:
            if time.monotonic() >= end or STOP.is_set():
                break
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
    return RunResult(run_dir, code, time.monotonic() - started, tail, (run_dir,))


def run_reference(workload: Workload, run_dir: Path, deadline_s: float = 600) -> Path:
    """The script alone in one process: what every schedule must reproduce."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    argv = [sys.executable, str(workload.script), *workload.script_args(), "--out", str(run_dir)]
    code, tail = _run(argv, deadline_s)
    if code != 0:
        raise RuntimeError(f"the reference run failed (code {code}):\n{tail}")
    return run_dir


# A hosts schedule: each replica is a host (a network namespace) running
# `phalanx run --lighthouse`, one more namespace runs `phalanx lighthouse`, and
# the campaign cuts a host's link when the fleet reaches the fault's step.
POLL_S = 0.05  # how often the campaign looks at the fleet's events (a polling tick)


class _StepWatch:
    """The newest committed step in a set of growing events.jsonl files (read incrementally)."""

    def __init__(self, paths: list[Path]) -> None:
        self.offsets = dict.fromkeys(paths, 0)
        self.last_step = -1

    def poll(self) -> int:
        for path, offset in self.offsets.items():
            if not path.exists():
                continue
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits
            self.offsets[path] = offset + len(complete)
            for line in complete.splitlines():
                if b'"kind":"step"' in line:
                    self.last_step = max(self.last_step, int(json.loads(line)["step"]))
        return self.last_step


def host_command(
    schedule: Schedule,
    workload: Workload,
    replica: int,
    out: Path,
    lighthouse: str,
    secret: Path,
) -> list[str]:
    """Replica `replica` of the schedule as a host of its own: its faults become replica 0's."""
    command = [
        sys.executable, "-m", "phalanx", "run", str(workload.script), "--out", str(out),
        "--lighthouse", lighthouse, "--host-id", f"h{replica}", "--secret-file", str(secret),
        "--emulate", f"{schedule.speeds[replica]:g}", "--timeout-s", f"{workload.timeout_s:g}",
        "--quiet",
    ]  # fmt: skip
    for fault in schedule.faults:
        if fault.category in HARNESS_CATEGORIES or fault.parsed().replica != replica:
            continue
        kind, _, rest = fault.spec.partition(":")
        keys = [item for item in rest.split(",") if not item.startswith("replica=")]
        command += ["--fault", f"{kind}:replica=0,{','.join(keys)}"]
    return [*command, "--", *workload.script_args()]


def run_hosts_schedule(
    schedule: Schedule, workload: Workload, run_dir: Path, deadline_s: float
) -> RunResult:
    """Run a schedule with each replica on its own host, cutting links as it says."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    started = time.monotonic()
    subnet = f"10.78.{schedule.index % 250}"
    net = netns.Network()
    harness_events: list[dict[str, Any]] = []
    processes: list[subprocess.Popen[bytes]] = []
    outputs = tuple(run_dir / "hosts" / f"h{i}" for i in range(len(schedule.speeds)))
    logs = [run_dir / f"h{i}.out" for i in range(len(schedule.speeds))]
    code: int | None = None
    try:
        net.create_bridge()
        lighthouse_host = net.add_host("lh", f"{subnet}.1")
        hosts = [net.add_host(f"h{i}", f"{subnet}.{11 + i}") for i in range(len(schedule.speeds))]
        secret = run_dir / "fleet.secret"
        lighthouse_log = run_dir / "lighthouse.out"
        service = net.spawn(
            lighthouse_host,
            [sys.executable, "-m", "phalanx", "lighthouse", "--bind", f"{subnet}.1:0",
             "--secret-file", str(secret)],
            lighthouse_log,
        )  # fmt: skip
        port = _serving_port(lighthouse_log, service, started + deadline_s)
        if port is not None:
            for i, host in enumerate(hosts):
                argv = host_command(schedule, workload, i, outputs[i], f"{subnet}.1:{port}", secret)
                processes.append(net.spawn(host, argv, logs[i]))
            finished = _drive_cuts(schedule, net, hosts, processes, outputs, harness_events,
                                   started + deadline_s)  # fmt: skip
            code = 0 if finished else None  # each host's own code is checked on its own
    finally:
        net.cleanup()
    wall_s = time.monotonic() - started
    _merge_events(run_dir, outputs, harness_events)
    tail = "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}"
        for log in [run_dir / "lighthouse.out", *logs]
        if log.exists()
    )
    codes = tuple(p.returncode for p in processes)
    return RunResult(run_dir, code, wall_s, tail, outputs, codes)


def _serving_port(log: Path, service: subprocess.Popen[bytes], deadline: float) -> int | None:
    """The port `phalanx lighthouse` printed, once it serves; None if it died or never did."""
    while time.monotonic() < deadline and service.poll() is None and not STOP.is_set():
        text = log.read_text(errors="replace") if log.exists() else ""
        if "serving at" in text:
            return int(text.split("serving at", 1)[1].split()[0].rsplit(":", 1)[1])
        time.sleep(POLL_S)  # polling tick: the service writes the line when it serves
    return None


def _drive_cuts(
    schedule: Schedule,
    net: netns.Network,
    hosts: list[netns.Host],
    processes: list[subprocess.Popen[bytes]],
    outputs: tuple[Path, ...],
    harness_events: list[dict[str, Any]],
    deadline: float,
) -> bool:
    """Fire the network cuts at their steps until every host exits (True), or the deadline."""
    pending = sorted(
        (f.parsed() for f in schedule.faults if f.category == "netcut"), key=lambda f: f.step
    )
    cut_until: dict[int, float] = {}  # replica -> when its link comes back
    watch = _StepWatch([out / "events.jsonl" for out in outputs])
    while any(p.poll() is None for p in processes):
        now = time.monotonic()
        if now > deadline or STOP.is_set():
            return False  # the caller's cleanup kills the hosts
        step = watch.poll()
        for fault in [f for f in pending if step + 1 >= f.step]:
            pending.remove(fault)
            if fault.replica in cut_until:
                continue  # already cut off: this cut cannot add anything
            net.cut(hosts[fault.replica])
            cut_until[fault.replica] = now + float(fault.params["seconds"])
            harness_events.append({
                "t": time.time(), "kind": "fault", "source": "chaos", "fault": "netcut",
                "replica": f"h{fault.replica}-r0", "step": fault.step,
                "seconds": fault.params["seconds"], "fleet_step": step,
            })  # fmt: skip
        for replica, until in list(cut_until.items()):
            if now >= until:
                net.restore(hosts[replica])
                del cut_until[replica]
                harness_events.append(
                    {"t": time.time(), "kind": "netcut_end", "source": "chaos",
                     "replica": f"h{replica}-r0"}
                )  # fmt: skip
        time.sleep(POLL_S)  # polling tick over the hosts' events, not synchronisation
    return True


def _merge_events(
    run_dir: Path, outputs: tuple[Path, ...], harness_events: list[dict[str, Any]]
) -> None:
    """One events.jsonl for the fleet: every host's lines and the cuts, in time order."""
    records = list(harness_events)
    for out in outputs:
        path = out / "events.jsonl"
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a SIGKILL mid-write
    records.sort(key=lambda r: r.get("t", 0.0))
    (run_dir / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
