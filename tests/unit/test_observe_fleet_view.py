"""Folding events into the live fleet picture, on a real recorded faulty run."""

import json
from pathlib import Path

import pytest

from phalanx.observe.events import read_events
from phalanx.observe.fleet_state import fleet_state, format_duration, format_energy
from phalanx.observe.fleet_view import FleetView

pytestmark = pytest.mark.timeout(30)

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded_run"


@pytest.fixture(scope="module")
def events():
    return read_events(RECORDED)


def test_recorded_run_folds_to_its_summary(events):
    view = FleetView().apply_all(events)
    summary = json.loads((RECORDED / "summary.json").read_text())
    assert view.steps_done() == summary["steps"] == 60
    assert view.faults == 2 and view.faults_survived() == 2
    assert view.heals == 2
    assert view.finished
    assert {r.state for r in view.replicas.values()} == {"done"}
    # Every committed sample is attributed to exactly one replica.
    assert sum(r.samples for r in view.replicas.values()) == 60 * view.global_batch_size
    by_id = {d["id"]: d for d in summary["devices"]}
    for name, replica in view.replicas.items():
        assert replica.samples == by_id[name]["samples"]
    assert view.replicas["r1"].launches == 2  # killed once, restarted once


def test_states_during_the_faults(events):
    view = FleetView()
    seen: dict[str, set[str]] = {"r1": set(), "r2": set()}
    for event in events:
        view.apply(event)
        for name in seen:
            if name in view.replicas:
                seen[name].add(view.replicas[name].state)
    assert {"down", "restarting", "joining", "training"} <= seen["r1"]
    assert "hung" in seen["r2"]


def test_state_is_json_and_sorted_naturally():
    view = FleetView()
    for name in ("r10", "r2", "r1"):
        view.apply({"t": 1.0, "kind": "worker_start", "replica": name, "source": name})
    state = fleet_state(view, now_s=5.0)
    assert [r["name"] for r in state["replicas"]] == ["r1", "r2", "r10"]
    assert state["elapsed_s"] == 4.0
    json.dumps(state)


def test_telemetry_and_energy_survive_a_restart():
    view = FleetView()
    view.apply({"t": 0, "kind": "worker_start", "replica": "r0", "source": "r0"})
    assert view.energy_j() is None  # unknown, not zero
    view.apply(
        {
            "t": 1,
            "kind": "telemetry",
            "replica": "r0",
            "source": "r0",
            "energy_j": 100.0,
            "temperature_c": 70.0,
            "power_w": 200.0,
        }
    )
    view.apply({"t": 2, "kind": "worker_start", "replica": "r0", "source": "r0", "restarted": True})
    view.apply(
        {
            "t": 3,
            "kind": "step",
            "replica": "r0",
            "source": "r0",
            "step": 0,
            "loss": 1.0,
            "participants": ["r0"],
            "shares": [8],
            "sps": [10.0],
            "energy_j": 30.0,
        }
    )
    replica = view.replicas["r0"]
    assert replica.energy_j == 130.0
    assert (replica.temperature_c, replica.power_w) == (70.0, 200.0)
    # A launcher event naming a replica does not carry that replica's telemetry.
    view.apply({"t": 4, "kind": "worker_exit", "replica": "r0", "source": "launcher", "power_w": 1})
    assert replica.power_w == 200.0


def test_eta_from_recent_pace():
    view = FleetView(planned_steps=10, global_batch_size=4)
    for step in range(4):
        view.apply(
            {
                "t": float(step),
                "kind": "step",
                "replica": "a",
                "source": "a",
                "step": step,
                "loss": 1.0,
                "participants": ["a"],
                "shares": [4],
                "sps": [4.0],
            }
        )
    assert view.throughput_sps() == pytest.approx(4.0)
    assert view.eta_s() == pytest.approx(6.0)  # 6 steps left at one step per second


def test_formatting():
    assert format_duration(3725) == "1:02:05"
    assert format_duration(65) == "1:05"
    assert format_duration(None) == "-"
    assert format_energy(1500) == "1.5 kJ"
    assert format_energy(7.2e6) == "2.00 kWh"


def test_thermal_guard_actions_show_in_the_fleet_view():
    from phalanx.observe.fleet_view import FleetView

    view = FleetView()
    view.apply({"kind": "thermal", "replica": "r2", "source": "r2", "step": 9, "t": 1.0,
                "action": "derate", "derate": 0.25, "temperature_c": 74.1, "throttle_c": 85.0})  # fmt: skip
    assert "share cut, 75% off at 74.1 °C" in view.replica("r2").last_event
    view.apply({"kind": "device_failure", "replica": "r2", "source": "r2", "t": 2.0,
                "reason": "thermal shutdown at 100.1 °C"})  # fmt: skip
    assert "thermal shutdown" in view.replica("r2").last_event
