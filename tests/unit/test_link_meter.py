"""bench/link_meter.py: counters read back at a window's ends, and how busy a link was."""

from __future__ import annotations

import pytest
from bench.link_meter import LinkMeter, Sample, busy_shares, bytes_at

from phalanx.chaos.netns import LinkBytes

SAMPLES = [
    Sample(10.0, LinkBytes(0, 0)),
    Sample(11.0, LinkBytes(1000, 100)),
    Sample(12.0, LinkBytes(1000, 2100)),
]


def test_bytes_at_a_sample_is_that_sample():
    assert bytes_at(SAMPLES, 11.0) == LinkBytes(1000, 100)


def test_bytes_between_samples_are_linear_in_time():
    assert bytes_at(SAMPLES, 10.25) == LinkBytes(250, 25)
    assert bytes_at(SAMPLES, 11.5) == LinkBytes(1000, 1100)


@pytest.mark.parametrize("t", [9.9, 12.1])
def test_bytes_outside_the_sampled_span_are_refused(t):
    with pytest.raises(ValueError, match="outside the sampled span"):
        bytes_at(SAMPLES, t)


def test_a_window_is_the_difference_of_its_ends():
    meter = LinkMeter(lambda: LinkBytes(0, 0))
    meter.samples = list(SAMPLES)
    assert meter.crossed_between(10.5, 12.0) == LinkBytes(500, 2050)


def test_the_meter_samples_until_stopped():
    readings = iter(LinkBytes(n, 2 * n) for n in range(1_000_000))
    meter = LinkMeter(lambda: next(readings)).start()
    meter.stop()
    assert len(meter.samples) >= 2  # one at start, one at stop, any number between
    assert [s.crossed.sent_bytes for s in meter.samples] == list(range(len(meter.samples)))
    assert all(a.t <= b.t for a, b in zip(meter.samples, meter.samples[1:]))


def test_busy_shares_tell_each_direction_and_both_at_once():
    # Rate 1000 bytes/s: busy above 500 bytes in a 1-s interval.
    samples = [
        Sample(0.0, LinkBytes(0, 0)),
        Sample(1.0, LinkBytes(900, 10)),  # up busy
        Sample(2.0, LinkBytes(910, 910)),  # down busy
        Sample(3.0, LinkBytes(1810, 1810)),  # both busy
        Sample(4.0, LinkBytes(1820, 1820)),  # idle
    ]
    shares = busy_shares(samples, 0.0, 4.0, rate_bytes_per_s=1000)
    assert shares == {"up": 0.5, "down": 0.5, "both": 0.25}
