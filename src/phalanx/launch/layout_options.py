"""`phalanx run --plan plan.toml`: the planned layout as the launcher's replicas and ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phalanx.plan.layout_file import read_layout


def layout_run_options(path: Path) -> tuple[list[float | None], dict[str, Any]]:
    """(speed of each replica, RunPlan fields): exactly the chips and ranks of the file.

    A chip hosting r ranks lends each an equal part of its speed and memory, as
    `--emulate` with `+` does; S = 1 is a fleet of chips alone.
    """
    from phalanx.launch.group_slot import rank_parts

    layout = read_layout(path)
    s = layout.ranks_per_group
    speeds: list[float | None] = [r.speed(s) for r in layout.replicas]
    if s == 1:
        chips = [r.chips[0].chip for r in layout.replicas]
        return speeds, {
            "max_shares": [None] * len(chips),
            "kinds": [None] * len(chips),
            "memory_caps": [c.memory_bytes for c in chips],
        }
    parts = [
        rank_parts([(p.chip.speed, p.chip.memory_bytes, p.ranks) for p in replica.chips])
        for replica in layout.replicas
    ]
    return speeds, {"group_parts": parts}
