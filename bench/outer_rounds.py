"""Outer-sync runs' round records -> steady-state windows, blocked time, gloo timeouts.

Every site process of bench/outer_site.py logs one record per committed round:

    {"kind": "round", "site": 0, "round": 3, "inner_steps": 100, "samples": 6400,
     "t_start": ..., "t_inner_end": ..., "t_commit": ...}   (time.time() seconds)

A round's samples are all trained between the commit of the round before and
its own commit, so a window that starts and ends at commits holds whole rounds
only: its rate counts neither half an inner phase nor half an exchange. A site
alone logs the same records (its commit is the end of its last inner step), so
the sites alone are measured exactly as the fleet is. Pure: no processes here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# One round (round 0) is warm-up: first allocations, the first quorum's heal (init sync).
WARMUP_ROUNDS = 1


@dataclass(frozen=True)
class RoundsWindow:
    """Whole rounds, from the commit of the last warm-up round to the last commit."""

    start_t: float
    end_t: float
    samples: int  # trained by every site in the window's rounds
    rounds: int  # committed rounds in the window

    @property
    def seconds(self) -> float:
        return self.end_t - self.start_t

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds


def round_records(records: Iterable[Mapping[str, Any]]) -> dict[int, list[Mapping[str, Any]]]:
    """The round records by round (one per site that committed it)."""
    by_round: dict[int, list[Mapping[str, Any]]] = {}
    for record in records:
        if record.get("kind") == "round":
            by_round.setdefault(int(record["round"]), []).append(record)
    return by_round


def commit_time(records: Iterable[Mapping[str, Any]]) -> float:
    """A round's commit: its first site's, as a step's is its first participant's in bench/."""
    return min(float(r["t_commit"]) for r in records)


def whole_rounds_window(
    records: Iterable[Mapping[str, Any]], warmup_rounds: int = WARMUP_ROUNDS
) -> RoundsWindow:
    """From the commit of round `warmup_rounds - 1` to the last round's commit.

    `warmup_rounds` 0 starts at round 0's first `t_start` (the first quorum). Rounds
    must be consecutive: a missing one means a site's log is cut short.
    """
    by_round = round_records(records)
    rounds = sorted(by_round)
    if rounds != list(range(len(rounds))):
        raise ValueError(f"rounds are not consecutive from 0: {rounds}")
    if len(rounds) <= warmup_rounds:
        raise ValueError(f"{len(rounds)} rounds leave none after {warmup_rounds} of warm-up")
    if warmup_rounds == 0:
        start_t = min(float(r["t_start"]) for r in by_round[0])
    else:
        start_t = commit_time(by_round[warmup_rounds - 1])
    inside = rounds[warmup_rounds:]
    return RoundsWindow(
        start_t=start_t,
        end_t=commit_time(by_round[rounds[-1]]),
        samples=sum(int(r["samples"]) for n in inside for r in by_round[n]),
        rounds=len(inside),
    )


def blocked_s(
    records: Iterable[Mapping[str, Any]], site: int, warmup_rounds: int = WARMUP_ROUNDS
) -> float:
    """Seconds per round (mean over the window) in which `site` trained nothing.

    From one commit to the next a site either runs its inner steps or waits: for
    the next quorum, for the other site at the all-gather, for the all-gather's bytes,
    for the outer step. Alone, only the host's gaps between steps are left.
    """
    by_round = round_records(records)
    inside = sorted(by_round)[max(1, warmup_rounds) :]  # a round is measured from a commit
    if not inside:
        raise ValueError(f"no round after {warmup_rounds} of warm-up")
    waits = []
    for n in inside:
        mine = next(r for r in by_round[n] if int(r["site"]) == site)
        previous_commit = next(
            float(r["t_commit"]) for r in by_round[n - 1] if int(r["site"]) == site
        )
        round_s = float(mine["t_commit"]) - previous_commit
        inner_s = float(mine["t_inner_end"]) - float(mine["t_start"])
        waits.append(round_s - inner_s)
    return sum(waits) / len(waits)


def exchange_timeout_s(upload_bytes: int, rate_mbit: float, round_s: float) -> float:
    """Gloo's timeout for one outer all-gather over a link of `rate_mbit` each way.

    Two sites' all-gather moves each upload once across the link, one each way;
    2 x bytes / rate bounds it even were the two directions not to overlap, and
    three times that leaves room for TCP's slow start and the heartbeats beside
    it. The first collective of a round also waits for the later site: counts
    are planned from the configured speeds, so a site running a few percent
    slow arrives that share of a round late; a quarter of a round (`round_s`,
    the faster site's inner phase) covers it. Never below 30 s.
    """
    transfer_s = 2 * upload_bytes * 8 / (rate_mbit * 1e6)
    return max(30.0, 3 * transfer_s + 0.25 * round_s)
