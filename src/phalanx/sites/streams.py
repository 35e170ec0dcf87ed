"""Site sub-streams: disjoint ranges of the one global sample stream, whatever the speeds.

All sites read the same global stream (positions 0, 1, 2, ... of the seeded
per-epoch orders, data/slicing.py). Inside a site an inner step takes
`batch` consecutive positions and splits them over the site's replicas by
shares, as today. Across sites, positions are handed out per outer round,
from the inner-step counts recorded for the rounds before (rounds.py), so
every site derives the same layout without talking:

- Round r starts at `base_r`, right after the last position used in round r-1.
- No site does more than H inner steps in a round (the round ends when the
  fastest site reaches H), so each site reserves H * batch positions:
  contiguous blocks, one per site, in an order fixed at the start of the round.
- Site i's k-th inner step of the round covers
  [start_i + k * batch_i, start_i + (k + 1) * batch_i).
- The order: the sites by their steps in round r-1, most first (ties: lower
  index first); round 0 in site index order. The slowest site goes last, so
  the unused tail of its block is where round r+1 begins.

No position is handed to two sites or two steps (blocks are disjoint; the
next round starts after the last used position). Waste: the unused tail of
every block except the last used one, sum of (H - n_i) * batch_i over those
sites, is skipped for good (counted as skipped, never used). With two sites
the faster one is first and fills its block, so from round 1 on nothing is
skipped; a site that was cut off (n_i = 0) or an intermediate speed among
three or more sites leaves a gap. A different rule (gaps handed out again in
later rounds) would waste nothing but makes a site's stream a list of
fragments; the skipped count is in the accounting, so it can be judged.

When every site uses the global batch B, positions are multiples of B and
site steps map onto global steps of today's stream, [s*B, (s+1)*B).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StreamPlan:
    """The fixed inputs of the layout: H and each site's samples per inner step."""

    outer_every: int
    batch_sizes: tuple[int, ...]  # by site index

    def __post_init__(self) -> None:
        if self.outer_every < 1:
            raise ValueError(f"outer_every must be >= 1, got {self.outer_every}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"every site needs a batch >= 1, got {self.batch_sizes}")

    @property
    def sites(self) -> int:
        return len(self.batch_sizes)


@dataclass(frozen=True)
class RoundLayout:
    """Where each site's inner steps of one round lie in the global stream."""

    round: int
    base: int  # first position of the round
    order: tuple[int, ...]  # sites in the order of their blocks
    starts: tuple[int, ...]  # by site index: first position of the site's block
    plan: StreamPlan

    def step_range(self, site: int, step_in_round: int) -> tuple[int, int]:
        """Positions [start, end) of the site's `step_in_round`-th inner step of this round."""
        if not 0 <= step_in_round < self.plan.outer_every:
            raise ValueError(
                f"site {site}: inner step {step_in_round} of round {self.round} is beyond the "
                f"round's {self.plan.outer_every} (the round should have ended)"
            )
        batch = self.plan.batch_sizes[site]
        start = self.starts[site] + step_in_round * batch
        return start, start + batch

    def used_ranges(self, counts: Sequence[int]) -> list[tuple[int, int, int]]:
        """(site, start, end) of what each site used, given its inner steps this round."""
        _check_counts(self.plan, counts, self.round)
        return [
            (
                site,
                self.starts[site],
                self.starts[site] + counts[site] * self.plan.batch_sizes[site],
            )
            for site in self.order
            if counts[site] > 0
        ]

    def next_layout(self, counts: Sequence[int]) -> RoundLayout:
        """The next round's layout, once this round's inner-step counts are recorded."""
        used = self.used_ranges(counts)
        next_base = max((end for _, _, end in used), default=self.base)
        return _layout(self.plan, self.round + 1, next_base, counts)


def first_layout(plan: StreamPlan) -> RoundLayout:
    return _layout(plan, 0, 0, None)


def layouts(plan: StreamPlan, history: Sequence[Sequence[int]]) -> list[RoundLayout]:
    """Layouts of every recorded round and of the open one after them (len(history) + 1)."""
    result = [first_layout(plan)]
    for counts in history:
        result.append(result[-1].next_layout(counts))
    return result


def position_range(
    plan: StreamPlan, history: Sequence[Sequence[int]], site: int, inner_step: int
) -> tuple[int, int]:
    """Positions of the site's `inner_step`-th inner step counted over the whole run.

    Steps of recorded rounds are found through their counts; a step past them lies in
    the open round (and must be below H there).
    """
    if not 0 <= site < plan.sites or inner_step < 0:
        raise ValueError(f"no site {site} / inner step {inner_step} in a {plan.sites}-site plan")
    all_layouts = layouts(plan, history)
    before = 0
    for layout, counts in zip(all_layouts, history):
        if inner_step < before + counts[site]:
            return layout.step_range(site, inner_step - before)
        before += counts[site]
    return all_layouts[-1].step_range(site, inner_step - before)


@dataclass(frozen=True)
class StreamAccounting:
    """What a run's recorded rounds used of the global stream: [0, end) = used + skipped."""

    used: tuple[tuple[int, int], ...]  # merged, sorted [start, end) ranges
    skipped: tuple[tuple[int, int], ...]  # the gaps between them
    end: int  # where the next round begins

    @property
    def used_samples(self) -> int:
        return sum(e - s for s, e in self.used)

    @property
    def skipped_samples(self) -> int:
        return sum(e - s for s, e in self.skipped)


def account(plan: StreamPlan, history: Sequence[Sequence[int]]) -> StreamAccounting:
    """Used and skipped positions of the recorded rounds; raises if any position was used twice."""
    ranges: list[tuple[int, int]] = []
    layout = first_layout(plan)
    for counts in history:
        ranges.extend((s, e) for _, s, e in layout.used_ranges(counts))
        layout = layout.next_layout(counts)
    ranges.sort()
    used: list[tuple[int, int]] = []
    skipped: list[tuple[int, int]] = []
    cursor = 0
    for start, end in ranges:
        if start < cursor:
            raise RuntimeError(f"bug: positions [{start}, {cursor}) were handed out twice")
        if start > cursor:
            skipped.append((cursor, start))
        if used and used[-1][1] == start:
            used[-1] = (used[-1][0], end)
        else:
            used.append((start, end))
        cursor = end
    return StreamAccounting(tuple(used), tuple(skipped), layout.base)


def _layout(
    plan: StreamPlan, round_index: int, base: int, previous: Sequence[int] | None
) -> RoundLayout:
    sites = range(plan.sites)
    order = (
        tuple(sites) if previous is None else tuple(sorted(sites, key=lambda i: (-previous[i], i)))
    )
    starts = [0] * plan.sites
    cursor = base
    for site in order:
        starts[site] = cursor
        cursor += plan.outer_every * plan.batch_sizes[site]
    return RoundLayout(round_index, base, order, tuple(starts), plan)


def _check_counts(plan: StreamPlan, counts: Sequence[int], round_index: int) -> None:
    if len(counts) != plan.sites or any(not 0 <= n <= plan.outer_every for n in counts):
        raise ValueError(
            f"round {round_index}: inner-step counts {list(counts)} must be one per site "
            f"({plan.sites}), each in [0, {plan.outer_every}]"
        )
