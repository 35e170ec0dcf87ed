"""The record of each outer round, in events.jsonl, and its replay.

How many inner steps a site managed before an outer step depends on its
speed that day; everything else in a sites run is a function of (seed,
configuration, these counts): the sub-streams (streams.py), the weights of
the outer step (samples), hence the parameters. So each outer round is
recorded as one `outer_round` event:

    {"kind": "outer_round", "round": 3,
     "sites": [{"site": 0, "inner_steps": 100, "samples": 3200, "payload_bytes": 57344}, ...]}

and a rerun that takes its counts from a previous run's events
(`ReplaySchedule`) instead of from the clock reproduces that run's final
parameters (bit for bit on the same host and dtype).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from phalanx.observe.events import EventLog, read_events

OUTER_ROUND_EVENT = "outer_round"


@dataclass(frozen=True)
class SiteRound:
    """One site's part of one round."""

    site: int
    inner_steps: int
    samples: int  # processed since the last outer step: the site's weight in it
    payload_bytes: int = 0  # what it sent over the link (0 when it was cut off)


@dataclass(frozen=True)
class OuterRound:
    round: int
    sites: tuple[SiteRound, ...]  # ascending site index, every site 0..N-1 once

    def __post_init__(self) -> None:
        indices = [s.site for s in self.sites]
        if indices != list(range(len(indices))) or not indices:
            raise ValueError(
                f"round {self.round}: sites must be listed once each as 0..N-1, got {indices}"
            )
        for s in self.sites:
            if s.inner_steps < 0 or s.samples < 0 or s.payload_bytes < 0:
                raise ValueError(f"round {self.round}, site {s.site}: negative count in {s}")
            # Samples without inner steps this round: a late (pending) contribution.
            if s.inner_steps > 0 and s.samples == 0:
                raise ValueError(
                    f"round {self.round}, site {s.site}: {s.inner_steps} inner steps "
                    f"but {s.samples} samples"
                )

    @property
    def inner_steps(self) -> list[int]:
        """Inner steps by site index: one row of the history streams.py lays out."""
        return [s.inner_steps for s in self.sites]

    def event_fields(self) -> dict[str, Any]:
        """The fields of its events.jsonl line (EventLog.emit adds kind, time and source)."""
        return {"round": self.round, "sites": [asdict(s) for s in self.sites]}

    @classmethod
    def from_event(cls, record: Mapping[str, Any]) -> OuterRound:
        try:
            sites = tuple(
                SiteRound(
                    int(s["site"]),
                    int(s["inner_steps"]),
                    int(s["samples"]),
                    int(s.get("payload_bytes", 0)),
                )
                for s in record["sites"]
            )
            return cls(int(record["round"]), sites)
        except (KeyError, TypeError) as err:
            raise ValueError(f"not an outer_round record ({err!r}): {dict(record)}") from err


def record_round(log: EventLog, outer_round: OuterRound) -> None:
    log.emit(OUTER_ROUND_EVENT, **outer_round.event_fields())


def rounds_from_events(events: Iterable[Mapping[str, Any]]) -> list[OuterRound]:
    """The outer rounds of a run, 0..R-1 in order.

    Several processes may record the same round (one per site): identical
    records count once; two that disagree, or a missing round, make the
    record unusable for replay, and that is said.
    """
    by_round: dict[int, OuterRound] = {}
    for record in events:
        if record.get("kind") != OUTER_ROUND_EVENT:
            continue
        outer_round = OuterRound.from_event(record)
        known = by_round.get(outer_round.round)
        if known is not None and known != outer_round:
            raise ValueError(
                f"round {outer_round.round} was recorded twice with different counts: "
                f"{known} and {outer_round}"
            )
        by_round[outer_round.round] = outer_round
    missing = sorted(set(range(len(by_round))) - set(by_round))
    if missing:
        raise ValueError(f"the record misses outer rounds {missing[:5]}: it cannot be replayed")
    return [by_round[r] for r in range(len(by_round))]


def read_rounds(run_dir: str | Path) -> list[OuterRound]:
    """The outer rounds recorded in a run directory's events.jsonl."""
    return rounds_from_events(read_events(run_dir))


class ReplaySchedule:
    """Inner-step counts fixed from a previous run, in place of the clock."""

    def __init__(self, rounds: Sequence[OuterRound]) -> None:
        self._rounds = list(rounds)
        if any(r.round != i for i, r in enumerate(self._rounds)):
            raise ValueError("replayed rounds must be numbered 0..R-1 in order")
        if len({len(r.sites) for r in self._rounds}) > 1:
            raise ValueError("replayed rounds disagree on the number of sites")

    @classmethod
    def from_run(cls, run_dir: str | Path) -> ReplaySchedule:
        return cls(read_rounds(run_dir))

    @property
    def rounds(self) -> int:
        return len(self._rounds)

    def inner_steps(self, round_index: int, site: int) -> int:
        """How many inner steps the site did in that round of the recorded run."""
        if not 0 <= round_index < len(self._rounds):
            raise IndexError(
                f"round {round_index} is beyond the {len(self._rounds)} rounds recorded"
            )
        return self._rounds[round_index].sites[site].inner_steps

    def history(self) -> list[list[int]]:
        """Counts by round and site: the input of streams.layouts / account."""
        return [r.inner_steps for r in self._rounds]
