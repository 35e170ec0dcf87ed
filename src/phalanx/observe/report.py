"""report.html: one self-contained page about a run, rendered from events.jsonl alone.

Called at the end of every run (`write_report_safely`) and by `phalanx
report RUN_DIR`, so any run directory, also an old or damaged one, can be
re-rendered later.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phalanx.observe import report_html as h
from phalanx.observe.chip_memory import describe_chip_memory
from phalanx.observe.events import EVENTS_FILE, UnreadableEventsWarning, read_events
from phalanx.observe.fleet_state import format_duration, format_energy
from phalanx.observe.fleet_view import FleetView
from phalanx.observe.safe_write import write_or_warn
from phalanx.observe.series import RunSeries, extract_series
from phalanx.observe.summary import build_summary

REPORT_FILE = "report.html"
# Section ids, in page order; tests check every one is present.
SECTIONS = ("summary", "loss", "throughput", "shares", "timeline", "telemetry", "data")


class ReportError(Exception):
    """The run directory cannot be reported on (no events at all)."""


@dataclass
class Report:
    html: str
    warnings: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)  # names of the embedded plots


def render_report(run_dir: str | Path) -> Report:
    # matplotlib is imported here, not at the top: every worker imports this module
    # (the one-process run writes its report) and must not pay ~0.5 s to start.
    from phalanx.observe import plots

    run_dir = Path(run_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnreadableEventsWarning)
        events = read_events(run_dir, warn=True)
    notes = [str(w.message) for w in caught if issubclass(w.category, UnreadableEventsWarning)]
    if not events:
        raise ReportError(f"{run_dir / EVENTS_FILE} is missing or holds no readable event")
    summary = build_summary(run_dir)
    series = extract_series(events)
    view = FleetView().apply_all(events)
    report = Report(html="", warnings=notes)
    sections = [
        h.section("summary", "Summary", _summary_body(summary, view)),
        _plot_section(report, "loss", "Loss", plots.loss_plot(series), "loss per step"),
        _plot_section(
            report,
            "throughput",
            "Throughput against ideal",
            plots.throughput_plot(series, summary.get("ideal_sps")),
            "samples per second over time",
        ),
        _plot_section(
            report,
            "shares",
            "Shares of the global batch",
            plots.shares_plot(series),
            "each replica's share per step",
        ),
        _plot_section(
            report,
            "timeline",
            "Timeline of faults, heals, quorums and checkpoints",
            plots.timeline_plot(series),
            "timeline",
        ),
        _telemetry_section(report, series),
        h.section("data", "Data accounting", _data_body(summary.get("data") or {})),
    ]
    status = "finished" if summary.get("completed") else "stopped early"
    report.html = h.page(
        f"phalanx run report: {run_dir.resolve().name}",
        f"{run_dir.resolve()} · {status} · {summary['steps']}/{summary['planned_steps']} steps",
        notes,
        sections,
    )
    return report


def write_report(run_dir: str | Path, out_path: str | Path | None = None) -> tuple[Path, Report]:
    report = render_report(run_dir)
    path = Path(out_path) if out_path is not None else Path(run_dir) / REPORT_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(report.html, encoding="utf-8")
        os.replace(tmp, path)  # a reader never sees half a report
    except OSError:
        tmp.unlink(missing_ok=True)  # on a full disk, half a page holds the missing space
        raise
    return path, report


def write_report_safely(run_dir: str | Path) -> Path | None:
    """For the end of a run: a report that cannot be drawn or written must not fail the training."""
    written: list[Path] = []
    try:
        write_or_warn(
            "report.html",
            Path(run_dir) / REPORT_FILE,
            lambda: written.append(write_report(run_dir)[0]),
            "the run's result is not affected",
            f"free space, then `phalanx report {run_dir}`",
        )
    except Exception as err:  # the summary and events are already on disk
        print(f"warning: report.html not written ({type(err).__name__}: {err})", file=sys.stderr)
        return None
    return written[0] if written else None


def _plot_section(report: Report, name: str, title: str, png: bytes, alt: str) -> str:
    report.plots.append(name)
    return h.section(name, title, h.figure(png, name, alt))


def _summary_body(summary: dict[str, Any], view: FleetView) -> str:
    faults = summary.get("faults") or {}
    injected = faults.get("injected") or []
    energy_j = summary.get("energy_j")
    if energy_j is None:
        energy_j = view.energy_j()
    eff = summary.get("efficiency")
    overview = h.key_values(
        [
            ("status", "finished" if summary.get("completed") else "stopped early"),
            ("steps", f"{summary['steps']} of {summary['planned_steps']}"),
            ("global batch", f"{summary['global_batch_size']} samples"),
            ("samples trained", summary["samples"]),
            ("wall time", f"{format_duration(summary['wall_s'])} ({summary['wall_s']:.1f} s)"),
            ("throughput", f"{summary['throughput_sps']:,.1f} samples/s"),
            ("ideal throughput", f"{summary['ideal_sps']:,.1f} samples/s (sum of solo speeds)"),
            ("efficiency", f"{eff:.0%}" if eff is not None else None),
            ("final loss", summary.get("final_loss")),
            ("faults injected / survived", f"{len(injected)} / {faults.get('survived', 0)}"),
            ("retried step attempts", summary.get("retries", 0)),
            ("checkpoints at steps", ", ".join(map(str, summary.get("checkpoints") or [])) or None),
            ("energy", format_energy(energy_j) if energy_j is not None else "not reported"),
        ]
    )
    devices = h.table(
        [
            "replica",
            "kind",
            "speed",
            "samples",
            "final share",
            "solo samples/s",
            "status",
            "energy",
            "memory held (emulated chips)",
        ],
        [
            [
                d["id"],
                d.get("kind"),
                d.get("speed"),
                d.get("samples"),
                d.get("final_share"),
                d.get("solo_sps"),
                d.get("status"),
                format_energy(_device_energy(d, view)),
                describe_chip_memory(d.get("memory")) or "-",
            ]
            for d in summary.get("devices") or []
        ],
    )
    recoveries = summary.get("recoveries") or []
    stalls = (
        h.table(
            ["what", "replica", "step", "fleet stalled (s)"],
            [[r["kind"], r.get("replica"), r.get("step"), r["stall_s"]] for r in recoveries],
        )
        if recoveries
        else h.paragraph("No faults and no heals.", "note")
    )
    return f"{overview}<h3>Replicas</h3>{devices}<h3>Faults and recoveries</h3>{stalls}"


def _device_energy(device: dict[str, Any], view: FleetView) -> float | None:
    if device.get("energy_j") is not None:
        return float(device["energy_j"])
    replica = view.replicas.get(device["id"])
    return replica.energy_j if replica else None


def _telemetry_section(report: Report, series: RunSeries) -> str:
    from phalanx.observe import plots  # lazily: see render_report

    png = plots.telemetry_plot(series)
    if png is None:
        body = h.paragraph(
            "No device reported temperature or power in this run "
            "(emulated and CPU devices usually cannot).",
            "note",
        )
    else:
        report.plots.append("telemetry")
        body = h.figure(png, "telemetry", "temperature and power per device")
    return h.section("telemetry", "Temperature and power", body)


def _data_body(data: dict[str, Any]) -> str:
    if not data:
        return h.paragraph("No worker started, so no data was used.", "note")
    if data.get("fleet_accounting"):
        return _site_data_body(data)
    exact = data["duplicates"] == 0 and data["missing"] == 0 and not data["misaligned_steps"]
    verdict = (
        h.paragraph("Every sample was used exactly once per epoch.", "ok")
        if exact
        else h.paragraph("Data was duplicated, missed or misaligned: see below.", "bad")
    )
    rows = [
        ("samples used", data["samples_seen"]),
        ("distinct samples", data["unique_samples"]),
        ("full epochs", data["epochs_completed"]),
        ("duplicated", data["duplicates"]),
        ("missed in full epochs", data["missing"]),
        ("steps committed", data["steps_committed"]),
        ("steps missing", ", ".join(map(str, data["steps_missing"])) or "none"),
        ("misaligned steps", ", ".join(map(str, data["misaligned_steps"])) or "none"),
    ]
    return verdict + h.key_values(rows)


def _site_data_body(data: dict[str, Any]) -> str:
    """One site of a sites run: samples missed are a question for all sites together."""
    note = h.paragraph(
        f"This site trained its part of the sites' one stream; samples missed by the sites "
        f"together are in {data['fleet_accounting']} beside this run's directory.",
        "note",
    )
    rows = [
        ("samples used", data["samples_seen"]),
        ("distinct samples", data["unique_samples"]),
        ("duplicated", data["duplicates"]),
        ("steps committed", data["steps_committed"]),
        ("misaligned steps", ", ".join(map(str, data["misaligned_steps"])) or "none"),
    ]
    return note + h.key_values(rows)
