"""An emulated chip's gradient bucket leaves when the chip would have made it.

The host computes the whole backward at once and then sleeps out the chip's
time; without pacing, the early buckets would travel during time the emulated
chip is still computing them (the DDP contender in bench/ paces its buckets).
"""

from __future__ import annotations

import threading

import torch

from phalanx.emulate.pacer import ComputePacer
from phalanx.runtime.grad_buffer import GradBuffer
from phalanx.runtime.reduction import Reduction
from phalanx.runtime.sync import DoneWork


class RecordingSync:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def allreduce(self, tensor: torch.Tensor) -> DoneWork:
        self.log.append("send")
        return DoneWork()


def _rig(log: list[str], speed: float | None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(32, 32) for _ in range(4)])
    params = list(model.parameters())
    # Buckets of one layer each (32x32 + 32 floats): three leave during backward.
    buffer = GradBuffer(params, control_numel=0, bucket_bytes=4 * (32 * 32 + 32))
    reduction = Reduction(buffer, RecordingSync(log))  # type: ignore[arg-type]
    pacer = ComputePacer(speed)
    pace = pacer.pace_so_far

    def paced() -> None:
        log.append("pace")
        pace()

    reduction.before_launch = paced
    return model, buffer, reduction, pacer


def _backward(model, reduction, pacer, log):
    reduction.start()
    pacer.begin(units=8)
    reduction.arm()
    model(torch.randn(8, 32)).sum().backward()
    pacer.end()


def test_each_early_bucket_is_paced_before_it_leaves():
    log: list[str] = []
    model, buffer, reduction, pacer = _rig(log, speed=0.5)
    assert len(buffer.buckets) == 4
    _backward(model, reduction, pacer, log)
    assert log == ["pace", "send"] * 3  # the last bucket waits for the verdict
    # Each pacing point is its own piece of work for the pacer's smoothing.
    assert sorted(pacer._cpu_history) == [0, 1, 2, 3]
    assert all([units for units, _ in runs] == [8] for runs in pacer._cpu_history.values())


def test_no_pacing_from_another_thread_or_on_a_real_chip():
    log: list[str] = []
    model, _buffer, reduction, pacer = _rig(log, speed=0.5)
    pacer.begin(units=8)
    reduction.start()
    reduction.arm()
    # A user's own loop runs backward on its thread: that thread's CPU clock is not this
    # phase's, so nothing is paced there (and nothing sleeps for a wrong time).
    worker = threading.Thread(target=lambda: model(torch.randn(8, 32)).sum().backward())
    worker.start()
    worker.join()
    assert log == ["pace", "send"] * 3 and pacer._cpu_history == {}

    log.clear()
    model, _buffer, reduction, pacer = _rig(log, speed=None)  # a real device
    _backward(model, reduction, pacer, log)
    assert log == ["pace", "send"] * 3 and pacer._cpu_history == {}
