"""Shares after a chip slowed down past the collective timeout (chaos bug 16)."""

from phalanx.runtime.state import FleetState
from phalanx.shares.learning import SharePolicy, learn_from_step

MEMBERS = ["r0", "r1", "r2"]


def _learnt_fleet(steps: int = 10) -> FleetState:
    """Three chips at 40, 40 and 20 samples/s, learnt over `steps` committed steps."""
    fleet = FleetState()
    policy = SharePolicy(50, {}, {})
    rates = {"r0": 40.0, "r1": 40.0, "r2": 20.0}
    for _ in range(steps):
        shares = policy.shares(fleet, MEMBERS)
        learn_from_step(fleet, MEMBERS, shares, rates, {})
    return fleet


def test_learnt_shares_follow_speed():
    fleet = _learnt_fleet()
    assert SharePolicy(50, {}, {}).shares(fleet, MEMBERS) == [20, 20, 10]


def test_a_rate_measured_in_a_failed_attempt_cuts_the_share_at_once():
    fleet = _learnt_fleet()
    policy = SharePolicy(50, {}, {}, collective_timeout_s=2.0)
    # r2 slowed 10x: its 10 samples took 5 s, past the 2 s timeout.
    shares = policy.shares(fleet, MEMBERS, {"r0": 40.0, "r1": 40.0, "r2": 2.0})
    assert sum(shares) == 50
    assert shares[2] <= 1  # 2 samples/s fits 1 sample in half the timeout
    # Without the measurement the same shares would be tried again (and fail again).
    assert policy.shares(fleet, MEMBERS) == [20, 20, 10]


def test_a_chip_that_cannot_compute_one_sample_within_the_timeout_gets_none():
    fleet = _learnt_fleet()
    policy = SharePolicy(50, {}, {}, collective_timeout_s=2.0)
    shares = policy.shares(fleet, MEMBERS, {"r2": 0.2})
    assert shares == [25, 25, 0]


def test_noise_after_an_unrelated_failure_changes_nothing():
    fleet = _learnt_fleet()
    policy = SharePolicy(50, {}, {}, collective_timeout_s=2.0)
    # A peer died mid-step: the survivors measured about their usual rates.
    assert policy.shares(fleet, MEMBERS, {"r0": 35.0, "r1": 41.0, "r2": 15.0}) == [20, 20, 10]


def test_the_committed_step_restarts_the_slow_chips_history():
    fleet = _learnt_fleet()
    policy = SharePolicy(50, {}, {}, collective_timeout_s=2.0)
    measured = {"r2": 2.0}
    shares = policy.shares(fleet, MEMBERS, measured)
    learn_from_step(fleet, MEMBERS, shares, {"r0": 40.0, "r1": 40.0, "r2": 2.0}, {}, measured)
    assert fleet.throughput_sps["r2"] == 2.0
    # The next steps, without any exchange, keep the cut (no drift back to 10 samples).
    for _ in range(5):
        nxt = policy.shares(fleet, MEMBERS)
        assert nxt[2] <= 1
        learn_from_step(fleet, MEMBERS, nxt, {"r0": 40.0, "r1": 40.0, "r2": 2.0}, {})


def test_when_nobody_fits_the_timeout_shares_go_by_speed():
    fleet = _learnt_fleet()
    policy = SharePolicy(50, {}, {}, collective_timeout_s=0.1)
    shares = policy.shares(fleet, MEMBERS)
    assert sum(shares) == 50 and min(shares) > 0


def test_every_replica_derives_the_same_shares_from_the_same_exchange():
    measured = {"r0": 41.0, "r2": 3.0}
    a = SharePolicy(50, {}, {}, 2.0).shares(_learnt_fleet(), MEMBERS, measured)
    b = SharePolicy(50, {}, {}, 2.0).shares(_learnt_fleet(), MEMBERS, dict(measured))
    assert a == b


def test_known_speed_ratios_set_the_first_shares():
    from phalanx.runtime.state import FleetState
    from phalanx.shares.learning import SharePolicy

    names = ["r0", "r1", "r2", "r3"]
    ratios = dict(zip(names, [1.0, 0.5, 0.25, 0.25]))
    policy = SharePolicy(64, {}, {}, relative_speeds=ratios)
    fleet = FleetState()
    assert policy.shares(fleet, names) == [32, 16, 8, 8]  # nothing measured yet
    assert SharePolicy(64, {}, {}).shares(fleet, names) == [16, 16, 16, 16]
    # Two chips measured (at twice the nominal rate per unit of speed): the others
    # are estimated at the same rate per unit, not at the measured chips' median.
    fleet.throughput_sps = {"r0": 200.0, "r1": 100.0}
    assert policy.shares(fleet, names) == [32, 16, 8, 8]
    # A chip of no known ratio with nothing measured: no guessing, an equal split.
    assert policy.shares(FleetState(), [*names[:3], "gpu"]) == [16, 16, 16, 16]
