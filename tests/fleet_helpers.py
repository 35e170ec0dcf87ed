"""Shared helpers for tests that run real fleets through the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "examples" / "mlp.py"
GPT = ROOT / "src" / "phalanx" / "demo" / "train_gpt.py"
# A float64 MLP small enough that the control plane, not compute, bounds a step.
EXACT_ARGS = [
    "--dtype",
    "float64",
    "--steps",
    "100",
    "--batch",
    "48",
    "--samples",
    "500",
    "--repeat",
    "6",
    "--checkpoint-every",
    "10",
]
EXACT_STEPS = 100
# Slow emulated chips: a step lasts ~0.1 s, so a restarted worker (several seconds of
# Python and torch start-up) rejoins well before the run ends.
SLOW_FLEET = "0.05,0.025,0.0125x2"


def phalanx(*args: str, timeout_s: float = 240, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        **kwargs,
    )


def spawn_phalanx(argv: list[str], log: Path) -> subprocess.Popen:
    """`phalanx ARGV` in the background, output to `log`, in a session of its own (kill_tree)."""
    with log.open("w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "phalanx", *argv],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def lighthouse_service(secret: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`phalanx lighthouse` on loopback (an OS-picked port), once it serves: (process, address)."""
    service = spawn_phalanx(
        ["lighthouse", "--bind", "127.0.0.1:0", "--secret-file", str(secret)], log
    )
    try:
        wait_for(lambda: "serving at" in log.read_text(), 60, "the lighthouse service")
    except BaseException:
        kill_tree(service)
        raise
    return service, log.read_text().split("serving at", 1)[1].split()[0]


def run_gpt_fleet(out: Path, flags: list[str], steps: int, batch: int, timeout_s: float) -> None:
    """`phalanx run` of the demo GPT for a bench script; a failed run stops the bench."""
    result = phalanx(
        "run", str(GPT), "--out", str(out), *flags,
        "--", "--steps", str(steps), "--batch", str(batch), "--out", str(out),
        timeout_s=timeout_s,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"run failed: {result.stdout}\n{result.stderr}")


def local_run(script: Path, out: Path, args: list[str]) -> Path:
    """The one-process reference run (a hang guard: ~30 s on 2 loaded cores)."""
    result = subprocess.run(
        [sys.executable, str(script), *args, "--out", str(out)],
        timeout=240,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out


def events(run_dir: Path) -> list[dict[str, Any]]:
    """The run's events, also while it runs: a line still being written is left out.

    A worker appends each event with one write, but a reader can see the first part
    of a line that crosses a page boundary before the rest lands (and a worker killed
    mid-write leaves a cut last line): only complete lines, newline and all, count.
    """
    text = (run_dir / "events.jsonl").read_text()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def step_losses(run_dir: Path) -> dict[int, float]:
    losses: dict[int, float] = {}
    for event in events(run_dir):
        if event["kind"] == "step":
            losses.setdefault(event["step"], event["loss"])
    return losses


def max_param_diff(a: Path, b: Path) -> float:
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert left.keys() == right.keys()
    return max(float((left[k].double() - right[k].double()).abs().max()) for k in left)


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def independent_data_check(run_dir: Path, num_samples: int, seed: int = 0) -> tuple[int, int]:
    """Recount duplicates and misses from the step events, without phalanx's accounting code."""
    import torch

    committed: dict[int, list[list[int]]] = {}
    batch = 0
    for event in events(run_dir):
        if event["kind"] == "step":
            ranges = committed.setdefault(event["step"], event["ranges"])
            assert ranges == event["ranges"], "participants disagree on a step's slices"
            batch = sum(end - start for start, end in event["ranges"])
    positions = sorted(
        p for ranges in committed.values() for start, end in ranges for p in range(start, end)
    )
    assert positions == list(range(len(committed) * batch)), (
        "committed steps do not tile the stream"
    )
    seen: dict[tuple[int, int], int] = {}
    for position in positions:
        epoch, offset = divmod(position, num_samples)
        generator = torch.Generator()
        generator.manual_seed((seed * 1_000_003 + epoch * 7_919) % (2**63 - 1))
        index = int(torch.randperm(num_samples, generator=generator)[offset])
        seen[(epoch, index)] = seen.get((epoch, index), 0) + 1
    duplicates = sum(c - 1 for c in seen.values())
    full_epochs = len(positions) // num_samples
    missing = sum(1 for e in range(full_epochs) for i in range(num_samples) if (e, i) not in seen)
    return duplicates, missing


def wait_for(predicate, timeout_s: float, what: str) -> None:
    """Poll a condition with a deadline (the condition, not the sleep, synchronises)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)  # polling interval
    if predicate():  # a loaded host may have held us past the deadline in the sleep
        return
    raise AssertionError(f"timed out waiting for {what}")


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL the process's session; one already gone (with all of its group) is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def qualified_fleet(*devices: tuple[str, float, str]) -> str:
    """A fleet.toml of emulated chips marked as qualified: (id, speed, extra TOML tables)."""
    return "".join(
        f'[[device]]\nid = "{device_id}"\nkind = "emulated"\nspeed = {speed}\n{extra}'
        '[device.qualification]\npassed = true\nlevel = "quick"\n\n'
        for device_id, speed, extra in devices
    )


def one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Bad input: exit 2, one `error: ...` line on stderr naming each needle, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert not any(box in result.stderr for box in "╭│╰"), result.stderr  # no framed box
    for needle in needles:
        assert needle in lines[0]
