"""Which chips form each replica, and how many of the group's ranks each chip hosts.

`--emulate 1:mem=2GiB+1:mem=1GiB,1+1+1`: items are replicas; `+` joins chips
into a replica group. Every group has the same number S of ranks (the largest
group's chip count), because rank j of every group must hold the same slice
(docs/groups.md); a group's chips share its S ranks in proportion to their
memory, each at least one, so a chip holds ranks/S of the state.
"""

from __future__ import annotations

from dataclasses import dataclass

from phalanx.emulate.spec import FIX, EmulatedChip, parse_emulate_chips
from phalanx.errors import UsageError


@dataclass(frozen=True)
class ReplicaChips:
    chips: tuple[EmulatedChip, ...]

    @property
    def speed(self) -> float:
        """The replica's nominal speed: its chips' together."""
        return sum(chip.speed for chip in self.chips)


def parse_emulate_replicas(spec: str) -> list[ReplicaChips]:
    """`1,0.5x2,1+1:mem=1GiB` -> [one chip], [one], [one], [a group of two chips]."""
    if not spec or not spec.strip():
        raise UsageError("--emulate", "is empty", FIX, spec)
    replicas: list[ReplicaChips] = []
    for item in spec.split(","):
        parts = item.split("+")
        if len(parts) == 1:
            replicas.extend(ReplicaChips((chip,)) for chip in parse_emulate_chips(item))
            continue
        chips = tuple(chip for part in parts for chip in parse_emulate_chips(part))
        replicas.append(ReplicaChips(chips))
    return replicas


def ranks_per_group(replicas: list[ReplicaChips]) -> int:
    """S: the largest group's chip count (1 when every replica is one chip)."""
    return max(len(r.chips) for r in replicas)


def apportion_ranks(chips: tuple[EmulatedChip, ...], ranks: int) -> list[int]:
    """How many of `ranks` each chip hosts: in proportion to memory, each at least one.

    Chips without a declared memory count as equal. Largest remainders, ties to
    the earlier chip, so every process derives the same answer.
    """
    if ranks < len(chips):
        raise ValueError(f"{ranks} ranks cannot cover {len(chips)} chips")
    weights = [float(c.memory_bytes or 1) for c in chips]
    if any(c.memory_bytes is None for c in chips):
        weights = [1.0] * len(chips)
    spare = ranks - len(chips)  # one each first: a chip in a group holds something
    total = sum(weights)
    ideal = [spare * w / total for w in weights]
    counts = [1 + int(x) for x in ideal]
    left = ranks - sum(counts)
    order = sorted(range(len(chips)), key=lambda i: (-(ideal[i] - int(ideal[i])), i))
    for i in order[:left]:
        counts[i] += 1
    return counts
