"""The start barrier: it waits for every replica, and stops waiting once signalled."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from torch.distributed import TCPStore

from phalanx.runtime.setup import start_barrier
from phalanx.runtime.worker_config import WorkerConfig

pytestmark = pytest.mark.timeout(60)


def _master() -> TCPStore:
    return TCPStore("127.0.0.1", 0, is_master=True, timeout=timedelta(seconds=30))


def _worker(store: TCPStore, fleet_size: int) -> WorkerConfig:
    return WorkerConfig(
        replica="r0", index=0, lighthouse="127.0.0.1:1", out_dir=".",
        start_barrier=f"127.0.0.1:{store.port}", fleet_size=fleet_size,
    )  # fmt: skip


def test_a_pre_empted_replica_stops_waiting_for_a_peer_that_never_comes() -> None:
    store = _master()
    asked: list[int] = []

    def given_up() -> bool:  # signalled after the barrier has looked twice
        asked.append(1)
        return len(asked) > 2

    start_barrier(_worker(store, fleet_size=2), given_up)  # the peer never arrives
    assert len(asked) == 3
    assert int(store.add("ready", 0)) == 1  # it did announce itself


def test_it_ends_when_the_last_replica_arrives() -> None:
    store = _master()
    done = threading.Event()

    def wait() -> None:
        start_barrier(_worker(store, fleet_size=2))
        done.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    assert not done.wait(0.3)  # alone, it waits
    start_barrier(_worker(store, fleet_size=2))  # the second replica comes: both pass
    assert done.wait(30)
    assert int(store.add("ready", 0)) == 2


def test_a_restarted_replica_does_not_wait() -> None:
    store = _master()
    worker = _worker(store, fleet_size=2)
    worker.restarted = True
    start_barrier(worker, lambda: False)
    assert int(store.add("ready", 0)) == 0
