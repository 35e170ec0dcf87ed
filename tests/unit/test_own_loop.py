"""phalanx.prepare: the user's own loop drives the same engine as Trainer, bit for bit."""

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

import phalanx


class Noisy(torch.nn.Module):
    """Dropout and BatchNorm: both need the sample keys and the exact path in the user's thread."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
            torch.nn.Dropout(0.3), torch.nn.Linear(16, 1),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)


def _parts(precision="32"):
    torch.manual_seed(0)
    dtype = torch.float32 if precision != "32" else torch.float64
    data = TensorDataset(torch.randn(40, 6, dtype=dtype), torch.randn(40, 1, dtype=dtype))
    model = Noisy().to(dtype)
    options = dict(
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2), dataset=data, global_batch_size=8,
        steps=6, checkpoint_every=None, precision=precision, max_microbatch=None,
    )  # fmt: skip
    return model, options


def _loss(model, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x).float(), y.float())


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_the_own_loop_equals_the_trainer(tmp_path, precision):
    model, options = _parts(precision)
    phalanx.Trainer(model, loss_fn=_loss, out_dir=tmp_path / "trainer", **options).fit()
    reference = load_file(tmp_path / "trainer" / "model.safetensors")

    model, options = _parts(precision)
    loop = phalanx.prepare(model, out_dir=tmp_path / "own", **options)
    forwards = 0
    for batch in loop:
        loop.backward(_loss(model, batch))
        forwards += 1
    own = load_file(tmp_path / "own" / "model.safetensors")
    assert all(torch.equal(reference[k], own[k]) for k in reference)
    assert loop.summary["steps"] == 6 and forwards >= 6


def test_a_loop_left_early_stops_the_engine(tmp_path):
    model, options = _parts()
    loop = phalanx.prepare(model, out_dir=tmp_path, **options)
    for batch in loop:
        loop.backward(_loss(model, batch))
        if loop.step == 2:
            break
    assert not any(t.name == "phalanx-engine" and t.is_alive() for t in threading.enumerate())
    assert loop.summary is None  # the run did not finish, and says so


def test_misuse_is_one_clear_error(tmp_path):
    model, options = _parts()
    with pytest.raises(phalanx.UsageError, match="loss_fn"):
        phalanx.prepare(model, loss_fn=_loss, out_dir=tmp_path, **options)
    loop = phalanx.prepare(model, out_dir=tmp_path, **options)
    with pytest.raises(phalanx.UsageError, match="without a batch"):
        loop.backward(torch.tensor(1.0))
    with pytest.raises(phalanx.UsageError, match=r"did not call loop\.backward"):
        for _batch in loop:
            pass
    # The engine was waiting for that loss: it is told to unwind before the error is
    # raised (it held the error back for its 60 s join timeout before).
    assert not any(t.name == "phalanx-engine" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(phalanx.UsageError, match="one-element tensor"):
        loop2 = phalanx.prepare(model, out_dir=tmp_path / "b", **options)
        for _batch in loop2:
            loop2.backward(torch.zeros(3))


@pytest.mark.timeout(180)
def test_sigterm_reaches_the_engine_and_exits_with_the_requeue_code(tmp_path):
    script = textwrap.dedent(
        f"""
        import torch, phalanx
        from torch.utils.data import TensorDataset
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
        loop = phalanx.prepare(model, optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                               dataset=data, global_batch_size=8, steps=10**6,
                               out_dir={str(tmp_path)!r}, checkpoint_every=None)
        for x, y in loop:
            loop.backward(torch.nn.functional.mse_loss(model(x), y))
            if loop.step == 3:
                print("training", flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "training"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, out + err
    assert "Traceback" not in err
