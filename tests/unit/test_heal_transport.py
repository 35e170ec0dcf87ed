"""Healing fetches a peer's state without unpickling arbitrary objects."""

from __future__ import annotations

import pickle
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from torchft.checkpointing import HTTPTransport

from phalanx.runtime.heal_transport import SafeHTTPTransport
from phalanx.runtime.state import FleetState, TrainState

pytestmark = [
    pytest.mark.timeout(60),
    # torch's streaming load builds tensors on the read-only receive buffer (and warns);
    # SafeHTTPTransport copies them out right after.
    pytest.mark.filterwarnings("ignore:The given buffer is not writable"),
]
TIMEOUT = timedelta(seconds=10)


def _state(seed: int) -> TrainState:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3).double()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    model(torch.randn(2, 4, dtype=torch.float64)).sum().backward()
    optimizer.step()
    scheduler.step()
    fleet = FleetState(7, {"r0": 3.5}, {"r0": 8}, timings={"r0": [[8.0, 0.1]]})
    return TrainState(model, optimizer, scheduler, fleet)


def _send_and_fetch(sender: HTTPTransport, receiver: HTTPTransport, state: object) -> object:
    try:
        sender.send_checkpoint([1], step=5, state_dict=state, timeout=TIMEOUT)
        return receiver.recv_checkpoint(0, sender.metadata(), step=5, timeout=TIMEOUT)
    finally:
        sender.shutdown()
        receiver.shutdown()


def test_a_replicas_whole_state_heals_through_the_restricted_unpickler():
    # What torchft's Manager serves: our TrainState.state_dict() plus its own counters.
    source = _state(0)
    served = {
        "user": {"default": source.state_dict()},
        "torchft": {"step": 7, "batches_committed": 14},
    }
    fetched = _send_and_fetch(SafeHTTPTransport(TIMEOUT), SafeHTTPTransport(TIMEOUT), served)
    assert fetched["torchft"] == {"step": 7, "batches_committed": 14}
    target = _state(1)
    target.load_state_dict(fetched["user"]["default"])
    assert all(
        torch.equal(a, b) for a, b in zip(source.model.parameters(), target.model.parameters())
    )
    moments = [s["exp_avg"] for s in target.optimizer.state_dict()["state"].values()]
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            [s["exp_avg"] for s in source.optimizer.state_dict()["state"].values()], moments
        )
    )
    assert target.fleet == source.fleet
    assert target.scheduler.state_dict() == source.scheduler.state_dict()
    target.optimizer.step()  # its state is its own, writable memory


class _Payload:
    """What a rogue peer could serve: unpickling it calls Path.touch(marker)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_peer_serving_a_pickle_payload_is_refused_and_the_payload_does_not_run(tmp_path):
    marker = tmp_path / "payload-ran"
    with pytest.raises(pickle.UnpicklingError, match="Unsupported global"):
        _send_and_fetch(
            HTTPTransport(TIMEOUT, 0), SafeHTTPTransport(TIMEOUT), {"x": _Payload(marker)}
        )
    assert not marker.exists()
    # torchft's own transport runs it: the reason this module exists.
    _send_and_fetch(HTTPTransport(TIMEOUT, 0), HTTPTransport(TIMEOUT, 0), {"x": _Payload(marker)})
    assert marker.exists()


def test_chunked_mode_is_refused():
    with pytest.raises(ValueError, match="unchunked"):
        SafeHTTPTransport(TIMEOUT, num_chunks=2)


def test_the_fleet_heals_through_the_safe_transport():
    from phalanx.runtime.advertise import checkpoint_transport

    transport = checkpoint_transport("127.0.0.1", TIMEOUT)  # what FleetSync gives torchft
    try:
        assert isinstance(transport, SafeHTTPTransport)
        assert transport.metadata().startswith("http://127.0.0.1:")
    finally:
        transport.shutdown()
