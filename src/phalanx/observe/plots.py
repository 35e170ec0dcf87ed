"""The report's plots, drawn with matplotlib's object API into PNG bytes.

No pyplot: it would switch the backend of a user's own process (a notebook
calling Trainer.fit) and keep global figure state. Every plot carries a title,
axis labels with units and a legend, for a reader who never saw phalanx.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from phalanx.observe.series import ROLLING_STEPS, RunSeries

DPI = 110
_FAULT_COLOR = "#cf222e"
_MARK_STYLE = {
    # kind: (marker, color, legend label)
    "fault": ("X", _FAULT_COLOR, "fault injected"),
    "exit": ("v", "#57606a", "process exited"),
    "restart": ("^", "#0969da", "process restarted"),
    "heal": ("P", "#1a7f37", "healed from a live peer"),
    "quorum": ("|", "#8250df", "quorum changed"),
    "checkpoint": ("s", "#bf8700", "durable checkpoint"),
    "retry": ("x", "#fb8500", "step retried"),
}


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _figure(width_in: float = 9.0, height_in: float = 3.6) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    return fig, ax


def _legend_outside(
    ax: Axes, handles: list[Any] | None = None, labels: list[str] | None = None
) -> None:
    # Outside the axes, on the right: a legend inside would hide data in some run.
    if handles is None or labels is None:
        handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def _rolling_mean(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def _shade_startup(ax: Axes, series: RunSeries) -> None:
    if series.step_t_s:
        first = series.step_t_s[0]
        ax.axvspan(0, first, color="#eaeef2", label="start-up (processes, first quorum)")


def _mark_faults_by_step(ax: Axes, series: RunSeries) -> None:
    for index, mark in enumerate(series.fault_marks()):
        if mark.step is None:
            continue
        ax.axvline(
            mark.step,
            color=_FAULT_COLOR,
            linestyle="--",
            linewidth=1,
            label="fault injected" if index == 0 else None,
        )
        ax.annotate(
            mark.label,
            (mark.step, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
            color=_FAULT_COLOR,
        )


def _mark_faults_by_time(ax: Axes, series: RunSeries) -> None:
    for index, mark in enumerate(series.fault_marks()):
        ax.axvline(
            mark.t_s,
            color=_FAULT_COLOR,
            linestyle="--",
            linewidth=1,
            label="fault injected" if index == 0 else None,
        )
        ax.annotate(
            mark.label,
            (mark.t_s, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
            color=_FAULT_COLOR,
        )


def loss_plot(series: RunSeries) -> bytes:
    fig, ax = _figure()
    ax.plot(series.steps, series.loss, color="#0969da", linewidth=1.6, label="training loss")
    _mark_faults_by_step(ax, series)
    ax.set_title("Training loss per committed step")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean over the global batch)")
    _legend_outside(ax)
    return _png(fig)


def throughput_plot(series: RunSeries, fleet_ideal_sps: float | None) -> bytes:
    fig, ax = _figure()
    achieved = [(t, v) for t, v in zip(series.step_t_s, series.achieved_sps) if v is not None]
    if achieved:
        ax.plot(
            *zip(*achieved),
            color="#1a7f37",
            linewidth=1.8,
            label=f"achieved (over {ROLLING_STEPS} steps)",
        )
    _shade_startup(ax, series)
    ax.plot(
        series.step_t_s,
        _rolling_mean(series.participants_ideal_sps, ROLLING_STEPS),
        color="#57606a",
        linewidth=1.2,
        linestyle=":",
        label=f"ideal for the replicas in the step (over {ROLLING_STEPS} steps)",
    )
    if fleet_ideal_sps:
        ax.axhline(
            fleet_ideal_sps,
            color="#8250df",
            linewidth=1.2,
            linestyle="-.",
            label=f"ideal for the whole fleet ({fleet_ideal_sps:,.0f})",
        )
    _mark_faults_by_time(ax, series)
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, max(series.end_t_s, 1e-3) * 1.01)
    ax.set_title("Fleet throughput against ideal (the sum of each replica's own speed)")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("samples/s")
    _legend_outside(ax)
    return _png(fig)


def shares_plot(series: RunSeries) -> bytes:
    fig, ax = _figure()
    names = [n for n in series.replicas if any(series.shares.get(n, []))]
    ax.stackplot(
        series.steps,
        [series.shares[n] for n in names],
        labels=[series.replica_labels.get(n, n) for n in names],
        alpha=0.85,
        step="mid",
    )
    if series.global_batch_size:
        ax.axhline(
            series.global_batch_size,
            color="black",
            linewidth=0.8,
            linestyle="--",
            label=f"global batch ({series.global_batch_size})",
        )
    _mark_faults_by_step(ax, series)
    ax.set_ylim(0, max(series.global_batch_size * 1.12, 1))
    ax.set_title("Each replica's share of the global batch (stacked)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("samples per step")
    _legend_outside(ax)
    return _png(fig)


def timeline_plot(series: RunSeries) -> bytes:
    rows = [*series.replicas, None]  # None: the fleet's own row (quorums, checkpoints)
    fig, ax = _figure(height_in=1.2 + 0.5 * len(rows))
    ax.grid(True, axis="x", alpha=0.3)
    ax.grid(False, axis="y")
    y_of = {name: len(rows) - 1 - i for i, name in enumerate(rows)}
    for name in series.replicas:
        spans = [(a, max(b - a, 1e-3)) for a, b in series.participation.get(name, [])]
        ax.broken_barh(spans, (y_of[name] - 0.3, 0.6), color="#aceebb", edgecolor="none")
    used: set[str] = set()
    for mark in series.marks:
        marker, color, label = _MARK_STYLE[mark.kind]
        ax.plot(
            mark.t_s,
            y_of.get(mark.replica, y_of[None]),
            marker=marker,
            color=color,
            markersize=11 if mark.kind == "quorum" else 8,
            markeredgewidth=2 if mark.kind == "quorum" else 1,
            linestyle="none",
            label=None if mark.kind in used else label,
        )
        used.add(mark.kind)
    ax.set_yticks(
        [y_of[n] for n in rows], [series.replica_labels.get(n, n) if n else "fleet" for n in rows]
    )
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlim(0, max(series.end_t_s, 1e-3) * 1.01)
    ax.set_title("Timeline: who trained when (green), faults, heals, quorums, checkpoints")
    ax.set_xlabel("time since start (s)")
    handles, labels = ax.get_legend_handles_labels()
    handles.insert(0, Line2D([], [], color="#aceebb", linewidth=8))
    labels.insert(0, "in committed steps")
    _legend_outside(ax, handles, labels)
    return _png(fig)


_TELEMETRY_AXES = (
    ("temperature_c", "Device temperature", "temperature (°C)"),
    # The step's mean draw where the device model gives it; else the sensor's reading.
    ("mean_power_w", "Device power draw (mean over each step)", "power (W)"),
    ("power_w", "Device power draw", "power (W)"),
)


def telemetry_plot(series: RunSeries) -> bytes | None:
    """Temperature and power per device over time; None when no device reported any."""
    present = [spec for spec in _TELEMETRY_AXES if series.has_telemetry(spec[0])]
    if any(key == "mean_power_w" for key, _, _ in present):
        present = [spec for spec in present if spec[0] != "power_w"]
    if not present:
        return None
    fig = Figure(figsize=(9.0, 2.8 * len(present)), layout="constrained")
    axes = fig.subplots(len(present), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (key, title, ylabel) in zip(axes, present):
        for name, points in series.telemetry[key].items():
            ax.plot(*zip(*points), linewidth=1.4, label=series.replica_labels.get(name, name))
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{title} per replica")
        ax.set_ylabel(ylabel)
        _legend_outside(ax)
    axes[-1].set_xlabel("time since start (s)")
    return _png(fig)
