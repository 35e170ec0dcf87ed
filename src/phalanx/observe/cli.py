"""`phalanx report RUN_DIR`: render report.html for any run directory, from events.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from phalanx.errors import UsageError


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (it holds events.jsonl).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write the page (default RUN_DIR/report.html)."),
    ] = None,
) -> None:
    """Render RUN_DIR/report.html: summary, loss, throughput, shares, timeline, data accounting.

    Also writes RUN_DIR/summary.json when it is missing (a disk that was full at the run's end).
    """
    from phalanx.observe.report import ReportError, write_report
    from phalanx.observe.summary import SUMMARY_FILE, build_summary, write_summary

    if not run_dir.is_dir():
        raise UsageError("RUN_DIR", "is not a directory", "give the --out of a run", str(run_dir))
    try:
        path, report = write_report(run_dir, out)
    except ReportError as err:
        raise UsageError("RUN_DIR", str(err), "give the --out directory of a run") from None
    except OSError as err:
        raise UsageError(
            "--out", f"cannot write there ({err.strerror})", "choose a writable path", str(out)
        ) from None
    except (LookupError, TypeError, AttributeError, ValueError, ArithmeticError) as err:
        # events.jsonl is phalanx's own output, but a damaged or hand-edited one is bad
        # input like any other: one line, not a traceback from deep inside the plots.
        raise UsageError(
            "RUN_DIR",
            f"events.jsonl holds an event this phalanx cannot read ({type(err).__name__}: {err})",
            "give the --out directory of an undamaged run",
            str(run_dir),
        ) from None
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"report: {path} ({len(report.plots)} plots)")
    # A run whose disk was full at its end has no summary.json: the events are all it takes.
    missing = out is None and not (run_dir / SUMMARY_FILE).exists()
    if missing and (summary := write_summary(run_dir, build_summary(run_dir))) is not None:
        typer.echo(f"summary: {summary}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
