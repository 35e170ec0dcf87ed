"""/metrics: the fleet state in Prometheus text format, via prometheus-client.

A custom collector turns the latest snapshot into metric families at scrape
time, so nothing is kept in sync by hand and each dashboard has its own
registry (no global state shared between runs in one process, e.g. tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from phalanx.observe.fleet_state import fleet_state
from phalanx.observe.fleet_view import REPLICA_STATES, FleetView

# (metric name, help, key in a replica row, counter?)
_REPLICA_METRICS = (
    (
        "phalanx_replica_steps_committed",
        "Committed steps this replica took part in.",
        "steps",
        True,
    ),
    (
        "phalanx_replica_samples",
        "Samples this replica computed in committed steps.",
        "samples",
        True,
    ),
    ("phalanx_replica_faults", "Faults injected into or seen on this replica.", "faults", True),
    ("phalanx_replica_heals", "Times this replica healed from a live peer.", "heals", True),
    ("phalanx_replica_energy_joules", "Energy this replica used, when known.", "energy_j", True),
    (
        "phalanx_replica_share_samples",
        "Samples of the global batch in its last step.",
        "share",
        False,
    ),
    ("phalanx_replica_throughput_samples_per_second", "Measured compute throughput.", "sps", False),
    (
        "phalanx_replica_temperature_celsius",
        "Device temperature, when known.",
        "temperature_c",
        False,
    ),
    ("phalanx_replica_power_watts", "Device power draw, when known.", "power_w", False),
)

# (metric name, help, key in the state, counter?)
_FLEET_METRICS = (
    ("phalanx_steps_committed", "Committed optimizer steps.", "step", True),
    ("phalanx_faults", "Faults seen by the fleet.", "faults", True),
    ("phalanx_heals", "Heals from live peers.", "heals", True),
    ("phalanx_retries", "Step attempts that did not commit.", "retries", True),
    ("phalanx_steps_planned", "Steps the run is to commit.", "total_steps", False),
    ("phalanx_loss", "Loss of the last committed step.", "loss", False),
    ("phalanx_throughput_samples_per_second", "Recent fleet throughput.", "throughput_sps", False),
    ("phalanx_ideal_samples_per_second", "Sum of each replica's own speed.", "ideal_sps", False),
    ("phalanx_efficiency_ratio", "Throughput divided by ideal.", "efficiency", False),
    ("phalanx_participants", "Replicas in the last committed step.", "participants", False),
    ("phalanx_quorums", "Quorums formed (each change of the fleet's membership).", "quorums", True),
    (
        "phalanx_lighthouse_restarts",
        "Times this host's lighthouse was restarted.",
        "lighthouse_restarts",
        True,
    ),
)


class FleetCollector(Collector):
    def __init__(self, get_state: Callable[[], dict[str, Any] | None]) -> None:
        self._get_state = get_state

    def collect(self) -> Iterator[Metric]:
        # Before the first published state, every family is there already (counters at 0):
        # a scrape in a run's first seconds sees the metrics, not an empty page.
        state = self._get_state() or fleet_state(FleetView())
        for name, doc, key, counter in _FLEET_METRICS:
            family = CounterMetricFamily(name, doc) if counter else GaugeMetricFamily(name, doc)
            if state.get(key) is not None:
                family.add_metric([], float(state[key]))
            yield family
        for name, doc, key, counter in _REPLICA_METRICS:
            family = (
                CounterMetricFamily(name, doc, labels=["replica", "device"])
                if counter
                else GaugeMetricFamily(name, doc, labels=["replica", "device"])
            )
            for row in state["replicas"]:
                # Unknown values (no telemetry) are left out, not reported as 0.
                if row.get(key) is not None:
                    family.add_metric([row["name"], row["device"]], float(row[key]))
            yield family
        # One series per replica (a state label would start a new series at every change).
        up = GaugeMetricFamily(
            "phalanx_replica_up", "1 while the replica is training.", labels=["replica"]
        )
        states = StateSetMetricFamily(
            "phalanx_replica_state", "The replica's state (one of a fixed set).", labels=["replica"]
        )
        for row in state["replicas"]:
            up.add_metric([row["name"]], 1.0 if row["state"] == "training" else 0.0)
            states.add_metric([row["name"]], {s: row["state"] == s for s in REPLICA_STATES})
        yield up
        yield states
        lighthouse = GaugeMetricFamily(
            "phalanx_lighthouse_up", "1 while this host's lighthouse serves (absent: none here)."
        )
        if state.get("lighthouse_up") is not None:
            lighthouse.add_metric([], 1.0 if state["lighthouse_up"] else 0.0)
        yield lighthouse
        yield _step_seconds(state.get("step_seconds"))


def _step_seconds(histogram: dict[str, Any] | None) -> Metric:
    family = HistogramMetricFamily(
        "phalanx_step_seconds", "Seconds between consecutive committed steps, stalls included."
    )
    if not histogram:
        return family
    cumulative, buckets = 0, []
    for bound, count in zip([*histogram["bounds"], float("inf")], histogram["counts"]):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
    family.add_metric([], buckets, sum_value=histogram["sum"])
    return family


def metrics_registry(get_state: Callable[[], dict[str, Any] | None]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(get_state))
    return registry


def metrics_text(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
