"""The live view shows a replica group's chips and the memory they hold (observe/fleet_view.py)."""

from __future__ import annotations

from phalanx.observe.fleet_state import REPLICA_COLUMNS, fleet_state, replica_cells
from phalanx.observe.fleet_view import FleetView


def _memory_events() -> list[dict]:
    ranks = [(0, 0), (0, 1), (1, 2)]  # (chip, rank): chip 0 hosts two of the three ranks
    out = [
        {"kind": "run_start", "steps": 5, "replicas": {"r0": {"speed": 1.5, "kind": "emulated"}}}
    ]
    for chip, rank in ranks:
        common = {"replica": "r0", "source": "r0", "chip": chip, "rank": rank}
        out.append({"kind": "chip_memory", "cap_bytes": 2 * 2**20, **common})
        out.append(
            {"kind": "chip_memory_peak", "held_bytes": 2**20, "cap_bytes": 2 * 2**20, **common}
        )
        out.append(
            {"kind": "chip_memory_peak", "held_bytes": 2**19, "cap_bytes": 2 * 2**20, **common}
        )
    return out


def test_a_group_row_names_its_chips_and_the_most_they_held_against_their_caps():
    state = fleet_state(FleetView().apply_all(_memory_events()))
    (row,) = state["replicas"]
    assert row["chips"] == 2 and row["device"].endswith("· 2 chips")
    assert row["memory"] == "3.0 MiB/6.0 MiB"  # peaks kept (not the later, lower ones)
    cells = dict(zip(REPLICA_COLUMNS, replica_cells(row), strict=True))
    assert cells["memory"] == "3.0 MiB/6.0 MiB"


def test_a_replica_without_emulated_memory_shows_none():
    state = fleet_state(FleetView().apply_all(_memory_events()[:1]))
    (row,) = state["replicas"]
    assert row["memory"] == "-" and row["chips"] == 1
