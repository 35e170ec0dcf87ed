"""One outer step as data flows: encode each site's delta, exchange, decode, average, apply.

    site i:  delta_i = anchor - params_i  ->  ErrorFeedback(codec).encode  ->  SiteUpload
    link:    every site receives every upload (traffic.py counts the bytes)
    all:     decode every upload, weighted_pseudo_gradient (ascending site), OuterOptimizer.step

Every site runs `apply_outer_step` on the same uploads, so every site ends with
a bit-identical anchor: the one point where the sites agree on the model. The
runtime's job is the exchange; what is exchanged and what is done with it is here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from phalanx.sites.compression import Codec, Encoded, ErrorFeedback
from phalanx.sites.outer_optimizer import OuterOptimizer
from phalanx.sites.pseudo_gradient import SiteDelta, site_delta, weighted_pseudo_gradient


@dataclass(frozen=True)
class SiteUpload:
    """What one site sends at the end of a round: its sample count and its encoded delta."""

    site: int
    samples: int
    payloads: tuple[Encoded, ...]  # one per parameter tensor, flat; empty when samples == 0

    @property
    def payload_bytes(self) -> int:
        return sum(p.nbytes for p in self.payloads)


def prepare_upload(
    site: int,
    samples: int,
    anchor: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    feedback: ErrorFeedback,
) -> SiteUpload:
    """Encode this site's delta with its own error feedback (untouched if it did no work)."""
    if samples == 0:
        return SiteUpload(site, 0, ())
    flat = [d.reshape(-1) for d in site_delta(anchor, params)]
    return SiteUpload(site, samples, tuple(feedback.encode(flat)))


def apply_outer_step(
    uploads: Sequence[SiteUpload], codec: Codec, optimizer: OuterOptimizer
) -> list[torch.Tensor]:
    """Decode every upload, average by samples, step the anchor; return the new anchor.

    A round in which no site processed a sample leaves the anchor (and the momentum)
    as it was: stepping on a zero pseudo-gradient would still move it by momentum alone.
    """
    shapes = [a.shape for a in optimizer.anchor]
    deltas = []
    for upload in uploads:
        if upload.samples == 0:
            deltas.append(SiteDelta(upload.site, 0, ()))
            continue
        if len(upload.payloads) != len(shapes):
            raise ValueError(
                f"site {upload.site} sent {len(upload.payloads)} tensors, the model has {len(shapes)}"
            )
        decoded = [codec.decode(p).view(shape) for p, shape in zip(upload.payloads, shapes)]
        deltas.append(SiteDelta(upload.site, upload.samples, decoded))
    if all(d.samples == 0 for d in deltas):
        return [a.clone() for a in optimizer.anchor]
    return optimizer.step(weighted_pseudo_gradient(deltas))
