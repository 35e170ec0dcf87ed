"""One site's upload as one flat byte tensor, and back: what the outer all-gather moves.

Layout (little-endian, as torch lays tensors out on every platform phalanx runs on):

    int64[7]   site, samples, tensor count, flags (1: this copy counts; 2: the sender's
               outer state is sound, e.g. its heal did not fail; 4: a follower, whose
               site's peers went on without it), the outer round the sender is in, the
               site's inner steps so far (how far its work is counted), how many
               replicas the sender's site must bring to this round (0: any)
    float64[2] the site's inner-step time this round, seconds (plans the next counts),
               and a checksum of the sender's anchor (every participant must hold the same)
    then, per parameter tensor (none when samples == 0):
        payload bytes (Codec.encoded_bytes minus the scales), then float32 scales

The sizes are functions of (codec, numel per tensor), which every site knows from
the anchor, so no lengths travel. Gloo's all-gather wants equal sizes: `pad` fills
a tensor up to the largest participant's with zeros, which `unpack` ignores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from phalanx.sites.compression import SCALE_BYTES, Codec, Encoded
from phalanx.sites.outer_step import SiteUpload

HEADER_INTS = 7
HEADER_BYTES = HEADER_INTS * 8 + 2 * 8


@dataclass(frozen=True)
class WireUpload:
    """An upload with what travels beside it: is it the copy that counts, the step time."""

    upload: SiteUpload
    sender: bool  # a site's other replicas send an empty copy (one copy per site crosses)
    step_time_s: float
    # False: this replica's outer state is unsound this round (its heal failed): every
    # participant then refuses the round, so nobody applies a delta from a stale anchor.
    sound: bool = True
    round: int = 0
    inner_steps: int = 0
    anchor_checksum: float = 0.0
    # True: this replica missed an outer round its site's peers applied and went on from
    # (sites/outer_round.py): it holds none of their later work, so a peer of its site
    # that is present speaks for the site instead of it.
    follower: bool = False
    # How many replicas trained the sender's site's last inner step: the site must come
    # to the round with all of them (sites/outer_link.py `sites_short_of_replicas`);
    # 0 once the sender stopped waiting for a missing one (it may have died).
    site_replicas: int = 0


def pack(wire: WireUpload) -> torch.Tensor:
    upload = wire.upload
    header = torch.tensor(
        [
            upload.site, upload.samples, len(upload.payloads),
            int(wire.sender) | 2 * int(wire.sound) | 4 * int(wire.follower),
            wire.round, wire.inner_steps, wire.site_replicas,
        ],
        dtype=torch.int64,
    )  # fmt: skip
    step_time = torch.tensor([wire.step_time_s, wire.anchor_checksum], dtype=torch.float64)
    parts = [header.view(torch.uint8), step_time.view(torch.uint8)]
    for encoded in upload.payloads:
        parts.append(encoded.payload.reshape(-1))
        parts.append(encoded.scales.to(torch.float32).contiguous().view(torch.uint8))
    return torch.cat(parts)


def unpack(
    data: torch.Tensor, codec: Codec, numels: Sequence[int], dtypes: Sequence[torch.dtype]
) -> WireUpload:
    """The upload packed in `data` (padding after it is ignored)."""
    ints = HEADER_INTS * 8
    header = data[:ints].clone().view(torch.int64).tolist()
    site, samples, count, flags, round_index, inner_steps, site_replicas = (int(v) for v in header)
    step_time_s, checksum = data[ints:HEADER_BYTES].clone().view(torch.float64).tolist()
    if count not in (0, len(numels)):
        raise ValueError(f"site {site} sent {count} tensors, the model has {len(numels)}")
    offset = HEADER_BYTES
    payloads: list[Encoded] = []
    for numel, dtype in zip(numels, dtypes) if count else ():
        scale_count, payload_bytes = codec.scale_count(numel), codec.payload_bytes(numel)
        payload = data[offset : offset + payload_bytes].clone()
        offset += payload_bytes
        scales = data[offset : offset + SCALE_BYTES * scale_count].clone().view(torch.float32)
        offset += SCALE_BYTES * scale_count
        payloads.append(Encoded(codec.scheme, numel, codec.block_size, dtype, payload, scales))
    upload = SiteUpload(site, samples, tuple(payloads))
    return WireUpload(
        upload, bool(flags & 1), step_time_s, sound=bool(flags & 2), round=round_index,
        inner_steps=inner_steps, anchor_checksum=checksum, follower=bool(flags & 4),
        site_replicas=site_replicas,
    )  # fmt: skip


def pad(data: torch.Tensor, size: int) -> torch.Tensor:
    if data.numel() >= size:
        return data
    return torch.cat([data, torch.zeros(size - data.numel(), dtype=torch.uint8)])
