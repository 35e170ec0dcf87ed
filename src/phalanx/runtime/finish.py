"""The end of a replica's run: the final model, the completion marker, its last event.

Every write survives a full disk as the rest of the run does: the final model
stops the replica with one line and the exit code of a full disk (the newest
checkpoint still holds the state), the marker and the summary only warn.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file, save_model

from phalanx.errors import EXIT_DISK_FULL, EXIT_FATAL
from phalanx.groups.member import GroupRank
from phalanx.observe.events import EventLog
from phalanx.observe.report import write_report_safely
from phalanx.observe.safe_write import disk_errno, write_or_warn
from phalanx.observe.summary import build_summary, write_summary
from phalanx.runtime import checkpoint as ckpt
from phalanx.runtime.error_line import say_error
from phalanx.runtime.fleet_watch import COMPLETE_MARKER


def finish_run(
    events: EventLog,
    name: str,
    model: torch.nn.Module,
    out_dir: Path,
    step: int,
    steps: int,
    standalone: bool,
    group: GroupRank | None = None,
) -> dict[str, Any]:
    """Write what a finished replica leaves behind; return the run's summary.

    `standalone`: a script run without `phalanx run` writes summary.json and the
    report itself (on a fleet the launcher does, once for all replicas).
    `group`: a rank of a replica group; every rank takes part in gathering the
    final model, the group's first rank writes it and speaks for the group.
    """
    tensors = None
    if group is not None:
        from phalanx.groups.sharding import full_state_dict

        tensors = full_state_dict(model) if step >= steps else None
        if not group.leads:
            return build_summary(out_dir)
    if step >= steps:
        write_final_model(model, out_dir, tensors)
        marker = out_dir / COMPLETE_MARKER
        write_or_warn(
            "the .complete marker", marker, lambda: marker.write_text(str(step)),
            "a replica that was away may train the last steps again alone",
            "free space there",
        )  # fmt: skip
    events.emit("worker_done", replica=name, step=step, peak_rss_bytes=peak_rss_bytes())
    summary = build_summary(out_dir)
    if standalone:
        write_summary(out_dir, summary)
        write_report_safely(out_dir)
    return summary


def write_final_model(
    model: torch.nn.Module, out_dir: Path, tensors: dict[str, torch.Tensor] | None = None
) -> None:
    """model.safetensors, whole or not at all (written aside, then renamed).

    `tensors`: the model's gathered state (a replica group's shards put together).
    """
    final = out_dir / "model.safetensors"
    tmp = out_dir / f".model.{os.getpid()}.safetensors"
    try:
        if tensors is not None:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        else:
            save_model(model, str(tmp))
        os.replace(tmp, final)
    except Exception as err:  # safetensors reports a full disk as its own error type
        tmp.unlink(missing_ok=True)
        newest = ckpt.list_checkpoints(out_dir)
        held = f"; the newest checkpoint is {newest[0]}" if newest else ""
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        say_error(
            f"the final model could not be written to {final} ({first_line}){held}. "
            "Fix: free disk space, then run again with --resume",
            sys.stdout,
        )
        raise SystemExit(EXIT_DISK_FULL if disk_errno(err) else EXIT_FATAL) from None


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux reports kilobytes)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
