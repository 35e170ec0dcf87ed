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

Faults of the fleet rather than of a replica follow their own rules:

- lighthouse restart (`--fault lighthouse:step=S,restart_s=X`): the launcher
  SIGKILLs its lighthouse once the fleet reaches step S and starts a new one
  after X (0-3 s, far below the 30 s join and 60 s quorum timeouts, so no
  replica gives up waiting). At most two per schedule, at different steps, so
  the fleet commits a step between them. Every replica keeps its state; the
  step in flight is retried with the next quorum.
- network cut (`netcut:replica=R,step=S,seconds=D`, fired by the campaign, not
  by `phalanx run`): the schedule runs each replica as its own host (a network
  namespace, `phalanx run --lighthouse`; see runner.py), and R's link goes
  down for D seconds (0.5 s to the collective timeout + 4 s) once the fleet
  reaches step S. R keeps running; peers wait for it or drop it after the
  timeout, and it heals from a peer when its link is back. Never the anchor,
  so one replica always reaches the lighthouse, and only in the first third
  of the run, so R is back well before the fleet finishes (a host still cut
  off at the end cannot learn that the run completed). A schedule with a cut
  has no lighthouse fault: its lighthouse is a separate `phalanx lighthouse`.
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
    "lighthouse": 1,
    "netcut": 1,
}
CATEGORIES = tuple(CATEGORY_WEIGHTS)
# Fired by the campaign itself (runner.py), not by `phalanx run --fault`.
HARNESS_CATEGORIES = ("netcut",)
# Drawn only in schedules whose replicas run as hosts; the others never see them.
HOSTS_ONLY = ("netcut",)
# ... and drawn only where the launcher runs the lighthouse (not in hosts schedules).
LOCAL_ONLY = ("lighthouse",)
HOSTS_SHARE = 0.2  # of schedules that run as hosts, when network cuts are available
MAX_PER_SCHEDULE = {"lighthouse": 2, "netcut": 2}
CORRUPTIONS = ("sdc_grad", "sdc_weight", "nan")
# Categories the anchor never gets: each can remove it from the fleet.
_NOT_ON_ANCHOR = ("kill_restart", "kill_down", "hang_long", "sdc_weight", "netcut")
# The runtime quarantines a replica after this many offences (Trainer(quarantine_after=3)).
QUARANTINE_AFTER = 3


@dataclass(frozen=True)
class PlannedFault:
    category: str
    spec: str  # the --fault string, exactly as a user would type it

    def parsed(self) -> FaultSpec:
        """The spec as phalanx reads it (a network cut: the same fields, parsed here)."""
        if self.category in HARNESS_CATEGORIES:
            return parse_netcut(self.spec)
        return parse_fault(self.spec)


def parse_netcut(spec: str) -> FaultSpec:
    """`netcut:replica=R,step=S,seconds=D`, as the generator writes it."""
    kind, _, body = spec.partition(":")
    values = dict(item.split("=", 1) for item in body.split(","))
    if kind != "netcut" or set(values) != {"replica", "step", "seconds"}:
        raise ValueError(f"not a network cut: {spec!r}")
    params = {"seconds": float(values["seconds"])}
    return FaultSpec("netcut", int(values["replica"]), int(values["step"]), "start", params)


@dataclass(frozen=True)
class Schedule:
    index: int
    seed: int
    speeds: tuple[float, ...]
    anchor: int
    faults: tuple[PlannedFault, ...] = field(default_factory=tuple)
    hosts: bool = False  # each replica its own host (network namespace): network cuts

    @property
    def emulate(self) -> str:
        return ",".join(f"{s:g}" for s in self.speeds)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "seed": self.seed,
            "emulate": self.emulate,
            "anchor": f"r{self.anchor}",
            "hosts": self.hosts,
            "faults": [{"category": f.category, "spec": f.spec} for f in self.faults],
        }

    def without(self, fault: PlannedFault) -> Schedule:
        """The same schedule minus one fault (for shrinking a failing schedule)."""
        kept = tuple(f for f in self.faults if f != fault)
        return Schedule(self.index, self.seed, self.speeds, self.anchor, kept, self.hosts)


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
    if category == "lighthouse":
        return f"lighthouse:step={step},restart_s={rng.uniform(0.0, 3.0):.2f}"
    if category == "netcut":
        return f"netcut:{head},seconds={rng.uniform(0.5, timeout_s + 4):.2f}"
    raise ValueError(f"unknown category {category}")


def _allowed(category: str, replica: int, anchor: int, corruptions: dict[int, int]) -> bool:
    if category == "lighthouse":
        return True  # not a replica's fault
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
    categories: tuple[str, ...] = CATEGORIES,
) -> Schedule:
    """Schedule `index` of campaign `seed`: the same inputs always give the same schedule.

    `categories` are those the campaign can inject here (network cuts need root).
    """
    rng = random.Random(f"phalanx-chaos:{seed}:{index}")
    speeds = rng.choice(fleets)
    anchor = rng.randrange(len(speeds))
    wanted = rng.randint(2, max_faults)
    # Its own stream: whether cuts are available does not change the other schedules.
    hosts = (
        "netcut" in categories
        and random.Random(f"phalanx-chaos-hosts:{seed}:{index}").random() < HOSTS_SHARE
    )
    drawable = tuple(c for c in categories if c not in (LOCAL_ONLY if hosts else HOSTS_ONLY))
    corruptions = dict.fromkeys(range(len(speeds)), 0)
    count = dict.fromkeys(CATEGORIES, 0)
    taken: set[tuple[int, int]] = set()  # one fault per (replica, step): keys stay unique
    faults: list[PlannedFault] = []
    weights = [CATEGORY_WEIGHTS[c] for c in drawable]
    for _attempt in range(wanted * 20):
        if len(faults) == wanted:
            break
        # A hosts schedule exists for its network cut: the first fault drawn is one.
        category = "netcut" if hosts and not faults else rng.choices(drawable, weights)[0]
        replica = rng.randrange(len(speeds))
        if category == "netcut" and replica == anchor:
            replica = (anchor + 1 + rng.randrange(len(speeds) - 1)) % len(speeds)
        # A restarted worker needs seconds to rejoin: kill early enough that it can.
        # Without late outages (the CI profile) a long hang is early too: a replica that
        # returns just as the fleet finishes hits a known straggler bug (docs/reliability.md).
        last = steps - 4
        if category in ("kill_restart", "netcut") or (category == "hang_long" and not late_outages):
            last = steps // (3 if late_outages else 4)
        first = 2 if category == "lighthouse" else 1  # the fleet has formed and committed
        step = rng.randint(first, max(first, last))
        key = (-1 if category == "lighthouse" else replica, step)
        if (
            key in taken
            or count[category] >= MAX_PER_SCHEDULE.get(category, max_faults)
            or not _allowed(category, replica, anchor, corruptions)
        ):
            continue
        taken.add(key)
        count[category] += 1
        if category in CORRUPTIONS:
            corruptions[replica] += 1
        spec = _spec(category, replica, step, rng, speeds[replica], timeout_s)
        if category not in HARNESS_CATEGORIES:
            parse_fault(spec, len(speeds))  # the generator only emits specs the CLI accepts
        faults.append(PlannedFault(category, spec))
    faults.sort(key=lambda f: (f.parsed().step, f.parsed().replica))
    return Schedule(index, seed, speeds, anchor, tuple(faults), hosts)


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
