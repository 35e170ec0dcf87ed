"""BatchNorm and dropout on a fleet: replicas identical, and exact against one process (issue 13)."""

import glob

import pytest
from safetensors.torch import load_file

from tests.fleet_helpers import (
    ROOT,
    events,
    independent_data_check,
    local_run,
    max_param_diff,
    phalanx,
)

pytestmark = [pytest.mark.dist, pytest.mark.timeout(400)]

CONVNET = ROOT / "examples" / "convnet.py"
ARGS = ["--dtype", "float64", "--steps", "40", "--batch", "48", "--replica-copy"]


def _replica_copies(run):
    return [load_file(p) for p in sorted(glob.glob(str(run / "replica-*.safetensors")))]


def _largest_difference(copies):
    first = copies[0]
    return max(
        float((copy[k].double() - first[k].double()).abs().max()) for copy in copies for k in first
    )


def test_batchnorm_and_dropout_are_exact_across_splits_and_a_kill(tmp_path):
    reference = local_run(CONVNET, tmp_path / "reference", ARGS)
    run = tmp_path / "run"
    result = phalanx(
        "run", str(CONVNET), "--out", str(run), "--emulate", "1,0.5,0.25", "--timeout-s", "2",
        "--quiet", "--fault", "kill:replica=1,step=15,restart_s=1", "--", *ARGS,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not exact" not in result.stdout + result.stderr
    # Parameters and buffers (running statistics, batch counters) against one process.
    reference_state = _replica_copies(reference)[0]
    copies = _replica_copies(run)
    # The killed replica comes back and finishes too, unless a loaded host restarted it
    # after the fleet had finished: then it leaves, and writes no copy of an older state.
    late = {e["replica"] for e in events(run) if e["kind"] == "straggler_exit"}
    assert late <= {"r1"} and len(copies) == 3 - len(late)
    assert _largest_difference([reference_state, *copies]) < 1e-9
    assert _largest_difference(copies) == 0.0  # every replica holds the same bits
    assert max_param_diff(run, reference) < 1e-9
    assert independent_data_check(run, num_samples=600) == (0, 0)
    assert not any(e["kind"] in ("sdc", "inexact_layers") for e in events(run))


def test_without_the_exact_path_one_warning_names_the_layers(tmp_path):
    run = tmp_path / "run"
    result = phalanx(
        "run", str(CONVNET), "--out", str(run), "--emulate", "1,0.5,0.5", "--timeout-s", "2",
        "--quiet", "--", *ARGS, "--inexact",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if "not exact" in line]
    assert len(lines) == 2, lines  # one per kind of layer, said once (not once per replica)
    batchnorm, dropout = sorted(lines)
    assert "features.1 (BatchNorm2d)" in batchnorm and "head.3 (BatchNorm1d)" in batchnorm
    assert "head.1 (Dropout)" in dropout and "Fix: Trainer(exact=True)" in dropout
    # Not exact, but still one model: buffers are synchronised every step.
    assert _largest_difference(_replica_copies(run)) == 0.0


MLP = ROOT / "examples" / "mlp.py"
DROPOUT_ARGS = ["--dtype", "float64", "--steps", "30", "--repeat", "3", "--dropout", "0.2"]


def test_activation_checkpointing_recomputes_the_masks_the_forward_drew(tmp_path):
    """One dropout module reused in three checkpointed blocks (both of torch's checkpoints):
    the fleet equals one process that does not checkpoint at all. (Before exact/recompute.py
    the recompute drew other masks: 0.018 apart after 20 steps, in one process too.)"""
    reference = local_run(MLP, tmp_path / "reference", [*DROPOUT_ARGS, "--checkpoint-every", "0"])
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", "1,0.5,0.25", "--quiet",
        "--", *DROPOUT_ARGS, "--recompute",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not exact" not in result.stdout + result.stderr
    assert max_param_diff(run, reference) < 1e-9


SEQ_FIRST = ROOT / "tests" / "dist" / "seq_first_script.py"


def test_dropout_in_a_sequence_first_model_is_keyed_by_sample(tmp_path):
    """nn.Dropout on (length, batch, features): the batch is found by the start-up probe
    (exact/layouts.py). Before it, the length (16, a multiple of every slice here) passed
    for heads folded into the batch: the masks followed the split, and nothing said so."""
    reference = local_run(SEQ_FIRST, tmp_path / "reference", [])
    run = tmp_path / "run"
    result = phalanx(
        "run", str(SEQ_FIRST), "--out", str(run), "--emulate", "1,0.5,0.5", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not exact" not in result.stdout + result.stderr
    assert max_param_diff(run, reference) < 1e-9
