"""What a site holds across outer rounds, and which part of it every site shares.

Two parts with two ways of travelling:

- the **outer state**, identical on every site after each outer step: the
  anchor and outer momentum (OuterOptimizer), the open round (index, first
  stream step, planned counts), each site's last inner-step time (the next
  plan's input) and how far each site's work has been counted. A site that
  was cut off heals it from a live site through the outer quorum (sites/
  outer_link.py), as torchft heals any replica that is behind.
- the **site's own state**: where its open round began (its inner-step
  count then), its error-feedback residuals, and a *pending* contribution:
  work done on an anchor that moved on without it (it was cut off). A
  replica restarted inside the site heals both parts from its site's peers
  with the rest of the training state (runtime/state.py `extra`).

A site that misses an outer step does not lose its work: its delta from the
old anchor and its samples wait in `pending` and go into its next upload, so
every sample it trained is counted once, late.
"""

from __future__ import annotations

from typing import Any

import torch

from phalanx.sites.compression import ErrorFeedback
from phalanx.sites.outer_optimizer import OuterOptimizer
from phalanx.sites.run_settings import SiteRunSettings
from phalanx.sites.schedule import OpenRound, first_round, total_rounds


class SiteState:
    def __init__(
        self, settings: SiteRunSettings, params: list[torch.nn.Parameter], steps: int
    ) -> None:
        self.settings = settings
        self.params = params
        self.steps = steps  # inner steps of the fastest site over the whole run
        self.total_rounds = total_rounds(steps, settings.outer_every)
        sites = settings.sites
        # The outer state.
        self.outer = OuterOptimizer([p.detach() for p in params], settings.outer_settings)
        self.open: OpenRound = first_round(sites, steps, settings.outer_every)
        self.step_times_s: list[float | None] = [None] * sites
        self.counted_through: list[int] = [0] * sites  # inner steps of each site counted
        # The site's own state.
        self.round_start_step = 0
        self.feedback = ErrorFeedback(settings.codec)
        self.pending: list[torch.Tensor] | None = None
        self.pending_samples = 0
        # Called after a heal loaded a round number (the outer link's torchft step follows).
        self.on_round_loaded: Any = None

    # ------------------------------------------------------------- where we are
    @property
    def index(self) -> int:
        return self.settings.index

    @property
    def round(self) -> int:
        return self.open.round

    @property
    def finished(self) -> bool:
        return self.open.round >= self.total_rounds

    def planned(self) -> int:
        """This site's inner steps in the open round."""
        return self.open.counts[self.index]

    def outer_due(self, fleet_step: int) -> bool:
        """Has this site done its planned inner steps of the open round?"""
        return not self.finished and fleet_step - self.round_start_step >= self.planned()

    def stream_step(self, fleet_step: int) -> int:
        """The global-stream step of this site's inner step `fleet_step`."""
        return self.open.stream_step(self.index, fleet_step - self.round_start_step)

    # --------------------------------------------------------------- state dicts
    def outer_state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.outer.state_dict(),
            "round": self.open.round,
            "base_step": self.open.base_step,
            "counts": list(self.open.counts),
            "step_times_s": list(self.step_times_s),
            "counted_through": list(self.counted_through),
        }

    def load_outer_state_dict(self, state: dict[str, Any]) -> None:
        self.outer.load_state_dict(state["optimizer"])
        self.open = OpenRound(int(state["round"]), int(state["base_step"]),
                              tuple(int(c) for c in state["counts"]))  # fmt: skip
        self.step_times_s = [None if t is None else float(t) for t in state["step_times_s"]]
        self.counted_through = [int(c) for c in state["counted_through"]]
        if self.on_round_loaded is not None:
            self.on_round_loaded(self.open.round)

    def state_dict(self) -> dict[str, Any]:
        return {
            "outer": self.outer_state_dict(),
            "round_start_step": self.round_start_step,
            "feedback": self.feedback.state_dict(),
            "pending": None if self.pending is None else [t.clone() for t in self.pending],
            "pending_samples": self.pending_samples,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_outer_state_dict(state["outer"])
        self.round_start_step = int(state["round_start_step"])
        self.feedback.load_state_dict(state["feedback"])
        pending = state["pending"]
        self.pending = None if pending is None else [t.clone() for t in pending]
        self.pending_samples = int(state["pending_samples"])
