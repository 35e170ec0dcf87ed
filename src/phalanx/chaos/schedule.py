"""Random fault schedules that a fleet can survive, as pure data (no processes).

Survivability rule: each schedule picks an *anchor* replica that never gets a
fault able to take it out of the fleet (no kill, no hang longer than the
collective timeout, no weight corruption, at most two gradient corruptions so
the guard never quarantines it). Every other replica may get anything,
including a kill without restart (down for good) or three corruptions (which
may quarantine it). So at every step at least one replica is alive, which is
the most the runtime promises to survive. The anchor is also why a weight SDC
is always seen by at least two replicas: a lone replica cannot out-vote
itself, and no guard can detect a weight flip without a second copy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from phalanx.faults.spec import PHASES, FaultSpec, parse_fault

# Fleets of 3-4 chips of mixed speeds, slow enough (emulated) that one step
# lasts ~0.3 s: a restarted worker (seconds of imports) can rejoin before the end.
FLEETS: tuple[tuple[float, ...], ...] = (
    (0.04, 0.02, 0.01),
    (0.04, 0.02, 0.01, 0.01),
    (0.03, 0.03, 0.015),
    (0.04, 0.01, 0.01, 0.02),
)
SMALL_FLEETS = tuple(f for f in FLEETS if len(f) == 3)  # for the short CI campaign

# Fault categories (a kind plus the variant that matters for survival) and how
# often each is drawn.
CATEGORY_WEIGHTS: dict[str, int] = {
    "kill_restart": 3,
    "kill_down": 1,
    "hang_short": 2,
    "hang_long": 2,
    "slow": 1,
    "sdc_grad": 2,
    "sdc_weight": 1,
    "nan": 2,
}
CATEGORIES = tuple(CATEGORY_WEIGHTS)
CORRUPTIONS = ("sdc_grad", "sdc_weight", "nan")
# Categories the anchor never gets: each can remove it from the fleet.
_NOT_ON_ANCHOR = ("kill_restart", "kill_down", "hang_long", "sdc_weight")
# The runtime quarantines a replica after this many offences (Trainer(quarantine_after=3)).
QUARANTINE_AFTER = 3


@dataclass(frozen=True)
class PlannedFault:
    category: str
    spec: str  # the --fault string, exactly as a user would type it

    def parsed(self) -> FaultSpec:
        return parse_fault(self.spec)


@dataclass(frozen=True)
class Schedule:
    index: int
    seed: int
    speeds: tuple[float, ...]
    anchor: int
    faults: tuple[PlannedFault, ...] = field(default_factory=tuple)

    @property
    def emulate(self) -> str:
        return ",".join(f"{s:g}" for s in self.speeds)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "seed": self.seed,
            "emulate": self.emulate,
            "anchor": f"r{self.anchor}",
            "faults": [{"category": f.category, "spec": f.spec} for f in self.faults],
        }

    def without(self, fault: PlannedFault) -> Schedule:
        """The same schedule minus one fault (for shrinking a failing schedule)."""
        kept = tuple(f for f in self.faults if f != fault)
        return Schedule(self.index, self.seed, self.speeds, self.anchor, kept)


def _spec(
    category: str, replica: int, step: int, rng: random.Random, base: float, timeout_s: float
) -> str:
    head = f"replica={replica},step={step}"
    phase = rng.choice(PHASES)
    if category == "kill_restart":
        return f"kill:{head},phase={phase},restart_s={rng.uniform(0.3, 3.0):.2f}"
    if category == "kill_down":
        return f"kill:{head},phase={phase}"
    if category == "hang_short":  # well under the timeout: peers wait, nobody is dropped
        return f"hang:{head},phase={phase},seconds={rng.uniform(0.2, 0.5 * timeout_s):.2f}"
    if category == "hang_long":  # past the timeout: peers drop it, it heals when it wakes
        return (
            f"hang:{head},phase={phase},seconds={rng.uniform(timeout_s + 0.5, timeout_s + 4):.2f}"
        )
    if category == "slow":
        return f"slow:{head},speed={base * rng.uniform(0.2, 0.6):.5f}"
    if category == "sdc_grad":
        return f"sdc:{head},target=grad"
    if category == "sdc_weight":
        return f"sdc:{head},target=weight"
    if category == "nan":
        return f"nan:{head}"
    raise ValueError(f"unknown category {category}")


def _allowed(category: str, replica: int, anchor: int, corruptions: dict[int, int]) -> bool:
    if replica == anchor:
        if category in _NOT_ON_ANCHOR:
            return False
        if category in CORRUPTIONS and corruptions[replica] >= QUARANTINE_AFTER - 1:
            return False
    elif category in CORRUPTIONS and corruptions[replica] >= QUARANTINE_AFTER:
        return False  # a fourth would be noise: the third may already have quarantined it
    return True


def generate(
    seed: int,
    index: int,
    steps: int,
    timeout_s: float,
    max_faults: int = 6,
    fleets: tuple[tuple[float, ...], ...] = FLEETS,
    late_outages: bool = True,
) -> Schedule:
    """Schedule `index` of campaign `seed`: the same inputs always give the same schedule."""
    rng = random.Random(f"phalanx-chaos:{seed}:{index}")
    speeds = rng.choice(fleets)
    anchor = rng.randrange(len(speeds))
    wanted = rng.randint(2, max_faults)
    corruptions = dict.fromkeys(range(len(speeds)), 0)
    taken: set[tuple[int, int]] = set()  # one fault per (replica, step): keys stay unique
    faults: list[PlannedFault] = []
    weights = [CATEGORY_WEIGHTS[c] for c in CATEGORIES]
    for _attempt in range(wanted * 20):
        if len(faults) == wanted:
            break
        category = rng.choices(CATEGORIES, weights)[0]
        replica = rng.randrange(len(speeds))
        # A restarted worker needs seconds to rejoin: kill early enough that it can.
        # Without late outages (the CI profile) a long hang is early too: a replica that
        # returns just as the fleet finishes hits a known straggler bug (docs/reliability.md).
        last = steps - 4
        if category == "kill_restart" or (category == "hang_long" and not late_outages):
            last = steps // (3 if late_outages else 4)
        step = rng.randint(1, max(1, last))
        if (replica, step) in taken or not _allowed(category, replica, anchor, corruptions):
            continue
        taken.add((replica, step))
        if category in CORRUPTIONS:
            corruptions[replica] += 1
        spec = _spec(category, replica, step, rng, speeds[replica], timeout_s)
        parse_fault(spec, len(speeds))  # the generator only emits specs the CLI accepts
        faults.append(PlannedFault(category, spec))
    faults.sort(key=lambda f: (f.parsed().step, f.parsed().replica))
    return Schedule(index, seed, speeds, anchor, tuple(faults))


def category_of(event: dict[str, Any], timeout_s: float) -> str:
    """The category of a fired fault, from its `fault` event in events.jsonl."""
    kind = event["fault"]
    if kind == "kill":
        return "kill_restart" if event.get("restart_s") is not None else "kill_down"
    if kind == "hang":
        return "hang_long" if float(event["seconds"]) > timeout_s else "hang_short"
    if kind == "sdc":
        return "sdc_weight" if event.get("target") == "weight" else "sdc_grad"
    return str(kind)
