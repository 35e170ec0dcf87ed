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
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from phalanx.observe.events import EventLog
from phalanx.runtime.worker_config import WorkerConfig

if TYPE_CHECKING:
    from pathlib import Path

    from phalanx.data.feed import BatchFeed
    from phalanx.runtime.compute import LossFn

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


@dataclass(frozen=True)
class JoinedGroup:
    rank: GroupRank
    # An emulated chip's compute per sample, measured on the whole model before it
    # was sharded (None on a real device): its pacer paces that, not FSDP's host work.
    cpu_per_sample_s: float | None


def join_and_shard(
    worker: WorkerConfig,
    model: torch.nn.Module,
    loss_fn: LossFn,
    feed: BatchFeed,
    device: torch.device,
    guard: str,
) -> JoinedGroup | None:
    """A rank of a replica group shards the model with its group before the optimizer
    exists (docs/groups.md); None for a replica of one chip. No guard in groups yet."""
    if worker.group_ranks <= 1:
        return None
    from phalanx.groups.sharding import shard_model

    rank = join_group(worker)
    cpu_per_sample_s = None
    if worker.speed is not None:
        from phalanx.runtime.compute_probe import cpu_per_sample

        cpu_per_sample_s = cpu_per_sample(model, loss_fn, feed, device)
    shard_model(model, dist.group.WORLD, device.type)
    if rank.leads and worker.index == 0 and guard != "off":
        print("replica groups: the SDC guard is off in groups for now (docs/groups.md)",
              flush=True)  # fmt: skip
    return JoinedGroup(rank, cpu_per_sample_s)


def rank_events(out_dir: Path, name: str, group: GroupRank | None) -> EventLog:
    """Rank 0 of a group (and a replica of one chip) records everything; the others little."""
    if group is not None and not group.leads:
        return FollowerEvents(out_dir, source=name)
    return EventLog(out_dir, source=name)
