"""The weighted slice gradients of any split sum to the global-batch gradient."""

import torch
from torch.utils.data import TensorDataset

from phalanx.runtime.compute import FlatBuffer, accumulate_slice_gradient, trainable_parameters


def _setup():
    torch.manual_seed(0)
    data = TensorDataset(
        torch.randn(64, 5, dtype=torch.float64), torch.randn(64, 1, dtype=torch.float64)
    )
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1)
    ).double()

    def loss_fn(m, batch):
        return torch.nn.functional.mse_loss(m(batch[0]), batch[1])

    return data, model, loss_fn


def _flat(model, data, loss_fn, indices, micro):
    params = trainable_parameters(model)
    loss = accumulate_slice_gradient(
        model, loss_fn, data, indices, 48, micro, torch.device("cpu"), 0
    )
    buffer = FlatBuffer(params, 1)
    buffer.pack(loss, 0, False, 1.0)
    return buffer.tensor.clone()


def test_uneven_split_and_microbatches_equal_whole_batch():
    data, model, loss_fn = _setup()
    indices = list(range(3, 51))
    whole = _flat(model, data, loss_fn, indices, None)
    parts = [indices[:29], indices[29:41], indices[41:47], indices[47:]]
    summed = sum(_flat(model, data, loss_fn, part, 5) for part in parts)
    grad_len = sum(p.numel() for p in model.parameters())
    assert torch.allclose(whole[: grad_len + 1], summed[: grad_len + 1], atol=1e-14, rtol=0)


def test_flat_buffer_carries_loss_veto_and_throughput():
    _, model, _ = _setup()
    params = trainable_parameters(model)
    buffer = FlatBuffer(params, 3, fingerprint_width=2)
    buffer.pack(0.5, 2, True, 123.0, [7.0, 9.0])
    assert buffer.loss() == 0.5
    assert buffer.vetoes() == [False, False, True]
    assert buffer.throughputs() == [0.0, 0.0, 123.0]
    assert buffer.fingerprints() == [(0.0, 0.0), (0.0, 0.0), (7.0, 9.0)]
    assert buffer.finite()
    buffer.tensor[0] = float("nan")
    assert not buffer.finite()
