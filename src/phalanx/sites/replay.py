"""A recorded sites run's rounds, to replay them: counts and counted sites, not the clock.

Every replica writes an `outer_round` event per committed round (sites/
outer_round.py): the counts each site was planned, which sites the outer step
took, and the counts planned for the next round. They are a function of the
clock (step times, who was cut off); everything else is a function of (seed,
configuration, these records). `phalanx run --outer-replay RUN_DIR` (any
site's run directory) takes them from the record instead, so the rerun ends
with the recorded run's parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phalanx.observe.events import read_events


class RecordedRounds:
    def __init__(self, records: dict[int, dict[str, Any]]) -> None:
        self._records = records

    @classmethod
    def from_run(cls, run_dir: str | Path) -> RecordedRounds:
        """The rounds recorded in `run_dir`; refused if two records of one round disagree."""
        records: dict[int, dict[str, Any]] = {}
        for event in read_events(run_dir):
            if event.get("kind") != "outer_round":
                continue
            round_index = int(event["round"])
            mine = {"counted": [int(s) for s in event["counted"]],
                    "next_counts": [int(c) for c in event["next_counts"]]}  # fmt: skip
            known = records.setdefault(round_index, mine)
            if known != mine:
                raise ValueError(
                    f"{run_dir}: round {round_index} was recorded twice, differently "
                    f"({known} and {mine}): this record cannot be replayed"
                )
        missing = sorted(set(range(len(records))) - set(records))
        if missing:
            raise ValueError(f"{run_dir}: the record misses outer rounds {missing[:5]}")
        return cls(records)

    @property
    def rounds(self) -> int:
        return len(self._records)

    def _record(self, round_index: int) -> dict[str, Any]:
        if round_index not in self._records:
            raise ValueError(
                f"round {round_index} is beyond the {len(self._records)} rounds recorded: "
                "the replay must use the recorded run's --steps and --outer-every"
            )
        return self._records[round_index]

    def counted(self, round_index: int) -> set[int]:
        return set(self._record(round_index)["counted"])

    def next_counts(self, round_index: int) -> tuple[int, ...]:
        return tuple(self._record(round_index)["next_counts"])
