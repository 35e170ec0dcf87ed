"""A rank of a replica group at run time: its group's gloo group, and what it combines.

Every decision that changes what a rank computes (shares, exclusions) must be
the same on all ranks of a group, or FSDP's collectives pair up wrongly. Each
rank only sees, across groups, the same rank of the others (torchft's
rank-by-rank replication), so what the step engine reads from a reduction is
summed inside the group too: rates, the control block, squared norms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from phalanx.observe.events import EventLog
from phalanx.runtime.worker_config import WorkerConfig

# FSDP's collectives inside a group: a rank that died shows at once (its sockets
# close); a frozen one ends the group at this timeout, and the launcher restarts it.
GROUP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class GroupRank:
    rank: int
    ranks: int

    @property
    def leads(self) -> bool:
        """Rank 0 speaks for the group: events, lines, the final model."""
        return self.rank == 0

    def sum_(self, tensor: torch.Tensor) -> None:
        """In place, over the group's ranks."""
        dist.all_reduce(tensor)

    def norm(self, own: float) -> float:
        """The group's L2 norm from each rank's norm of its shard."""
        squares = torch.tensor([own * own], dtype=torch.float64)
        self.sum_(squares)
        return math.sqrt(float(squares))

    def most(self, count: int) -> int:
        value = torch.tensor([count], dtype=torch.int64)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return int(value)

    def sub_range(self, start: int, end: int) -> tuple[int, int]:
        """This rank's part of its group's slice [start, end): equal, earlier ranks first."""
        base, extra = divmod(end - start, self.ranks)
        lo = start + self.rank * base + min(self.rank, extra)
        return lo, lo + base + (1 if self.rank < extra else 0)


def join_group(worker: WorkerConfig) -> GroupRank:
    """Meet the group's other ranks at the launcher's store for this launch."""
    host, port = (worker.group_store or "").rsplit(":", 1)
    store = dist.TCPStore(
        host, int(port), is_master=False, timeout=timedelta(seconds=GROUP_TIMEOUT_S * 4)
    )
    dist.init_process_group(
        "gloo", store=dist.PrefixStore("group", store), rank=worker.group_rank,
        world_size=worker.group_ranks, timeout=timedelta(seconds=GROUP_TIMEOUT_S),
    )  # fmt: skip
    return GroupRank(worker.group_rank, worker.group_ranks)


class FollowerEvents(EventLog):
    """A group's ranks past the first record only what ends them and what their chip holds;
    rank 0 speaks for the group."""

    KEPT = frozenset({"out_of_memory", "unrecoverable", "chip_memory", "chip_memory_peak", "fault"})

    def emit(self, kind: str, **fields: object) -> dict[str, object]:
        if kind in self.KEPT:
            return super().emit(kind, **fields)
        return {"kind": kind, "source": self.source, **fields}
