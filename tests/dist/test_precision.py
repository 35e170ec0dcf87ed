"""Mixed precision on a fleet: one loss scale, halved everywhere on an overflow (issue 16)."""

import textwrap

import pytest

from tests.fleet_helpers import events, independent_data_check, phalanx, summary

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]

# Targets of order 1e3: at the initial scale of 2^16 the float16 gradients overflow.
SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from torch.utils.data import TensorDataset
    import phalanx

    torch.manual_seed(0)
    x = torch.randn(256, 16)
    y = x[:, :1] * 1000.0
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    trainer = phalanx.Trainer(
        model=model, optimizer=lambda p: torch.optim.SGD(p, lr=1e-6),
        dataset=TensorDataset(x, y),
        loss_fn=lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]),
        global_batch_size=32, steps=20, out_dir="unused", checkpoint_every=None,
        precision=sys.argv[1],
    )
    trainer.fit()
    """
)


def test_fp16_overflow_halves_the_scale_on_every_replica_and_keeps_every_sample(tmp_path):
    script = tmp_path / "scaled.py"
    script.write_text(SCRIPT)
    run = tmp_path / "run"
    result = phalanx(
        "run", str(script), "--out", str(run), "--emulate", "1,0.5", "--quiet",
        "--timeout-s", "5", "--", "fp16-mixed",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [e for e in events(run) if e["kind"] == "step"]
    scales = {e["step"]: e["loss_scale"] for e in steps}
    assert scales[0] < 2.0**16  # the first step overflowed and was recomputed at once
    # Every replica applied every step with the same scale.
    for e in steps:
        assert e["loss_scale"] == scales[e["step"]]
    assert summary(run)["steps"] == 20
    assert independent_data_check(run, num_samples=256) == (0, 0)  # no batch was skipped
    assert not any(e["kind"] in ("sdc", "quarantine") for e in events(run))


def test_bf16_mixed_trains_and_replicas_agree(tmp_path):
    script = tmp_path / "bf16.py"
    script.write_text(SCRIPT.replace("* 1000.0", "* 1.0").replace("1e-6", "1e-2"))
    run = tmp_path / "run"
    result = phalanx(
        "run", str(script), "--out", str(run), "--emulate", "1,0.5", "--quiet",
        "--timeout-s", "5", "--", "bf16-mixed",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    losses = [e["loss"] for e in events(run) if e["kind"] == "step" and e["replica"] == "r0"]
    assert losses[-1] < losses[0]
    assert not any(e["kind"] == "sdc" for e in events(run))  # fingerprints agreed every step
