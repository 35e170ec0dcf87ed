"""What each suite runs: fleets, workloads, fault schedule, repeats. Data only, no processes."""

from __future__ import annotations

from dataclasses import dataclass

from bench.fleet import Fleet
from bench.workload import Workload

FLEET_4 = Fleet("4 chips: 1, 0.5, 0.25, 0.25", (1.0, 0.5, 0.25, 0.25))
FLEET_8 = Fleet("8 chips: 1x2, 0.5x2, 0.25x2, 0.125x2", (1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125))
FLEET_EQUAL = Fleet("4 equal chips", (1.0, 1.0, 1.0, 1.0))

# Compute-dominated default: ~0.43M parameters, 64 tokens per sample, 64 samples per step;
# the fastest chip computes ~0.3-0.5 s per step and the gradient is 1.7 MB.
DEFAULT = Workload(width=128, layers=2, context=64, batch=64, steps=40)
# Communication-heavy: ~12.7M parameters (51 MB of gradient) and 2 short samples per chip.
COMM_HEAVY = Workload(width=512, layers=4, context=16, batch=8, steps=16)
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


@dataclass(frozen=True)
class Suite:
    name: str
    repeats: int  # scenarios 1 and 4
    fault_repeats: int  # scenarios 2 and 3
    hetero: tuple[Fleet, ...] = (FLEET_4,)
    comm_heavy: bool = False
    sizes: tuple[SizePoint, ...] = SIZES[:2]
    work: Workload = DEFAULT
    faults: tuple[str, ...] = FAULTS
    checkpoint_every: int = USER_CHECKPOINT_EVERY
    homogeneous: bool = True
    wide_repeats: int = 1  # repeats of the fleets after the first (the 8-chip one is slow)
    homogeneous_ideal: bool = True
    phalanx_faulted: bool = True  # scenario 2's phalanx run (and so scenario 3)
    restart_intervals: tuple[int, ...] = (USER_CHECKPOINT_EVERY, 1)  # torchrun K values


SUITES = {
    "full": Suite(
        "full", repeats=2, fault_repeats=2, hetero=(FLEET_4, FLEET_8), comm_heavy=True, sizes=SIZES
    ),
    # K=1 and the ideal of the equal fleet only in full: they would take quick past 10 minutes.
    "quick": Suite(
        "quick",
        repeats=1,
        fault_repeats=1,
        sizes=SIZES[:1],
        homogeneous_ideal=False,
        restart_intervals=(USER_CHECKPOINT_EVERY,),
    ),
    # The test's configuration: the smallest of everything, each code path once.
    "smoke": Suite(
        "smoke",
        repeats=1,
        fault_repeats=0,
        hetero=(Fleet("2 chips: 1, 0.5", (1.0, 0.5)),),
        sizes=(),
        work=Workload(width=64, layers=1, context=32, batch=16, steps=6),
        faults=(),
        checkpoint_every=2,
        homogeneous=False,
        # Fault runs (the torchrun restart path) only in quick/full: with them the smoke
        # suite would not fit the test's 90 s on a busy 2-core machine.
        phalanx_faulted=False,
        restart_intervals=(),
    ),
}
