"""A sites run's events -> steady-state window over whole outer rounds, samples, blocked time.

Every replica of a real sites run (`phalanx run --site ...`) writes, in its
site's events.jsonl, one `step` event per committed inner step (its `shares`
sum to the global batch) and, per outer round, an `outer_round` event (after
the outer step) and an `outer_wait` event (`wait_s`: from its last inner step
of the round to the end of the outer step, all of which it trained nothing).

A round's inner steps all commit before any site's outer step of that round
(the exchange needs every site's upload), and the next round's steps after
it: so a window from the commit of one round (its first `outer_round` event,
any site) to a later one holds whole rounds only, neither half an inner phase
nor half an exchange. Pure: no processes here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Round 0 is warm-up: first allocations, the init sync, and no measured step times yet
# (every site gets the full budget of H steps, so the fastest waits for the slowest).
WARMUP_ROUNDS = 1

Records = Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class RoundsWindow:
    """Whole rounds, from the commit of the last warm-up round to the last commit."""

    start_t: float
    end_t: float
    first_round: int  # the first round inside the window
    last_round: int

    @property
    def seconds(self) -> float:
        return self.end_t - self.start_t

    @property
    def rounds(self) -> int:
        return self.last_round - self.first_round + 1


def round_commits(records: Records) -> dict[int, float]:
    """Each round's commit: its earliest `outer_round` event, whichever site wrote it."""
    commits: dict[int, float] = {}
    for record in records:
        if record.get("kind") == "outer_round":
            n, t = int(record["round"]), float(record["t"])
            commits[n] = min(t, commits.get(n, t))
    return commits


def whole_rounds_window(records: Records, warmup_rounds: int = WARMUP_ROUNDS) -> RoundsWindow:
    """From the commit of round `warmup_rounds - 1` to the last round's commit (all sites).

    Rounds must be consecutive from 0: a missing one means a log is cut short.
    """
    if warmup_rounds < 1:
        raise ValueError("a window starts at a commit: warmup_rounds must be at least 1")
    commits = round_commits(records)
    rounds = sorted(commits)
    if rounds != list(range(len(rounds))):
        raise ValueError(f"rounds are not consecutive from 0: {rounds}")
    if len(rounds) <= warmup_rounds:
        raise ValueError(f"{len(rounds)} rounds leave none after {warmup_rounds} of warm-up")
    return RoundsWindow(
        start_t=commits[warmup_rounds - 1],
        end_t=commits[rounds[-1]],
        first_round=warmup_rounds,
        last_round=rounds[-1],
    )


def samples_in(records: Records, start_t: float, end_t: float) -> int:
    """Samples of the inner steps committed in (start_t, end_t] (a step counted once).

    `records`: one site's events (its step numbers are its own). A step's
    samples are its participants' shares; its commit is its first writer's.
    """
    steps: dict[int, tuple[float, int]] = {}
    for record in records:
        if record.get("kind") != "step":
            continue
        step, t = int(record["step"]), float(record["t"])
        if step not in steps or t < steps[step][0]:
            steps[step] = (t, sum(int(s) for s in record["shares"]))
    return sum(samples for t, samples in steps.values() if start_t < t <= end_t)


def round_records(records: Records) -> dict[int, Mapping[str, Any]]:
    """One `outer_round` record per round (every replica of every site writes the same one)."""
    rounds: dict[int, Mapping[str, Any]] = {}
    for record in records:
        if record.get("kind") == "outer_round":
            rounds.setdefault(int(record["round"]), record)
    return rounds


def blocked_s(records: Records, window: RoundsWindow) -> float:
    """One site's seconds blocked at outer steps over the window's rounds.

    `records`: one site's events. Per round, the mean `wait_s` over the site's
    replicas (they wait together; each writes its own), summed over the rounds.
    """
    waits: dict[int, list[float]] = {}
    for record in records:
        if record.get("kind") == "outer_wait":
            n = int(record["round"])
            if window.first_round <= n <= window.last_round:
                waits.setdefault(n, []).append(float(record["wait_s"]))
    missing = sorted(set(range(window.first_round, window.last_round + 1)) - set(waits))
    if missing:
        raise ValueError(f"no outer_wait for rounds {missing}")
    return sum(sum(values) / len(values) for values in waits.values())
