"""The emulated chip's pacing (emulate/pacer.py): CPU time / speed, the least per work."""

from __future__ import annotations

import types

import pytest

from phalanx.emulate import pacer as pacer_module
from phalanx.emulate.pacer import ComputePacer


class FakeClock:
    """thread_time advances by the CPU seconds each phase is given; sleeps are recorded."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self.slept: list[float] = []

    def thread_time(self) -> float:
        return self.cpu_s

    def perf_counter(self) -> float:
        return self.wall_s

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.wall_s += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(pacer_module, "time", types.SimpleNamespace(
        thread_time=fake.thread_time, perf_counter=fake.perf_counter, sleep=fake.sleep,
    ))  # fmt: skip
    return fake


def _phase(pacer: ComputePacer, clock: FakeClock, cpu_s: float, units: int | None) -> float:
    pacer.begin(units=units)
    clock.cpu_s += cpu_s
    clock.wall_s += cpu_s
    return pacer.end()


def test_a_phase_lasts_its_cpu_time_over_the_speed(clock: FakeClock) -> None:
    pacer = ComputePacer(0.25)
    assert _phase(pacer, clock, 0.1, None) == pytest.approx(0.4)
    assert _phase(ComputePacer(None), clock, 0.1, None) == pytest.approx(0.1)  # a real chip


def test_the_same_work_is_paced_to_its_least_recent_cpu_time(clock: FakeClock) -> None:
    # The host's noise (a neighbour's burst on the shared core) only adds CPU time:
    # it does not reach the chip, whose paced time is its work's own cost.
    pacer = ComputePacer(0.5)
    durations = [_phase(pacer, clock, cpu, 16) for cpu in (0.10, 0.10, 0.13, 0.10, 0.12, 0.10)]
    # 0.13 and 0.12 CPU-seconds (bursts) are paced as the usual 0.10 over the speed.
    assert durations == pytest.approx([0.2] * 6)
    # Other work (another share) is paced from its own runs (here as dear as 16's bound).
    assert _phase(pacer, clock, 0.3, 48) == pytest.approx(0.6)
    # A change of speed acts at once.
    pacer.speed = 0.25
    assert _phase(pacer, clock, 0.1, 16) == pytest.approx(0.4)


def test_a_lasting_rise_of_the_work_s_cost_is_followed_within_the_window(
    clock: FakeClock,
) -> None:
    # The least over a few runs forgets a cheaper past: the same sample count of longer
    # sequences is paced at its new cost once the cheaper runs have left the window.
    pacer = ComputePacer(0.5)
    for _ in range(pacer_module.SMOOTHING_WINDOW):
        _phase(pacer, clock, 0.10, 16)
    durations = [_phase(pacer, clock, 0.20, 16) for _ in range(pacer_module.SMOOTHING_WINDOW)]
    # One dearer run is a neighbour's burst, as far as the pacer can tell.
    assert durations[0] == pytest.approx(0.2)
    assert durations[-1] == pytest.approx(0.4)


def test_a_new_share_is_paced_from_the_chip_s_earlier_shares(clock: FakeClock) -> None:
    # A first run of a new size that a neighbour slowed is not taken for the chip's cost:
    # 24 samples cost at most 24/16 of what 16 did, and 8 at most what 16 did.
    pacer = ComputePacer(0.5)
    for _ in range(3):
        _phase(pacer, clock, 0.10, 16)
    assert _phase(pacer, clock, 0.25, 24) == pytest.approx(0.3)  # 0.15 CPU-s over the speed
    assert _phase(pacer, clock, 0.09, 8) == pytest.approx(0.18)  # its own, below the bound
    assert _phase(pacer, clock, 0.14, 8) == pytest.approx(0.18)  # the least of its own
