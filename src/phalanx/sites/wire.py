"""One site's upload as one flat byte tensor, and back: what the outer all-gather moves.

Layout (little-endian, as torch lays tensors out on every platform phalanx runs on):

    int64[4]   site, samples, tensor count, flags (1: this copy counts; 2: the sender's
               outer state is sound, e.g. its heal did not fail)
    float64[1] the site's mean inner-step time this round, seconds (plans the next counts)
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

HEADER_BYTES = 4 * 8 + 8


@dataclass(frozen=True)
class WireUpload:
    """An upload with what travels beside it: is it the copy that counts, the step time."""

    upload: SiteUpload
    sender: bool  # a site's other replicas send an empty copy (one copy per site crosses)
    step_time_s: float
    # False: this replica's outer state is unsound this round (its heal failed): every
    # participant then refuses the round, so nobody applies a delta from a stale anchor.
    sound: bool = True


def pack(wire: WireUpload) -> torch.Tensor:
    upload = wire.upload
    header = torch.tensor(
        [upload.site, upload.samples, len(upload.payloads), int(wire.sender) | 2 * int(wire.sound)],
        dtype=torch.int64,
    )
    step_time = torch.tensor([wire.step_time_s], dtype=torch.float64)
    parts = [header.view(torch.uint8), step_time.view(torch.uint8)]
    for encoded in upload.payloads:
        parts.append(encoded.payload.reshape(-1))
        parts.append(encoded.scales.to(torch.float32).contiguous().view(torch.uint8))
    return torch.cat(parts)


def unpack(
    data: torch.Tensor, codec: Codec, numels: Sequence[int], dtypes: Sequence[torch.dtype]
) -> WireUpload:
    """The upload packed in `data` (padding after it is ignored)."""
    header = data[:32].clone().view(torch.int64).tolist()
    site, samples, count, flags = (int(v) for v in header)
    step_time_s = float(data[32:HEADER_BYTES].clone().view(torch.float64)[0])
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
    return WireUpload(upload, bool(flags & 1), step_time_s, sound=bool(flags & 2))


def pad(data: torch.Tensor, size: int) -> torch.Tensor:
    if data.numel() >= size:
        return data
    return torch.cat([data, torch.zeros(size - data.numel(), dtype=torch.uint8)])
