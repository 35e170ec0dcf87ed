"""How `Trainer.fit`'s loop turns what stops a replica into a LeaveFleet (one event, one line)."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from phalanx.emulate.memory import EmulatedOutOfMemory
from phalanx.errors import EXIT_FATAL, EXIT_OUT_OF_MEMORY
from phalanx.observe.events import EventLog
from phalanx.runtime.error_line import say_error
from phalanx.runtime.hooks import LeaveFleet
from phalanx.runtime.step import PlanMismatch, StepContext, StepReport, take_step


def step_or_leave(ctx: StepContext) -> StepReport:
    """One step; a step no replica can take exactly, or one that does not fit, stops us."""
    try:
        return take_step(ctx)
    except PlanMismatch as mismatch:  # no exact step is possible: stop the run
        event = {"kind": "unrecoverable", "step": mismatch.step, "reason": str(mismatch)}
        raise LeaveFleet(EXIT_FATAL, str(mismatch), event) from None
    except EmulatedOutOfMemory as oom:  # a sample larger than the probe's
        raise out_of_memory(oom, ctx.state.fleet.step) from None


def out_of_memory(oom: EmulatedOutOfMemory, step: int) -> LeaveFleet:
    event = {"kind": "out_of_memory", "step": step, "reason": str(oom),
             "need_bytes": oom.need_bytes, "cap_bytes": oom.cap_bytes}  # fmt: skip
    return LeaveFleet(EXIT_OUT_OF_MEMORY, str(oom), event)


def leave_now(events: EventLog, name: str, leave: LeaveFleet) -> NoReturn:
    """One event and one line, then exit now: peers see a dead replica, not a hung one."""
    events.emit(leave.event.pop("kind"), replica=name, **leave.event)
    if leave.exit_code in (EXIT_FATAL, EXIT_OUT_OF_MEMORY):
        say_error(leave.message, sys.stdout)
    else:
        print(leave.message, flush=True)
    os._exit(leave.exit_code)
