"""The best heterogeneous efficiency whole samples allow (bench/share_ceiling.py)."""

import pytest
from bench.share_ceiling import whole_sample_ceiling


def test_a_batch_that_divides_like_the_speeds_loses_nothing():
    assert whole_sample_ceiling([1.0, 0.5, 0.25, 0.25], 64) == pytest.approx(1.0)
    assert whole_sample_ceiling([1.0, 1.0], 4) == pytest.approx(1.0)


def test_the_eight_chip_fleet_stops_at_17_07_over_18():
    speeds = [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
    assert whole_sample_ceiling(speeds, 64) == pytest.approx((64 / 3.75) / 18)


def test_an_odd_batch_on_two_equal_chips_waits_for_the_extra_sample():
    assert whole_sample_ceiling([1.0, 1.0], 3) == pytest.approx(1.5 / 2)


def test_every_chip_holds_a_sample_even_when_it_is_too_slow_for_one():
    # Alone, the fast chip would take all 4 (4 time units); the 0.1 chip needs 10 for one.
    assert whole_sample_ceiling([1.0, 0.1], 4) == pytest.approx((4 / 1.1) / 10)


def test_nonsense_is_refused():
    with pytest.raises(ValueError):
        whole_sample_ceiling([1.0, 0.0], 4)
    with pytest.raises(ValueError):
        whole_sample_ceiling([1.0, 1.0, 1.0], 2)
