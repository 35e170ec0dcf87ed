"""Sites as model copies in one process: the reference a networked run must equal.

One model per site, trained by the caller's `train_step(site, start, end)`
on stream positions [start, end) handed out by streams.py; every `run_round`
ends with the outer step of outer_step.py, and the new anchor is copied into
every site's model (a site cut off this round too: it rejoins at the anchor).
The bench (bench/sites_convergence.py) and the replay test drive it; the
runtime integration replaces the loop over sites by one process group per
site and the list of uploads by an exchange over the link.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from phalanx.sites.compression import Codec, ErrorFeedback
from phalanx.sites.outer_optimizer import OuterOptimizer, OuterSettings
from phalanx.sites.outer_step import apply_outer_step, prepare_upload
from phalanx.sites.rounds import OuterRound, SiteRound
from phalanx.sites.streams import RoundLayout, StreamPlan, first_layout

TrainStep = Callable[[int, int, int], None]  # (site, first position, end position)


class LocalSites:
    def __init__(
        self,
        models: Sequence[nn.Module],
        plan: StreamPlan,
        codec: Codec,
        outer: OuterSettings,
        train_step: TrainStep,
    ) -> None:
        if len(models) != plan.sites:
            raise ValueError(f"{len(models)} models for a {plan.sites}-site plan")
        self.models = list(models)
        self.plan = plan
        self.codec = codec
        self.train_step = train_step
        anchor = [p.detach() for p in self.models[0].parameters()]
        for model in self.models[1:]:
            if any(not torch.equal(a, p) for a, p in zip(anchor, model.parameters())):
                raise ValueError("sites must start from the same parameters (seed the model)")
        self.outer = OuterOptimizer(anchor, outer)
        self.feedback = [ErrorFeedback(codec) for _ in self.models]
        self.layout: RoundLayout = first_layout(plan)

    def run_round(self, inner_steps: Sequence[int]) -> OuterRound:
        """Each site does its inner steps, then one outer step; returns the round's record."""
        layout = self.layout
        for site, steps in enumerate(inner_steps):
            for step in range(steps):
                self.train_step(site, *layout.step_range(site, step))
        uploads = [
            prepare_upload(
                site,
                steps * self.plan.batch_sizes[site],
                self.outer.anchor,
                list(self.models[site].parameters()),
                self.feedback[site],
            )
            for site, steps in enumerate(inner_steps)
        ]
        new_anchor = apply_outer_step(uploads, self.codec, self.outer)
        with torch.no_grad():
            for model in self.models:
                for param, value in zip(model.parameters(), new_anchor):
                    param.copy_(value)
        self.layout = layout.next_layout(inner_steps)
        return OuterRound(
            layout.round,
            tuple(
                SiteRound(u.site, inner_steps[u.site], u.samples, u.payload_bytes) for u in uploads
            ),
        )


def steps_in_round(speeds: Sequence[float], outer_every: int) -> list[int]:
    """Inner steps each site manages while the fastest does H: floor(H * speed / fastest)."""
    fastest = max(speeds)
    if fastest <= 0:
        raise ValueError(f"no site has a positive speed: {list(speeds)}")
    return [int(outer_every * speed / fastest) for speed in speeds]
