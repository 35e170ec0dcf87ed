"""One plain snapshot of the fleet: what every live display shows, as JSON-able data.

The terminal view, the web page, /api/state and /metrics all render this one
dict, so they cannot disagree; it is built on the launcher's thread and then
only read, so the web server's threads never touch a FleetView being folded.
"""

from __future__ import annotations

from typing import Any

from phalanx.observe.fleet_view import STEP_SECONDS_BUCKETS, FleetView

STATE_SCHEMA = "phalanx.fleet_state/1"


def fleet_state(view: FleetView, now_s: float | None = None) -> dict[str, Any]:
    """`now_s` (epoch seconds) ages the elapsed time; None: the time of the last event."""
    now = now_s if now_s is not None else (view.last_t or 0.0)
    elapsed_s = max(0.0, now - view.started_t) if view.started_t is not None else 0.0
    return {
        "schema": STATE_SCHEMA,
        "step": view.steps_done(),
        "total_steps": view.planned_steps,
        "global_batch_size": view.global_batch_size,
        "elapsed_s": round(elapsed_s, 3),
        "eta_s": _round(view.eta_s(), 1),
        "loss": view.last_loss,
        "throughput_sps": _round(view.throughput_sps(), 3),
        "ideal_sps": _round(view.ideal_sps(), 3),
        "efficiency": _round(view.efficiency(), 4),
        "faults": view.faults,
        "faults_survived": view.faults_survived(),
        "heals": view.heals,
        "retries": view.retries,
        "checkpoints": view.checkpoints,
        "energy_j": _round(view.energy_j(), 1),
        "finished": view.finished,
        "participants": view.participants,
        "quorums": view.quorums,
        "lighthouse_up": view.lighthouse_up,
        "lighthouse_restarts": view.lighthouse_restarts,
        "step_seconds": {
            "bounds": list(STEP_SECONDS_BUCKETS),
            "counts": list(view.step_seconds_counts),
            "sum": round(view.step_seconds_sum, 6),
        },
        "replicas": [
            {
                "name": name,
                "device": r.device,
                "chips": r.chips,
                "memory": r.memory,
                "speed": r.speed,
                "state": r.state,
                "share": r.share,
                "sps": _round(r.sps, 3),
                "temperature_c": _round(r.temperature_c, 1),
                "power_w": _round(r.power_w, 1),
                "energy_j": _round(r.energy_j, 1),
                "steps": r.steps,
                "samples": r.samples,
                "faults": r.faults,
                "heals": r.heals,
                "launches": r.launches,
                "last_event": r.last_event,
            }
            for name, r in sorted(view.replicas.items(), key=lambda kv: _natural(kv[0]))
        ],
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _natural(name: str) -> tuple[str, int]:
    # r2 before r10: operators scan the table by replica number.
    head = name.rstrip("0123456789")
    tail = name[len(head) :]
    return head, int(tail) if tail else -1


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_energy(joules: float | None) -> str:
    if joules is None:
        return "-"
    if joules >= 3.6e6:
        return f"{joules / 3.6e6:.2f} kWh"
    if joules >= 1e3:
        return f"{joules / 1e3:.1f} kJ"
    return f"{joules:.0f} J"


def header_fields(state: dict[str, Any]) -> list[tuple[str, str]]:
    """The header as (label, value) pairs, shared by the terminal and the web page."""
    total = state["total_steps"] or "?"
    eff = state["efficiency"]
    fields = [
        ("step", f"{state['step']}/{total}"),
        ("ETA", "finished" if state["finished"] else format_duration(state["eta_s"])),
        ("elapsed", format_duration(state["elapsed_s"])),
        ("loss", f"{state['loss']:.4f}" if state["loss"] is not None else "-"),
        (
            "samples/s",
            f"{state['throughput_sps']:,.0f}" if state["throughput_sps"] is not None else "-",
        ),
        (
            "efficiency",
            f"{eff:.0%} of ideal {state['ideal_sps']:,.0f}" if eff is not None else "-",
        ),
        ("faults survived", f"{state['faults_survived']}/{state['faults']}"),
        ("heals", str(state["heals"])),
    ]
    if state["energy_j"] is not None:
        fields.append(("energy", format_energy(state["energy_j"])))
    return fields


REPLICA_COLUMNS = (
    "replica", "device", "state", "share", "samples/s", "°C", "W", "memory", "last event",
)  # fmt: skip


def replica_cells(row: dict[str, Any]) -> list[str]:
    """A replica's row as text cells, in REPLICA_COLUMNS order."""
    return [
        row["name"],
        row["device"],
        row["state"],
        str(row["share"]) if row["state"] == "training" else "-",
        # A replica out of the step has no current speed; its last one would mislead.
        f"{row['sps']:,.0f}" if row["sps"] is not None and row["state"] == "training" else "-",
        f"{row['temperature_c']:.0f}" if row["temperature_c"] is not None else "-",
        f"{row['power_w']:.0f}" if row["power_w"] is not None else "-",
        row.get("memory", "-"),
        row["last_event"],
    ]


STATE_COLORS = {
    "training": "green",
    "done": "green",
    "joining": "cyan",
    "healing": "cyan",
    "restarting": "cyan",
    "starting": "cyan",
    "hung": "yellow",
    "out": "yellow",
    "down": "red",
}
