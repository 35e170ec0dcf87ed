"""SIGTERM before the first step (restoring, warming up) still leaves with 75, not -15."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from phalanx import Trainer
    import phalanx.runtime.trainer as trainer

    restore = trainer.restore_newest

    def restore_then_sigterm(*args, **kwargs):  # the scheduler's signal while restoring
        restore(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)

    trainer.restore_newest = restore_then_sigterm
    data = [(torch.randn(4), torch.randn(1)) for _ in range(16)]
    Trainer(
        torch.nn.Linear(4, 1), lambda p: torch.optim.SGD(p, lr=0.1), data,
        lambda model, batch: torch.nn.functional.mse_loss(model(batch[0]), batch[1]),
        global_batch_size=8, steps=5, out_dir=sys.argv[1],
    ).fit()
    print("trained on", flush=True)
    """
)


def test_a_sigterm_while_restoring_leaves_with_75_at_the_first_boundary(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run")],
        capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert done.returncode == 75, (done.returncode, done.stdout, done.stderr)
    assert "pre-empted (SIGTERM) after step 0" in done.stdout, done.stdout
    assert "trained on" not in done.stdout and "Traceback" not in done.stderr
