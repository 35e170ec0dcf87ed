"""Raw run records -> the published figures: ratios paired per repeat, with min/median/max.

Ratios are taken within one repeat (runs that were interleaved back to back), then
spread over repeats, so slow drift of a shared machine cancels in each ratio.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench.fault_ceiling import goodput_ceiling, heartbeat_detect_s
from bench.timeline import spread

Record = dict[str, Any]
FAULTS_SEPARATOR = " | faults: "


def _ok(records: list[Record]) -> list[Record]:
    return [r for r in records if "error" not in r]


def _index(records: list[Record]) -> dict[tuple[str, str, str, int], Record]:
    return {(r["scenario"], r["config"], r["contender"], r["repeat"]): r for r in _ok(records)}


def _paired(
    index: dict,
    scenario: str,
    config: str,
    top: str,
    bottom: str,
    figure: Callable[[Record, Record], float | None],
    bottom_scenario: str | None = None,
    bottom_config: str | None = None,
) -> list[float]:
    """figure(top's run, bottom's run) for each repeat that has both (None: not measured)."""
    values = []
    for (s, c, name, repeat), record in index.items():
        if (s, c, name) != (scenario, config, top):
            continue
        other = index.get((bottom_scenario or scenario, bottom_config or config, bottom, repeat))
        value = figure(record, other) if other is not None else None
        if value is not None:
            values.append(value)
    return values


def _ratios(
    index: dict,
    scenario: str,
    config: str,
    top: str,
    bottom: str,
    key: str = "steady_sps",
    bottom_scenario: str | None = None,
    bottom_config: str | None = None,
    bottom_key: str | None = None,
) -> list[float]:
    def ratio(record: Record, other: Record) -> float | None:
        below = other.get(bottom_key or key)
        return record[key] / below if below else None

    return _paired(index, scenario, config, top, bottom, ratio, bottom_scenario, bottom_config)


def _maybe_spread(values: list[float]) -> dict[str, float | int] | None:
    return spread(values) if values else None


def _median_phases(records: list[Record]) -> dict[str, float]:
    rows: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for phase, value in (record.get("phases") or {}).items():
            if value is not None:
                rows[phase].append(value)
    return {phase: statistics.median(values) for phase, values in rows.items()}


def _fleet_table(records: list[Record], scenario: str) -> list[dict[str, Any]]:
    index = _index(records)
    configs = list(dict.fromkeys(r["config"] for r in records if r["scenario"] == scenario))
    rows = []
    for config in configs:
        mine = [r for r in _ok(records) if (r["scenario"], r["config"]) == (scenario, config)]
        rates = {
            name: _maybe_spread([r["steady_sps"] for r in mine if r["contender"] == name])
            for name in ("phalanx", "ddp", "ideal")
        }
        rows.append(
            {
                "config": config,
                "phalanx_over_ideal": _maybe_spread(
                    _ratios(index, scenario, config, "phalanx", "ideal")
                ),
                "ddp_over_ideal": _maybe_spread(_ratios(index, scenario, config, "ddp", "ideal")),
                "phalanx_over_ddp": _maybe_spread(
                    _ratios(index, scenario, config, "phalanx", "ddp")
                ),
                # Cross-check of the solo ideal: the chips' compute rates inside the phalanx run.
                "phalanx_over_in_run_ideal": _maybe_spread(
                    [
                        r["steady_sps"] / r["in_run_ideal_sps"]
                        for r in mine
                        if r["contender"] == "phalanx" and r.get("in_run_ideal_sps")
                    ]
                ),
                "rates_sps": rates,
                "phalanx_phases": _median_phases([r for r in mine if r["contender"] == "phalanx"]),
                "ddp_phases": _median_phases([r for r in mine if r["contender"] == "ddp"]),
                **_step_and_memory_figures(index, mine, scenario, config),
                "whole_sample_ceiling": next(
                    (r["whole_sample_ceiling"] for r in mine if "whole_sample_ceiling" in r), None
                ),
                # A row's goals come with its runs (scenario 1: the fleet's efficiency goal;
                # scenario 4: bench/scenarios.py Goals); None: the report's defaults.
                "goals": next((r["goals"] for r in mine if r.get("goals")), None),
                "failures": [
                    r["contender"]
                    for r in records
                    if (r["scenario"], r["config"]) == (scenario, config) and "error" in r
                ],
            }
        )
    return rows


def _max_rss_bytes(record: Record) -> float | None:
    """The largest replica's peak resident memory in one run (the one that must fit)."""
    peaks = [p for p in record.get("peak_rss_bytes") or [] if p]
    return float(max(peaks)) if peaks else None


def _phase_share(record: Record, phase: str) -> float | None:
    """A phase's median over the run's median step (as in the phase table)."""
    phases = record.get("phases") or {}
    if phases.get(phase) is None or not phases.get("interval_s"):
        return None
    return float(phases[phase]) / float(phases["interval_s"])


def _values(runs: list[Record], figure: Callable[[Record], float | None]) -> list[float]:
    return [v for v in (figure(r) for r in runs) if v is not None]


def _step_and_memory_figures(
    index: dict, mine: list[Record], scenario: str, config: str
) -> dict[str, Any]:
    """Issue 14's figures of one row: step phases against DDP's, memory, balance."""
    by_name = {n: [r for r in mine if r["contender"] == n] for n in ("phalanx", "ddp", "ideal")}

    def points(top: Record, bottom: Record) -> float | None:
        mine_share = _phase_share(top, "non_compute_s")
        ddp_share = _phase_share(bottom, "non_compute_s")
        return None if mine_share is None or ddp_share is None else 100 * (mine_share - ddp_share)

    def rss_ratio(top: Record, bottom: Record) -> float | None:
        mine_bytes, ddp_bytes = _max_rss_bytes(top), _max_rss_bytes(bottom)
        return None if mine_bytes is None or not ddp_bytes else mine_bytes / ddp_bytes

    return {
        "non_compute_share": {
            n: _maybe_spread(_values(runs, lambda r: _phase_share(r, "non_compute_s")))
            for n, runs in by_name.items()
            if n != "ideal"
        },
        # Paired per repeat: phalanx's share minus DDP's, in percentage points.
        "non_compute_points": _maybe_spread(
            _paired(index, scenario, config, "phalanx", "ddp", points)
        ),
        "imbalance_share": _maybe_spread(
            _values(by_name["phalanx"], lambda r: _phase_share(r, "imbalance_s"))
        ),
        "equal_share_ratio": _maybe_spread(
            _values(by_name["phalanx"], lambda r: r.get("equal_share_ratio"))
        ),
        "peak_rss_bytes": {
            n: _maybe_spread(_values(runs, _max_rss_bytes)) for n, runs in by_name.items()
        },
        "rss_over_ddp": _maybe_spread(
            _paired(index, scenario, config, "phalanx", "ddp", rss_ratio)
        ),
    }


def _fault_table(records: list[Record]) -> list[dict[str, Any]]:
    index = _index(records)
    configs = list(dict.fromkeys(r["config"] for r in records if r["scenario"] == "faults"))
    rows = []
    for config in configs:
        clean = config.split(FAULTS_SEPARATOR)[0]
        names = list(
            dict.fromkeys(
                r["contender"]
                for r in records
                if (r["scenario"], r["config"]) == ("faults", config)
            )
        )
        contenders = {}
        for name in names:
            baseline = "phalanx" if name == "phalanx" else "ddp"
            faulted = [
                r
                for r in _ok(records)
                if (r["scenario"], r["config"], r["contender"]) == ("faults", config, name)
            ]
            clean_runs = [
                r
                for r in _ok(records)
                if (r["scenario"], r["config"], r["contender"]) == ("efficiency", clean, baseline)
            ]
            contenders[name] = {
                "goodput_over_fault_free": _maybe_spread(
                    _ratios(
                        index,
                        "faults",
                        config,
                        name,
                        baseline,
                        key="goodput_sps",
                        bottom_scenario="efficiency",
                        bottom_config=clean,
                    )
                ),
                "ceiling": _maybe_spread(_ceilings(faulted, clean_runs, name)),
                "ceiling_heartbeat": _maybe_spread(
                    _ceilings(faulted, clean_runs, name, heartbeat_detect_s())
                ),
                "wall_s": _maybe_spread([r["wall_s"] for r in faulted]),
                "fault_free_wall_s": _maybe_spread([r["wall_s"] for r in clean_runs]),
                "goodput_sps": _maybe_spread([r["goodput_sps"] for r in faulted]),
                "steps_redone": _maybe_spread(
                    [r["steps_redone"] for r in faulted if "steps_redone" in r]
                ),
                "failed": sum(
                    1
                    for r in records
                    if (r["scenario"], r["config"], r["contender"]) == ("faults", config, name)
                    and "error" in r
                ),
            }
        rows.append({"config": config, "contenders": contenders})
    return rows


def _ceilings(
    faulted: list[Record], clean_runs: list[Record], name: str, detect_s: float = 0.0
) -> list[float]:
    """Per repeat: the goodput ratio the fault schedule itself allows (bench/fault_ceiling.py),
    each fault noticed `detect_s` after it happens, from the fault-free run of the same
    repeat; phalanx's runs only (they carry the schedule)."""
    if name != "phalanx":
        return []
    clean_by_repeat = {r["repeat"]: r for r in clean_runs if r.get("goodput_sps")}
    out = []
    for run in faulted:
        clean = clean_by_repeat.get(run["repeat"])
        schedule = run.get("schedule")
        if clean is None or not schedule:
            continue
        step_s = schedule.get("batch", _batch_of(run)) / clean["goodput_sps"]
        out.append(
            goodput_ceiling(
                schedule["speeds"], schedule["faults"], schedule["steps"], step_s, detect_s
            )
        )
    return out


def _batch_of(run: Record) -> int:
    """The global batch, from the config text ('B=64'): results saved before the
    schedule carried it."""
    return int(run["config"].split("B=", 1)[1].split(",", 1)[0])


def _recovery(records: list[Record]) -> dict[str, Any]:
    faulted = [r for r in _ok(records) if r["scenario"] == "faults"]
    by_fault: dict[str, list[float]] = defaultdict(list)
    rejoin: dict[str, list[float]] = defaultdict(list)
    for record in (r for r in faulted if r["contender"] == "phalanx"):
        for fault in record["recovery"]["faults"]:
            by_fault[fault["fault"]].append(fault["to_survivors_commit_s"])
        for item in record["recovery"]["rejoins"]:
            for part in ("launch_to_step_s", "process_start_s", "heal_s", "rest_s"):
                rejoin[part].append(item[part])
        rejoin["typical_step_s"].append(record["phases"].get("interval_s") or 0.0)
    torchrun: dict[str, list[float]] = defaultdict(list)
    for record in (r for r in faulted if r["contender"].startswith("torchrun")):
        torchrun[record["contender"]].extend(record.get("to_new_progress_s", []))
    return {
        "phalanx_fault_to_survivors_commit_s": {k: spread(v) for k, v in by_fault.items()},
        "phalanx_rejoin": {k: spread(v) for k, v in rejoin.items() if v},
        "torchrun_failure_to_new_progress_s": {k: spread(v) for k, v in torchrun.items() if v},
    }


def _scaling(records: list[Record]) -> list[dict[str, Any]]:
    keys = ("params", "heal_s", "allreduce_s", "compute_s", "interval_s", "steps", "wall_s")
    return [
        {"label": r["config"], **{k: r.get(k) for k in keys}, "error": r.get("error")}
        for r in records
        if r["scenario"] == "scaling"
    ]


def summarize(records: list[Record]) -> dict[str, Any]:
    return {
        "efficiency": _fleet_table(records, "efficiency"),
        "homogeneous": _fleet_table(records, "homogeneous"),
        "faults": _fault_table(records),
        "recovery": _recovery(records),
        "scaling": _scaling(records),
    }
