"""A steady fleet computes before its quorum is confirmed; the first collective confirms it.

FleetSync's decisions only, on a stand-in for torchft's Manager: which calls it makes
(wait for the quorum, sum, apply a heal) and in which order. The fleets of
tests/dist (kills, restarts, joins, exactness against one process) run the real thing.
"""

import concurrent.futures
from types import SimpleNamespace

import pytest
import torch

from phalanx.runtime import sync_fleet
from phalanx.runtime.joiner_watch import JoinerWatch
from phalanx.runtime.sync_fleet import FleetSync


class FakeFuture:
    def __init__(self) -> None:
        self.answered = False

    def done(self) -> bool:
        return self.answered

    def exception(self, timeout: float | None = None) -> None:
        if not self.answered:  # (a real one would wait `timeout` first)
            raise concurrent.futures.TimeoutError()


class FakeManager:
    """What FleetSync calls on torchft's Manager, recorded."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._quorum_future: FakeFuture | None = None
        self._healing = False
        self._participating_replica_rank: int | None = None
        self._participating_replica_world_size = 0

    def start_quorum(self) -> None:
        self.calls.append("start_quorum")
        self._quorum_future = FakeFuture()

    def wait_quorum(self) -> None:
        self.calls.append("wait_quorum")
        assert self._quorum_future is not None
        self._quorum_future.answered = True

    def _apply_pending_state_dict(self) -> None:
        self.calls.append("heal")

    def allreduce(self, tensor: torch.Tensor, reduce_op: object) -> object:
        self.calls.append("allreduce")
        return SimpleNamespace(wait=lambda: True)

    def errored(self) -> None:
        return None


def _quorum(number: int, *names: str) -> SimpleNamespace:
    return SimpleNamespace(
        quorum_id=number,
        replica_ids=[f"{n}:uuid-{n}" for n in names],
        replica_rank=0,
        replica_world_size=len(names),
    )


def _steady_sync(
    monkeypatch: pytest.MonkeyPatch, fleet_size: int = 2, lighthouse: str = "unused"
) -> tuple[FleetSync, FakeManager]:
    """A replica that trained the last step in quorum 5 of r0, r1 and committed it."""
    monkeypatch.setattr(sync_fleet, "WatchedWork", lambda work, watch, fleet: work)
    sync = FleetSync.__new__(FleetSync)  # no torchft: the decisions only
    manager = FakeManager()
    last = _quorum(5, "r0", "r1")
    sync.name, sync.manager = "r0", manager
    sync._recorder = SimpleNamespace(last=last)
    sync._freeze_watch = SimpleNamespace(set_quorum=lambda ids: None)
    sync._early = sync._fresh_request = sync._speculating = sync._moved = False
    sync._abandoned, sync._attempt_works, sync._left_open = False, [], []
    sync._may_speculate, sync._last_committed = True, True
    sync._first_quorum, sync._restarted, sync._fleet_size = False, False, fleet_size
    sync._joiners = JoinerWatch(lighthouse)
    sync._settled_epoch, sync.quorum_id, sync._raw_quorum_id = None, 5, 5
    sync._last_quorum = (5, tuple(last.replica_ids))
    sync._last_members = {"r0", "r1"}
    sync._quorum_changed = False
    sync._guess, sync._lost_peers, sync._known_gone = None, False, set()
    sync._addresses = SimpleNamespace(learn=lambda ids: None, gone=lambda members: set())
    sync.prepare_next()  # right after the last commit
    return sync, manager


def _after_a_lost_peer(
    monkeypatch: pytest.MonkeyPatch, gone: set[str], fleet: tuple[str, ...] = ("r0", "r1", "r2")
) -> tuple[FleetSync, FakeManager]:
    """A replica of quorum 5 (`fleet`) whose last commit failed in a collective; the
    raw ids in `gone` refuse connections (their processes died)."""
    sync, manager = _steady_sync(monkeypatch, len(fleet))
    last = _quorum(5, *fleet)
    sync._recorder.last = last
    sync._last_quorum = (5, tuple(last.replica_ids))
    sync._last_members = set(fleet)
    sync._last_committed, sync._lost_peers = False, True
    probed: list[list[str]] = []
    learnt: list[list[str]] = []

    def gone_of(members: list[str]) -> set[str]:
        probed.append(list(members))
        return gone & set(members)

    sync._addresses = SimpleNamespace(learn=lambda ids: learnt.append(list(ids)), gone=gone_of)
    sync.probed, sync.learnt = probed, learnt  # type: ignore[attr-defined]
    return sync, manager


def test_the_same_quorum_is_confirmed_at_the_first_sum_not_before_compute(monkeypatch):
    sync, manager = _steady_sync(monkeypatch)
    assert sync.begin_step(speculate=True) == ["r0", "r1"]
    assert manager.calls == ["start_quorum"]  # nothing waited for: compute starts now
    sync.allreduce(torch.zeros(2))
    sync.allreduce(torch.zeros(2))
    assert manager.calls == ["start_quorum", "wait_quorum", "allreduce", "allreduce"]
    assert not sync.moved()
    # The next step may speculate again once this one committed and asked early.
    sync.prepare_next()
    assert sync.begin_step(speculate=True) == ["r0", "r1"]


def test_a_quorum_that_formed_otherwise_sums_nothing_and_the_step_begins_again(monkeypatch):
    sync, manager = _steady_sync(monkeypatch)
    assert sync.begin_step(speculate=True) == ["r0", "r1"]
    sync._recorder.last = _quorum(6, "r0", "r1", "r2")  # r2 joined meanwhile
    sync.allreduce(torch.zeros(2))  # the first bucket, inside backward
    sync.allreduce(torch.zeros(2))
    assert sync.moved()
    assert "allreduce" not in manager.calls  # no sum with the wrong members
    # The step begins again: the quorum already collected is taken as it is, at once
    # (no new request, no speculation on it).
    assert sync.begin_step(speculate=True) == ["r0", "r1", "r2"]
    assert manager.calls.count("start_quorum") == 1
    assert not sync.moved() and sync.quorum_changed()
    sync.allreduce(torch.zeros(2))
    assert manager.calls[-1] == "allreduce"


def test_a_heal_is_never_applied_while_the_speculative_backward_runs(monkeypatch):
    sync, manager = _steady_sync(monkeypatch)
    sync.begin_step(speculate=True)
    manager._healing = True  # the fleet went on without this replica: a state arrived
    sync.allreduce(torch.zeros(2))
    assert sync.moved() and "heal" not in manager.calls
    sync.begin_step(speculate=True)  # outside backward: now it is applied
    assert "heal" in manager.calls


def test_no_speculation_after_a_failed_commit_or_with_the_answer_already_here(monkeypatch):
    sync, manager = _steady_sync(monkeypatch)
    sync._last_committed = False  # a failed commit: the next quorum gets a new id
    sync.begin_step(speculate=True)
    assert manager.calls == ["start_quorum", "wait_quorum"]
    sync, manager = _steady_sync(monkeypatch)
    assert manager._quorum_future is not None
    manager._quorum_future.answered = True
    sync.begin_step(speculate=True)
    assert manager.calls == ["start_quorum", "wait_quorum"]
    sync, manager = _steady_sync(monkeypatch)
    sync.begin_step(speculate=False)  # the step says no (a layer with collectives, ...)
    assert manager.calls == ["start_quorum", "wait_quorum"]


def test_a_moved_quorum_stops_the_speculative_compute_as_soon_as_it_is_seen(monkeypatch):
    sync, manager = _steady_sync(monkeypatch)
    sync.begin_step(speculate=True)
    assert not sync.moved_already()  # no answer yet: compute goes on, nothing waited for
    assert manager.calls == ["start_quorum"]
    sync._recorder.last = _quorum(6, "r0", "r1", "r2")  # r2 joined
    assert manager._quorum_future is not None
    manager._quorum_future.answered = True
    assert sync.moved_already() and sync.moved()
    assert "allreduce" not in manager.calls and "heal" not in manager.calls
    assert sync.begin_step(speculate=True) == ["r0", "r1", "r2"]


def test_the_same_quorum_seen_early_is_confirmed_once(monkeypatch):
    sync, manager = _steady_sync(monkeypatch)
    sync.begin_step(speculate=True)
    assert manager._quorum_future is not None
    manager._quorum_future.answered = True
    assert not sync.moved_already()
    sync.allreduce(torch.zeros(2))
    assert manager.calls == ["start_quorum", "wait_quorum", "allreduce"]


def test_after_a_kill_the_retry_is_computed_on_the_survivors_while_the_lighthouse_decides(
    monkeypatch,
):
    sync, manager = _after_a_lost_peer(monkeypatch, {"r2:uuid-r2"})
    assert sync.begin_step(speculate=True) == ["r0", "r1"]
    assert manager.calls == ["start_quorum"]  # nothing waited for: compute starts now
    assert sync.unconfirmed() and sync.quorum_changed()
    assert sync.quorum_id == 5  # the last one's, until the new one is confirmed
    assert sync.probed == [["r1:uuid-r1", "r2:uuid-r2"]]  # every other member, not itself
    # The lighthouse gives up on r2 and forms the survivors' quorum, under a new id.
    sync._recorder.last = _quorum(6, "r0", "r1")
    sync.allreduce(torch.zeros(2))  # the late rate exchange: the first collective
    assert manager.calls == ["start_quorum", "wait_quorum", "allreduce"]
    assert not sync.moved() and not sync.unconfirmed()
    assert sync.quorum_id == 6 and sync.quorum_changed()
    assert sync._last_quorum == (6, ("r0:uuid-r0", "r1:uuid-r1"))
    assert sync._last_members == {"r0", "r1"}
    assert sync.learnt == [["r0:uuid-r0", "r1:uuid-r1"]]  # where the new members listen


def test_a_survivors_quorum_that_formed_otherwise_sums_nothing(monkeypatch):
    # The lighthouse kept r2 (the probe was wrong: a restart took its place, ...).
    sync, manager = _after_a_lost_peer(monkeypatch, {"r2:uuid-r2"})
    sync.begin_step(speculate=True)
    sync._recorder.last = _quorum(6, "r0", "r1", "r2")
    sync.allreduce(torch.zeros(2))
    assert sync.moved() and "allreduce" not in manager.calls
    assert sync.begin_step(speculate=True) == ["r0", "r1", "r2"]
    # A quorum of the survivors that brings this replica a heal is not speculated on either.
    sync, manager = _after_a_lost_peer(monkeypatch, {"r2:uuid-r2"})
    sync.begin_step(speculate=True)
    sync._recorder.last = _quorum(6, "r0", "r1")
    manager._healing = True
    sync.allreduce(torch.zeros(2))
    assert sync.moved() and "heal" not in manager.calls


def test_a_survivors_quorum_from_a_restarted_lighthouse_is_settled_first(monkeypatch):
    # The lighthouse restarted too (another incarnation in the id's upper bits) and formed
    # a quorum of the two survivors before r2's replacement could reconnect: not taken,
    # and asked again after the settle time (chaos bug 13), as without the guess.
    monkeypatch.setattr(sync_fleet, "RESTART_SETTLE_S", 0.0)
    sync, manager = _after_a_lost_peer(monkeypatch, {"r1:uuid-r1"})
    assert sync.begin_step(speculate=True) == ["r0", "r2"]
    sync._recorder.last = _quorum((7 << 32) | 1, "r0", "r2")
    sync.allreduce(torch.zeros(2))
    assert sync.moved() and "allreduce" not in manager.calls
    sync.begin_step(speculate=True)
    assert manager.calls.count("start_quorum") == 2  # asked again once settled


def test_a_speculative_step_that_returned_before_any_sum_leaves_its_request_to_collect(
    monkeypatch,
):
    # Held back (waiting for the fleet) after guessing: the request is still in flight,
    # and the next begin_step collects it instead of asking over it.
    sync, manager = _after_a_lost_peer(monkeypatch, {"r2:uuid-r2"})
    sync.begin_step(speculate=True)
    sync._recorder.last = _quorum(6, "r0", "r1")
    assert sync.begin_step(speculate=True) == ["r0", "r1"]
    assert manager.calls == ["start_quorum", "wait_quorum"]


def test_no_survivors_speculation_without_a_peer_gone_for_certain(monkeypatch):
    # Every peer answers (a timeout, a veto, a slow chip): wait for the quorum as before.
    sync, manager = _after_a_lost_peer(monkeypatch, set())
    assert sync.begin_step(speculate=True) == ["r0", "r1", "r2"]
    assert manager.calls == ["start_quorum", "wait_quorum"]
    # A failed commit without a failed collective (a veto) never probes.
    sync, manager = _after_a_lost_peer(monkeypatch, {"r2:uuid-r2"})
    sync._lost_peers = False
    sync.begin_step(speculate=True)
    assert manager.calls == ["start_quorum", "wait_quorum"] and sync.probed == []
    # Nor a step that may not speculate.
    sync, manager = _after_a_lost_peer(monkeypatch, {"r2:uuid-r2"})
    sync.begin_step(speculate=False)
    assert manager.calls == ["start_quorum", "wait_quorum"]


def test_a_peer_that_died_before_asking_moves_the_steady_step_onto_the_survivors(monkeypatch):
    # A steady step speculated on r0, r1, r2; r2 was killed before it asked for the
    # quorum, which the lighthouse then forms only after r2's heartbeat timeout.
    sync, manager = _after_a_lost_peer(monkeypatch, {"r2:uuid-r2"})
    sync._last_committed, sync._lost_peers = True, False
    assert sync.begin_step(speculate=True) == ["r0", "r1", "r2"]
    assert sync.probed == []  # a steady step probes nobody
    sync.allreduce(torch.zeros(2))  # its first sum: the answer is not here yet
    assert sync.moved() and manager.calls == ["start_quorum"]  # no sum, no wait
    # The step begins again at once on the survivors, the same request still in flight.
    assert sync.begin_step(speculate=True) == ["r0", "r1"]
    assert manager.calls == ["start_quorum"] and sync.unconfirmed()
    sync._recorder.last = _quorum(6, "r0", "r1")
    sync.allreduce(torch.zeros(2))
    assert not sync.moved() and sync.quorum_id == 6
    assert manager.calls == ["start_quorum", "wait_quorum", "allreduce"]
    # With everyone alive, the first sum waits for the answer as before.
    sync, manager = _after_a_lost_peer(monkeypatch, set())
    sync._last_committed, sync._lost_peers = True, False
    sync.begin_step(speculate=True)
    sync.allreduce(torch.zeros(2))
    assert not sync.moved() and manager.calls == ["start_quorum", "wait_quorum", "allreduce"]


def test_a_peer_the_freeze_watch_gave_up_on_is_left_out_without_probing(monkeypatch):
    sync, manager = _after_a_lost_peer(monkeypatch, set())
    sync._known_gone = {"r1:uuid-r1"}  # the lighthouse gave up on r1 during the failed attempt
    assert sync.begin_step(speculate=True) == ["r0", "r2"]
    assert sync.probed == [["r2:uuid-r2"]]
    assert manager.calls == ["start_quorum"]


def _heartbeat(address: str, replica_id: str) -> None:
    from datetime import timedelta

    from torchft._torchft import LighthouseClient

    LighthouseClient(address, timedelta(seconds=5)).heartbeat(replica_id)


def _answered(watch: JoinerWatch) -> None:
    """Wait for the lighthouse's answer to the watch's question (a busy host may take
    longer than the step waits for it: then the step speculates, as without the watch)."""
    assert watch._query is not None
    watch._query.join(30)


def test_a_restart_heard_by_the_lighthouse_is_waited_for_not_speculated_past(monkeypatch):
    from phalanx.launch.lighthouse import Lighthouse, LighthouseSettings

    server = Lighthouse(LighthouseSettings(heartbeat_timeout_ms=30_000))
    try:
        for name in ("r0", "r1"):
            _heartbeat(server.address, f"{name}:uuid-{name}")
        # r2 is away: the fleet of 3 is short, and asks whom the lighthouse hears.
        sync, manager = _steady_sync(monkeypatch, 3, server.address)
        _answered(sync._joiners)
        assert sync.begin_step(speculate=True) == ["r0", "r1"]
        assert manager.calls == ["start_quorum"]  # nobody else heard: speculate
        _heartbeat(server.address, "r2:uuid-new")  # r2's restart, before it asks to join
        sync, manager = _steady_sync(monkeypatch, 3, server.address)
        _answered(sync._joiners)
        sync.begin_step(speculate=True)
        assert manager.calls == ["start_quorum", "wait_quorum"]  # its join would move it
        # Heard for longer than a restart takes to ask: not waited for any more.
        watch = JoinerWatch(server.address, patience_s=3600.0)
        watch.ask()
        _answered(watch)
        members = ["r0:uuid-r0", "r1:uuid-r1"]
        assert watch.joining(members)
        watch._patience_s = 0.0  # as if an hour had passed
        assert not watch.joining(members)
    finally:
        server.shutdown()


def test_a_whole_fleet_never_asks_the_lighthouse_before_speculating(monkeypatch):
    asked: list[str] = []
    monkeypatch.setattr(JoinerWatch, "ask", lambda self: asked.append("ask"))
    monkeypatch.setattr(JoinerWatch, "joining", lambda self, members: asked.append("joining"))
    sync, manager = _steady_sync(monkeypatch)  # quorum r0, r1 of a fleet of 2
    assert sync.begin_step(speculate=True) == ["r0", "r1"]
    assert manager.calls == ["start_quorum"]  # speculated, without asking
    assert asked == []
