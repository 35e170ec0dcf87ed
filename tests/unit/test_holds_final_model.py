"""`Trainer.holds_final_model`: code after `fit()` knows whether its model is the result."""

import torch
from torch.utils.data import TensorDataset

import phalanx


def _trainer(tmp_path, steps: int) -> phalanx.Trainer:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
    return phalanx.Trainer(
        model=torch.nn.Linear(4, 1),
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
        dataset=data,
        loss_fn=lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]),
        global_batch_size=8,
        steps=steps,
        out_dir=tmp_path,
        checkpoint_every=2,
    )


def test_a_run_trained_to_the_end_holds_the_final_model(tmp_path):
    trainer = _trainer(tmp_path, steps=4)
    assert not trainer.holds_final_model  # nothing trained yet
    trainer.fit()
    assert trainer.holds_final_model


def test_a_process_whose_state_is_behind_the_last_step_does_not(tmp_path):
    # What a straggler holds when it leaves: a restored state short of the run's end.
    trainer = _trainer(tmp_path, steps=4)
    trainer.fit()
    longer = _trainer(tmp_path, steps=8)
    longer.state.fleet.step = 4
    assert not longer.holds_final_model
