"""Straggler and fleet progress: never write a second history of the same steps.

Two ways a replica could train steps the fleet already trained:

- it was away (frozen, restarted) while the fleet finished: on one host it
  sees the `.complete` marker in the shared run directory; on a host of its
  own only the admission gate's progress record can tell it;
- on many hosts, a quorum whose newest state (after healing) is behind a
  step the fleet committed: the replicas holding that state are cut off or
  frozen. It waits for them; after `BEHIND_WAIT_S` it goes on from its older
  state (`rewind`) and lowers the gate's record, so later joiners do not wait.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from phalanx.observe.events import EventLog
from phalanx.runtime.sync import FleetProgress, Sync

# Written by the first replica to finish: the run's history is complete up to the step
# it holds. A run resumed with more steps (`--resume` after `--steps 60`, now 100) is not.
COMPLETE_MARKER = ".complete"
BEHIND_WAIT_S = 60.0
BEHIND_RETRY_S = 0.5


@dataclass
class FleetWatch:
    sync: Sync
    events: EventLog
    name: str
    out_dir: Path
    many_hosts: bool
    in_fleet: bool  # under `phalanx run` (a local run has no fleet to watch)
    behind_since: float | None = None

    def ask(self, step: int) -> FleetProgress | None:
        """The fleet's progress from the gate (many hosts only; None elsewhere or unreachable)."""
        if not self.many_hosts:
            return None
        return self.sync.exchange_progress(step, complete=False)

    def fleet_finished(self, steps: int) -> bool:
        """One host: has the fleet written its completion marker for `steps` (run over)?"""
        return self.in_fleet and completed_steps(self.out_dir) >= steps

    def finished_without_us(self, step: int, steps: int, progress: FleetProgress | None) -> bool:
        """Has the fleet finished the run while this replica was away? Then leave."""
        if not self.in_fleet:
            return False
        if completed_steps(self.out_dir) >= steps:
            self.events.emit("straggler_exit", replica=self.name, step=step)
            return True
        if progress is None or not progress.complete or step >= steps:
            return False
        self.events.emit(
            "straggler_exit",
            replica=self.name,
            step=step,
            fleet_step=progress.step,
            fleet_finished=True,
        )
        return True

    def hold_back(self, step: int, progress: FleetProgress | None, members: list[str]) -> bool:
        """Many hosts: True when this quorum is behind the fleet and must not train yet."""
        if progress is None or progress.step <= step:  # not behind
            self.behind_since = None
            return False
        now = time.monotonic()
        if self.behind_since is None:
            self.behind_since = now
            self.events.emit(
                "behind_fleet",
                replica=self.name,
                step=step,
                fleet_step=progress.step,
                participants=members,
                wait_s=BEHIND_WAIT_S,
            )
            print(
                f"{self.name}: the fleet has committed {progress.step} steps, this quorum's "
                f"newest state has {step}; waiting up to {BEHIND_WAIT_S:g} s for a replica "
                "that holds the newer state",
                flush=True,
            )
        if now - self.behind_since < BEHIND_WAIT_S:
            time.sleep(BEHIND_RETRY_S)  # back-off before the next quorum, not synchronisation
            return True
        # The commits of [step, fleet_step) died with every replica that held them: the
        # fleet trains those steps again, and readers of the events take them back.
        self.events.emit(
            "rewind",
            replica=self.name,
            step=step,
            fleet_step=progress.step,
            lost_steps=list(range(step, progress.step)),
        )
        self.sync.exchange_progress(step, complete=False, rewind=True)
        self.behind_since = None
        return False

    def waiting(self) -> bool:
        return self.behind_since is not None

    def committed(self, step: int) -> None:
        if self.many_hosts:
            self.sync.report_step(step)  # the gate keeps the fleet's newest step

    def finished(self, step: int) -> None:
        """Before our heartbeats stop: a quorum that leaves us out comes after this."""
        if self.many_hosts:
            self.sync.exchange_progress(step, complete=True)


def completed_steps(out_dir: Path) -> float:
    """The steps the run's completion marker says were finished (0 without one; a marker
    without a number, as older versions wrote it, counts as the whole run)."""
    try:
        text = (out_dir / COMPLETE_MARKER).read_text().strip()
    except FileNotFoundError:
        return 0
    except OSError:
        return float("inf")
    return int(text) if text.isdigit() else float("inf")
