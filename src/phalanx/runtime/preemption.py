"""SIGTERM as a scheduler means it: finish the step in flight, checkpoint, leave with 75.

Slurm (`scancel`, pre-emption, the end of a time limit) and Kubernetes (pod
eviction) send SIGTERM and wait a grace period (30 s by default) before SIGKILL.
A replica notes the signal, finishes the step it is in (a step is short next to
the grace period), and leaves at the boundary; the first member of its last
quorum writes the committed state as a checkpoint, so `--resume` on the next
allocation goes on from there with the same math. Replicas that get the signal
at different steps each leave at their own boundary: the fleet shrinks as for a
crash, and the last one out holds the newest step.

One wait is cut short instead: a sites run's replica waiting for its outer
round's quorum (between two inner steps, its state that of the last committed
one) may wait for a site that has already left, up to the quorum timeout (60 s),
past any grace period. Inside `cut_short_while`, the signal raises
`PreemptedInWait` while the wait is still a wait (nothing of the state touched
yet); the caller returns to the step boundary, which checkpoints and leaves.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from phalanx.errors import EXIT_PREEMPTED
from phalanx.observe.events import EventLog
from phalanx.runtime import checkpoint as ckpt
from phalanx.runtime.state import TrainState


class PreemptedInWait(BaseException):
    """SIGTERM during a wait that may be cut short (a BaseException: no `except
    Exception` on the way, torchft's included, takes it for a failed quorum)."""


@dataclass
class Preemption:
    requested: bool = False
    # While set (main thread only): SIGTERM raises PreemptedInWait if it says True.
    _still_waiting: Callable[[], bool] | None = None

    def install(self) -> None:
        """Catch SIGTERM from now on (only the main thread may set a handler)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)

    @contextmanager
    def cut_short_while(self, still_waiting: Callable[[], bool]) -> Iterator[None]:
        """Inside, SIGTERM raises PreemptedInWait whenever `still_waiting()` holds.

        Entered only where leaving is safe (a SIGTERM already seen raises at once);
        `still_waiting` must say True only while nothing of the state has changed
        since (the handler raises wherever the main thread is). A signal handler
        runs on the main thread, so only a wait there can be cut short; elsewhere
        (a `fit` in a thread of the user's loop) this does nothing.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        if self.requested:
            raise PreemptedInWait()
        self._still_waiting = still_waiting
        try:
            yield
        finally:
            self._still_waiting = None

    def _on_signal(self, _signum: int, _frame: Any) -> None:
        self.requested = True  # acted on at the next step boundary, never mid-step
        still_waiting = self._still_waiting
        if still_waiting is not None and still_waiting():
            self._still_waiting = None
            raise PreemptedInWait()


def leave_preempted(
    name: str,
    state: TrainState,
    members: list[str],
    out_dir: Path,
    keep: int,
    events: EventLog,
    in_fleet: bool,
) -> NoReturn:
    """Checkpoint the committed state (first member only), say so, and leave (exit 75).

    A fleet's replica leaves with os._exit, as a quarantined one does: torchft's
    threads may still retry a quorum against a closed lighthouse and hold up a
    normal interpreter exit until the launcher's 25 s kill.
    """
    step = state.fleet.step
    saved: Path | None = None
    # A replica group's ranks hold shards: no checkpoint of theirs is whole (yet).
    first = bool(members) and members[0] == name and not state.sharded
    if first and step > 0 and not _held_already(out_dir, step):
        try:
            saved = ckpt.save_checkpoint(state, out_dir, keep=keep)
        except OSError as err:  # the older checkpoints are intact; --resume uses them
            events.emit("checkpoint_failed", replica=name, step=step, reason=str(err))
            print(f"warning: {err}; --resume goes on from an older checkpoint", flush=True)
    events.emit("preempted", replica=name, step=step, checkpoint=str(saved) if saved else None)
    written = f"; checkpoint {saved.name} written" if saved else ""
    print(f"{name}: pre-empted (SIGTERM) after step {step}{written}", flush=True)
    if in_fleet:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_PREEMPTED)
    raise SystemExit(EXIT_PREEMPTED)


def _held_already(out_dir: Path, step: int) -> bool:
    """Is a checkpoint of this step, or a later one (a peer went further), on disk?"""
    newest = ckpt.list_checkpoints(out_dir)
    return bool(newest) and ckpt.checkpoint_step(newest[0]) >= step
