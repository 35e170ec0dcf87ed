"""Policies compared by the simulator, and the knobs of a simulation run.

Policy strings on the command line: `phalanx`, `phalanx-nobalance`,
`ddp-restart`, optionally with parameters: `ddp-restart:interval_s=1800`.
"""

from __future__ import annotations

from dataclasses import dataclass

from phalanx.errors import UsageError

_KINDS = {
    # name: (split, fault tolerant)
    "phalanx": ("balanced", True),
    "phalanx-nobalance": ("equal", True),
    "ddp-restart": ("equal", False),
}


@dataclass(frozen=True)
class Policy:
    name: str  # as the user wrote it: the key in the results
    split: str  # balanced | equal
    fault_tolerant: bool  # per-step retry and rejoin; else restart the world
    interval_s: float | None = None  # restart policy: checkpoint interval (None: Young/Daly)


@dataclass(frozen=True)
class SimConfig:
    days: float = 30.0
    seed: int = 0
    target_samples: float | None = None  # None: run the whole horizon
    tariff_usd_per_kwh: float = 0.08
    subsidy: float = 0.0
    stall_s: float = 3.0  # fault-tolerant step: detect a dead peer, new quorum, retry
    world_restart_s: float = 600.0  # restart policy: relaunch every worker, load the checkpoint
    checkpoint_s: float = 120.0  # restart policy: the fleet stalls this long per checkpoint
    requalify_s: float = 3600.0  # a chip caught corrupting data is re-qualified before it rejoins
    ft_checkpoint_interval_s: float = (
        3600.0  # fault-tolerant: durable checkpoints for whole-fleet loss
    )
    curve_points: int = 400

    @property
    def horizon_s(self) -> float:
        return self.days * 86400.0

    @property
    def usd_per_kwh(self) -> float:
        return self.tariff_usd_per_kwh * (1.0 - self.subsidy)


def parse_policy(spec: str) -> Policy:
    field = "--policies"
    name, _, params = spec.strip().partition(":")
    if name not in _KINDS:
        raise UsageError(field, f"unknown policy {name!r}", f"use {', '.join(_KINDS)}", spec)
    split, ft = _KINDS[name]
    interval_s = None
    if params:
        key, _, value = params.partition("=")
        if key != "interval_s" or ft:
            raise UsageError(
                field,
                f"unknown parameter {key!r} for {name}",
                "only ddp-restart takes interval_s=<seconds>",
                spec,
            )
        try:
            interval_s = float(value)
        except ValueError:
            raise UsageError(
                field,
                "interval_s must be a number of seconds",
                "write ddp-restart:interval_s=1800",
                spec,
            ) from None
        if not interval_s > 0:
            raise UsageError(
                field, "interval_s must be > 0", "write ddp-restart:interval_s=1800", spec
            )
    return Policy(name=spec.strip(), split=split, fault_tolerant=ft, interval_s=interval_s)


def parse_policies(text: str) -> list[Policy]:
    specs = [s for s in text.split(",") if s.strip()]
    if not specs:
        raise UsageError("--policies", "no policy given", "e.g. --policies phalanx,ddp-restart")
    policies = [parse_policy(s) for s in specs]
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise UsageError("--policies", "a policy is listed twice", "list each once", text)
    return policies
