"""An emulated chip's memory binds: a model that does not fit fails as on a real chip."""

import pytest

from tests.fleet_helpers import MLP, events, local_run, max_param_diff, phalanx, summary

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]

# The float64 MLP (width 128) holds 0.65 MB of state: weights, gradients, AdamW's two
# moments. 600 KB cannot hold it; 700 KB holds it and 5 samples of activations.
ARGS = ["--dtype", "float64", "--steps", "6", "--batch", "32", "--samples", "192"]


def test_a_model_larger_than_the_only_chip_fails_with_one_line(tmp_path):
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", "1:mem=600KB", "--quiet", "--", *ARGS
    )
    assert result.returncode == 6, result.stdout + result.stderr
    assert "error: r0 (emulated, 586 KiB): out of memory: needs" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    (oom,) = [e for e in events(run) if e["kind"] == "out_of_memory"]
    assert oom["cap_bytes"] == 600_000 and oom["need_bytes"] > 600_000


def test_a_small_chip_trains_in_small_micro_batches_and_a_chip_too_small_leaves(tmp_path):
    # r0 holds the state and a few samples at a time; r1 cannot hold the state and leaves
    # for good; r2 has room. The run finishes on r0 and r2, exact against one process.
    reference = local_run(MLP, tmp_path / "reference", ARGS)
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", "1:mem=700KB,1:mem=600KB,1",
        "--quiet", "--", *ARGS,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error: r1 (emulated, 586 KiB): out of memory" in result.stderr
    assert summary(run)["completed"]
    assert max_param_diff(run, reference) < 1e-9
    all_events = events(run)
    (r0,) = [e for e in all_events if e["kind"] == "chip_memory" and e["replica"] == "r0"]
    assert 1 <= r0["max_microbatch"] < 16
    steps = [e for e in all_events if e["kind"] == "step"]
    assert steps and all("r1" not in e["participants"] for e in steps)
    assert {e["replica"] for e in steps} == {"r0", "r2"}
