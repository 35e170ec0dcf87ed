"""Mixed precision: autocast per replica, one loss scale for the fleet (runtime/precision.py)."""

import torch
from torch.utils.data import TensorDataset

from phalanx.runtime.compute import Workload, slice_gradient, trainable_parameters
from phalanx.runtime.precision import (
    GROWTH_INTERVAL,
    INITIAL_SCALE,
    Precision,
    after_good_step,
    after_overflow,
    initial_scale,
)


def test_the_scale_halves_on_overflow_and_doubles_after_a_quiet_interval():
    assert initial_scale(Precision("fp16-mixed")) == INITIAL_SCALE
    assert initial_scale(Precision("bf16-mixed")) == 1.0
    assert after_overflow(1024.0) == 512.0
    scale, good = 512.0, 0
    for _ in range(GROWTH_INTERVAL - 1):
        scale, good = after_good_step(scale, good)
    assert scale == 512.0
    assert after_good_step(scale, good) == (1024.0, 0)


def test_a_scaled_gradient_is_the_scale_times_the_unscaled_one():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    model = torch.nn.Linear(4, 1)

    def loss_fn(m, batch):
        return torch.nn.functional.mse_loss(m(batch[0]), batch[1])

    def gradient(precision: str, scale: float) -> torch.Tensor:
        for p in trainable_parameters(model):
            p.grad = None
        work = Workload(
            model, loss_fn, data, 16, 16, None, torch.device("cpu"), 0, Precision(precision)
        )
        slice_gradient(work, list(range(16)), 0, loss_scale=scale)
        return torch.cat([p.grad.reshape(-1) for p in trainable_parameters(model)])

    plain = gradient("32", 1.0)
    assert torch.allclose(gradient("32", 1024.0), plain * 1024)
    bf16 = gradient("bf16-mixed", 1.0)  # autocast on the CPU: close, not equal
    assert torch.allclose(bf16, plain, rtol=0.05, atol=1e-2) and not torch.equal(bf16, plain)


def test_the_loss_scale_travels_in_heals_and_checkpoints(tmp_path) -> None:
    from phalanx.runtime.checkpoint import load_checkpoint_into, save_checkpoint
    from phalanx.runtime.state import TrainState

    def fresh() -> TrainState:
        model = torch.nn.Linear(2, 1)
        return TrainState(
            model=model, optimizer=torch.optim.SGD(model.parameters()), scheduler=None
        )

    source = fresh()
    source.fleet.loss_scale, source.fleet.scale_good_steps, source.fleet.step = 512.0, 17, 4
    healed = fresh()
    healed.load_state_dict(source.state_dict())  # what a heal hands over
    assert (healed.fleet.loss_scale, healed.fleet.scale_good_steps) == (512.0, 17)
    resumed = fresh()
    load_checkpoint_into(resumed, save_checkpoint(source, tmp_path))  # what --resume reads
    assert (resumed.fleet.loss_scale, resumed.fleet.scale_good_steps) == (512.0, 17)
