"""Healing streams a peer's state tensor by tensor, without pickle, into one copy."""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
import torch

from phalanx.runtime.heal_transport import StreamingStateTransport, read_state, write_state
from phalanx.runtime.state import FleetState, TrainState

pytestmark = [pytest.mark.timeout(60)]
TIMEOUT = timedelta(seconds=10)


def _state(seed: int) -> TrainState:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).double()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    model(torch.randn(5, 4, dtype=torch.float64)).sum().backward()
    optimizer.step()
    scheduler.step()
    fleet = FleetState(7, {"r0": 3.5}, {"r0": 8}, timings={"r0": [[8.0, 0.1]]}, grad_norms=[1.5])
    return TrainState(model, optimizer, scheduler, fleet)


def _served(state: TrainState) -> dict:
    # What torchft's Manager serves: our TrainState.state_dict() plus its own counters.
    return {
        "user": {"default": state.state_dict()},
        "torchft": {"step": 7, "batches_committed": 14},
    }


def test_a_replicas_whole_state_heals_over_http():
    source = _state(0)
    sender = StreamingStateTransport("127.0.0.1", timedelta(seconds=1))
    receiver = StreamingStateTransport("127.0.0.1", TIMEOUT)
    try:
        sender.send_checkpoint([1], step=5, state_dict=_served(source), timeout=TIMEOUT)
        fetched = receiver.recv_checkpoint(0, sender.metadata(), step=5, timeout=TIMEOUT)
        with pytest.raises(Exception, match="409"):  # only the step being served
            receiver.recv_checkpoint(0, sender.metadata(), step=6, timeout=TIMEOUT)
        sender.disallow_checkpoint()
        with pytest.raises(Exception, match="409"):  # nothing outside the window
            receiver.recv_checkpoint(0, sender.metadata(), step=5, timeout=TIMEOUT)
    finally:
        sender.shutdown()
        receiver.shutdown()
    assert fetched["torchft"] == {"step": 7, "batches_committed": 14}
    target = _state(1)
    target.load_state_dict(fetched["user"]["default"])
    for a, b in zip(source.model.state_dict().values(), target.model.state_dict().values()):
        assert torch.equal(a, b)  # parameters and buffers (running statistics)
    for a, b in zip(source.optimizer.state.values(), target.optimizer.state.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["step"], b["step"])
    assert target.optimizer.param_groups[0]["betas"] == (0.9, 0.999)  # tuples stay tuples
    assert target.fleet == source.fleet
    assert target.scheduler.state_dict() == source.scheduler.state_dict()
    target.optimizer.step()  # its state is its own, writable memory


def test_the_state_is_read_into_one_tensor_each_and_nothing_is_unpickled():
    stream = io.BytesIO()
    write_state({"w": torch.arange(6, dtype=torch.bfloat16).view(2, 3), "n": (1, None)}, stream)
    stream.seek(0)
    state = read_state(stream)
    assert state["w"].dtype == torch.bfloat16 and state["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert state["n"] == (1, None)
    with pytest.raises(TypeError, match="plain data only"):
        write_state({"x": object()}, io.BytesIO())


def test_a_transfer_cut_short_raises_and_returns_nothing():
    stream = io.BytesIO()
    write_state({"w": torch.ones(1000)}, stream)
    cut = io.BytesIO(stream.getvalue()[:-100])
    with pytest.raises(ConnectionError, match="ended after"):
        read_state(cut)


def test_closing_the_window_waits_for_a_transfer_in_progress():
    sender = StreamingStateTransport("127.0.0.1", TIMEOUT)
    try:
        sender.send_checkpoint([1], step=1, state_dict={"a": torch.ones(10)}, timeout=TIMEOUT)
        assert sender._window.enter(1)  # a healing peer is reading
        closed = threading.Event()
        closer = threading.Thread(target=lambda: (sender.disallow_checkpoint(), closed.set()))
        closer.start()
        closer.join(timeout=0.2)
        assert not closed.is_set()  # the commit vote waits while the peer still reads
        sender._window.leave()
        closer.join(timeout=10)
        assert closed.is_set()
        assert not sender._window.enter(1)  # and nothing is served after
    finally:
        sender.shutdown()


def test_a_request_that_arrives_before_the_state_is_staged_waits_for_it():
    # The healing peer learns of the quorum as early as the source, whose quorum thread
    # still has to stage the state: the request must wait, not be refused.
    sender = StreamingStateTransport("127.0.0.1", TIMEOUT)
    receiver = StreamingStateTransport("127.0.0.1", TIMEOUT)
    fetched: dict = {}
    try:
        fetch = threading.Thread(
            target=lambda: fetched.update(
                state=receiver.recv_checkpoint(0, sender.metadata(), step=3, timeout=TIMEOUT)
            )
        )
        fetch.start()
        fetch.join(timeout=0.3)  # it is waiting for the window
        sender.send_checkpoint([1], step=3, state_dict={"w": torch.ones(4)}, timeout=TIMEOUT)
        fetch.join(timeout=10)
        assert torch.equal(fetched["state"]["w"], torch.ones(4))
    finally:
        sender.shutdown()
        receiver.shutdown()
