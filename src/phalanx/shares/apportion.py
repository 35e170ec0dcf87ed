"""Integer shares of the global batch that follow measured throughput.

All functions are pure and deterministic: every participant calls them with
the same agreed inputs (throughputs that rode in the previous committed
step's allreduce) and gets bit-identical shares without another message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from phalanx.shares.affine import equal_time_weights, predicted_time_s

# A share change must shorten the predicted step by at least this fraction:
# below it, measurement noise would make shares flap from step to step.
DEFAULT_DEADBAND = 0.03
# Fraction of the way from the previous shares to the newly solved ones taken per step
# while a chip is derated by heat (giving back, never cutting).
DAMPING = 0.5
# A change is taken (whole) when its predicted gain clears this many times the
# uncertainty of the chips it moves: a noise-driven change between equal chips rarely
# does, a chip far off balance does at once.
NOISE_BAND_FACTOR = 2.0
# ... but a change that shortens the predicted step by this much is taken whatever the
# noise: the first fits after a start lean on a wide prior, and shares far off balance
# (an equal split of chips 4x apart) would otherwise wait for many steps of history.
MAX_NOISE_BAND = 0.45
# Throughput estimates are the median of this many recent measurements:
# robust to the odd step slowed by a neighbour process or a page fault.
DEFAULT_WINDOW = 8


def apportion(
    total: int,
    weights: Sequence[float],
    caps: Sequence[int | None] | None = None,
    min_share: int = 1,
) -> list[int]:
    """Split `total` into integers proportional to `weights`, each >= min_share and <= its cap.

    Largest-remainder rounding; ties go to the earlier participant so the
    result is deterministic. Raises ValueError when the caps cannot hold
    `total` or `total` is smaller than the number of participants (with the
    default minimum of one sample each).
    """
    count = len(weights)
    if count == 0:
        raise ValueError("no participants")
    if total < count * min_share:
        raise ValueError(f"global batch {total} is smaller than the {count} participants")
    limits = [total if cap is None else max(1, int(cap)) for cap in (caps or [None] * count)]
    if sum(limits) < total:
        raise ValueError(f"memory caps {limits} cannot hold a global batch of {total}")
    clean = [w if (w > 0 and math.isfinite(w)) else 0.0 for w in weights]
    if sum(clean) == 0:
        clean = [1.0] * count

    shares = [0] * count
    free = list(range(count))
    remaining = total
    # Water-filling: give proportional shares, clamp to caps, redistribute the rest.
    while free:
        weight_sum = sum(clean[i] for i in free) or float(len(free))
        ideal = {
            i: remaining * (clean[i] / weight_sum if weight_sum else 1 / len(free)) for i in free
        }
        capped = [i for i in free if ideal[i] >= limits[i]]
        if not capped:
            break
        for i in capped:
            shares[i] = limits[i]
            remaining -= limits[i]
            free.remove(i)
    if free:
        weight_sum = sum(clean[i] for i in free)
        ideal = {i: remaining * clean[i] / weight_sum if weight_sum else 0.0 for i in free}
        floors = {i: max(min_share, math.floor(ideal[i])) for i in free}
        # Keep room for the minimum everywhere before rounding up.
        while sum(floors.values()) > remaining:
            largest = max(free, key=lambda i: (floors[i], -i))
            floors[largest] -= 1
        leftover = remaining - sum(floors.values())
        order = sorted(free, key=lambda i: (-(ideal[i] - floors[i]), i))
        for i in order:
            if leftover == 0:
                break
            if floors[i] < limits[i]:
                floors[i] += 1
                leftover -= 1
        for i in free:
            shares[i] = floors[i]
    return shares


def apportion_min_time(
    total: int,
    weights: Sequence[float],
    costs: Sequence[tuple[float, float]],
    caps: Sequence[int | None] | None = None,
) -> list[int]:
    """Integer shares of `total` whose predicted step (the latest chip's a + b*n) is least.

    `weights` are the real-valued equal-time shares (shares.affine): their floors
    finish no later than the real-valued optimum, so each of the few samples left
    goes, one at a time, to the chip that would finish earliest with it. Largest-
    remainder rounding instead hands a leftover sample by the fraction cut off, which
    on a slow chip costs many times what it costs on a fast one: on chips 1, 0.5,
    0.25, 0.25 with B = 64 it gave a 0.25 chip its 8th sample (a step 5% longer than
    the fast chip's 34th). Ties go to the earlier participant: deterministic.
    """
    count = len(weights)
    limits = [total if cap is None else max(0, int(cap)) for cap in (caps or [None] * count)]
    if sum(limits) < total:
        raise ValueError(f"memory caps {limits} cannot hold a global batch of {total}")
    shares = [
        min(limit, max(0, math.floor(w + 1e-9))) if math.isfinite(w) else 0
        for w, limit in zip(weights, limits)
    ]

    def finish_s(i: int, n: int) -> float:
        fixed, per_sample = costs[i]
        return fixed + per_sample * n if n > 0 else 0.0

    while sum(shares) > total:  # float slop: floor(w + 1e-9) may lift several 7.999... to 8
        latest = max(range(count), key=lambda i: (finish_s(i, shares[i]), -i))
        shares[latest] -= 1
    for _ in range(total - sum(shares)):
        room = [i for i in range(count) if shares[i] < limits[i]]
        earliest = min(room, key=lambda i: (finish_s(i, shares[i] + 1), i))
        shares[earliest] += 1
    return shares


def record_measurement(
    history: list[float], measured_sps: float, window: int = DEFAULT_WINDOW
) -> tuple[list[float], float]:
    """Append a measurement, keep the last `window`; return (history, median estimate)."""
    kept = [*history, measured_sps][-window:]
    ordered = sorted(kept)
    middle = len(ordered) // 2
    estimate = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return kept, estimate


def estimate_for(name: str, table: Mapping[str, float], hints: Mapping[str, float]) -> float:
    """Throughput estimate of one participant: measured, else a hint, else the fleet median."""
    if name in table and table[name] > 0:
        return table[name]
    if name in hints and hints[name] > 0:
        return hints[name]
    known = sorted(v for v in table.values() if v > 0)
    if known:
        return known[len(known) // 2]
    return 1.0


def choose_shares(
    participants: Sequence[str],
    global_batch_size: int,
    table: Mapping[str, float],
    previous: Mapping[str, int],
    hints: Mapping[str, float] | None = None,
    caps: Mapping[str, int | None] | None = None,
    deadband: float = DEFAULT_DEADBAND,
    costs: Mapping[str, Sequence[float]] | None = None,
    derates: Mapping[str, float] | None = None,
    uncertainty: float = 0.0,
    uncertainties: Mapping[str, float] | None = None,
) -> list[int]:
    """Shares for the next step, in participant order.

    With a fitted cost model per chip (fixed + per-sample seconds, see
    shares.affine) the shares equalise predicted finishing times; a chip
    without one (a newcomer) is modelled from its throughput estimate. Keeps
    the previous shares when the same participants remain and re-balancing
    would shorten the predicted step by less than `deadband` (hysteresis).

    `derates` (from the thermal guard) scale a hot chip's share down at once,
    past damping and dead band: heat is a hard limit, not noise.

    `uncertainty` (relative, from the cost fits' residuals) widens the dead band:
    on a noisy host a predicted gain smaller than the fits' own error would only
    make shares random-walk (two equal chips drifting to 20 and 28 of 48).
    `uncertainties` (per chip) do so with the chips that decide the comparison:
    the critical chip of the kept shares and of the proposed ones. A predicted
    step is as uncertain as its slowest chip's prediction, not as the noisiest
    chip's anywhere in the fleet (one jittery chip with a small share would
    otherwise freeze every share, chips four times off balance included).

    A change that clears the band is taken whole, not damped: the band already
    keeps noise out, and a damped step leaves a remaining gain that is smaller
    than the band, so shares stopped half-way for the rest of a run.
    """
    hints = hints or {}
    derates = {n: d for n, d in (derates or {}).items() if n in participants and d < 1.0}
    caps = caps or {}
    costs = costs or {}
    models = []
    for name in participants:
        if name in costs:
            models.append((float(costs[name][0]), float(costs[name][1])))
        else:
            models.append((0.0, 1.0 / estimate_for(name, table, hints)))
    cap_list = [caps.get(name) for name in participants]
    weights = equal_time_weights(global_batch_size, models, cap_list)
    same_fleet = all(name in previous for name in participants)
    if derates and same_fleet and sum(previous[name] for name in participants) == global_batch_size:
        # Heat: a cut takes effect now; giving back goes half-way per step, so a chip
        # that cools does not bounce straight back into the throttle.
        damped = [
            DAMPING * w + (1 - DAMPING) * previous[name] for w, name in zip(weights, participants)
        ]
        weights = [
            min(d, w * derates[name]) if name in derates else d
            for w, d, name in zip(weights, damped, participants)
        ]
    elif derates:
        weights = [w * derates.get(name, 1.0) for w, name in zip(weights, participants)]
    # A chip whose fixed cost alone outlasts the others' whole step gets no samples:
    # giving it one would make the whole fleet wait for it.
    if derates:  # the derated weights are the decision: round them as they are
        proposed = apportion(global_batch_size, weights, cap_list, min_share=0)
    else:
        proposed = apportion_min_time(global_batch_size, weights, models, cap_list)
    if same_fleet and not derates:
        kept = [previous[name] for name in participants]
        caps_ok = all(c is None or s <= c for s, c in zip(kept, cap_list))
        if sum(kept) == global_batch_size and caps_ok:
            old_s = predicted_time_s(kept, models)
            new_s = predicted_time_s(proposed, models)
            noise = uncertainties or {}
            moved = [name for name, k, n in zip(participants, kept, proposed) if k != n]
            noisiest = max((noise.get(name, 0.0) for name in moved), default=0.0)
            band = max(deadband, uncertainty, min(NOISE_BAND_FACTOR * noisiest, MAX_NOISE_BAND))
            if new_s >= old_s * (1 - band):
                return kept
    return proposed


def whole_units(shares: Sequence[int], unit: int, caps: Sequence[int | None]) -> list[int]:
    """`shares` rounded to multiples of `unit` samples, keeping their sum and proportions.

    With `Trainer(aligned_microbatch=unit)` every block of the global batch is one
    micro-batch wherever it lands, so a replica takes whole blocks. Largest-remainder
    rounding of the blocks, as `apportion` does; a memory cap is kept in whole blocks
    where the caps can hold the batch, and dropped where they cannot (the exact global
    batch is the promise, a cap a preference).
    """
    total = sum(shares)
    if total % unit:
        raise ValueError(f"shares {list(shares)} do not sum to whole blocks of {unit}")
    block_caps = [None if cap is None else int(cap) // unit for cap in caps]
    weights = [float(s) for s in shares]
    try:
        blocks = apportion(total // unit, weights, block_caps, min_share=0)
    except ValueError:
        blocks = apportion(total // unit, weights, None, min_share=0)
    return [b * unit for b in blocks]
