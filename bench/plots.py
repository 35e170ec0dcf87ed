"""The PNG figures of docs/benchmarks.md (docs/img/bench_*.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def _bar(ax: Any, x: float, value: dict[str, Any] | None, label: str, color: str) -> None:
    if not value:
        return
    err = [[value["median"] - value["min"]], [value["max"] - value["median"]]]
    ax.bar(x, value["median"], width=0.35, yerr=err, capsize=4, color=color, label=label)


def _label(config: str) -> str:
    """Fleet and model size, e.g. '4 equal chips\nTinyGPT 0.43M'."""
    fleet, model = [*config.split(" | "), ""][:2]
    return fleet + "\n" + " ".join(model.split(" ")[:2])


def _efficiency(figures: dict[str, Any], path: Path) -> None:
    rows = figures["efficiency"] + figures["homogeneous"]
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, row in enumerate(rows):
        _bar(ax, i - 0.18, row["phalanx_over_ideal"], "phalanx" if i == 0 else "", "tab:blue")
        _bar(ax, i + 0.18, row["ddp_over_ideal"], "DDP equal split" if i == 0 else "", "tab:gray")
    for i, row in enumerate(figures["efficiency"]):  # each fleet's own goal (issue 14)
        goal = (row.get("goals") or {}).get("phalanx_over_ideal", 0.90)
        ax.hlines(goal, i - 0.4, i + 0.4, color="tab:red", linestyle="--", linewidth=1,
                  label="goal" if i == 0 else None)  # fmt: skip
    ax.axhline(0.95, color="tab:green", linestyle=":", linewidth=1, label="target 0.95")
    ax.set_xticks(range(len(rows)), [_label(r["config"]) for r in rows], fontsize=7)
    ax.set_ylabel("throughput / ideal")
    ax.set_title("Fleet efficiency (median, min-max)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _goodput(figures: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names: list[str] = []
    for row in figures["faults"][:1]:
        for i, (name, value) in enumerate(row["contenders"].items()):
            color = "tab:blue" if name == "phalanx" else "tab:gray"
            _bar(ax, i, value["goodput_over_fault_free"], "", color)
            names.append(name)
    ax.axhline(0.90, color="tab:red", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("goodput / own fault-free rate")
    ax.set_title("Goodput under a kill and a hang")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _recovery(figures: dict[str, Any], path: Path) -> None:
    rejoin = figures["recovery"]["phalanx_rejoin"]
    fig, ax = plt.subplots(figsize=(6, 2.5))
    left = 0.0
    for part, color in (
        ("process_start_s", "tab:orange"),
        ("heal_s", "tab:blue"),
        ("rest_s", "tab:gray"),
    ):
        value = rejoin.get(part, {}).get("median", 0.0)
        ax.barh(0, value, left=left, color=color, label=part.removesuffix("_s"))
        left += value
    ax.set_yticks([])
    ax.set_xlabel("seconds from relaunch to first participating step (median)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _scaling(figures: dict[str, Any], path: Path) -> None:
    rows = [r for r in figures["scaling"] if r.get("params")]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("heal_s", "heal (state transfer)"), ("allreduce_s", "allreduce per step")):
        points = [(r["params"], r[key]) for r in rows if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("seconds")
    ax.set_title("Cost vs model size (2 replicas)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(figures: dict[str, Any], img_dir: Path) -> dict[str, Path]:
    img_dir.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, draw in (
        ("efficiency", _efficiency),
        ("goodput", _goodput),
        ("recovery", _recovery),
        ("scaling", _scaling),
    ):
        path = img_dir / f"bench_{name}.png"
        draw(figures, path)
        made[name] = path
    return made
