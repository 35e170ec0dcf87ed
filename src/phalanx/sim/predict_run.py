"""Predict one real `phalanx run` from its measured fleet and its fault schedule.

The calibration hook: the lead feeds measured per-replica throughputs and the
faults injected into an emulated run, and compares the prediction with the
run's summary.json. Unlike the fleet simulator it walks step by step (real
runs are short), with the same share rule as the runtime: integer shares
from the throughputs of the previous committed step.

Fault dicts use the `--fault` vocabulary: {"kind": "kill", "replica": 1,
"step": 7, "restart_s": 5.0}, {"kind": "hang", "replica": 0, "step": 3,
"seconds": 4.0}, {"kind": "slow", "replica": 2, "step": 10, "speed": 0.5}.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from phalanx.errors import UsageError
from phalanx.plan.cost import split_shares


def _shares(speeds: list[float], alive: list[int], batch: int, balanced: bool) -> dict[int, int]:
    if balanced:
        _, hi, lo = split_shares(
            [speeds[i] for i in alive], np.ones(len(alive), dtype=np.int64), batch
        )
        return {r: int(hi[j] - lo[j]) for j, r in enumerate(alive)}
    q, extra = divmod(batch, len(alive))
    return {r: q + (1 if j < extra else 0) for j, r in enumerate(alive)}


def predict_run(
    fleet_speeds_sps: list[float],
    global_batch: int,
    steps: int,
    faults: list[dict[str, Any]] | None = None,
    sync_s: float = 0.0,
    *,
    stall_s: float = 2.0,
    hang_timeout_s: float = 5.0,
    default_restart_s: float = 5.0,
    balanced: bool = True,
) -> dict[str, float]:
    """Wall time and throughput of `steps` committed steps of `global_batch` samples.

    sync_s: measured per-step overhead (allreduce plus control plane).
    stall_s: what a killed peer costs the survivors (heartbeat expiry, new quorum).
    hang_timeout_s: what a frozen peer costs (the collective timeout).
    """
    speeds = [float(s) for s in fleet_speeds_sps]
    if not speeds or min(speeds) <= 0:
        raise UsageError(
            "fleet_speeds_sps",
            "needs at least one positive speed",
            "pass measured samples/s",
            fleet_speeds_sps,
        )
    pending = sorted(faults or [], key=lambda f: int(f.get("step", 0)))
    back_at: dict[int, float] = {}  # replica -> wall time it can rejoin
    wall, stalls = 0.0, 0.0
    step = 0
    known = list(speeds)  # throughputs agreed at the last commit: the shares follow these
    while step < steps:
        alive = [r for r in range(len(speeds)) if back_at.get(r, 0.0) <= wall]
        if not alive:
            wall = min(back_at.values())
            continue
        shares = _shares(known, alive, global_batch, balanced)
        compute = max(shares[r] / speeds[r] for r in alive if shares[r] > 0)
        here = [f for f in pending if int(f.get("step", 0)) == step]
        pending = [f for f in pending if f not in here]
        failed = False
        for f in here:
            kind, r = f.get("kind"), int(f.get("replica", 0))
            if kind == "slow":
                speeds[r] = speeds[r] * float(f.get("speed", 0.5))
            elif kind == "kill":
                back_at[r] = wall + float(f.get("restart_s", default_restart_s))
                failed = True
                stalls += stall_s
            elif kind == "hang":
                back_at[r] = wall + float(f.get("seconds", hang_timeout_s))
                failed = True
                stalls += min(float(f.get("seconds", hang_timeout_s)), hang_timeout_s)
        if failed:
            # The step in flight is lost and retried with a new quorum.
            wall += 0.5 * compute + stalls
            stalls = 0.0
            continue
        compute = max(shares[r] / speeds[r] for r in alive if shares[r] > 0)
        wall += compute + (sync_s if len(alive) > 1 else 0.0)
        known = list(speeds)
        step += 1
    return {"wall_s": wall, "throughput_sps": steps * global_batch / wall if wall > 0 else 0.0}
