"""Chaos bug 13: the first quorum of a restarted lighthouse that lost live members is asked again."""

from types import SimpleNamespace

from phalanx.runtime.sync_fleet import FleetSync


def _sync(last_quorum_id: int | None, last_members: set[str]) -> FleetSync:
    sync = FleetSync.__new__(FleetSync)  # the decision only: no torchft Manager needed
    sync.quorum_id, sync._last_members, sync._settled_epoch = last_quorum_id, last_members, None
    return sync


def _quorum(epoch: int, number: int, *names: str) -> SimpleNamespace:
    return SimpleNamespace(
        quorum_id=(epoch << 32) | number, replica_ids=[f"{n}:uuid-{n}" for n in names]
    )


def test_a_restarted_lighthouse_that_lost_members_is_asked_once_more():
    sync = _sync((7 << 32) | 40, {"r0", "r1", "r2"})
    first = _quorum(8, 1, "r0")  # schedule 134: r0 alone, r2 alive but not yet heard
    assert sync._shrunk_by_a_restart(first)
    # The quorum asked for after the settle time is taken, whoever is in it.
    assert not sync._shrunk_by_a_restart(_quorum(8, 2, "r0"))


def test_same_lighthouse_grown_quorum_or_first_quorum_train_at_once():
    assert not _sync(None, set())._shrunk_by_a_restart(_quorum(8, 1, "r0"))
    same = _sync((7 << 32) | 40, {"r0", "r1", "r2"})
    assert not same._shrunk_by_a_restart(_quorum(7, 41, "r0"))  # a crash: no restart
    grown = _sync((7 << 32) | 40, {"r0", "r2"})
    assert not grown._shrunk_by_a_restart(_quorum(8, 1, "r0", "r1", "r2"))


def _restarted(restarted: bool, fleet_size: int) -> FleetSync:
    sync = _sync(None, set())
    sync._first_quorum, sync._restarted, sync._fleet_size = True, restarted, fleet_size
    return sync


def test_a_restarted_replica_alone_in_its_first_quorum_asks_once_more():
    # Chaos seed 2, schedule 9: r2 restarted at step 0 as the lighthouse restarted, got
    # a quorum of itself while its peers (at step 7) reconnected, and trained step 0 alone.
    sync = _restarted(True, fleet_size=4)
    assert sync._restarted_alone(_quorum(9, 1, "r2"))
    assert not sync._restarted_alone(_quorum(9, 2, "r2"))  # once: then it takes what it gets


def test_a_first_launch_or_a_full_first_quorum_trains_at_once():
    assert not _restarted(False, fleet_size=4)._restarted_alone(_quorum(1, 1, "r0"))
    assert not _restarted(True, fleet_size=4)._restarted_alone(
        _quorum(1, 5, "r0", "r1", "r2", "r3")
    )
