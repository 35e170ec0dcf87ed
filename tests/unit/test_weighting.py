"""The weighted slice gradients of any split sum to the global-batch gradient."""

import math

import torch
from torch.utils.data import TensorDataset

from phalanx.runtime.compute import Workload, slice_gradient, trainable_parameters
from phalanx.runtime.control import Control, ControlLayout
from phalanx.runtime.grad_buffer import GradBuffer


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


def _gradient(model, data, loss_fn, indices, micro, buffer):
    work = Workload(model, loss_fn, data, 64, 48, micro, torch.device("cpu"), 0)
    buffer.zero_()
    loss = slice_gradient(work, indices, 0)
    return torch.cat([b.grads.clone() for b in buffer.buckets]), loss


def test_uneven_split_and_microbatches_equal_whole_batch():
    data, model, loss_fn = _setup()
    buffer = GradBuffer(trainable_parameters(model), control_numel=4)
    indices = list(range(3, 51))
    whole, whole_loss = _gradient(model, data, loss_fn, indices, None, buffer)
    parts = [indices[:29], indices[29:41], indices[41:47], indices[47:]]
    results = [_gradient(model, data, loss_fn, part, 5, buffer) for part in parts]
    assert torch.allclose(whole, sum(g for g, _ in results), atol=1e-14, rtol=0)
    assert math.isclose(whole_loss, sum(loss for _, loss in results), abs_tol=1e-14)


def test_gradients_are_views_into_persistent_buckets():
    _, model, _ = _setup()
    params = trainable_parameters(model)
    buffer = GradBuffer(params, control_numel=10, bucket_bytes=64)  # several buckets
    assert len(buffer.buckets) > 1
    storage = {p.grad.data_ptr() for p in params}
    for param in params:
        param.grad.add_(1.0)
    assert all(float(b.grads.sum()) == b.grad_numel for b in buffer.buckets)
    params[0].grad = None  # user code cleared it: the next attach points it back
    buffer.attach()
    assert {p.grad.data_ptr() for p in params} == storage
    assert buffer.norm_sq() == sum(p.numel() for p in params)
    # The control block rides in the last bucket (float64 gradients): no extra collective.
    assert len(buffer.collectives()) == len(buffer.buckets)


def test_half_precision_gradients_get_a_float64_control_block():
    model = torch.nn.Linear(4, 3).half()
    buffer = GradBuffer(trainable_parameters(model), control_numel=5)
    assert buffer.control_separate and buffer.control.dtype == torch.float64
    assert len(buffer.collectives()) == len(buffer.buckets) + 1


def test_control_block_carries_named_fields():
    layout = ControlLayout(participants=3, fingerprint_width=2, buffer_numel=4)
    control = Control(torch.zeros(layout.numel, dtype=torch.float64), layout)
    control.put_loss(0.5)
    control.put("veto", 2, 1.0)
    control.put("throughput_sps", 1, 123.0)
    control.put_fingerprint(2, [7.0, 9.0])
    control.buffers_view().fill_(3.0)
    assert control.loss() == 0.5
    assert control.read("veto") == [0.0, 0.0, 1.0]
    assert control.read("throughput_sps") == [0.0, 123.0, 0.0]
    assert control.fingerprints() == [(0.0, 0.0), (0.0, 0.0), (7.0, 9.0)]
    assert float(control.tensor[-4:].sum()) == 12.0


def test_a_stop_asked_before_backward_leaves_no_gradient_and_arms_nothing():
    from torch.utils.data import default_collate

    from phalanx.data.feed import MicroBatch
    from phalanx.runtime.compute import ComputeStopped, batches_gradient

    data, model, loss_fn = _setup()
    buffer = GradBuffer(trainable_parameters(model), control_numel=4)
    work = Workload(model, loss_fn, data, 64, 48, 8, torch.device("cpu"), 0)
    batches = [
        MicroBatch(n, 8, default_collate([data[i] for i in range(n, n + 8)])) for n in (0, 8)
    ]
    asked: list[str] = []
    armed: list[bool] = []

    def stop_at_second_question() -> bool:
        asked.append("?")
        return len(asked) == 2  # before the first backward

    buffer.zero_()
    try:
        batches_gradient(work, batches, lambda: armed.append(True), stop=stop_at_second_question)
        raise AssertionError("not stopped")
    except ComputeStopped:
        pass
    assert all(float(b.grads.abs().sum()) == 0.0 for b in buffer.buckets)
    assert not armed
    # Never stopped: the same gradient as without the question.
    buffer.zero_()
    batches_gradient(work, batches, stop=lambda: False)
    with_question = torch.cat([b.grads.clone() for b in buffer.buckets])
    buffer.zero_()
    batches_gradient(work, batches)
    assert torch.equal(with_question, torch.cat([b.grads.clone() for b in buffer.buckets]))
