from hypothesis import given
from hypothesis import strategies as st

from phalanx.shares.affine import equal_time_weights, fit_cost, predicted_time_s, record_timing
from phalanx.shares.apportion import choose_shares


def test_fit_recovers_fixed_and_per_sample_cost():
    history: list = []
    for n in (10, 20, 15, 30):
        history = record_timing(history, n, 0.5 + 0.01 * n)
    fixed, per_sample = fit_cost(history, None)
    assert abs(fixed - 0.5) < 1e-9 and abs(per_sample - 0.01) < 1e-9


def test_one_size_keeps_the_fixed_cost_and_follows_a_slowdown():
    history = record_timing([], 10, 0.6)
    assert fit_cost(history, None) == (0.0, 0.06)  # nothing known: proportional
    slower = record_timing(record_timing([], 10, 1.0), 10, 1.0)
    fixed, per_sample = fit_cost(slower, (0.5, 0.01))
    assert fixed == 0.5 and abs(per_sample - 0.05) < 1e-12


def test_equal_time_weights_balance_and_drop_a_hopeless_chip():
    costs = [(0.0, 0.01), (0.0, 0.02), (2.0, 0.01)]  # the third's fixed cost exceeds the step
    weights = equal_time_weights(90, costs, [None, None, None])
    assert abs(sum(weights) - 90) < 1e-6
    assert weights[2] == 0.0
    assert abs(weights[0] * 0.01 - weights[1] * 0.02) < 1e-6


@given(
    st.lists(st.tuples(st.floats(0, 0.05), st.floats(0.001, 0.1)), min_size=1, max_size=8),
    st.integers(8, 500),
)
def test_shares_sum_to_the_batch_and_beat_an_equal_split(costs, batch):
    names = [f"r{i}" for i in range(len(costs))]
    shares = choose_shares(names, batch, {}, {}, costs={n: c for n, c in zip(names, costs)})
    assert sum(shares) == batch and min(shares) >= 0
    equal = [batch // len(costs) + (1 if i < batch % len(costs) else 0) for i in range(len(costs))]
    assert predicted_time_s(shares, costs) <= predicted_time_s(equal, costs) * 1.0001 + max(
        b for _, b in costs
    )


def test_iterating_with_fixed_costs_does_not_collapse_a_slow_chip():
    """The failure mode of samples/s-proportional shares: a slow chip sinking to one sample."""
    true_costs = {"fast": (0.002, 0.0001), "slow": (0.008, 0.0004)}
    names = list(true_costs)
    timings: dict = {n: [] for n in names}
    fitted: dict = {}
    previous: dict = {}
    table = {"fast": 1.0, "slow": 1.0}
    for _ in range(20):
        shares = choose_shares(names, 200, table, previous, costs=fitted)
        for name, share in zip(names, shares):
            fixed, per_sample = true_costs[name]
            timings[name] = record_timing(timings[name], share, fixed + per_sample * share)
            fitted[name] = list(fit_cost(timings[name], fitted.get(name)))
        previous = dict(zip(names, shares))
    slow_share = previous["slow"]
    # Equal finishing time: 0.002 + 0.0001 f = 0.008 + 0.0004 s, f + s = 200  ->  s = 28
    assert 25 <= slow_share <= 31


def test_noisy_timings_of_equal_chips_do_not_random_walk_the_shares():
    # Two equal chips (a = 10 ms, b = 1 ms per sample) timed on a noisy host (+-25%).
    import random

    from phalanx.shares.affine import fit_cost, record_timing, relative_uncertainty
    from phalanx.shares.apportion import choose_shares

    rng = random.Random(3)
    shares = {"r0": 24, "r1": 24}
    timings: dict[str, list[list[float]]] = {"r0": [], "r1": []}
    costs: dict[str, list[float]] = {}
    seen = []
    for _ in range(150):
        for name in ("r0", "r1"):
            n = shares[name]
            seconds = (0.010 + 0.001 * n) * rng.uniform(0.75, 1.25)
            timings[name] = record_timing(timings[name], n, seconds)
            costs[name] = list(fit_cost(timings[name], costs.get(name)))
        noise = max(relative_uncertainty(timings[m], costs[m]) for m in timings)
        new = choose_shares(["r0", "r1"], 48, {}, shares, costs=costs, uncertainty=noise)
        shares = dict(zip(["r0", "r1"], new))
        seen.append(max(new) / max(1, min(new)))
    assert max(seen[20:]) <= 1.1  # within 10% of each other after warm-up


def test_a_chip_that_slows_down_loses_share_at_once_despite_the_noise_band():
    from phalanx.shares.affine import fit_cost, record_timing, relative_uncertainty
    from phalanx.shares.apportion import choose_shares

    names = ["r0", "r1", "r2"]
    shares = {"r0": 16, "r1": 16, "r2": 16}
    timings: dict[str, list[list[float]]] = {n: [] for n in names}
    costs: dict[str, list[float]] = {}
    for step in range(40):
        for name in names:
            per_sample = 0.004 if name == "r2" and step >= 20 else 0.001  # r2: 4x slower at 20
            seconds = 0.010 + per_sample * shares[name]
            timings[name] = record_timing(timings[name], shares[name], seconds)
            costs[name] = list(fit_cost(timings[name], costs.get(name)))
        noise = max(relative_uncertainty(timings[m], costs[m]) for m in names)
        shares = dict(
            zip(names, choose_shares(names, 48, {}, shares, costs=costs, uncertainty=noise))
        )
        if step == 26:
            assert shares["r2"] <= 8, shares  # within a few steps of the slow-down


def _noisy_fleet_run(speeds, noise, seed, steps=40, batch=64):
    """Shares chosen by the real policy for emulated chips timed on a noisy host.

    A chip of speed s takes (0.02 + 0.006 n) / s seconds for n samples, times a
    uniform factor in [1 - noise, 1 + noise]. Returns each step's shares.
    """
    import random

    from phalanx.runtime.state import FleetState
    from phalanx.shares.learning import SharePolicy, learn_from_step

    rng = random.Random(seed)
    names = [f"r{i}" for i in range(len(speeds))]
    fleet, policy = FleetState(), SharePolicy(batch, {}, {}, 5.0)
    seen = []
    for step in range(steps):
        shares = policy.shares(fleet, names)
        rates = {}
        for name, n, speed in zip(names, shares, speeds):
            seconds = (0.02 + 0.006 * n) / speed * rng.uniform(1 - noise, 1 + noise)
            rates[name] = (n / seconds if n else 0.0) * (-1 if step < 2 else 1)  # warm-up
        learn_from_step(fleet, names, shares, rates, {})
        seen.append(shares)
    return seen


def test_chips_four_times_apart_on_a_noisy_host_reach_balance_in_a_few_steps():
    # The bench's fleet (1, 0.5, 0.25, 0.25) timed with +-25% noise: the shares used to
    # move half-way and then stop, the rest of the gain being smaller than the noise
    # band of the noisiest chip, for tens of steps (predicted steps 1.4x the balanced
    # one on average over seeds, 2x at worst).
    speeds = [1.0, 0.5, 0.25, 0.25]
    true = [(0.02 / s, 0.006 / s) for s in speeds]
    best = predicted_time_s([32, 16, 8, 8], true)
    means = []
    for seed in range(12):
        seen = _noisy_fleet_run(speeds, 0.25, seed)
        ratios = [predicted_time_s(shares, true) / best for shares in seen[10:]]
        assert max(ratios) < 1.45, (seed, seen[10])
        means.append(sum(ratios) / len(ratios))
    assert sum(means) / len(means) < 1.25, means


def test_equal_chips_on_a_noisy_host_keep_equal_shares():
    for noise in (0.25, 0.4):
        for seed in range(12):
            for count in (2, 4):
                seen = _noisy_fleet_run([1.0] * count, noise, seed, steps=150)
                worst = max(max(s) / max(1, min(s)) for s in seen[20:])
                assert worst <= 1.1, (noise, seed, count, worst)


def test_nearby_sizes_do_not_make_a_chip_of_fixed_cost():
    # A chip that ran 8 and then 9 samples (a fleet that lost a member), one step slow:
    # the least-squares line through them is mostly fixed cost, and would hand the chip
    # far more samples than it computes in time. Sizes that close fit no line.
    history: list = []
    for n, t in [(8, 0.362), (8, 0.431), (8, 0.362), (9, 0.391), (9, 0.393), (9, 0.391)]:
        history = record_timing(history, n, t)
    fixed, per_sample = fit_cost(history, None)
    assert fixed == 0.0 and abs(per_sample - 0.391 / 9) < 1e-3
