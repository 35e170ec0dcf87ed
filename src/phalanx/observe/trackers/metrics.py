"""What a tracker is told: a committed step's numbers, a notable event's line, the summary.

Pure functions of events and the fleet view, so every tracker logs the same numbers
under the same names (W&B and TensorBoard group names by their `/` prefix).
"""

from __future__ import annotations

from typing import Any

from phalanx.observe.fleet_view import FleetView

PHASES = ("quorum_s", "compute_s", "allreduce_s", "guard_s", "commit_s")

# Events a person looking at a tracker wants marked on the run's timeline.
NOTED = (
    "fault", "heal", "quarantine", "sdc", "worker_exit", "worker_restart", "lighthouse_down",
    "lighthouse_recovered", "thermal", "device_failure", "straggler_exit", "checkpoint_failed",
    "slowdown",
)  # fmt: skip


def step_metrics(event: dict[str, Any], view: FleetView) -> dict[str, float]:
    """A committed step: loss, fleet throughput, phase times, each replica's share and rate."""
    out: dict[str, float] = {}
    for key in ("loss", "grad_norm"):
        if _number(event.get(key)):
            out[key] = float(event[key])
    for key in PHASES:
        if _number(event.get(key)):
            out[f"time/{key}"] = float(event[key])
    participants = event.get("participants") or []
    out["fleet/participants"] = float(len(participants))
    for name, share, sps in zip(participants, event.get("shares") or [], event.get("sps") or []):
        out[f"share/{name}"] = float(share)
        if _number(sps):
            out[f"samples_per_s/{name}"] = float(sps)
    for key, value in (
        ("fleet/samples_per_s", view.throughput_sps()),
        ("fleet/ideal_samples_per_s", view.ideal_sps()),
        ("fleet/efficiency", view.efficiency()),
        ("energy/fleet_j", view.energy_j()),
    ):
        if value is not None:
            out[key] = float(value)
    for name, replica in view.replicas.items():
        if replica.power_w is not None:
            out[f"power_w/{name}"] = replica.power_w
        if replica.temperature_c is not None:
            out[f"temperature_c/{name}"] = replica.temperature_c
    out["events/faults"] = float(view.faults)
    out["events/heals"] = float(view.heals)
    out["events/retries"] = float(view.retries)
    out["events/checkpoints"] = float(view.checkpoints)
    return out


def note(event: dict[str, Any]) -> str | None:
    """One line for a notable event, else None."""
    kind = event.get("kind")
    if kind not in NOTED:
        return None
    skip = {"t", "kind", "source", "replica", "step"}
    details = ", ".join(
        f"{k}={v}" for k, v in event.items() if k not in skip and isinstance(v, (str, int, float))
    )
    who = event.get("replica") or event.get("target") or "fleet"
    at = f" at step {event['step']}" if event.get("step") is not None else ""
    return f"{kind}: {who}{at}" + (f" ({details})" if details else "")


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """summary.json's numbers, flattened with `/` (lists and texts left out)."""
    out: dict[str, float] = {}

    def walk(d: dict[str, Any], prefix: str) -> None:
        for key, value in d.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}/")
            elif _number(value):
                out[f"summary/{prefix}{key}"] = float(value)

    walk(summary, "")
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
