"""The goodput a fault schedule itself allows (bench/fault_ceiling.py)."""

import pytest
from bench.fault_ceiling import goodput_ceiling

SPEEDS = [1.0, 0.5, 0.25, 0.25]


def test_no_fault_or_an_instant_restart_loses_nothing():
    assert goodput_ceiling(SPEEDS, [], 40, 0.4) == pytest.approx(1.0)
    assert goodput_ceiling(SPEEDS, ["kill:replica=1,step=4,restart_s=0"], 40, 0.4) == (
        pytest.approx(1.0)
    )


def test_a_chip_away_for_the_rest_of_the_run_costs_its_share_of_the_speed():
    # r2 (0.25 of 2.0) hangs from step 1 for longer than the run: 7/8 of the speed.
    ceiling = goodput_ceiling(SPEEDS, ["hang:replica=2,step=1,seconds=1000"], 40, 0.4)
    assert ceiling == pytest.approx(1.75 / 2.0)


def test_the_bench_schedule_leaves_room_above_its_goal():
    faults = ["kill:replica=1,step=4,restart_s=1", "hang:replica=2,step=30,seconds=6"]
    ceiling = goodput_ceiling(SPEEDS, faults, 40, 0.36)
    assert 0.90 < ceiling < 0.97  # the faults alone cost 3-10% of this 14 s run


def test_a_hang_noticed_late_stalls_the_fleet_and_a_kill_only_delays_the_commit():
    faults = ["kill:replica=1,step=4,restart_s=0", "hang:replica=2,step=30,seconds=5"]
    # Chips back at once after the kill, the hang longer than the detection. The kill's
    # survivors compute its step (0.4 s) while the lighthouse decides (0.5 s): 0.1 s lost.
    without_hang = goodput_ceiling(SPEEDS, faults[:1], 40, 0.4, detect_s=0.5)
    assert without_hang == pytest.approx(39 * 0.4 / (39 * 0.4 + 0.1))
    # A decision quicker than the step costs nothing.
    assert goodput_ceiling(SPEEDS, faults[:1], 40, 0.4, detect_s=0.3) == pytest.approx(1.0)
    # The hang is waited for whole (0.5 s), then its step computed.
    both = goodput_ceiling(SPEEDS, faults, 40, 0.4, detect_s=0.5)
    at_once = goodput_ceiling(SPEEDS, faults, 40, 0.4)
    assert 39 * 0.4 / both - 39 * 0.4 / at_once == pytest.approx(0.6)  # seconds lost
    # A hang shorter than the detection ends first: the fleet waits only for it.
    short = goodput_ceiling(SPEEDS, ["hang:replica=2,step=30,seconds=0.2"], 40, 0.4, 0.5)
    assert short == pytest.approx(39 * 0.4 / (39 * 0.4 + 0.2))
    # Two faults of one step are noticed together, once.
    two = ["kill:replica=1,step=4,restart_s=0", "kill:replica=2,step=4,restart_s=0"]
    assert goodput_ceiling(SPEEDS, two, 40, 0.4, 0.5) == pytest.approx(without_hang)
    # A fault at step 0 stalls before the goodput window opens: not counted.
    assert goodput_ceiling(SPEEDS, ["kill:replica=1,step=0,restart_s=0"], 40, 0.4, 0.5) == (
        pytest.approx(1.0)
    )
