import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.shares.apportion import apportion, choose_shares, record_measurement

weights = st.lists(st.floats(0.01, 1000, allow_nan=False), min_size=1, max_size=12)


@given(weights, st.integers(0, 5000))
def test_shares_sum_to_batch_and_are_positive(ws, extra):
    total = len(ws) + extra
    shares = apportion(total, ws)
    assert sum(shares) == total
    assert min(shares) >= 1


@given(weights, st.integers(0, 2000), st.data())
def test_caps_are_respected(ws, extra, data):
    total = len(ws) + extra
    caps = [data.draw(st.one_of(st.none(), st.integers(1, total))) for _ in ws]
    limit = sum(total if c is None else c for c in caps)
    if limit < total:
        with pytest.raises(ValueError):
            apportion(total, ws, caps)
        return
    shares = apportion(total, ws, caps)
    assert sum(shares) == total
    assert all(c is None or s <= c for s, c in zip(shares, caps))


def test_shares_follow_speed():
    assert apportion(64, [1, 0.5, 0.25, 0.25]) == [32, 16, 8, 8]


def test_batch_smaller_than_fleet_is_refused():
    with pytest.raises(ValueError, match="smaller than"):
        apportion(3, [1, 1, 1, 1])


def test_deadband_keeps_shares_against_noise():
    names = ["r0", "r1"]
    previous = {"r0": 32, "r1": 32}
    noisy = {"r0": 101.0, "r1": 99.0}
    assert choose_shares(names, 64, noisy, previous) == [32, 32]
    slow = {"r0": 100.0, "r1": 50.0}
    assert choose_shares(names, 64, slow, previous) != [32, 32]


def test_newcomer_gets_the_median_estimate():
    table = {"r0": 100.0, "r1": 50.0, "r2": 25.0}
    shares = choose_shares(["r0", "r1", "r2", "r9"], 70, table, {})
    assert abs(shares[3] - shares[1]) <= 1  # same estimate, up to rounding


def test_estimates():
    assert record_measurement([], 10.0) == ([10.0], 10.0)
    history, estimate = record_measurement([1.0, 100.0, 3.0], 2.0, window=3)
    assert history == [100.0, 3.0, 2.0] and estimate == 3.0  # the median shrugs off an outlier


def _step_s(shares: list[int], costs: list[tuple[float, float]]) -> float:
    return max(a + b * n for n, (a, b) in zip(shares, costs) if n > 0)


def test_a_leftover_sample_goes_where_it_costs_least():
    # Measured rates of chips 1, 0.5, 0.25, 0.25 in a bench run: the equal-time split
    # is 33.2, 16.3, 7.3, 7.3. Largest remainder gave a 0.25 chip its 8th sample
    # (45 ms more); the fast chip's 34th costs 10 ms.
    names = ["r0", "r1", "r2", "r3"]
    costs = [(0.0, 1 / 100), (0.0, 1 / 49), (0.0, 1 / 22), (0.0, 1 / 22.5)]
    shares = choose_shares(names, 64, {}, {}, costs=dict(zip(names, costs)))
    assert shares == [34, 16, 7, 7]
    assert _step_s(shares, costs) < _step_s([33, 16, 7, 8], costs)


@given(
    st.lists(st.tuples(st.floats(0.0, 0.05), st.floats(0.001, 0.1)), min_size=1, max_size=6),
    st.integers(0, 200),
)
def test_min_time_rounding_is_no_worse_than_any_one_sample_move(costs, extra):
    # Optimal integer shares: moving one sample from any chip to any other never
    # shortens the predicted step.
    names = [f"r{i}" for i in range(len(costs))]
    total = len(costs) + extra
    shares = choose_shares(names, total, {}, {}, costs=dict(zip(names, costs)))
    assert sum(shares) == total and min(shares) >= 0
    best = _step_s(shares, costs)
    for give in range(len(costs)):
        for take in range(len(costs)):
            if give == take or shares[give] == 0:
                continue
            moved = list(shares)
            moved[give] -= 1
            moved[take] += 1
            assert _step_s(moved, costs) >= best - 1e-12
