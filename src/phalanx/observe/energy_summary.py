"""Energy in summary.json: joules per device and per sample, kWh, and labelled estimates.

Workers report `energy_j` (joules since their device model or counter
started) in their step events; a restarted worker starts again from zero, so
a device's energy is the sum over its process lives of the last reading of
each. Cost and CO2 are estimates from the tariff and intensity the user gave.
"""

from __future__ import annotations

from typing import Any

J_PER_KWH = 3.6e6


def device_energy_j(events: list[dict[str, Any]]) -> dict[str, float]:
    totals: dict[str, float] = {}
    current: dict[str, float] = {}
    for event in events:
        name = event.get("replica")
        if name is None:
            continue
        if event.get("kind") == "worker_start":
            totals[name] = totals.get(name, 0.0) + current.pop(name, 0.0)
        elif (
            event.get("kind") == "step"
            and event.get("energy_j") is not None
            and event.get("source") == name
        ):
            current[name] = float(event["energy_j"])
    for name, value in current.items():
        totals[name] = totals.get(name, 0.0) + value
    return totals


def energy_summary(
    events: list[dict[str, Any]], samples: int, start: dict[str, Any]
) -> dict[str, Any] | None:
    per_device = device_energy_j(events)
    if not per_device:
        return None
    total_j = sum(per_device.values())
    kwh = total_j / J_PER_KWH
    tariff = start.get("tariff_per_kwh")
    subsidy = start.get("subsidy_per_kwh") or 0.0
    intensity = start.get("co2_g_per_kwh")
    return {
        "energy_j": round(total_j, 3),
        "kwh": round(kwh, 9),
        "j_per_sample": round(total_j / samples, 6) if samples else None,
        "per_device_j": {name: round(value, 3) for name, value in sorted(per_device.items())},
        "cost_estimate": None if tariff is None else round(kwh * max(0.0, tariff - subsidy), 9),
        "co2_g_estimate": None if intensity is None else round(kwh * intensity, 6),
        "note": "energy from each device's counter or modelled/sampled power; cost and CO2 are estimates",
    }
