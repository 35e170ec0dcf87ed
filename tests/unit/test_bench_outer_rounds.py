"""bench/outer_rounds.py: steady windows over whole rounds, blocked time, the exchange timeout."""

import pytest
from bench.outer_rounds import blocked_s, exchange_timeout_s, whole_rounds_window


def _round(site, n, samples, t_start, t_inner_end, t_commit):
    return {
        "kind": "round", "site": site, "round": n, "samples": samples,
        "t_start": t_start, "t_inner_end": t_inner_end, "t_commit": t_commit,
    }  # fmt: skip


# Two sites, three rounds: site 0 trains 10 s a round, site 1 9 s; 2 s of exchange.
RECORDS = [
    {"kind": "start", "t": 0.0},
    _round(0, 0, 640, 1.0, 11.0, 13.0),
    _round(1, 0, 320, 1.0, 10.0, 13.1),
    _round(0, 1, 640, 13.0, 23.0, 25.0),
    _round(1, 1, 320, 13.1, 22.1, 25.2),
    _round(0, 2, 640, 25.0, 35.0, 37.0),
    _round(1, 2, 320, 25.2, 34.2, 37.5),
]


def test_the_window_runs_from_the_warm_up_rounds_commit_to_the_last_commit():
    window = whole_rounds_window(RECORDS)
    # Commits are the first site's; samples are both sites' of rounds 1 and 2 only.
    assert (window.start_t, window.end_t) == (13.0, 37.0)
    assert (window.samples, window.rounds) == (2 * (640 + 320), 2)
    assert window.samples_per_s == pytest.approx(1920 / 24.0)


def test_without_warm_up_the_window_starts_at_the_first_quorum():
    window = whole_rounds_window(RECORDS, warmup_rounds=0)
    assert (window.start_t, window.samples, window.rounds) == (1.0, 3 * 960, 3)


def test_a_site_alone_is_measured_the_same_way():
    alone = [r for r in RECORDS if r.get("site") == 1]
    window = whole_rounds_window(alone)
    assert (window.start_t, window.end_t, window.samples) == (13.1, 37.5, 640)


def test_too_few_or_missing_rounds_are_refused():
    with pytest.raises(ValueError, match="leave none"):
        whole_rounds_window(RECORDS[:3])
    with pytest.raises(ValueError, match="consecutive"):
        whole_rounds_window([r for r in RECORDS if r.get("round") != 1])


def test_blocked_time_is_each_rounds_wall_less_its_inner_phase():
    # Site 0: rounds 1 and 2 each take 12 s from commit to commit, 10 s of them training.
    assert blocked_s(RECORDS, site=0) == pytest.approx(2.0)
    assert blocked_s(RECORDS, site=1) == pytest.approx(
        ((25.2 - 13.1 - 9.0) + (37.5 - 25.2 - 9.0)) / 2
    )


def test_the_timeout_covers_twice_the_transfer_with_margin_and_a_late_site():
    # 6.6 MB over 20 Mbit/s: 2.64 s one way; twice that, three times over, + a quarter round.
    six_six = 6_600_000
    assert exchange_timeout_s(six_six, 20.0, round_s=100.0) == pytest.approx(
        3 * 2 * six_six * 8 / 20e6 + 25.0
    )
    assert exchange_timeout_s(six_six, 20.0, round_s=100.0) > 2 * six_six * 8 / 20e6
    assert exchange_timeout_s(1000, 20.0, round_s=1.0) == 30.0  # small uploads: the floor
