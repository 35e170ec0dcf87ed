"""A run whose disk fills mid-run: training goes on, the run ends in one line, --resume is exact.

`phalanx run --out` lies on a small tmpfs (root only; skipped otherwise). Once
the fleet has written its checkpoint of step 20, the test fills the file
system to the last byte. Then either the disk stays full to the end (the run
stops at its final model with one line and exit 5, then `--resume` after
freeing space ends exactly where the one-process run does), or the test frees
it mid-run (the run finishes, exit 0, exact).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.errors import EXIT_DISK_FULL
from tests.disk_helpers import fill as fill_disk
from tests.disk_helpers import mounted_tmpfs
from tests.fleet_helpers import (
    EXACT_ARGS,
    MLP,
    events,
    independent_data_check,
    kill_tree,
    max_param_diff,
    phalanx,
    spawn_phalanx,
    summary,
    wait_for,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a tmpfs needs root"
    ),
]

# The exactness tests' float64 MLP, narrower: a checkpoint is ~20 KB, so the run up to
# step 20 fits in a few hundred KB and the fill, not the model, decides when the disk is full.
ARGS = [*EXACT_ARGS, "--width", "16"]
FLEET = "0.05,0.025"  # two slow emulated chips: ~0.1 s a step, time to fill mid-run
FILL_AFTER = "step_00000020"
CHECKPOINT_LOST = re.compile(r"checkpoint of step (\d+) not written")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The one-process run, trained while the fleet runs; wait on it with `reference()`."""
    out = tmp_path_factory.mktemp("reference") / "run"
    process = subprocess.Popen(
        [sys.executable, str(MLP), *ARGS, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def finished() -> Path:
        assert process.wait(timeout=300) == 0
        return out

    yield finished
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture
def disk(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "4m") as disk:
        yield disk


def fill(disk: Path) -> Path:
    """Fill the disk; nothing at all may be left."""
    filler = fill_disk(disk)
    assert shutil.disk_usage(disk).free < 4096
    return filler


def start_and_fill(disk: Path, tmp_path: Path) -> tuple[subprocess.Popen, Path, Path, Path]:
    """`phalanx run` on the disk, filled once the checkpoint of step 20 is there."""
    run, output = disk / "run", tmp_path / "run.out"  # the launcher's output: on a big disk
    launcher = spawn_phalanx(
        ["run", str(MLP), "--out", str(run), "--emulate", FLEET, "--quiet", "--", *ARGS], output
    )
    try:
        wait_for(
            lambda: (run / "checkpoints" / FILL_AFTER).is_dir() or launcher.poll() is not None,
            180,
            "the checkpoint of step 20",
        )
        assert launcher.poll() is None, output.read_text()
        filler = fill(disk)
    except BaseException:
        kill_tree(launcher)
        raise
    return launcher, run, output, filler


def trained_on_after_the_fill(text: str) -> list[int]:
    """Checkpoints that failed after the fill (workers' warnings the launcher relayed)."""
    return [int(step) for step in CHECKPOINT_LOST.findall(text) if int(step) > 20]


def assert_said_once_per_kind(text: str) -> None:
    for kind in ("events", "worker output", "summary.json", "report.html"):
        assert text.count(f"warning: {kind} not written") <= 1, (kind, text)


def spliced_events(run: Path, into: Path) -> int:
    """The run's history after --resume: its first run's steps before the resumed step, the
    resumed run's from there on (the steps between were trained twice; the second counts)."""
    records = events(run)
    resumed_at = max(i for i, e in enumerate(records) if e["kind"] == "run_start")
    resume_step = min(e["step"] for e in records[resumed_at:] if e["kind"] == "resume")
    kept = [
        e
        for i, e in enumerate(records)
        if e["kind"] == "step" and (e["step"] < resume_step) == (i < resumed_at)
    ]
    into.mkdir()
    (into / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept))
    return resume_step


def test_a_disk_full_to_the_end_stops_in_one_line_and_resumes_exactly(disk, tmp_path, reference):
    launcher, run, output, filler = start_and_fill(disk, tmp_path)
    try:
        code = launcher.wait(timeout=300)
    finally:
        if launcher.poll() is None:
            kill_tree(launcher)
    text = output.read_text()
    assert "Traceback" not in text, text
    assert code == EXIT_DISK_FULL, text
    last = text.strip().splitlines()[-1]
    assert last.startswith("error: the final model could not be written"), text
    assert "--resume" in last and "step_000000" in last  # names the newest checkpoint
    assert trained_on_after_the_fill(text), text  # training went on through the full disk
    assert_said_once_per_kind(text)
    assert "warning: events not written" in text
    # Nothing half-written is left: the space it held is what the disk is missing.
    left = [p.name for p in run.rglob("*") if ".tmp" in p.name or p.name.startswith(".model.")]
    assert left == [] and not (run / "model.safetensors").exists()
    events(run)  # every line parses: no event was cut in half

    filler.unlink()
    resumed = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", FLEET, "--quiet", "--resume", "--", *ARGS
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stdout + resumed.stderr
    assert max_param_diff(run, reference()) < 1e-9
    assert summary(run)["completed"]
    resume_step = spliced_events(run, tmp_path / "history")
    assert 20 <= resume_step < 100
    assert independent_data_check(tmp_path / "history", num_samples=500) == (0, 0)
    assert {e["step"] for e in events(tmp_path / "history")} == set(range(100))


def test_a_disk_freed_mid_run_lets_the_run_finish_exactly(disk, tmp_path, reference):
    launcher, run, output, filler = start_and_fill(disk, tmp_path)
    try:
        # A checkpoint after the fill failed and training went on: now free the space.
        wait_for(
            lambda: trained_on_after_the_fill(output.read_text()) or launcher.poll() is not None,
            180,
            "a checkpoint that failed after the fill",
        )
        assert launcher.poll() is None, output.read_text()
        filler.unlink()
        code = launcher.wait(timeout=300)
    finally:
        if launcher.poll() is None:
            kill_tree(launcher)
    text = output.read_text()
    assert "Traceback" not in text, text
    assert code == 0, text
    assert_said_once_per_kind(text)
    assert "warning: events not written" in text  # what the summary lacks was said
    assert max_param_diff(run, reference()) < 1e-9
    assert summary(run)["completed"]
