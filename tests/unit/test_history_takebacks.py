"""The committed history a reader of events.jsonl rebuilds: take-backs honoured (chaos bug 15)."""

from phalanx.observe.accounting import committed_history, committed_steps


def _step(step: int, ranges: list[list[int]], participants: list[str]) -> dict:
    return {"kind": "step", "step": step, "ranges": ranges, "participants": participants}


def test_a_rewind_takes_back_the_lost_commits_of_a_lone_host():
    events = [
        _step(0, [[0, 48]], ["h1"]),  # h1 alone; killed before anyone learnt step 0
        {"kind": "rewind", "step": 0, "fleet_step": 1, "lost_steps": [0]},
        *(_step(0, [[0, 16], [16, 32], [32, 48]], ["h0", "h1", "h2"]) for _ in range(3)),
        _step(1, [[48, 64], [64, 80], [80, 96]], ["h0", "h1", "h2"]),
    ]
    steps, disagreements, undos = committed_history(events)
    assert disagreements == 0 and undos["rewind"] == 1
    assert steps[0]["participants"] == ["h0", "h1", "h2"]
    assert sorted(committed_steps(events)) == [0, 1]


def test_without_a_take_back_a_second_history_is_a_disagreement():
    events = [_step(0, [[0, 48]], ["h1"]), _step(0, [[0, 24], [24, 48]], ["h0", "h1"])]
    steps, disagreements, _ = committed_history(events)
    assert disagreements == 1 and steps[0]["participants"] == ["h1"]


def test_a_tie_restore_takes_back_the_steps_after_its_checkpoint():
    events = [_step(s, [[s * 4, s * 4 + 4]], ["r0"]) for s in range(5)]
    events.append({"kind": "tie_restore", "restored_step": 3})
    events.append(_step(3, [[12, 16]], ["r0"]))
    steps, disagreements, undos = committed_history(events)
    assert sorted(steps) == [0, 1, 2, 3] and disagreements == 0 and undos["tie_restore"] == 1
