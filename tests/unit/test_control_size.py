"""The control block is sized by the quorum alone, so every participant sends the same bytes."""

import torch

from phalanx.runtime.control import ControlLayout
from phalanx.runtime.grad_buffer import GradBuffer


def _buffer() -> GradBuffer:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)).double()
    return GradBuffer(list(model.parameters()), control_numel=0)


def _sent_numel(buffer: GradBuffer) -> int:
    return sum(bucket.flat.numel() for bucket in buffer.buckets) + (
        buffer.control.numel() if buffer.control_separate else 0
    )


def test_a_replica_that_saw_more_members_sends_what_a_newcomer_sends():
    veteran, newcomer = _buffer(), _buffer()
    veteran.ensure_control(ControlLayout(4, 16, 0).numel)  # it trained in a quorum of four
    for buffer in (veteran, newcomer):
        buffer.ensure_control(ControlLayout(3, 16, 0).numel)  # both now in a quorum of three
    assert _sent_numel(veteran) == _sent_numel(newcomer)
    assert veteran.control.numel() == ControlLayout(3, 16, 0).numel


def test_gradients_stay_attached_after_a_resize():
    buffer = _buffer()
    buffer.ensure_control(ControlLayout(4, 16, 0).numel)
    buffer.ensure_control(ControlLayout(2, 16, 0).numel)
    last = buffer.buckets[-1]
    for param, offset in zip(last.params, last.offsets):
        assert param.grad.data_ptr() == last.flat[offset:].data_ptr()
