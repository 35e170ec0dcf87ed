"""The data path on a fleet: a stream (phalanx's seekable ShardedStream, or a plain torch
IterableDataset that can only be iterated), a user's collate_fn and reader processes,
across a kill, a pre-emption and --resume, equal to one process with no readers, every
sample once (issue 18)."""

import os
import signal
import subprocess
import sys

import pytest

from tests.fleet_helpers import (
    ROOT,
    events,
    independent_data_check,
    kill_tree,
    local_run,
    max_param_diff,
    phalanx,
    summary,
    wait_for,
)

pytestmark = [pytest.mark.dist, pytest.mark.timeout(500)]

STREAMING = ROOT / "examples" / "streaming_text.py"
STEPS, BATCH = 24, 32
ARGS = [
    "--dtype",
    "float64",
    "--steps",
    str(STEPS),
    "--batch",
    str(BATCH),
    "--checkpoint-every",
    "6",
]
EXIT_PREEMPTED = 75


@pytest.mark.parametrize(
    "stream",
    [
        [],  # ShardedStream: seeks to a position
        ["--plain-iterable"],  # a torch IterableDataset: re-read from its start to get there
    ],
    ids=["sharded-stream", "plain-iterable-dataset"],
)
def test_a_stream_with_readers_is_exact_across_a_kill_and_a_resume(tmp_path, stream):
    # No readers, one process.
    reference = local_run(STREAMING, tmp_path / "reference", [*ARGS, *stream])
    run = tmp_path / "run"
    flags = ["--out", str(run), "--emulate", "1,0.5,0.25", "--timeout-s", "2", "--quiet"]
    script_args = ["--", *ARGS, *stream, "--loader-workers", "2", "--max-microbatch", "5"]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "phalanx", "run", str(STREAMING), *flags,
         "--fault", "kill:replica=1,step=5,restart_s=0", *script_args],
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(
            lambda: (
                (run / "events.jsonl").exists()
                and any(e["kind"] == "step" and e["step"] >= 14 for e in events(run))
            ),
            timeout_s=300,
            what="step 14",
        )
        os.kill(launcher.pid, signal.SIGTERM)  # a scheduler's pre-emption
        out, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            kill_tree(launcher)
    assert launcher.returncode == EXIT_PREEMPTED, out + err
    # The kill happened, and its restart (at once: step 14 may come within a second).
    assert any(e["kind"] == "worker_restart" for e in events(run))

    resumed = phalanx("run", str(STREAMING), *flags, "--resume", *script_args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert next(e["step"] for e in events(run) if e["kind"] == "resume") >= 14
    assert max_param_diff(run, reference) < 1e-9
    data = summary(run)["data"]
    assert (data["duplicates"], data["missing"], data["samples_seen"]) == (0, 0, STEPS * BATCH)
    # Recounted from the events without phalanx's accounting: every position once.
    assert independent_data_check(run, num_samples=STEPS * BATCH) == (0, 0)
