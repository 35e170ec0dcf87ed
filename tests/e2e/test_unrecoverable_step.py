"""A step that fails the guard on every replica stops the run with a message, not a loop."""

import textwrap

import pytest

from tests.fleet_helpers import events, phalanx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SCRIPT = textwrap.dedent(
    """
    import torch
    from torch.utils.data import TensorDataset
    import phalanx

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    x[5] = float("nan")  # one poisoned sample: whoever computes it gets a NaN gradient
    model = torch.nn.Linear(4, 1)
    trainer = phalanx.Trainer(
        model=model, optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
        dataset=TensorDataset(x, torch.randn(64, 1)),
        loss_fn=lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]),
        global_batch_size=64, steps=3, out_dir="unused", checkpoint_every=None,
    )
    trainer.fit()
    """
)


def test_poisoned_sample_stops_the_run_with_one_clear_message(tmp_path):
    script = tmp_path / "poisoned.py"
    script.write_text(SCRIPT)
    run = tmp_path / "run"
    result = phalanx(
        "run", str(script), "--out", str(run), "--emulate", "1x2", "--quiet", "--timeout-s", "3"
    )
    assert result.returncode == 1
    assert "data or model problem" in result.stderr
    assert "Traceback" not in result.stderr
    assert any(e["kind"] == "unrecoverable" for e in events(run))
    assert not any(e["kind"] == "quarantine" for e in events(run))  # no chip is blamed
