"""A live picture of the fleet, folded from events: who trains, heals, is down; how fast."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ReplicaView:
    name: str
    speed: float | None = None
    state: str = "starting"
    share: int = 0
    sps: float | None = None
    last_event: str = ""
    sps_history: list[float] = field(default_factory=list)


@dataclass
class FleetView:
    planned_steps: int = 0
    global_batch_size: int = 0
    replicas: dict[str, ReplicaView] = field(default_factory=dict)
    committed: set[int] = field(default_factory=set)
    last_step: int = -1
    last_loss: float | None = None
    faults: int = 0
    heals: int = 0
    retries: int = 0
    _recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=12))

    def replica(self, name: str) -> ReplicaView:
        if name not in self.replicas:
            self.replicas[name] = ReplicaView(name)
        return self.replicas[name]

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        name = event.get("replica")
        if kind == "run_start":
            self.planned_steps = event["steps"]
            self.global_batch_size = event.get("global_batch_size") or 0
            for rname, info in event.get("replicas", {}).items():
                self.replica(rname).speed = info.get("speed")
        elif kind == "worker_start":
            view = self.replica(name)
            view.state = "joining"
            view.last_event = "restarted" if event.get("restarted") else "started"
            self.global_batch_size = self.global_batch_size or event.get("global_batch_size", 0)
            self.planned_steps = self.planned_steps or event.get("steps", 0)
        elif kind == "quorum":
            members = set(event["participants"])
            for rname, view in self.replicas.items():
                if rname in members and view.state in ("joining", "healing", "hung?"):
                    view.state = "training"
        elif kind == "heal":
            self.heals += 1
            view = self.replica(name)
            view.state = "training"
            view.last_event = f"healed to step {event['step']} in {event['duration_s']:.1f}s"
        elif kind == "step":
            step = event["step"]
            if step not in self.committed:
                self.committed.add(step)
                self._recent.append((event["t"], step))
                self.last_step = max(self.last_step, step)
                self.last_loss = event["loss"]
            for rname, share, sps in zip(event["participants"], event["shares"], event["sps"]):
                view = self.replica(rname)
                view.share = share
                view.sps = sps
                view.sps_history.append(sps)
                if view.state in ("joining", "healing"):
                    view.state = "training"
            for rname, view in self.replicas.items():
                if rname not in event["participants"] and view.state == "training":
                    view.state = "out"
                    view.share = 0
        elif kind == "fault":
            self.faults += 1
            view = self.replica(name)
            view.last_event = f"{event['fault']} injected at step {event['step']}"
            view.state = {"kill": "down", "hang": "hung"}.get(event["fault"], view.state)
        elif kind == "retry":
            self.retries += 1
        elif kind == "worker_exit":
            view = self.replica(name)
            if view.state != "done":
                view.state = "down"
        elif kind == "restart_scheduled":
            self.replica(name).last_event = f"restart in {event['after_s']:.1f}s"
        elif kind == "worker_done":
            self.replica(name).state = "done"

    def steps_done(self) -> int:
        return len(self.committed)

    def throughput_sps(self) -> float | None:
        if len(self._recent) < 2:
            return None
        t0, t1 = self._recent[0][0], self._recent[-1][0]
        if t1 <= t0:
            return None
        return (len(self._recent) - 1) * self.global_batch_size / (t1 - t0)

    def ideal_sps(self) -> float | None:
        solos = [
            statistics.median(v.sps_history[-8:]) for v in self.replicas.values() if v.sps_history
        ]
        return sum(solos) if solos else None

    def efficiency(self) -> float | None:
        tput, ideal = self.throughput_sps(), self.ideal_sps()
        return tput / ideal if tput and ideal else None
