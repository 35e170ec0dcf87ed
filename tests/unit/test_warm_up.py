"""A restarted replica warms up before it joins, and leaves no trace of it."""

from types import SimpleNamespace

import torch
from torch.utils.data import TensorDataset

from phalanx.data.feed import BatchFeed
from phalanx.data.sources import MapSource
from phalanx.runtime.compute import Workload, trainable_parameters
from phalanx.runtime.grad_buffer import GradBuffer
from phalanx.runtime.warm_up import warm_up_if_restarted, warm_up_samples
from phalanx.runtime.worker_config import WorkerConfig


def _work(max_microbatch=None) -> Workload:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(40, 5), torch.randn(40, 1))
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.BatchNorm1d(7), torch.nn.Linear(7, 1)
    )

    def loss_fn(m, batch):
        return torch.nn.functional.mse_loss(m(batch[0]), batch[1])

    feed = BatchFeed(MapSource(data, 40, 0), seed=0, max_microbatch=max_microbatch)
    return Workload(model, loss_fn, data, 40, 24, max_microbatch, torch.device("cpu"), 0, feed=feed)


def _worker(restarted: bool, fleet_size: int = 2) -> WorkerConfig:
    return WorkerConfig(
        replica="r1", index=1, lighthouse="", out_dir="", restarted=restarted,
        fleet_size=fleet_size,
    )  # fmt: skip


class _Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []

    def emit(self, kind: str, **fields: object) -> None:
        self.seen.append((kind, fields))


def _ctx(work: Workload) -> SimpleNamespace:
    return SimpleNamespace(work=work, group=None, name="r1", events=_Events())


def test_the_warm_up_leaves_the_model_its_gradients_and_the_rng_as_they_were():
    work = _work()
    params = trainable_parameters(work.model)
    buffer = GradBuffer(params, control_numel=4)
    buffer.zero_()
    before = [t.detach().clone() for t in work.model.state_dict().values()]
    grads = [p.grad for p in params]
    rng = torch.get_rng_state()
    ctx = _ctx(work)
    warm_up_if_restarted(ctx, _worker(True, fleet_size=3))
    after = list(work.model.state_dict().values())
    assert all(torch.equal(a, b) for a, b in zip(before, after))  # BatchNorm stats too
    assert [p.grad for p in params] == grads  # the same buffer views, untouched
    assert all(float(b.grads.abs().sum()) == 0.0 for b in buffer.buckets)
    assert torch.equal(torch.get_rng_state(), rng)
    assert ctx.events.seen[0][0] == "warm_up" and ctx.events.seen[0][1]["samples"] == 8


def test_only_a_restarted_replica_outside_a_group_warms_up():
    work = _work()
    for worker, group in ((None, None), (_worker(False), None),
                          (_worker(True), object())):  # fmt: skip
        ctx = _ctx(work)
        ctx.group = group
        warm_up_if_restarted(ctx, worker)
        assert ctx.events.seen == []


def test_it_warms_up_on_about_its_share_within_a_micro_batch():
    assert warm_up_samples(_work(), 4) == 6  # 24 / 4
    assert warm_up_samples(_work(max_microbatch=4), 2) == 4
    assert warm_up_samples(_work(), 100) == 1
