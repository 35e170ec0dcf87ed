"""Replicas of different kinds: compare what must be equal, and no more.

Replicas of one kind (one vendor's kernels) apply the same summed gradient
bit for bit: their parameter fingerprints must agree exactly, and the
minority of a kind is at fault. Replicas of different kinds may differ in
the last bits after every step, so across kinds only a coarse summary is
compared (the parameters' L1 and L2 norms), with a tolerance far
above rounding and far below what a corruption that matters does (a flipped
exponent bit changes an element by orders of magnitude). And because last
bits accumulate, replicas outside the largest kind re-synchronise from it
every `RESYNC_EVERY` steps: they skip one commit and heal from a peer of the
largest kind (a heal, not an offence).

With one kind this is exactly the plain fingerprint majority.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from phalanx.guard.fingerprint import majority

RESYNC_EVERY = 50
COARSE_RTOL = 1e-4  # relative; rounding drift over RESYNC_EVERY steps stays far below


@dataclass
class ReplicaCheck:
    diverged: dict[str, str] = field(default_factory=dict)  # replica -> why (offences)
    tie: bool = False  # two of one kind disagree and nothing else can tell which is right
    resync: list[str] = field(default_factory=list)  # healthy, re-synchronising this step


def largest_kind(kinds: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for kind in kinds.values():
        counts[kind] = counts.get(kind, 0) + 1
    return min(counts, key=lambda k: (-counts[k], k))


def _agrees(a: float, b: float) -> bool:
    return abs(a - b) <= COARSE_RTOL * max(abs(a), abs(b), 1e-30)


def _coarse_outliers(coarse: dict[str, tuple[float, float]]) -> set[str]:
    """Replicas outside the largest group whose coarse summaries agree with each other."""
    best: list[str] = []
    for value in coarse.values():
        group = [m for m, v in coarse.items() if all(_agrees(x, y) for x, y in zip(value, v))]
        if len(group) > len(best):
            best = group
    if len(best) * 2 <= len(coarse):
        return set()  # no majority: nothing to conclude across kinds
    return set(coarse) - set(best)


def check_replicas(
    fingerprints: dict[str, tuple[float, ...]],
    coarse: dict[str, tuple[float, float]],
    kinds: dict[str, str],
    step: int,
    copies: frozenset[str] = frozenset(),
) -> ReplicaCheck:
    """Who holds wrong parameters, whether there is an unbreakable tie, who re-synchronises.

    `copies` healed from a peer at this very quorum: they hold their source's state,
    so they are no independent witnesses and do not vote. (A corrupt replica that
    served a heal would otherwise win a majority with its own copy.)
    """
    check = ReplicaCheck()
    by_kind: dict[str, dict[str, tuple[float, ...]]] = {}
    for name, value in fingerprints.items():
        by_kind.setdefault(kinds.get(name, ""), {})[name] = value
    tied: list[str] = []
    for members in by_kind.values():
        witnesses = {n: v for n, v in members.items() if n not in copies} or members
        agreed, _ = majority(witnesses)
        if agreed is None and len(witnesses) > 1:
            tied.extend(members)
            continue
        for name in sorted(n for n, v in members.items() if v != agreed):
            check.diverged[name] = "its parameters differ from the majority's"
    several_kinds = len(by_kind) > 1
    # A replica that knew of no other kind sent no coarse summary (zeros): no conclusion.
    if several_kinds and all(value[1] > 0 for value in coarse.values()):
        for name in sorted(_coarse_outliers(coarse)):
            check.diverged.setdefault(name, "its parameters differ from the other kinds' by far")
    if tied and not any(name in check.diverged for name in tied):
        check.tie = True
    if several_kinds and step > 0 and step % RESYNC_EVERY == 0:
        main = largest_kind({n: kinds.get(n, "") for n in fingerprints})
        check.resync = sorted(
            n for n in fingerprints if kinds.get(n, "") != main and n not in check.diverged
        )
    return check
