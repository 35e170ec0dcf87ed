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
    reported: set[str] = set()
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
            reported.add(name)
    for name, value in current.items():
        totals[name] = totals.get(name, 0.0) + value
    # A replica whose device never reported energy (no sensor) is unknown, not 0 J.
    return {name: value for name, value in totals.items() if name in reported}


def thermal_summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Hottest reading per device, and what the thermal guard did."""
    hottest: dict[str, float] = {}
    actions: dict[str, int] = {"derate": 0, "restore": 0}
    for event in events:
        kind = event.get("kind")
        if kind == "step" and event.get("source") == event.get("replica"):
            temperature = event.get("temperature_c")
            if temperature is not None:
                name = event["replica"]
                hottest[name] = max(hottest.get(name, temperature), temperature)
        elif kind == "thermal":
            actions[event["action"]] = actions.get(event["action"], 0) + 1
    failures = sum(1 for e in events if e.get("kind") == "device_failure")
    return {
        "max_temperature_c": {n: round(t, 2) for n, t in sorted(hottest.items())},
        "guard_actions": actions,
        "device_failures": failures,
    }


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
        "objective": (start.get("energy_plan") or {}).get("objective", "time"),
        "power_budget_w": start.get("power_budget_w"),
        "plan": start.get("energy_plan"),
        "thermal": thermal_summary(events),
        "note": "energy from each device's counter or modelled/sampled power; cost and CO2 are estimates",
    }
