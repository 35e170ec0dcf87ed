"""A replica group's processes: launched together, restarted together (docs/groups.md).

Each rank is a worker process of its own (`WorkerSlot`); the group is one
replica to the launcher. When any rank exits with an error the others are
killed: they share one sharded model, and their collectives with the dead rank
can only fail or hang. The group then restarts as one, and each rank heals
from the same rank of a peer group.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from phalanx.launch.workers import WorkerSlot


@dataclass(frozen=True)
class RankPart:
    """One rank's part of its chip: the chip's speed and memory over the ranks it hosts."""

    chip: int
    speed: float | None
    memory_bytes: int | None


def rank_parts(chips: list[tuple[float | None, int | None, int]]) -> list[RankPart]:
    """A replica's ranks from its chips' (speed, memory, ranks hosted): a chip lends each
    of its ranks an equal part of its speed and memory."""
    return [
        RankPart(
            index,
            None if speed is None else speed / hosted,
            None if memory is None else memory // hosted,
        )
        for index, (speed, memory, hosted) in enumerate(chips)
        for _ in range(hosted)
    ]


@dataclass
class GroupSlot(WorkerSlot):
    parts: list[RankPart] = field(default_factory=list)
    members: list[WorkerSlot] = field(default_factory=list)
    _ended: list[WorkerSlot] = field(default_factory=list)  # the last launch's, for errors
    _store: Any = None
    _codes: dict[int, int] = field(default_factory=dict)

    def launch(self, restarted: bool) -> None:
        from torch.distributed import TCPStore  # slow import: only fleets with groups pay it

        # A fresh store per launch: a restarted rank must not read its predecessor's keys.
        self._store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
        self._codes = {}
        self.members = []
        for rank, part in enumerate(self.parts):
            config = replace(
                self.config, group_rank=rank, group_ranks=len(self.parts),
                group_store=f"127.0.0.1:{self._store.port}", group_chip=part.chip,
                speed=part.speed,
                emulated_memory_bytes=part.memory_bytes,
                faults=self._faults_of(rank),
            )  # fmt: skip
            member = WorkerSlot(
                config, self.script, self.script_args, self.log_dir,
                relay=self.relay if rank == 0 else None,
            )  # fmt: skip
            member.launch(restarted)
            self.members.append(member)
        self.config.restarted = restarted
        self.launches += 1
        self.restart_at = None

    def _faults_of(self, rank: int) -> list[dict[str, Any]]:
        """A fault strikes its chip (`chip=`, default the first) through the first rank
        that chip hosts: killing or freezing that process brings the group down as
        losing the chip would."""
        chip = self.parts[rank].chip
        first = next(r for r, part in enumerate(self.parts) if part.chip == chip)
        if rank != first:
            return []
        return [f for f in self.config.faults if int(f.get("chip", 0)) == chip]

    def poll(self) -> int | None:
        """The group's exit code once it is over: the first error, or 0 when all finished."""
        if not self.members:
            return None
        for rank, member in enumerate(self.members):
            if rank not in self._codes:
                code = member.poll()
                if code is not None:
                    self._codes[rank] = code
        errors = [code for code in self._codes.values() if code != 0]
        if errors:
            for member in self.members:
                member.stop()  # the group goes down as one
            return self._end(errors[0])
        if len(self._codes) == len(self.members):
            return self._end(0)
        return None

    def _end(self, code: int) -> int:
        self.exit_codes.append(code)
        self._ended, self.members = self.members, []
        self._store = None
        return code

    @property
    def alive(self) -> bool:
        return bool(self.members)

    def signal(self, signum: int) -> None:
        for member in self.members:
            member.signal(signum)

    def stop(self) -> None:
        for member in self.members:
            member.stop()
        if self.members:
            self._end(-9)

    def last_error_line(self) -> str | None:
        for member in self.members or self._ended:
            if line := member.last_error_line():
                return line
        return super().last_error_line()

    def tail(self, count: int = 15) -> str:
        return self.members[0].tail(count) if self.members else super().tail(count)
