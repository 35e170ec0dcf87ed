"""Learn each chip's speed from a committed step, identically on every replica.

The throughputs rode in the step's allreduce, so every participant updates
the replicated fleet state from the same numbers and derives the same next
shares without another message. A negative throughput is a replica warming
up (its first steps after a start are slow: allocation, first touch): it is
not learnt from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

from phalanx.shares.affine import fit_cost, record_timing, relative_uncertainty
from phalanx.shares.apportion import choose_shares, record_measurement, whole_units


class ShareRecord(Protocol):
    """The part of the replicated fleet state (runtime/state.py) that shares live on."""

    throughput_sps: dict[str, float]
    shares: dict[str, int]
    sps_history: dict[str, list[float]]
    timings: dict[str, list[list[float]]]
    costs: dict[str, list[float]]
    derates: dict[str, float]


# A rate measured in a failed attempt replaces what was learnt only when it is this far
# below it: a chip that really slowed down, not the noise of an attempt a peer's death ended.
SLOWDOWN_FACTOR = 0.5
# A slice must fit this fraction of the collective timeout: the fast peers wait for the
# slow one's sum inside the collective, and give up after the timeout (chaos bug 16).
TIMEOUT_FRACTION = 0.5


def slowed_down(fleet: ShareRecord, measured_sps: Mapping[str, float]) -> dict[str, float]:
    """The measured rates (from failed attempts) far below what the fleet state expects."""
    slowed = {}
    for member, rate in measured_sps.items():
        known = fleet.throughput_sps.get(member, 0.0)
        if rate > 0 and math.isfinite(rate) and (known <= 0 or rate < SLOWDOWN_FACTOR * known):
            slowed[member] = rate
    return slowed


def learn_from_step(
    fleet: ShareRecord,
    active: Sequence[str],
    shares: Sequence[int],
    throughputs_sps: Mapping[str, float],
    heats: Mapping[str, float],
    measured_sps: Mapping[str, float] | None = None,
) -> None:
    """Update `fleet` (throughput estimates, cost models, shares, derates) in place.

    `measured_sps`: the rates exchanged after failed attempts of this step (every
    participant read the same). A chip far slower than learnt starts its history
    afresh from that rate, so the following steps do not drift back to its old share.
    """
    for member, rate in slowed_down(fleet, measured_sps or {}).items():
        fleet.sps_history[member] = [rate]
        fleet.throughput_sps[member] = rate
        fleet.timings.pop(member, None)
        fleet.costs.pop(member, None)
    share_of = dict(zip(active, shares))
    for member in active:
        measured = throughputs_sps.get(member, 0.0)
        samples = share_of[member]
        if measured <= 0 or samples <= 0:  # warming up, or no slice: nothing to learn
            continue
        history, estimate = record_measurement(fleet.sps_history.get(member, []), measured)
        fleet.sps_history[member] = history
        fleet.throughput_sps[member] = estimate
        fleet.timings[member] = record_timing(
            fleet.timings.get(member, []), samples, samples / measured
        )
        fleet.costs[member] = list(fit_cost(fleet.timings[member], fleet.costs.get(member)))
    fleet.shares = share_of
    # Every participant reads the same heats: the next shares agree.
    fleet.derates = {m: 1.0 - h for m, h in heats.items() if h > 0}


class SharePolicy:
    """The next step's shares for a set of participants, from the fleet state."""

    def __init__(
        self,
        global_batch_size: int,
        hints_sps: Mapping[str, float],
        caps: Mapping[str, int | None],
        collective_timeout_s: float | None = None,
        unit: int = 1,
        relative_speeds: Mapping[str, float] | None = None,
    ) -> None:
        self.global_batch_size = global_batch_size
        self.unit = unit  # shares are whole multiples of it (Trainer(aligned_microbatch=...))
        self.hints_sps = dict(hints_sps)
        # Known speed ratios (emulated chips): a chip not measured yet is estimated from them.
        self.relative_speeds = {n: v for n, v in (relative_speeds or {}).items() if v > 0}
        self.caps = dict(caps)
        self.collective_timeout_s = collective_timeout_s

    def shares(
        self,
        fleet: ShareRecord,
        active: Sequence[str],
        measured_sps: Mapping[str, float] | None = None,
    ) -> list[int]:
        """The shares of `active`, in order; `measured_sps` only after a failed attempt.

        A chip whose measured rate is far below what was learnt is modelled from that
        rate at once (no damping towards the shares that failed). No chip gets more
        samples than it computes in part of the collective timeout while the others can
        take the rest: the fast peers would give up waiting for its sum, and the same
        shares would fail the same way on every retry (chaos bug 16).
        """
        slowed = slowed_down(fleet, measured_sps or {})
        record: ShareRecord = fleet
        if slowed:
            costs = {m: c for m, c in fleet.costs.items() if m not in slowed}
            record = _Overlay(fleet, {**fleet.throughput_sps, **slowed}, costs)
        caps = self._within_timeout(record, active)
        working = [m for m in active if caps.get(m) != 0]
        solved = dict(zip(working, self._learnt(record, working, caps)))
        shares = [solved.get(m, 0) for m in active]
        if self.unit > 1:
            shares = whole_units(shares, self.unit, [caps.get(m) for m in active])
        return shares

    def _within_timeout(self, fleet: ShareRecord, active: Sequence[str]) -> dict[str, int | None]:
        """The memory caps, lowered to what each chip computes in part of the timeout."""
        if self.collective_timeout_s is None:
            return dict(self.caps)
        limit_s = TIMEOUT_FRACTION * self.collective_timeout_s
        caps: dict[str, int | None] = dict(self.caps)
        for member in active:
            rate = fleet.throughput_sps.get(member, 0.0)
            if rate > 0 and math.isfinite(rate):
                fits = math.floor(limit_s * rate)
                cap = caps.get(member)
                caps[member] = fits if cap is None else min(fits, int(cap))
        room = sum(self.global_batch_size if caps.get(m) is None else caps[m] or 0 for m in active)
        if room < self.global_batch_size:
            # The fleet cannot take the batch within the timeout at all: shares by speed,
            # and the timeout is the user's to raise (the failed commits say so).
            return dict(self.caps)
        return caps

    def _learnt(
        self, fleet: ShareRecord, active: Sequence[str], caps: Mapping[str, int | None]
    ) -> list[int]:
        if any(caps.get(name) is None for name in active):
            pass  # an uncapped participant can always take the rest
        elif sum(int(caps[name] or 0) for name in active) < self.global_batch_size:
            # The survivors' caps cannot hold the batch (capped chips left): a cap is a
            # preference, the exact global batch is the promise. Ignore the caps.
            caps = {}
        return choose_shares(
            active,
            self.global_batch_size,
            fleet.throughput_sps,
            fleet.shares,
            self._hints(fleet.throughput_sps, active),
            caps,
            costs=fleet.costs,
            derates=fleet.derates,
            uncertainties={
                name: relative_uncertainty(fleet.timings[name], fleet.costs[name])
                for name in active
                if name in fleet.timings and name in fleet.costs
            },
        )

    def _hints(self, measured_sps: Mapping[str, float], active: Sequence[str]) -> dict[str, float]:
        """Rates for chips not measured yet: the given hints, else their known speed ratio
        times the rate per unit of speed that the measured chips show (the median).

        Before anything is measured the ratios alone are the estimates (only their
        proportions matter then): a fleet of chips 4x apart starts on shares 4x apart,
        not on an equal split that keeps the fast chips waiting for its first steps.
        """
        hints = dict(self.hints_sps)
        ratios = self.relative_speeds
        # What is known of each chip's rate: measured, else its hint (same units).
        known = {m: r for m, r in measured_sps.items() if r > 0 and math.isfinite(r)}
        unknown = [m for m in active if m in ratios and m not in hints and m not in known]
        if not unknown:
            return hints  # the steady state: every chip measured, nothing to estimate
        known.update({m: h for m, h in hints.items() if m not in known and h > 0})
        per_speed = sorted(known[m] / ratios[m] for m in ratios if m in known)
        if not per_speed and any(m in known for m in active):
            return hints  # rates known only for chips of no known ratio: nothing relates them
        if not per_speed and any(m not in ratios for m in active):
            return hints  # nothing measured, and a chip of no known ratio to compare with
        scale = per_speed[len(per_speed) // 2] if per_speed else 1.0
        for member in unknown:
            hints[member] = ratios[member] * scale
        return hints


class _Overlay:
    """The fleet state with some chips' speeds replaced (a slowdown seen in a failed attempt)."""

    def __init__(
        self, fleet: ShareRecord, throughput: dict[str, float], costs: dict[str, list[float]]
    ) -> None:
        self.throughput_sps = throughput
        self.costs = costs
        self.shares: dict[str, int] = {}  # no damping towards the shares that failed
        self.sps_history = fleet.sps_history
        self.timings = {m: t for m, t in fleet.timings.items() if m in costs}
        self.derates = fleet.derates
