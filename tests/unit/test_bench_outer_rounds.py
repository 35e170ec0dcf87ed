"""bench/outer_rounds.py: steady windows over whole outer rounds, samples, blocked time."""

import pytest
from bench.outer_rounds import blocked_s, round_commits, samples_in, whole_rounds_window


def _step(replica, step, t, shares=(40, 24)):
    return {"kind": "step", "replica": replica, "step": step, "t": t, "shares": list(shares)}


def _round(replica, n, t):
    return {"kind": "outer_round", "replica": replica, "round": n, "t": t, "sites": []}


def _wait(replica, n, wait_s):
    return {"kind": "outer_wait", "replica": replica, "round": n, "wait_s": wait_s}


# Site A (two replicas): two steps a round; rounds commit at 10, 20 and 30 (r1 writes later).
SITE_A = [
    _step("a0", 0, 3.0), _step("a1", 0, 3.1), _step("a0", 1, 6.0), _step("a1", 1, 6.1),
    _round("a0", 0, 10.0), _round("a1", 0, 10.2), _wait("a0", 0, 4.0), _wait("a1", 0, 4.2),
    _step("a0", 2, 13.0), _step("a1", 2, 13.1), _step("a0", 3, 16.0), _step("a1", 3, 16.1),
    _round("a0", 1, 20.0), _round("a1", 1, 20.1), _wait("a0", 1, 3.0), _wait("a1", 1, 3.2),
    _step("a0", 4, 23.0), _step("a1", 4, 23.1), _step("a0", 5, 26.0), _step("a1", 5, 26.1),
    _round("a0", 2, 30.0), _round("a1", 2, 30.1), _wait("a0", 2, 2.0), _wait("a1", 2, 2.2),
]  # fmt: skip
# Site B (one replica): one step a round, its outer_round a little after site A's.
SITE_B = [
    _step("b0", 0, 9.0), _round("b0", 0, 10.5), _wait("b0", 0, 1.0),
    _step("b0", 1, 19.0), _round("b0", 1, 20.4), _wait("b0", 1, 1.0),
    _step("b0", 2, 29.0), _round("b0", 2, 30.3), _wait("b0", 2, 1.5),
]  # fmt: skip


def test_a_rounds_commit_is_its_first_outer_round_event_of_any_site():
    assert round_commits(SITE_A + SITE_B) == {0: 10.0, 1: 20.0, 2: 30.0}


def test_the_window_runs_from_the_warm_up_rounds_commit_to_the_last_commit():
    window = whole_rounds_window(SITE_A + SITE_B)
    assert (window.start_t, window.end_t, window.seconds) == (10.0, 30.0, 20.0)
    assert (window.first_round, window.last_round, window.rounds) == (1, 2, 2)


def test_samples_are_the_steps_committed_in_the_window_each_once():
    window = whole_rounds_window(SITE_A + SITE_B)
    assert samples_in(SITE_A, window.start_t, window.end_t) == 4 * 64  # steps 2-5
    assert samples_in(SITE_B, window.start_t, window.end_t) == 2 * 64  # steps 1-2


def test_blocked_time_sums_the_windows_rounds_mean_over_a_sites_replicas():
    window = whole_rounds_window(SITE_A + SITE_B)
    assert blocked_s(SITE_A, window) == pytest.approx(3.1 + 2.1)
    assert blocked_s(SITE_B, window) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="no outer_wait"):
        blocked_s([r for r in SITE_B if not (r["kind"] == "outer_wait" and r["round"] == 2)],
                  window)  # fmt: skip


def test_too_few_or_missing_rounds_are_refused():
    with pytest.raises(ValueError, match="leave none"):
        whole_rounds_window([r for r in SITE_A if r["kind"] != "outer_round" or r["round"] == 0])
    with pytest.raises(ValueError, match="consecutive"):
        whole_rounds_window([r for r in SITE_A if r.get("round") != 1])
