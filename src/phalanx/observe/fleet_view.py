"""A live picture of the fleet, folded from events: who trains, heals, is down; how fast.

Pure: it never reads files or clocks, so the terminal view, the web dashboard
and the metrics endpoint all show what the same events say.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from phalanx.observe.chip_memory import ChipLedger, chips_of, fold

# Telemetry may ride on any event a worker writes about itself (or on a
# `telemetry` event): the fields are read wherever they appear, so a device
# layer that starts reporting them needs no change here.
TELEMETRY_FIELDS = ("temperature_c", "power_w", "mean_power_w", "energy_j")
# Upper bounds (s) of the step-time histogram: a toy's 10 ms step to a stall of minutes.
STEP_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Every state a replica row can be in (the /metrics state set lists them all, always).
REPLICA_STATES = (
    "starting", "joining", "training", "healing", "hung", "out", "down", "restarting", "done",
)  # fmt: skip


@dataclass
class ReplicaView:
    name: str
    speed: float | None = None
    kind: str = "cpu"
    state: str = "starting"
    share: int = 0
    sps: float | None = None
    last_event: str = ""
    # Bounded: ideal_sps needs the recent few, and a week-long run must not grow memory.
    sps_history: deque[float] = field(default_factory=lambda: deque(maxlen=8))
    steps: int = 0  # committed steps this replica took part in
    samples: int = 0  # samples it computed in committed steps
    faults: int = 0
    heals: int = 0
    launches: int = 0
    temperature_c: float | None = None
    power_w: float | None = None
    # A worker reports joules since its own start; a restart begins again at 0,
    # so what earlier launches used is banked here.
    energy_banked_j: float = 0.0
    energy_launch_j: float | None = None
    # Emulated memory per (chip, rank) of the replica (observe/chip_memory.py).
    chip_memory: ChipLedger = field(default_factory=dict)

    @property
    def energy_j(self) -> float | None:
        if self.energy_launch_j is None and self.energy_banked_j == 0.0:
            return None
        return self.energy_banked_j + (self.energy_launch_j or 0.0)

    @property
    def chips(self) -> int:
        """Chips of the replica (a group has several); 1 when nothing says otherwise."""
        return len(chips_of(self.chip_memory)) or 1

    @property
    def device(self) -> str:
        base = f"{self.kind} ×{self.speed:g}" if self.speed is not None else self.kind
        return f"{base} · {self.chips} chips" if self.chips > 1 else base

    @property
    def memory(self) -> str:
        """`5.9 MiB/6.0 MiB`: the most its chips held against their caps; '-' unknown."""
        if not self.chip_memory:
            return "-"
        from phalanx.emulate.memory_size import describe_bytes

        chips = chips_of(self.chip_memory)
        cap = sum(c["cap_bytes"] for c in chips)
        held = sum(c["peak_bytes"] for c in chips)
        return f"{describe_bytes(held)}/{describe_bytes(cap)}"


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
    checkpoints: int = 0
    started_t: float | None = None
    last_t: float | None = None
    last_commit_t: float | None = None
    finished: bool = False
    # Seconds between consecutive commits as the fleet lived them (stalls included):
    # counts per STEP_SECONDS_BUCKETS bound (the last: above all), their sum and number.
    step_seconds_counts: list[int] = field(
        default_factory=lambda: [0] * (len(STEP_SECONDS_BUCKETS) + 1)
    )
    step_seconds_sum: float = 0.0
    quorums: int = 0  # quorums formed (distinct quorum ids seen)
    participants: int = 0  # replicas in the last committed step
    lighthouse_up: bool | None = None  # None: this host runs no lighthouse of its own
    lighthouse_restarts: int = 0
    # Bumped by every event: a display redraws only when it moved.
    version: int = 0
    _fault_times: list[float] = field(default_factory=list)
    _recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=12))
    _quorum_ids: deque[Any] = field(default_factory=lambda: deque(maxlen=64))

    def replica(self, name: str) -> ReplicaView:
        if name not in self.replicas:
            self.replicas[name] = ReplicaView(name)
        return self.replicas[name]

    def apply(self, event: dict[str, Any]) -> None:
        self.version += 1
        t = event.get("t")
        if isinstance(t, (int, float)):
            self.started_t = t if self.started_t is None else min(self.started_t, t)
            self.last_t = t if self.last_t is None else max(self.last_t, t)
        kind = event.get("kind")
        name = event.get("replica")
        handler = _HANDLERS.get(kind or "")
        if handler is not None:
            handler(self, event, name)
        if kind == "telemetry" or (name is not None and event.get("source") in (name, None)):
            self._telemetry(event, name)

    def apply_all(self, events: list[dict[str, Any]]) -> FleetView:
        for event in events:
            self.apply(event)
        return self

    # ------------------------------------------------------------ handlers
    def _run_start(self, event: dict[str, Any], _name: str | None) -> None:
        self.planned_steps = event.get("steps") or self.planned_steps
        self.global_batch_size = event.get("global_batch_size") or self.global_batch_size
        if event.get("own_lighthouse"):
            self.lighthouse_up = True
        for rname, info in (event.get("replicas") or {}).items():
            view = self.replica(rname)
            view.speed = info.get("speed")
            view.kind = info.get("kind") or view.kind

    def _worker_start(self, event: dict[str, Any], name: str | None) -> None:
        view = self.replica(name or "?")
        view.state = "joining"
        view.launches += 1
        view.last_event = "restarted" if event.get("restarted") else "started"
        if view.energy_launch_j is not None:
            view.energy_banked_j += view.energy_launch_j
            view.energy_launch_j = None
        self.global_batch_size = self.global_batch_size or event.get("global_batch_size") or 0
        self.planned_steps = self.planned_steps or event.get("steps") or 0

    def _quorum(self, event: dict[str, Any], _name: str | None) -> None:
        # Every member reports the same quorum; ids restart with a restarted lighthouse,
        # so the id is paired with the step it formed at.
        key = (event.get("quorum_id"), event.get("step"))
        if key not in self._quorum_ids:
            self._quorum_ids.append(key)
            self.quorums += 1
        members = set(event.get("participants") or [])
        for rname, view in self.replicas.items():
            if rname in members and view.state in ("joining", "healing", "hung", "out"):
                view.state = "training"

    def _heal(self, event: dict[str, Any], name: str | None) -> None:
        self.heals += 1
        view = self.replica(name or "?")
        view.heals += 1
        view.state = "training"
        view.last_event = f"healed to step {event['step']} in {event['duration_s']:.1f}s"

    def _step(self, event: dict[str, Any], _name: str | None) -> None:
        step = event["step"]
        if step in self.committed:
            return  # every participant writes the same record; count it once
        self.committed.add(step)
        self._recent.append((event["t"], step))
        if self.last_commit_t is not None and event["t"] >= self.last_commit_t:
            self._count_step_seconds(event["t"] - self.last_commit_t)
        self.last_commit_t = event["t"]
        self.last_step = max(self.last_step, step)
        self.last_loss = event["loss"]
        participants = event["participants"]
        self.participants = len(participants)
        for rname, share, sps in zip(participants, event["shares"], event["sps"]):
            view = self.replica(rname)
            view.share = share
            view.sps = sps
            view.sps_history.append(sps)
            view.steps += 1
            view.samples += share
            if view.state in ("joining", "healing", "out"):
                view.state = "training"
        for rname, view in self.replicas.items():
            if rname not in participants and view.state == "training":
                view.state = "out"
                view.share = 0

    def _count_step_seconds(self, seconds: float) -> None:
        index = next(
            (i for i, bound in enumerate(STEP_SECONDS_BUCKETS) if seconds <= bound),
            len(STEP_SECONDS_BUCKETS),
        )
        self.step_seconds_counts[index] += 1
        self.step_seconds_sum += seconds

    def _lighthouse_down(self, _event: dict[str, Any], _name: str | None) -> None:
        self.lighthouse_up = False

    def _lighthouse_restart(self, _event: dict[str, Any], _name: str | None) -> None:
        self.lighthouse_up = True
        self.lighthouse_restarts += 1

    def _fault(self, event: dict[str, Any], name: str | None) -> None:
        self.faults += 1
        self._fault_times.append(event.get("t", 0.0))
        if name is None:  # a fleet service's fault (the lighthouse), not a replica's
            return
        view = self.replica(name or "?")
        view.faults += 1
        view.last_event = f"{event['fault']} injected at step {event['step']}"
        view.state = {"kill": "down", "hang": "hung"}.get(event["fault"], view.state)

    def _retry(self, _event: dict[str, Any], _name: str | None) -> None:
        self.retries += 1

    def _checkpoint(self, event: dict[str, Any], name: str | None) -> None:
        self.checkpoints += 1
        if name is not None:
            self.replica(name).last_event = f"checkpoint at step {event.get('step')}"

    def _worker_exit(self, event: dict[str, Any], name: str | None) -> None:
        view = self.replica(name or "?")
        if view.state != "done":
            view.state = "down"
            view.share = 0
            view.last_event = f"exited with code {event.get('code')}"

    def _restart_scheduled(self, event: dict[str, Any], name: str | None) -> None:
        self.replica(name or "?").last_event = f"restart in {event['after_s']:.1f}s"

    def _worker_restart(self, _event: dict[str, Any], name: str | None) -> None:
        view = self.replica(name or "?")
        view.state = "restarting"
        view.last_event = "restarting"

    def _worker_done(self, event: dict[str, Any], name: str | None) -> None:
        view = self.replica(name or "?")
        view.state = "done"
        view.last_event = f"done at step {event.get('step')}"

    def _thermal(self, event: dict[str, Any], name: str | None) -> None:
        view = self.replica(name or "?")
        cut = 1.0 - float(event.get("derate", 1.0))
        verb = "share cut" if event.get("action") == "derate" else "share restored"
        view.last_event = (
            f"hot: {verb}, {cut:.0%} off at {event.get('temperature_c')} °C "
            f"(throttles at {event.get('throttle_c')} °C)"
        )

    def _chip_memory(self, event: dict[str, Any], name: str | None) -> None:
        if name is not None:
            fold(self.replica(name).chip_memory, event)

    def _device_failure(self, event: dict[str, Any], name: str | None) -> None:
        self.replica(name or "?").last_event = f"device failed: {event.get('reason')}"

    def _run_end(self, _event: dict[str, Any], _name: str | None) -> None:
        self.finished = True

    def _telemetry(self, event: dict[str, Any], name: str | None) -> None:
        if name is None or not any(event.get(f) is not None for f in TELEMETRY_FIELDS):
            return
        view = self.replica(name)
        if event.get("temperature_c") is not None:
            view.temperature_c = float(event["temperature_c"])
        # A step's mean draw (device models give it) says more than an end-of-step sample.
        power_w = event.get("mean_power_w", event.get("power_w"))
        if power_w is not None:
            view.power_w = float(power_w)
        if event.get("energy_j") is not None:
            view.energy_launch_j = float(event["energy_j"])

    # ------------------------------------------------------------- queries
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
        solos = [statistics.median(v.sps_history) for v in self.replicas.values() if v.sps_history]
        return sum(solos) if solos else None

    def efficiency(self) -> float | None:
        tput, ideal = self.throughput_sps(), self.ideal_sps()
        return tput / ideal if tput and ideal else None

    def faults_survived(self) -> int:
        """Faults after which the fleet still committed a step."""
        if self.last_commit_t is None:
            return 0
        return sum(1 for t in self._fault_times if t < self.last_commit_t)

    def energy_j(self) -> float | None:
        known = [v.energy_j for v in self.replicas.values() if v.energy_j is not None]
        return sum(known) if known else None

    def eta_s(self) -> float | None:
        """Seconds to the last planned step at the recent pace of committed steps."""
        tput = self.throughput_sps()
        remaining = self.planned_steps - self.steps_done()
        if remaining <= 0:
            return 0.0 if self.planned_steps else None
        if not tput or not self.global_batch_size:
            return None
        return remaining * self.global_batch_size / tput


_HANDLERS = {
    "run_start": FleetView._run_start,
    "worker_start": FleetView._worker_start,
    "quorum": FleetView._quorum,
    "heal": FleetView._heal,
    "step": FleetView._step,
    "fault": FleetView._fault,
    "retry": FleetView._retry,
    "checkpoint": FleetView._checkpoint,
    "worker_exit": FleetView._worker_exit,
    "restart_scheduled": FleetView._restart_scheduled,
    "worker_restart": FleetView._worker_restart,
    "worker_done": FleetView._worker_done,
    "run_end": FleetView._run_end,
    "lighthouse_down": FleetView._lighthouse_down,
    "lighthouse_restart": FleetView._lighthouse_restart,
    "thermal": FleetView._thermal,
    "device_failure": FleetView._device_failure,
    "chip_memory": FleetView._chip_memory,
    "chip_memory_peak": FleetView._chip_memory,
}
