"""A replica's part in a sites run (docs/sites.md): its site state and outer rounds.

A site is an ordinary fleet; these add to it the outer state (carried with the
training state through heals and checkpoints), the stream positions of the
site's inner steps, and the outer round between inner steps.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

from phalanx.errors import EXIT_FATAL, UsageError
from phalanx.observe.events import EventLog
from phalanx.runtime.hooks import LeaveFleet
from phalanx.runtime.preemption import PreemptedInWait, Preemption
from phalanx.runtime.state import TrainState
from phalanx.runtime.step import StepContext, StepReport
from phalanx.runtime.worker_config import WorkerConfig


class SiteRun:
    def __init__(
        self, worker: WorkerConfig, model: torch.nn.Module, state: TrainState, steps: int,
        global_batch_size: int, sharded: bool,
    ) -> None:  # fmt: skip
        from phalanx.sites.run_settings import SiteRunSettings
        from phalanx.sites.site_state import SiteState

        assert worker.sites is not None
        if sharded:
            raise UsageError(
                "--site", "cannot run replica groups yet",
                "give each site replicas that hold the whole model",
            )  # fmt: skip
        self.worker = worker
        self.settings = SiteRunSettings.from_json(worker.sites)
        self.batch = global_batch_size
        params = [p for p in model.parameters() if p.requires_grad]
        self.state = SiteState(self.settings, params, steps)
        state.extra["site"] = self.state  # healed and checkpointed with the rest
        self.replay = None
        if self.settings.replay is not None:
            from phalanx.sites.replay import RecordedRounds

            try:
                self.replay = RecordedRounds.from_run(self.settings.replay)
            except (OSError, ValueError, KeyError) as err:
                raise UsageError(
                    "--outer-replay", f"cannot be replayed ({err})",
                    "name the run directory of a finished sites run", self.settings.replay,
                ) from None  # fmt: skip
            if self.replay.rounds < self.state.total_rounds:
                raise UsageError(
                    "--outer-replay",
                    f"records {self.replay.rounds} outer rounds, this run has "
                    f"{self.state.total_rounds}",
                    "replay with the recorded run's --steps and --outer-every",
                    self.settings.replay,
                )  # fmt: skip
        self.rounds: Any = None

    @property
    def finished(self) -> bool:
        return self.state.finished

    def connect(self, events: EventLog, name: str) -> None:
        """The outer link (a second torchft Manager on the outer lighthouse)."""
        from phalanx.sites.outer_link import OuterLink
        from phalanx.sites.outer_round import OuterRounds

        worker = self.worker
        outer = self.settings.outer
        address = outer if "://" in outer else f"http://{outer}"  # torchft wants a URL
        host = _reachable_host(worker.advertise_host, address)
        if host != worker.advertise_host:
            # Gloo binds GLOO_SOCKET_IFNAME (the launcher set loopback for a one-host
            # site) when a group is configured: the outer group must bind the interface
            # the other sites reach; the site's own peers reach this host there too.
            from phalanx.fleetnet.hosts import interface_of

            interface = interface_of(host)
            if interface is not None:
                os.environ["GLOO_SOCKET_IFNAME"] = interface

        def make_link() -> OuterLink:
            return OuterLink(
                f"{self.settings.site}/{name}", address,
                self.state.outer_state_dict, self.state.load_outer_state_dict,
                timeout_s=max(60.0, worker.timeout_s), quorum_timeout_s=60.0,
                host=host, heartbeat_ms=worker.heartbeat_ms,
            )  # fmt: skip

        self.rounds = OuterRounds(self.state, make_link, events, name, self.batch, self.replay)
        if not worker.restarted:
            self.rounds.open_link()  # heard of by the outer lighthouse before round 0

    def attach(self, ctx: StepContext) -> None:
        """Steps take their positions from the round's plan; no step limit but the rounds."""
        ctx.stream_step = self.state.stream_step
        ctx.outer_due = self.state.outer_due
        ctx.outer_round = lambda: self.state.round
        ctx.site = self.settings.site
        ctx.steps = sys.maxsize

    def after_step(self, report: StepReport) -> None:
        """A restarted replica joins the outer lighthouse once it trains with its site.

        By then it has healed inside its site (the reason its link waits), and the
        outer lighthouse hears of it before the site's next outer round. Made only at
        that round, its link came a moment after its peer and the other sites had
        formed the round's quorum: the peer applied the round alone, and the two
        replicas waited for each other, each in the other's quorum, for minutes (seen
        in a flake hunt of tests/e2e/test_sites_run.py).
        """
        if report.committed and self.rounds is not None:
            self.rounds.open_link()
            # Those who trained this step must meet in the site's next outer round.
            self.rounds.site_replicas = len(report.members)

    def due(self, fleet_step: int) -> bool:
        return self.state.outer_due(fleet_step)

    def outer_round(self, fleet_step: int, preemption: Preemption | None = None) -> None:
        """The outer round due at `fleet_step`; a SIGTERM in its quorum wait ends it
        unfinished (the caller's step boundary checkpoints and leaves)."""
        from phalanx.sites.outer_link import AnchorsDiffer
        from phalanx.sites.outer_round import OuterGaveUp

        try:
            self.rounds.run(fleet_step, preemption)
        except PreemptedInWait:
            return
        except (AnchorsDiffer, OuterGaveUp) as err:
            event = {"kind": "unrecoverable", "step": fleet_step, "reason": str(err)}
            raise LeaveFleet(EXIT_FATAL, str(err), event) from None

    def done(self, events: EventLog, name: str, step: int) -> int:
        """The `steps` finish_run compares with: reached once the outer rounds are done."""
        if not self.finished:
            return step + 1
        events.emit("site_done", replica=name, step=step, rounds=self.state.round)
        return step

    def close(self) -> None:
        if self.rounds is not None:
            self.rounds.close()


def _reachable_host(advertised: str, outer_url: str) -> str:
    """Where other sites reach this replica's outer store and group.

    A site on its own lighthouse advertises loopback to its peers (they share the
    host); the other sites are elsewhere, so the outer link takes this host's
    address on the route to the outer lighthouse instead.
    """
    from urllib.parse import urlsplit

    from phalanx.fleetnet.hosts import route_address

    parts = urlsplit(outer_url)
    outer_host = parts.hostname or ""
    local = ("127.0.0.1", "localhost", "::1")
    if advertised not in local or outer_host in local or not parts.port:
        return advertised
    try:
        return route_address(outer_host, parts.port)
    except (OSError, UsageError):  # no route: loopback still serves sites on this host
        return advertised
