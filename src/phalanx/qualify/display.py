"""Show qualification progress: a live rich table on a terminal, plain lines otherwise."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.live import Live
from rich.table import Table

from phalanx.devices.config import DeviceConfig
from phalanx.qualify.runner import Progress

_STATUS_STYLE = {"waiting": "dim", "running": "cyan", "passed": "green", "failed": "red"}


class ProgressView:
    """Receives Progress events from worker threads; safe to call from any thread."""

    def __init__(self, console: Console | None = None, live: bool | None = None) -> None:
        self.console = console or Console()
        self.live_mode = self.console.is_terminal if live is None else live
        self.rows: dict[str, Progress] = {}
        self._last_phase: dict[str, str] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> ProgressView:
        if self.live_mode:
            self._live = Live(
                self._table(), console=self.console, refresh_per_second=4, transient=False
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)

    def __call__(self, event: Progress) -> None:
        with self._lock:
            self.rows[event.device_id] = event
            if self._live is not None:
                self._live.update(self._table())
            else:
                self._plain(event)

    def _plain(self, event: Progress) -> None:
        # One line per phase change and per verdict: readable in CI logs.
        if (
            event.status == "waiting"
            or self._last_phase.get(event.device_id) == event.phase != "done"
        ):
            return
        self._last_phase[event.device_id] = event.phase
        if event.phase == "done":
            why = "; ".join(event.reasons)
            self.console.print(
                f"[{event.device_id}] {event.status.upper()}{': ' + why if why else ''}",
                markup=False,
                highlight=False,
            )
        else:
            self.console.print(f"[{event.device_id}] {event.phase}", markup=False, highlight=False)

    def _table(self) -> Table:
        table = Table(title="phalanx qualify", expand=False)
        for column in ("device", "phase", "progress", "°C", "W", "status"):
            table.add_column(column)
        for event in self.rows.values():
            style = _STATUS_STYLE.get(event.status, "")
            detail = "; ".join(event.reasons) if event.reasons else event.detail
            table.add_row(
                event.device_id,
                event.phase,
                detail[:80],
                f"{event.temperature_c:.0f}" if event.temperature_c is not None else "-",
                f"{event.power_w:.0f}" if event.power_w is not None else "-",
                f"[{style}]{event.status}[/]",
            )
        return table


GIB = 2**30


def _memory_tested(d: DeviceConfig) -> str:
    """'tested 4.0 of 16.0 GiB': how much of the device's memory the check covered."""
    q = d.qualification
    assert q is not None
    tested = (q.memory_checked_bytes or 0) / GIB
    if d.memory_bytes:
        return f"tested {tested:.1f} of {d.memory_bytes / GIB:.1f} GiB"
    return f"tested {tested:.1f} GiB"


def _cells(d: DeviceConfig) -> dict[str, str]:
    q = d.qualification
    assert q is not None
    usable = q.usable_memory_bytes
    return {
        "device": d.id,
        "kind": d.kind,
        "result": "PASS" if q.passed else "FAIL",
        "GFLOP/s": f"{q.gflops:.1f}" if q.gflops else "-",
        "speed": f"{q.measured_speed:.3f}" if q.measured_speed else "-",
        "memory": _memory_tested(d),
        "usable": f"{usable / GIB:.1f} GiB" if usable is not None else "-",
        "max °C": f"{q.max_temperature_c:.0f}" if q.max_temperature_c is not None else "-",
        "time s": f"{q.duration_s:.1f}" if q.duration_s is not None else "-",
        "why": ", ".join(q.failed_checks) if q.failed_checks else "; ".join(q.warnings),
    }


def summary_table(devices: list[DeviceConfig]) -> Table:
    table = Table(title="qualification")
    rows = [_cells(d) for d in devices if d.qualification is not None]
    for column in (
        "device",
        "kind",
        "result",
        "GFLOP/s",
        "speed",
        "memory",
        "usable",
        "max °C",
        "time s",
        "why",
    ):
        table.add_column(column)
    for row in rows:
        style = "green" if row["result"] == "PASS" else "red"
        table.add_row(*[f"[{style}]{v}[/]" if k == "result" else v for k, v in row.items()])
    return table


def print_summary(devices: list[DeviceConfig], console: Console | None = None) -> None:
    """A table on a terminal; one line per device (with every reason) otherwise."""
    console = console or Console()
    if console.is_terminal:
        console.print(summary_table(devices))
        return
    for d in devices:
        if d.qualification is None:
            continue
        c = _cells(d)
        line = f"{c['device']}: {c['result']}  {c['GFLOP/s']} GFLOP/s  speed {c['speed']}  memory {c['memory']}, usable {c['usable']}  max {c['max °C']} °C  {c['time s']} s"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
        for reason in d.qualification.reasons:
            console.print(f"    {reason}", markup=False, highlight=False, soft_wrap=True)
        # Warnings say what a pass does not cover (untested memory, throttling).
        for warning in d.qualification.warnings:
            console.print(f"    warning: {warning}", markup=False, highlight=False, soft_wrap=True)
