"""The rounds of a sites run: how many inner steps each site does, and where they lie.

Counts are *planned*, not signalled: at each outer step every site sends its
inner-step time with its upload, and every replica of every site computes the
next round's counts from the same exchanged numbers, so all of them know where
the round ends without another message:

- the fastest site counted in the last round does `budget` inner steps (H, or
  what is left of the run), a site taking twice as long per step half as many
  (at least 1: every live site contributes every round);
- a site that was not counted in the last round (cut off, late, dead) gets 0,
  so no positions are reserved for work that may never come; it takes part
  again from the round after the one it returns in;
- round 0 knows no times: every site gets the budget.

Positions (the one global sample stream, data/slicing.py) follow the counts:
round r starts at stream step `base_step`; site i's block is the `counts[i]`
steps after the blocks of sites 0..i-1; the next round starts after the last
block. Every site does exactly its planned steps, even one cut off mid-round
(it finishes them and its work arrives late, sites/site_state.py), so blocks
tile the stream with no gaps and no position is handed out twice. Every site
uses the same global batch B, so stream step s is positions [s*B, (s+1)*B).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class OpenRound:
    """The round being trained: its index, first stream step and counts by site index."""

    round: int
    base_step: int
    counts: tuple[int, ...]

    def stream_step(self, site: int, step_in_round: int) -> int:
        """The global-stream step of the site's `step_in_round`-th inner step."""
        if not 0 <= step_in_round < self.counts[site]:
            raise ValueError(
                f"site {site}: inner step {step_in_round} of round {self.round} is beyond its "
                f"{self.counts[site]} planned steps"
            )
        return self.base_step + sum(self.counts[:site]) + step_in_round

    def next(self, counts: Sequence[int]) -> OpenRound:
        return OpenRound(self.round + 1, self.base_step + sum(self.counts), tuple(counts))


def total_rounds(steps: int, outer_every: int) -> int:
    """Outer rounds of a run of `steps` inner steps of the fastest site."""
    return math.ceil(steps / outer_every)


def round_budget(round_index: int, steps: int, outer_every: int) -> int:
    """The fastest site's inner steps in a round: H, the last round what is left."""
    return max(0, min(outer_every, steps - round_index * outer_every))


def first_round(sites: int, steps: int, outer_every: int) -> OpenRound:
    budget = round_budget(0, steps, outer_every)
    return OpenRound(0, 0, tuple([budget] * sites))


def plan_counts(
    budget: int, step_times_s: Sequence[float | None], counted: Sequence[bool]
) -> tuple[int, ...]:
    """Next round's inner steps by site: proportional to speed, the fastest `budget`."""
    known = [t for t, c in zip(step_times_s, counted) if c and t is not None and t > 0]
    fastest = min(known, default=None)
    counts = []
    for time_s, was_counted in zip(step_times_s, counted):
        if not was_counted or budget == 0:
            counts.append(0)
        elif fastest is None or time_s is None or time_s <= 0:
            counts.append(budget)  # no time measured: the budget, as in round 0
        else:
            counts.append(max(1, min(budget, round(budget * fastest / time_s))))
    return tuple(counts)
