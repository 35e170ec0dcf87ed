"""A Trainer on a stream of unknown length: epochs learnt by reading, resumable, exact."""

import torch
from safetensors.torch import load_file
from torch.utils.data import IterableDataset

import phalanx


class Pairs(IterableDataset):
    """17 (x, y) pairs per pass, optionally with a len(); the order is the stream's own."""

    def __init__(self, with_len: bool) -> None:
        self.with_len = with_len

    def __iter__(self):
        generator = torch.Generator().manual_seed(5)
        for _ in range(17):
            x = torch.randn(4, generator=generator, dtype=torch.float64)
            yield x, x.sum(0, keepdim=True)

    def __len__(self) -> int:
        if not self.with_len:
            raise TypeError("a stream of unknown length")
        return 17


def _train(out, with_len: bool, steps: int, workers: int = 0):
    torch.manual_seed(0)
    trainer = phalanx.Trainer(
        model=torch.nn.Linear(4, 1).double(),
        optimizer=lambda p: torch.optim.SGD(p, lr=0.05),
        dataset=Pairs(with_len),
        loss_fn=lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]),
        global_batch_size=5,
        steps=steps,
        out_dir=out,
        checkpoint_every=3,
        loader_workers=workers,
    )
    return trainer.fit()


def test_unknown_and_known_length_streams_train_alike_across_epochs(tmp_path):
    unknown = _train(tmp_path / "unknown", with_len=False, steps=9)  # 45 samples: 2.6 epochs
    known = _train(tmp_path / "known", with_len=True, steps=9, workers=1)
    a = load_file(tmp_path / "unknown" / "model.safetensors")
    b = load_file(tmp_path / "known" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert unknown["data"]["duplicates"] == unknown["data"]["missing"] == 0
    assert known["data"]["epochs_completed"] == 2 and known["data"]["missing"] == 0


def test_a_resumed_stream_continues_at_its_position(tmp_path):
    whole = _train(tmp_path / "whole", with_len=False, steps=8)
    _train(tmp_path / "resumed", with_len=False, steps=5)
    resumed = _train(
        tmp_path / "resumed", with_len=False, steps=8
    )  # goes on from its newest checkpoint
    assert resumed["steps"] == whole["steps"] == 8
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
