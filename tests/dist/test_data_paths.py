"""The data path on a fleet: a sharded stream, a user's collate_fn and reader processes,
across a kill, equal to one process with no readers (issue 18)."""

import pytest

from tests.fleet_helpers import (
    ROOT,
    events,
    independent_data_check,
    local_run,
    max_param_diff,
    phalanx,
    summary,
)

pytestmark = [pytest.mark.dist, pytest.mark.timeout(400)]

STREAMING = ROOT / "examples" / "streaming_text.py"
ARGS = ["--dtype", "float64", "--steps", "24", "--batch", "32", "--checkpoint-every", "6"]


def test_a_sharded_stream_with_readers_is_exact_across_a_kill(tmp_path):
    reference = local_run(STREAMING, tmp_path / "reference", ARGS)  # no readers, one process
    run = tmp_path / "run"
    result = phalanx(
        "run", str(STREAMING), "--out", str(run), "--emulate", "1,0.5,0.25", "--timeout-s", "2",
        "--quiet", "--fault", "kill:replica=1,step=9,restart_s=1",
        "--", *ARGS, "--loader-workers", "2", "--max-microbatch", "5",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(e["kind"] == "worker_restart" for e in events(run))  # the kill happened
    assert max_param_diff(run, reference) < 1e-9
    data = summary(run)["data"]
    assert (data["duplicates"], data["missing"], data["samples_seen"]) == (0, 0, 24 * 32)
    # Recounted without phalanx's accounting: every position of the 768 once.
    assert independent_data_check(run, num_samples=24 * 32) == (0, 0)
