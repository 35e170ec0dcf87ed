"""Learn each chip's speed from a committed step, identically on every replica.

The throughputs rode in the step's allreduce, so every participant updates
the replicated fleet state from the same numbers and derives the same next
shares without another message. A negative throughput is a replica warming
up (its first steps after a start are slow: allocation, first touch): it is
not learnt from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from phalanx.shares.affine import fit_cost, record_timing, relative_uncertainty
from phalanx.shares.apportion import choose_shares, record_measurement


class ShareRecord(Protocol):
    """The part of the replicated fleet state (runtime/state.py) that shares live on."""

    throughput_sps: dict[str, float]
    shares: dict[str, int]
    sps_history: dict[str, list[float]]
    timings: dict[str, list[list[float]]]
    costs: dict[str, list[float]]
    derates: dict[str, float]


def learn_from_step(
    fleet: ShareRecord,
    active: Sequence[str],
    shares: Sequence[int],
    throughputs_sps: Mapping[str, float],
    heats: Mapping[str, float],
) -> None:
    """Update `fleet` (throughput estimates, cost models, shares, derates) in place."""
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
    ) -> None:
        self.global_batch_size = global_batch_size
        self.hints_sps = dict(hints_sps)
        self.caps = dict(caps)

    def shares(self, fleet: ShareRecord, active: Sequence[str]) -> list[int]:
        caps = self.caps
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
            self.hints_sps,
            caps,
            costs=fleet.costs,
            derates=fleet.derates,
            uncertainty=max(
                (
                    relative_uncertainty(fleet.timings[name], fleet.costs[name])
                    for name in active
                    if name in fleet.timings and name in fleet.costs
                ),
                default=0.0,
            ),
        )
