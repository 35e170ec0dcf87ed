"""Per chip: the memory an emulated chip has and the most its replica's ranks held on it.

Every rank of a replica reports its part of its chip (`chip_memory`: the cap,
`chip_memory_peak`: each new most it held while a micro-batch ran); a chip
hosting several ranks holds what they hold together.
"""

from __future__ import annotations

from typing import Any


def chip_memory_summary(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{replica: {cap_bytes, peak_bytes, chips: [{chip, ranks, cap_bytes, peak_bytes}]}}."""
    caps: dict[tuple[str, int, int], int] = {}
    peaks: dict[tuple[str, int, int], int] = {}
    for event in events:
        kind = event.get("kind")
        if kind not in ("chip_memory", "chip_memory_peak"):
            continue
        key = (str(event["replica"]), int(event.get("chip") or 0), int(event.get("rank") or 0))
        caps[key] = int(event["cap_bytes"])
        if kind == "chip_memory_peak":
            peaks[key] = max(peaks.get(key, 0), int(event["held_bytes"]))
    out: dict[str, dict[str, Any]] = {}
    for (replica, chip, _rank), cap in sorted(caps.items()):
        entry = out.setdefault(replica, {"cap_bytes": 0, "peak_bytes": 0, "chips": {}})
        part = entry["chips"].setdefault(
            chip, {"chip": chip, "ranks": 0, "cap_bytes": 0, "peak_bytes": 0}
        )
        held = peaks.get((replica, chip, _rank), 0)
        part["ranks"] += 1
        part["cap_bytes"] += cap
        part["peak_bytes"] += held
        entry["cap_bytes"] += cap
        entry["peak_bytes"] += held
    for entry in out.values():
        entry["chips"] = list(entry["chips"].values())
    return out


def describe_chip_memory(memory: dict[str, Any] | None) -> str:
    """`chip 0 (2 ranks) 612 KiB of 781 KiB, chip 1 306 KiB of 391 KiB`; '' when unknown."""
    from phalanx.emulate.memory_size import describe_bytes

    if not memory:
        return ""
    parts = []
    for chip in memory["chips"]:
        ranks = f" ({chip['ranks']} ranks)" if chip["ranks"] > 1 else ""
        held = describe_bytes(chip["peak_bytes"])
        parts.append(f"chip {chip['chip']}{ranks} {held} of {describe_bytes(chip['cap_bytes'])}")
    return ", ".join(parts)
