"""What each suite runs: fleets, workloads, fault schedule, repeats. Data only, no processes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.fleet import Fleet
from bench.workload import Workload

FLEET_4 = Fleet("4 chips: 1, 0.5, 0.25, 0.25", (1.0, 0.5, 0.25, 0.25))
FLEET_8 = Fleet(
    "8 chips: 1x2, 0.5x2, 0.25x2, 0.125x2",
    (1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125),
    efficiency_goal=0.85,
)
FLEET_EQUAL = Fleet("4 equal chips", (1.0, 1.0, 1.0, 1.0))
FLEET_EQUAL_2 = Fleet("2 equal chips", (1.0, 1.0))

# Compute-dominated default: ~0.43M parameters, 64 tokens per sample, 64 samples per step;
# the fastest chip computes ~0.3-0.5 s per step and the gradient is 1.7 MB.
DEFAULT = Workload(width=128, layers=2, context=64, batch=64, steps=40)
# Communication-heavy: ~12.7M parameters (51 MB of gradient) and 2 short samples per chip.
COMM_HEAVY = Workload(width=512, layers=4, context=16, batch=8, steps=16)
# Model scale, GPT-2-like shapes (64-dimensional heads: width 768 has 12, width 1024 has 16);
# the character vocabulary keeps the embeddings small, so the blocks carry the parameters.
# 4 samples of 16 tokens per chip: on one CPU thread a step's forward+backward takes ~0.6 s
# (100M) and ~3 s (300M) before the emulation's time scale. 8 steps: steps 0-3 are warm-up,
# as in every row, and 4-7 are measured. Peak memory per replica with AdamW, measured:
# 100M 2.2 GB (DDP 2.4 GB), 300M 5.9 GB (DDP 6.6 GB); one contender runs at a time.
GPT_100M = Workload(width=768, layers=14, context=16, batch=16, steps=8)  # 99.4M parameters
GPT_300M = Workload(width=1024, layers=24, context=16, batch=8, steps=8)  # 302.5M parameters
# The ideal needs only a steady rate; fewer steps keep the solo runs short.
SOLO_STEPS = 12

# A user's checkpoint interval: every 10 steps (a few seconds of training here, ~2% of
# step time spent saving). K=1 is shown as well.
USER_CHECKPOINT_EVERY = 10
MAX_RESTARTS = 3
# One kill (restarted after 1 s) early enough that the replica rejoins before the end,
# and one hang longer than phalanx's 5 s collective timeout.
FAULTS = (
    "kill:replica=1,step=4,restart_s=1",
    "hang:replica=2,step=30,seconds=6",
)


@dataclass(frozen=True)
class SizePoint:
    """Scenario 5: one model size, trained by 2 plain CPU replicas with a hang to force a heal."""

    label: str
    work: Workload
    hang_step: int = 6


def _size(label: str, width: int, layers: int, steps: int) -> SizePoint:
    return SizePoint(label, Workload(width=width, layers=layers, context=8, batch=2, steps=steps))


# Enough steps that the survivor is still training when the hung replica wakes and heals.
SIZES = (
    _size("1M", 256, 1, 160),
    _size("10M", 512, 3, 40),
    _size("30M", 768, 4, 24),
    _size("100M", 1024, 8, 16),
)
SCALING_TIMEOUT_S = 2.0  # phalanx --timeout-s for scenario 5: short, so the hang costs little
SCALING_HANG_S = 4.0


# Goals of every homogeneous row (issue 14): the imbalance at most 3% of a step, and chips of
# equal speed given shares within 10% of each other once warm-up is over.
IMBALANCE_SHARE_GOAL = 0.03
EQUAL_SHARE_RATIO_GOAL = 1.10


@dataclass(frozen=True)
class Goals:
    """What a homogeneous row must reach. None: the figure is measured and shown, without a goal."""

    phalanx_over_ddp: float | None = None  # throughput, at least
    # Non-compute share of a step, phalanx's minus DDP's, in percentage points: at most.
    non_compute_points: float | None = None
    rss_over_ddp: float | None = None  # peak resident memory per replica: at most
    imbalance_share: float | None = IMBALANCE_SHARE_GOAL  # imbalance / step: at most
    equal_share_ratio: float | None = EQUAL_SHARE_RATIO_GOAL  # max / min share: at most


@dataclass(frozen=True)
class FleetCase:
    """One fleet and workload, fault-free: phalanx against DDP (and the ideal), one at a time.

    Scenario 4's rows carry their goals; scenario 1's goal is its fleet's (Fleet.efficiency_goal).
    """

    fleet: Fleet
    work: Workload
    goals: Goals = Goals()
    repeats: int | None = None  # how many of the suite's repeats run it (None: all of them)
    # phalanx --timeout-s (its collective timeout); None: the default of `phalanx run`. At
    # model scale a step's compute, optimizer step and allreduce take seconds each on a
    # shared 2-core host, and a peer late by more than the timeout fails the collective.
    timeout_s: float | None = None


SCALE_GOALS = Goals(phalanx_over_ddp=0.95, non_compute_points=5.0, rss_over_ddp=1.25)
SCALE_TIMEOUT_S = 60.0
# A short run saves little when faults are absent: 24 steps are steady enough.
EQUAL_DEFAULT = FleetCase(FLEET_EQUAL, DEFAULT.with_(steps=24), Goals(phalanx_over_ddp=0.97))
EQUAL_COMM_HEAVY = FleetCase(FLEET_EQUAL, COMM_HEAVY, Goals(phalanx_over_ddp=0.95), repeats=1)
EQUAL_100M = FleetCase(FLEET_EQUAL, GPT_100M, SCALE_GOALS, repeats=2, timeout_s=SCALE_TIMEOUT_S)
EQUAL_300M = FleetCase(
    FLEET_EQUAL_2, GPT_300M, Goals(phalanx_over_ddp=0.95), repeats=1, timeout_s=SCALE_TIMEOUT_S
)
# The shortest model-scale run: 100M on 2 chips, 2 samples each, 6 steps (4-5 measured).
EQUAL_100M_SHORT = FleetCase(
    FLEET_EQUAL_2,
    GPT_100M.with_(batch=4, steps=6),
    SCALE_GOALS,
    repeats=1,
    timeout_s=SCALE_TIMEOUT_S,
)


@dataclass(frozen=True)
class Suite:
    name: str
    repeats: int  # scenarios 1 and 4
    fault_repeats: int  # scenarios 2 and 3
    hetero: tuple[Fleet, ...] = (FLEET_4,)
    sizes: tuple[SizePoint, ...] = SIZES[:2]
    work: Workload = DEFAULT
    faults: tuple[str, ...] = FAULTS
    checkpoint_every: int = USER_CHECKPOINT_EVERY
    homogeneous: tuple[FleetCase, ...] = (EQUAL_DEFAULT,)
    wide_repeats: int = 1  # repeats of the fleets after the first (the 8-chip one is slow)
    homogeneous_ideal: bool = True
    phalanx_faulted: bool = True  # scenario 2's phalanx run (and so scenario 3)
    restart_intervals: tuple[int, ...] = (USER_CHECKPOINT_EVERY, 1)  # torchrun K values


def _alone(name: str, **scenarios: Any) -> Suite:
    """A suite of only the scenarios given (once, unless `repeats` says otherwise)."""
    nothing: dict[str, Any] = {
        "repeats": 1, "fault_repeats": 0, "hetero": (), "sizes": (), "faults": (),
        "homogeneous": (), "phalanx_faulted": False, "restart_intervals": (),
    }  # fmt: skip
    return Suite(name, **{**nothing, **scenarios})


SUITES = {
    "full": Suite(
        "full",
        repeats=2,
        fault_repeats=2,
        hetero=(FLEET_4, FLEET_8),
        homogeneous=(EQUAL_DEFAULT, EQUAL_COMM_HEAVY, EQUAL_100M, EQUAL_300M),
        sizes=SIZES,
    ),
    # K=1, the ideal of the equal fleet and the model-scale rows only in full: they would
    # take quick past 10 minutes.
    "quick": Suite(
        "quick",
        repeats=1,
        fault_repeats=1,
        sizes=SIZES[:1],
        homogeneous_ideal=False,
        restart_intervals=(USER_CHECKPOINT_EVERY,),
    ),
    # The test's configuration: the smallest of everything, each code path once.
    "smoke": _alone(
        "smoke",
        hetero=(Fleet("2 chips: 1, 0.5", (1.0, 0.5)),),
        work=Workload(width=64, layers=1, context=32, batch=16, steps=6),
        checkpoint_every=2,
        # Fault runs (the torchrun restart path) only in quick/full: with them the smoke
        # suite would not fit the test's 90 s on a busy 2-core machine.
    ),
    # Scenario 1 alone (the 4-chip heterogeneous fleet against DDP and the ideal): for
    # trying a change to the step or the emulation in minutes.
    "hetero": _alone("hetero", repeats=2, hetero=(FLEET_4,)),
    # The 8-chip heterogeneous fleet alone (phalanx, DDP and the ideal), once.
    "hetero8": _alone("hetero8", hetero=(FLEET_8,)),
    # Scenarios 2 and 3 for phalanx alone (no torchrun): its goodput against its own
    # fault-free rate in the same run, for trying a change to recovery in minutes.
    "faults": Suite(
        "faults",
        repeats=1,
        fault_repeats=1,
        sizes=(),
        homogeneous=(),
        restart_intervals=(),
    ),
    # Scenario 4's small rows alone (0.43M and 12.7M on 4 equal chips, phalanx against
    # DDP): for trying a change to the step's overhead in minutes.
    "equal": _alone(
        "equal",
        repeats=2,
        homogeneous=(EQUAL_DEFAULT, EQUAL_COMM_HEAVY),
        homogeneous_ideal=False,
    ),
    # Model scale alone, as short as it gets: a check that the 100M row runs end to end.
    "scale-smoke": _alone("scale-smoke", homogeneous=(EQUAL_100M_SHORT,)),
}
