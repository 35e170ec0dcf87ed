"""Time series for the report, extracted from events alone (pure, no plotting).

Times are seconds since the run started (`run_start`, else the first event),
so plots of different runs line up and read the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phalanx.observe.accounting import committed_steps
from phalanx.observe.fleet_view import TELEMETRY_FIELDS

ROLLING_STEPS = 5  # achieved throughput is averaged over this many step intervals


@dataclass
class Mark:
    """One point event on the timeline."""

    t_s: float
    kind: str  # fault, heal, quorum, checkpoint, exit, restart, retry
    replica: str | None  # None: the fleet as a whole
    label: str
    step: int | None = None


@dataclass
class RunSeries:
    global_batch_size: int = 0
    replicas: list[str] = field(default_factory=list)
    replica_labels: dict[str, str] = field(default_factory=dict)
    steps: list[int] = field(default_factory=list)
    step_t_s: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    # Per committed step: samples/s actually achieved (rolling), and the sum of
    # the participants' own measured speeds (what a perfectly overlapped fleet
    # of those participants would reach).
    achieved_sps: list[float | None] = field(default_factory=list)
    participants_ideal_sps: list[float] = field(default_factory=list)
    shares: dict[str, list[int]] = field(default_factory=dict)
    # (start_s, end_s) spans in which the replica was in committed steps.
    participation: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    marks: list[Mark] = field(default_factory=list)
    # field (temperature_c, power_w, energy_j) -> replica -> [(t_s, value)]; empty: none reported.
    telemetry: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    end_t_s: float = 0.0

    def fault_marks(self) -> list[Mark]:
        return [m for m in self.marks if m.kind == "fault"]

    def has_telemetry(self, key: str) -> bool:
        return any(self.telemetry.get(key, {}).values())


def extract_series(events: list[dict[str, Any]]) -> RunSeries:
    series = RunSeries()
    if not events:
        return series
    start = next((e for e in events if e.get("kind") == "run_start"), None)
    t0 = float(start["t"] if start else min(e["t"] for e in events))
    series.end_t_s = max(e["t"] for e in events) - t0
    series.global_batch_size = int(_batch_size(events))
    names, labels = _replicas(events, start)
    steps = sorted(committed_steps(events).values(), key=lambda r: r["step"])
    for record in steps:
        for name in record["participants"]:
            if name not in names:
                names.append(name)
                labels[name] = name
    series.replicas, series.replica_labels = names, labels
    _fill_steps(series, steps, t0)
    series.marks = _marks(events, t0)
    series.telemetry = _telemetry(events, t0)
    return series


def _batch_size(events: list[dict[str, Any]]) -> int:
    for event in events:
        if event.get("kind") in ("run_start", "worker_start") and event.get("global_batch_size"):
            return int(event["global_batch_size"])
    return 0


def _replicas(
    events: list[dict[str, Any]], start: dict[str, Any] | None
) -> tuple[list[str], dict[str, str]]:
    names: list[str] = []
    labels: dict[str, str] = {}
    for name, info in ((start or {}).get("replicas") or {}).items():
        names.append(name)
        speed = info.get("speed")
        labels[name] = f"{name} ({info.get('kind', 'cpu')} ×{speed:g})" if speed else name
    for event in events:
        name = event.get("replica")
        if event.get("kind") == "worker_start" and name and name not in names:
            names.append(name)
            labels[name] = name
    return names, labels


def _fill_steps(series: RunSeries, steps: list[dict[str, Any]], t0: float) -> None:
    for name in series.replicas:
        series.shares[name] = []
        series.participation[name] = []
    previous_t: float | None = None
    for index, record in enumerate(steps):
        t_s = record["t"] - t0
        series.steps.append(record["step"])
        series.step_t_s.append(t_s)
        series.loss.append(float(record["loss"]))
        series.participants_ideal_sps.append(float(sum(record["sps"])))
        back = min(index, ROLLING_STEPS)
        span_s = t_s - series.step_t_s[index - back] if back else 0.0
        series.achieved_sps.append(
            back * series.global_batch_size / span_s if back and span_s > 0 else None
        )
        share_of = dict(zip(record["participants"], record["shares"]))
        for name in series.replicas:
            series.shares[name].append(int(share_of.get(name, 0)))
            if name in share_of:
                # The step's span: from the previous commit (or its own compute start).
                begin = previous_t if previous_t is not None else t_s - record.get("compute_s", 0)
                _extend_span(series.participation[name], begin, t_s)
        previous_t = t_s


def _extend_span(spans: list[tuple[float, float]], begin: float, end: float) -> None:
    if spans and abs(spans[-1][1] - begin) < 1e-9:
        spans[-1] = (spans[-1][0], end)
    else:
        spans.append((begin, end))


def _marks(events: list[dict[str, Any]], t0: float) -> list[Mark]:
    marks: list[Mark] = []
    seen_quorums: set[Any] = set()
    retried_steps: set[Any] = set()
    for event in events:
        kind, name, t_s = event.get("kind"), event.get("replica"), event["t"] - t0
        step = event.get("step")
        if kind == "fault":
            marks.append(Mark(t_s, "fault", name, f"{event['fault']} {name} step {step}", step))
        elif kind == "heal":
            label = f"{name} healed {event.get('from_step')}→{step} ({event['duration_s']:.1f}s)"
            marks.append(Mark(t_s, "heal", name, label, step))
        elif kind == "quorum":
            # Every member writes the same quorum; draw it once.
            key = event.get("quorum_id"), tuple(event.get("participants") or [])
            if key not in seen_quorums:
                seen_quorums.add(key)
                count = len(event.get("participants") or [])
                marks.append(Mark(t_s, "quorum", None, f"quorum of {count}", step))
        elif kind == "checkpoint":
            marks.append(Mark(t_s, "checkpoint", None, f"checkpoint step {step}", step))
        elif kind == "worker_exit" and event.get("code") not in (0, None):
            marks.append(Mark(t_s, "exit", name, f"{name} exited ({event.get('code')})"))
        elif kind == "worker_restart":
            marks.append(Mark(t_s, "restart", name, f"{name} restarted"))
        elif kind == "retry" and step not in retried_steps:
            retried_steps.add(step)
            marks.append(Mark(t_s, "retry", None, f"step {step} retried", step))
    return marks


def _telemetry(events: list[dict[str, Any]], t0: float) -> dict[str, dict[str, list]]:
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for event in events:
        name = event.get("replica")
        if name is None or (
            event.get("source") not in (name, None) and event["kind"] != "telemetry"
        ):
            continue
        for key in TELEMETRY_FIELDS:
            value = event.get(key)
            if isinstance(value, (int, float)):
                out.setdefault(key, {}).setdefault(name, []).append((event["t"] - t0, float(value)))
    return out
