"""PNG plots of a simulation: progress over time, goodput by policy."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt

from phalanx.sim.results import SimResult


def plot_progress(result: SimResult, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for pol in result.policies:
        days = [t / 86400.0 for t in pol.curve_t_s]
        ax.plot(days, [s / 1e9 for s in pol.curve_samples], label=pol.name, linewidth=1.6)
    if result.target_samples is not None:
        ax.axhline(
            result.target_samples / 1e9, color="grey", linestyle="--", linewidth=1, label="target"
        )
    ax.set_title(f"Training progress, {result.devices:,} chips (seed {result.seed})")
    ax.set_xlabel("simulated time (days)")
    ax.set_ylabel("samples committed (billions)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_goodput(result: SimResult, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = [p.name for p in result.policies]
    values = [p.goodput_sps for p in result.policies]
    bars = ax.bar(
        names, values, color=["#2b7bba", "#d9534f", "#f0ad4e", "#5cb85c", "#777777"][: len(names)]
    )
    ax.axhline(
        result.ideal_sps,
        color="grey",
        linestyle="--",
        linewidth=1,
        label="ideal (sum of chip speeds)",
    )
    ax.axhline(
        result.planned_sps, color="black", linestyle=":", linewidth=1, label="planned, no faults"
    )
    for bar, pol in zip(bars, result.policies, strict=True):
        ax.annotate(
            f"{pol.goodput_frac:.0%}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
        )
    ax.set_title("Goodput by policy (useful samples / wall time)")
    ax.set_xlabel("policy")
    ax.set_ylabel("goodput (samples/s)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(result: SimResult, out_dir: str | Path, prefix: str = "sim") -> list[Path]:
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    return [
        plot_progress(result, d / f"{prefix}_progress.png"),
        plot_goodput(result, d / f"{prefix}_goodput.png"),
    ]
