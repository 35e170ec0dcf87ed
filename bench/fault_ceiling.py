"""The best goodput a fault schedule allows: what is lost while a chip is really away.

Scenario 2's goal (goodput / fault-free rate) mixes two things: what the faults
themselves take (a killed chip is gone until its scheduled restart; a hung one for
its hang) and what the runtime adds (noticing, the retried step, the restarted
process's start, its heal, the shares settling). Only the second is the runtime's.
This module computes the first, as the goodput an oracle would reach: it knows
each fault the moment it happens, and the fleet trains at full speed with the
chips present (throughput in proportion to their summed speed; the fault-free
run's step time with all of them), so the number is a ceiling, not a prediction.

    ceiling = fault-free time of the steps / the oracle's time of the same steps

A second ceiling keeps the oracle but lets the fleet go on only when torchft's
lighthouse does: it gives up on a killed or frozen replica after its heartbeat
timeout, and until then no quorum without it forms and no step commits. A
frozen replica cannot be told from a slow one before that, so the step waits
the whole time and is computed afterwards. A killed one can: its process is
gone and its port refuses at once (runtime/gone_peers.py), so the survivors
compute the step without it while the lighthouse decides, and only the rest
of the wait, if any, is lost. That is what separates the first ceiling from
anything torchft's lighthouse can reach.
"""

from __future__ import annotations

from collections.abc import Sequence

from phalanx.faults.spec import parse_faults
from phalanx.runtime.liveness import HEARTBEAT_INTERVAL_MS, RUN_HEARTBEAT_TIMEOUT_MS


def heartbeat_detect_s() -> float:
    """How long after a fault `phalanx run`'s lighthouse gives up on the replica, on
    average: its timeout from the last heartbeat, which left up to one interval before."""
    return (RUN_HEARTBEAT_TIMEOUT_MS - HEARTBEAT_INTERVAL_MS / 2) / 1000


def _away_spans(
    faults: Sequence[str], size: int, detect_s: float
) -> list[tuple[int, int, float, float]]:
    """(replica, step it starts at, seconds away, seconds until it is noticed, whether the
    step may be computed meanwhile) for every fault that takes a chip away. A killed
    process never answers again: the lighthouse agrees after `detect_s`, and the survivors
    compute meanwhile. A hang is waited for: until it is noticed, or until it ends."""
    spans = []
    for fault in parse_faults(list(faults), size):
        if fault.kind == "kill":
            away_s = float(fault.params.get("restart_s", 0.0))
            spans.append((fault.replica, fault.step, away_s, detect_s, True))
        elif fault.kind == "hang":
            away_s = float(fault.params.get("seconds", 0.0))
            spans.append((fault.replica, fault.step, away_s, min(detect_s, away_s), False))
    return spans


def goodput_ceiling(
    speeds: Sequence[float],
    faults: Sequence[str],
    steps: int,
    fault_free_step_s: float,
    detect_s: float = 0.0,
) -> float:
    """The oracle's goodput over the fault-free rate, for steps 1..steps-1 (the bench's
    goodput window starts at the commit of step 0).

    A chip is away from the start of its fault's step for the fault's seconds (a kill's
    `restart_s`, a hang's `seconds`); a step's time is the fault-free step time scaled
    by the speed present when it starts over the whole fleet's. A step with a hang first
    stalls until it is noticed, `detect_s` after it happens (0: at once); a step with a
    kill takes at least `detect_s` (the lighthouse's agreement), computed meanwhile.
    """
    total_speed = sum(speeds)
    spans = _away_spans(faults, len(speeds), detect_s)
    away_until: dict[int, float] = {}
    clock_s = 0.0
    oracle_s = 0.0
    for step in range(steps):
        stall_s = 0.0  # faults of one step are noticed together
        agreed_s = 0.0  # the lighthouse's quorum without the killed, from the step's start
        for replica, at_step, away_s, noticed_s, computed_meanwhile in spans:
            if at_step == step:
                away_until[replica] = max(away_until.get(replica, 0.0), clock_s + away_s)
                if computed_meanwhile:
                    agreed_s = max(agreed_s, noticed_s)
                else:
                    stall_s = max(stall_s, noticed_s)
        clock_s += stall_s  # nobody computes until a hang is noticed
        present = sum(s for i, s in enumerate(speeds) if away_until.get(i, 0.0) <= clock_s)
        compute_s = fault_free_step_s * total_speed / max(present, 1e-9)
        step_s = max(compute_s, agreed_s - stall_s)  # nobody commits before the agreement
        clock_s += step_s
        if step >= 1:
            oracle_s += stall_s + step_s
    return (steps - 1) * fault_free_step_s / oracle_s
