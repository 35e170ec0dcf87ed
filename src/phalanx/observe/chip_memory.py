"""Per chip: the memory an emulated chip has and the most its replica's ranks held on it.

Every rank of a replica reports its part of its chip (`chip_memory`: the cap,
`chip_memory_peak`: each new most it held while a micro-batch ran); a chip
hosting several ranks holds what they hold together.
"""

from __future__ import annotations

from typing import Any

# One replica's emulated memory: (chip, rank) -> [cap, the most that rank held].
ChipLedger = dict[tuple[int, int], list[int]]
KINDS = ("chip_memory", "chip_memory_peak")


def fold(ledger: ChipLedger, event: dict[str, Any]) -> None:
    """Take one `chip_memory` or `chip_memory_peak` event of the replica into its ledger."""
    key = (int(event.get("chip") or 0), int(event.get("rank") or 0))
    entry = ledger.setdefault(key, [0, 0])
    entry[0] = int(event.get("cap_bytes") or 0)
    if event.get("kind") == "chip_memory_peak":
        entry[1] = max(entry[1], int(event.get("held_bytes") or 0))


def chips_of(ledger: ChipLedger) -> list[dict[str, int]]:
    """Per chip, in order: {chip, ranks, cap_bytes, peak_bytes} (its ranks' together)."""
    chips: dict[int, dict[str, int]] = {}
    for (chip, _rank), (cap, held) in sorted(ledger.items()):
        part = chips.setdefault(chip, {"chip": chip, "ranks": 0, "cap_bytes": 0, "peak_bytes": 0})
        part["ranks"] += 1
        part["cap_bytes"] += cap
        part["peak_bytes"] += held
    return list(chips.values())


def chip_memory_summary(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{replica: {cap_bytes, peak_bytes, chips: [{chip, ranks, cap_bytes, peak_bytes}]}}."""
    ledgers: dict[str, ChipLedger] = {}
    for event in events:
        if event.get("kind") in KINDS:
            fold(ledgers.setdefault(str(event["replica"]), {}), event)
    out: dict[str, dict[str, Any]] = {}
    for replica, ledger in ledgers.items():
        chips = chips_of(ledger)
        out[replica] = {
            "cap_bytes": sum(c["cap_bytes"] for c in chips),
            "peak_bytes": sum(c["peak_bytes"] for c in chips),
            "chips": chips,
        }
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
