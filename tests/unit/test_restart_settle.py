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
