"""`--fault KIND:key=value,...` specs, validated with messages that name the fix."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from phalanx.errors import UsageError

# Where in a step a fault fires. `start` is between steps (before the quorum).
PHASES = ("start", "compute", "allreduce", "commit")

# kind -> {key: (type, required)}; `replica` and `step` are common to all kinds.
_KIND_KEYS: dict[str, dict[str, tuple[type, bool]]] = {
    # chip: in a replica group, which of its chips (0: the first, the default)
    "kill": {"restart_s": (float, False), "phase": (str, False), "chip": (int, False)},
    "hang": {"seconds": (float, True), "phase": (str, False), "chip": (int, False)},
    "slow": {"speed": (float, True)},
    "sdc": {"target": (str, False), "bit": (int, False)},  # target: grad (default) | weight
    "nan": {"target": (str, False)},
    # SIGKILL the fleet's lighthouse once the fleet reaches `step`; the launcher restarts
    # it after restart_s (default 0). Not a replica's fault: it has no `replica` key.
    "lighthouse": {"restart_s": (float, False)},
}
_COMMON_KEYS: dict[str, tuple[type, bool]] = {"replica": (int, True), "step": (int, True)}
FLEET_KINDS = ("lighthouse",)  # faults of the fleet's services, fired by the launcher
NO_REPLICA = -1  # FaultSpec.replica of a fleet-service fault

KINDS = tuple(_KIND_KEYS)


@dataclass(frozen=True)
class FaultSpec:
    """One injected fault: `kind` on replica `replica` when it runs step `step`."""

    kind: str
    replica: int
    step: int
    phase: str = "compute"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable identity, used to fire each fault once per run (also across restarts)."""
        chip = f"-c{self.params['chip']}" if self.params.get("chip") else ""
        return f"{self.kind}-r{self.replica}{chip}-s{self.step}-{self.phase}"

    @property
    def chip(self) -> int:
        """Which chip of a replica group it strikes (0 for a replica of one chip)."""
        return int(self.params.get("chip", 0))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "replica": self.replica,
            "step": self.step,
            "phase": self.phase,
            **self.params,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultSpec:
        rest = {k: v for k, v in data.items() if k not in ("kind", "replica", "step", "phase")}
        return cls(data["kind"], data["replica"], data["step"], data.get("phase", "compute"), rest)


def _convert(spec: str, key: str, raw: str, kind_type: type) -> Any:
    try:
        value = kind_type(raw)
    except ValueError:
        raise UsageError(
            f"--fault {spec!r}: {key}",
            f"must be {'an integer' if kind_type is int else 'a number'}",
            f"write {key}=<{'integer' if kind_type is int else 'number'}>",
            raw,
        ) from None
    if kind_type is float and not math.isfinite(value):
        raise UsageError(
            f"--fault {spec!r}: {key}", "must be a finite number", f"write {key}=<number>", raw
        )
    if kind_type in (int, float) and value < 0:
        raise UsageError(f"--fault {spec!r}: {key}", "must not be negative", f"use {key}>=0", raw)
    return value


def parse_fault(spec: str, num_replicas: int | None = None) -> FaultSpec:
    """Parse one spec such as `kill:replica=1,step=20,restart_s=2`."""
    kind, sep, body = spec.partition(":")
    kind = kind.strip()
    if kind not in _KIND_KEYS:
        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise UsageError(
            "--fault", f"unknown fault kind {kind!r}", f"{hint}use one of {', '.join(KINDS)}", spec
        )
    fleet_kind = kind in FLEET_KINDS
    if not sep or not body.strip():
        example = f"{kind}:step=S" if fleet_kind else f"{kind}:replica=R,step=S"
        raise UsageError(f"--fault {spec!r}", "has no keys", f"write {example}[,...]", spec)
    common = {"step": _COMMON_KEYS["step"]} if fleet_kind else _COMMON_KEYS
    allowed = {**common, **_KIND_KEYS[kind]}
    values: dict[str, Any] = {}
    for item in body.split(","):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(
                f"--fault {spec!r}", f"item {item!r} is not key=value", "write key=value"
            )
        if key not in allowed:
            aside = " (the lighthouse is not a replica)" if fleet_kind and key == "replica" else ""
            raise UsageError(
                f"--fault {spec!r}",
                f"unknown key {key!r} for kind {kind}{aside}",
                f"use keys {', '.join(sorted(allowed))}",
            )
        if key in values:
            raise UsageError(f"--fault {spec!r}", f"key {key!r} given twice", "give it once")
        values[key] = (
            raw.strip()
            if allowed[key][0] is str
            else _convert(spec, key, raw.strip(), allowed[key][0])
        )
    missing = [k for k, (_, required) in allowed.items() if required and k not in values]
    if missing:
        raise UsageError(
            f"--fault {spec!r}", f"missing {', '.join(missing)}", f"add {missing[0]}=<value>"
        )
    phase = values.pop("phase", "start" if fleet_kind else "compute")
    if phase not in PHASES:
        raise UsageError(
            f"--fault {spec!r}: phase", "unknown phase", f"use one of {', '.join(PHASES)}", phase
        )
    replica = values.pop("replica", NO_REPLICA)
    step = values.pop("step")
    if num_replicas is not None and replica >= num_replicas:
        raise UsageError(
            f"--fault {spec!r}: replica",
            f"there are only {num_replicas} replicas",
            f"use replica=0..{num_replicas - 1}",
            replica,
        )
    if kind == "sdc" and not 0 <= values.get("bit", 0) <= 63:
        raise UsageError(
            f"--fault {spec!r}: bit",
            "is not a bit of a 64-bit word",
            "use bit=0..63 (or omit it)",
            values["bit"],
        )
    if kind == "sdc" and values.get("target", "grad") not in ("grad", "weight"):
        raise UsageError(
            f"--fault {spec!r}: target",
            "unknown target",
            "use target=grad or target=weight",
            values["target"],
        )
    if kind == "slow" and values["speed"] <= 0:
        raise UsageError(
            f"--fault {spec!r}: speed", "must be > 0", "use e.g. speed=0.3", values["speed"]
        )
    return FaultSpec(kind=kind, replica=replica, step=step, phase=phase, params=values)


def parse_faults(specs: list[str], num_replicas: int | None = None) -> list[FaultSpec]:
    return [parse_fault(s, num_replicas) for s in specs]
