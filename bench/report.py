"""Figures -> the table (terminal and docs/benchmarks.md). Nothing in the doc is typed by hand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import method, plots
from bench.doc_block import include_block
from bench.fault_ceiling import heartbeat_detect_s

GOALS = {"efficiency": 0.90, "efficiency_target": 0.95, "goodput": 0.90, "homogeneous": 0.95}


# Scenario 4's goals when a results file predates per-row goals (bench/scenarios.py Goals).
DEFAULT_HOMOGENEOUS_GOALS = {
    "phalanx_over_ddp": GOALS["homogeneous"],
    "non_compute_points": None,
    "rss_over_ddp": None,
    "imbalance_share": 0.03,
    "equal_share_ratio": 1.10,
}


def fmt(value: dict[str, Any] | None, digits: int = 2, scale: float = 1.0, unit: str = "") -> str:
    """median (min-max, n=repeats), each multiplied by `scale` (e.g. 100 for percent)."""
    if not value:
        return "n/a"
    med, low, high = (scale * value[k] for k in ("median", "min", "max"))
    if value["n"] == 1:
        return f"{med:.{digits}f}{unit} (n=1)"
    return f"{med:.{digits}f}{unit} ({low:.{digits}f}-{high:.{digits}f}, n={value['n']})"


def _verdict(
    value: dict[str, Any] | None,
    goal: float | None,
    at_most: bool = False,
    digits: int = 2,
    scale: float = 1.0,
) -> str:
    if goal is None:
        return ""
    if not value:
        return "not measured"
    median = value["median"]
    if (median <= goal) if at_most else (median >= goal):
        return "met"
    miss = scale * abs(median - goal)
    while round(miss, digits) == 0 and digits < 6:
        digits += 1  # a miss that rounds to nothing at the figure's digits ("missed by 0.0")
    return f"missed by {miss:.{digits}f}"


def _ceiling_row(scenario: str, config: str, figure: str, value: str) -> list[str]:
    """A bound on a figure (no contender, no goal): what the setup itself allows."""
    return [scenario, config, figure, value, "", "", ""]


def headline_rows(figures: dict[str, Any]) -> list[list[str]]:
    """[scenario, configuration, figure, phalanx, baseline, goal, verdict] rows."""
    rows = []
    for row in figures["efficiency"]:
        # Each fleet's goal comes with its runs; a results file from before has the default.
        goal = (row.get("goals") or {}).get("phalanx_over_ideal", GOALS["efficiency"])
        target = GOALS["efficiency_target"]
        rows.append(
            [
                "1 heterogeneous efficiency",
                row["config"],
                "throughput / ideal",
                fmt(row["phalanx_over_ideal"]),
                "DDP "
                + fmt(row["ddp_over_ideal"])
                + "; phalanx / in-run ideal "
                + fmt(row.get("phalanx_over_in_run_ideal")),
                f">= {goal:.2f}"
                + (f" (target {target:.2f})" if goal == GOALS["efficiency"] else ""),
                _verdict(row["phalanx_over_ideal"], goal),
            ]
        )
        whole = row.get("whole_sample_ceiling")
        if whole is not None and whole < 0.995:
            rows.append(
                _ceiling_row(
                    "1 heterogeneous efficiency",
                    row["config"],
                    "ceiling of whole samples: the best integer split of the batch over these "
                    "speeds, against the ideal of split samples (bench/share_ceiling.py)",
                    f"{whole:.2f}",
                )
            )
    for row in figures["faults"]:
        c = row["contenders"]
        others = [(n, v) for n, v in c.items() if n != "phalanx"]
        rows.append(
            [
                "2 goodput under faults",
                row["config"],
                "goodput / own fault-free rate",
                fmt(c.get("phalanx", {}).get("goodput_over_fault_free")),
                "; ".join(f"{n} {fmt(v['goodput_over_fault_free'])}" for n, v in others),
                ">= 0.90",
                _verdict(c.get("phalanx", {}).get("goodput_over_fault_free"), GOALS["goodput"]),
            ]
        )
        ceilings = {
            "ceiling": "ceiling of the fault schedule: chips away only for the scheduled time, "
            "faults noticed at once (bench/fault_ceiling.py)",
            "ceiling_heartbeat": "ceiling with the lighthouse's heartbeat timeout "
            f"({heartbeat_detect_s():.2f} s on average): a hang is noticed only then, a kill's "
            "survivors recompute meanwhile (bench/fault_ceiling.py)",
        }
        for key, figure in ceilings.items():
            value = c.get("phalanx", {}).get(key)
            if value:
                rows.append(
                    _ceiling_row("2 goodput under faults", row["config"], figure, fmt(value))
                )
        rows.append(
            [
                "2 goodput under faults",
                row["config"],
                "wall time to finish, s (fault-free)",
                f"{fmt(c.get('phalanx', {}).get('wall_s'), 1)} "
                f"({fmt(c.get('phalanx', {}).get('fault_free_wall_s'), 1)})",
                "; ".join(
                    f"{n} {fmt(v['wall_s'], 1)} ({fmt(v['fault_free_wall_s'], 1)})"
                    for n, v in others
                ),
                "",
                "",
            ]
        )
    rec = figures["recovery"]
    for kind, value in rec["phalanx_fault_to_survivors_commit_s"].items():
        baseline = ""
        if kind == "kill":
            baseline = "; ".join(
                f"{n}: failure -> new progress {fmt(v, 1)}"
                for n, v in rec["torchrun_failure_to_new_progress_s"].items()
            )
        rows.append(
            [
                "3 recovery latency",
                f"{kind} of one replica",
                f"{kind} -> survivors' next committed step, s (median)",
                fmt(value, 2),
                baseline,
                "",
                "",
            ]
        )
    rejoin = rec["phalanx_rejoin"]
    if rejoin:
        parts = ", ".join(
            f"{p.removesuffix('_s')} {fmt(rejoin.get(p), 2)}"
            for p in ("process_start_s", "heal_s", "rest_s")
        )
        rows.append(
            [
                "3 recovery latency",
                "restarted replica",
                "launch -> first participating step, s (median)",
                fmt(rejoin.get("launch_to_step_s"), 2),
                parts,
                "",
                "",
            ]
        )
    for row in figures["homogeneous"]:
        rows += _homogeneous_rows(row)
    return rows


def _homogeneous_rows(row: dict[str, Any]) -> list[list[str]]:
    """Scenario 4: throughput against DDP, then the step, memory and balance figures."""
    goals = {**DEFAULT_HOMOGENEOUS_GOALS, **(row.get("goals") or {})}
    head = ["4 homogeneous overhead", row["config"]]
    ratio_goal = goals["phalanx_over_ddp"]
    rows = [
        [
            *head,
            "phalanx / DDP throughput",
            fmt(row["phalanx_over_ddp"]),
            f"phalanx/ideal {fmt(row['phalanx_over_ideal'])}; DDP/ideal {fmt(row['ddp_over_ideal'])}; "
            f"phalanx / in-run ideal {fmt(row.get('phalanx_over_in_run_ideal'))}",
            f">= {ratio_goal:.2f}" if ratio_goal is not None else "",
            _verdict(row["phalanx_over_ddp"], ratio_goal),
        ]
    ]
    for figure in AT_MOST_FIGURES:
        value, goal = row.get(figure.key), goals.get(figure.key)
        if not value and goal is None:
            continue  # neither measured nor asked for (a results file from before the figure)
        rows.append(
            [
                *head,
                figure.name,
                figure.number(value),
                _at_most_baselines(row, figure.key),
                figure.goal_text(goal),
                _verdict(value, goal, True, figure.digits, figure.scale),
            ]
        )
    return rows


@dataclass(frozen=True)
class AtMost:
    """A figure of a homogeneous row whose goal is an upper bound, and how it is printed."""

    key: str  # in the aggregated row and in its goals
    name: str
    digits: int
    scale: float = 1.0  # 100: a share printed as percent
    unit: str = ""

    def number(self, value: dict[str, Any] | None) -> str:
        return fmt(value, self.digits, self.scale, self.unit)

    def goal_text(self, goal: float | None) -> str:
        return "" if goal is None else f"<= {self.scale * goal:.{self.digits}f}{self.unit}"


AT_MOST_FIGURES = (
    AtMost("non_compute_points", "non-compute share of a step: phalanx - DDP", 1, unit=" points"),
    AtMost("rss_over_ddp", "peak RSS per replica: phalanx / DDP", 2),
    AtMost("imbalance_share", "imbalance, % of a step", 1, 100.0, "%"),
    AtMost("equal_share_ratio", "equal chips' shares after warm-up, max / min (worst step)", 2),
)


def _at_most_baselines(row: dict[str, Any], key: str) -> str:
    """What each contender measured on its own, for the figures that compare two of them."""
    if key == "non_compute_points":
        shares = row.get("non_compute_share") or {}
        return "; ".join(f"{_name(n)} {fmt(v, 1, 100, '%')}" for n, v in shares.items() if v)
    if key == "rss_over_ddp":
        rss = {n: v for n, v in (row.get("peak_rss_bytes") or {}).items() if v}
        return (
            "; ".join(f"{_name(n)} {fmt(v, 2, 1e-9, ' GB')}" for n, v in rss.items()) if rss else ""
        )
    return ""


def _name(contender: str) -> str:
    return {"ddp": "DDP", "ideal": "solo"}.get(contender, contender)


HEADER = ["scenario", "configuration", "figure", "phalanx", "baselines", "goal", "verdict"]


def table_text(figures: dict[str, Any], about: dict[str, Any]) -> str:
    lines = [
        f"phalanx benchmarks ({about['suite']}): {about['date']}, {about['cores']} cores "
        f"({about['cpu']}), torch {about['torch']}, suite took {about['suite_wall_s']:.0f} s"
    ]
    for row in headline_rows(figures):
        lines.append(" | ".join(cell for cell in row if cell))
    for row in figures["scaling"]:
        lines.append(_scaling_line(row))
    return "\n".join(lines)


def _scaling_line(row: dict[str, Any]) -> str:
    if row.get("error"):
        return f"5 scaling {row['label']}: failed ({row['error'][:120]})"

    def num(key: str) -> str:
        return "n/a" if row.get(key) is None else f"{row[key]:.3f}"

    return (
        f"5 scaling {row['label']} ({row['params'] / 1e6:.1f}M params): heal {num('heal_s')} s, "
        f"allreduce {num('allreduce_s')} s/step, compute {num('compute_s')} s/step"
    )


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return out


PHASE_KEYS = (
    "interval_s",
    "compute_s",
    "balanced_compute_s",
    "imbalance_s",
    "quorum_s",
    "allreduce_s",
    "commit_s",
    "guard_s",
    "other_s",
)
PHASE_HEADER = [
    "contender",
    "configuration",
    "step",
    "compute",
    "of which balanced",
    "of which imbalance",
    "quorum",
    "allreduce",
    "commit",
    "guard",
    "other",
    "not compute",
]


def _phase_rows(figures: dict[str, Any]) -> list[list[str]]:
    rows = []
    for scenario in ("efficiency", "homogeneous"):
        for row in figures[scenario]:
            for contender in ("phalanx", "ddp"):
                phases = row.get(f"{contender}_phases")
                if phases:
                    rows.append([_name(contender), row["config"], *_phase_cells(phases)])
    return rows


def _phase_cells(phases: dict[str, Any]) -> list[str]:
    """Milliseconds per phase ('' where the contender has no such phase), then the share."""
    cells = ["" if phases.get(k) is None else f"{1000 * phases[k]:.1f}" for k in PHASE_KEYS]
    overhead, interval = phases.get("non_compute_s"), phases.get("interval_s")
    share = f"{overhead / interval:.1%}" if overhead is not None and interval else ""
    return [*cells, share]


def _caveats(figures: dict[str, Any]) -> list[str]:
    """Findings the numbers themselves raise, stated where the reader sees them."""
    lines = []
    for row in figures["efficiency"] + figures["homogeneous"]:
        ddp = row.get("ddp_over_ideal")
        if ddp and ddp["median"] > 1.0:
            lines.append(
                f"Caveat: in '{row['config'].split(' | ')[0]}' DDP reached {ddp['median']:.2f} of "
                "the solo ideal, which is physically impossible for a correct ideal: on this shared "
                "machine a chip measured alone ran slower than the same chip inside a fleet, so the "
                "solo ideal of that row is too low and every ratio to it too high. The column "
                "'phalanx / in-run ideal' (each chip's compute rate inside the phalanx run) is the "
                "cross-check."
            )
    return [*lines, ""] if lines else []


def _generated_section(docs: Path, name: str, title: str) -> list[str]:
    """Another bench command's generated table, included as it was written (never retyped)."""
    source = docs / "_generated" / name
    if not source.exists():
        return []
    return [f"## {title}", "", source.read_text().strip(), ""]


def write_docs(figures: dict[str, Any], about: dict[str, Any], docs: Path) -> Path:
    images = plots.write_all(figures, docs / "img")
    lines = [
        "# Benchmarks: phalanx side by side with DDP, torchrun restarts and the ideal",
        "",
        "Generated by `make bench` (`python -m bench.suite --suite full --docs`); do not edit.",
        "",
        f"Measured {about['date']} on {about['cores']} cores ({about['cpu']}), "
        f"Python {about['python']}, torch {about['torch']}, torchft {about['torchft']}. "
        f"The suite took {about['suite_wall_s'] / 60:.1f} min; 1-minute load average "
        f"{about['load_avg_start']:.1f} at the start and {about['load_avg_end']:.1f} at the end "
        "(the machine was shared with other jobs).",
        *(["", f"Note: {about['note']}."] if about.get("note") else []),
        "",
        "Each cell: median (min-max, n = repeats). Ratios are paired within a repeat "
        "(contenders run back to back, A B A B) before taking the spread.",
        "",
        *_md_table(HEADER, headline_rows(figures)),
        "",
        *[f"![{name}](img/{path.name})" for name, path in images.items()],
        "",
        "## Where the time goes (per-step medians on the critical path, ms)",
        "",
        "The critical participant is the one with the longest compute in the step; "
        "`guard` is the SDC guard's own time (fingerprints, gradient checks); "
        "`other` is the step loop outside the timed phases (packing the flat buffer, "
        "optimizer step, events; in results from before the guard column it includes the "
        "guard); the last column is the share of a step that is not compute. "
        "`balanced` is the compute the step would have taken with shares exactly proportional "
        "to the speeds the chips showed in that step; `imbalance` is the rest (waiting for the "
        "participant whose share was too big, e.g. because its speed fluctuated). "
        "DDP's compute ends when the rank's last gradient bucket leaves (the earlier buckets "
        "are summed while backward goes on); its `allreduce` is the rest of backward, the "
        "allreduce DDP did not hide; `other` is its optimizer step and the next batch.",
        "",
        *_caveats(figures),
        *_md_table(PHASE_HEADER, _phase_rows(figures)),
        "",
        "## Scaling of cost with model size (scenario 5)",
        "",
        *_md_table(
            [
                "model",
                "parameters",
                "heal, s",
                "allreduce per step, s",
                "compute per step, s",
                "step, s",
            ],
            [
                [
                    r["label"],
                    f"{(r['params'] or 0) / 1e6:.1f}M",
                    *[
                        ("n/a" if r.get(k) is None else f"{r[k]:.3f}")
                        for k in ("heal_s", "allreduce_s", "compute_s", "interval_s")
                    ],
                ]
                for r in figures["scaling"]
            ],
        ),
        "",
        *_generated_section(
            docs, "guard_overhead.md", "Overhead of the SDC guard (bench/guard_overhead.py)"
        ),
        *_generated_section(
            docs, "data_workers.md", "Reader processes on data-heavy work (bench/data_workers.py)"
        ),
        *_generated_section(
            docs,
            "energy_bench.md",
            "Energy objectives, power budget and thermal guard (bench/energy.py)",
        ),
        *_generated_section(
            docs,
            "groups_bench.md",
            "Replica groups: an uneven layout against the ideal, memory per chip (bench/groups.py)",
        ),
        *_generated_section(
            docs,
            "sites_convergence.md",
            "Sites: outer sync every H steps against per-step sync, loss and bytes "
            "(bench/sites_convergence.py)",
        ),
        *_generated_section(
            docs, "sites_link.md", "Sites over a 20 Mbit/s link (bench/sites_link.py)"
        ),
        *method.text(),
    ]
    path = docs / "benchmarks.md"
    path.write_text("\n".join(lines) + "\n")
    readme = docs.parent / "README.md"
    if readme.exists() and README_BLOCK in readme.read_text():
        include_block(readme, README_BLOCK, readme_headline(figures, about))
    return path


README_BLOCK = "bench-headline"


def readme_headline(figures: dict[str, Any], about: dict[str, Any]) -> str:
    """The README's benchmark table: docs/benchmarks.md's headline, without the baselines."""
    rows = [[r[0], r[1], r[2], r[3], r[5], r[6]] for r in headline_rows(figures)]
    lines = [
        f"Generated by `make bench` on {about['date']} ({about['cores']} cores, "
        f"torch {about['torch']}, torchft {about['torchft']}); the baselines (DDP, "
        "torchrun restarts, the solo ideal) and every other table are in "
        "[docs/benchmarks.md](docs/benchmarks.md).",
        "",
        *_md_table(["scenario", "configuration", "figure", "phalanx", "goal", "verdict"], rows),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Re-render the docs from a results file: `python -m bench.report bench/results/full.json`."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    data = json.loads(args.results.read_text())
    print(table_text(data["figures"], data["machine"]))
    write_docs(data["figures"], data["machine"], Path(__file__).resolve().parents[1] / "docs")


if __name__ == "__main__":
    main()
