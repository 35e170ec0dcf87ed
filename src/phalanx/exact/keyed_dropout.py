"""Dropout whose mask depends on the sample, not on how the batch was split.

PyTorch's dropout draws each mask from the process's random stream, so the
mask a sample gets depends on which replica computes it and where it sits in
the slice: the fleet's result then differs from one process's. Here each
element's keep/drop decision is a counter-based hash of (run seed, the
sample's global stream position, the layer, the call within this forward,
the element's index inside the sample). Integer arithmetic only, in 32-bit
lanes of int64 tensors (no overflow anywhere), so every device and every
vendor draws the same mask. A retried step draws the same masks again.

Which rows are which samples: the compute loop publishes the micro-batch's
positions (exact/keys.py). An input whose first dimension is the batch, or a
whole multiple of it (heads folded into the batch, batch-major), is keyed;
so is one whose batch lies in another dimension (sequence-first), found by a
probe at start (exact/layouts.py). An input laid out otherwise falls back to
PyTorch's dropout, and the start-up probes say so.
"""

from __future__ import annotations

import types
from typing import Any

import torch

from phalanx.exact.keys import current
from phalanx.exact.layouts import batch_dim, note

_M32 = 0xFFFFFFFF
SUB_ROWS = 2**20  # sub-rows per sample (heads or tokens folded into the batch)
ELEMENTWISE = (torch.nn.Dropout,)
CHANNELWISE = (torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d)


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (two multiply-xorshift rounds) on int64 lanes in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & _M32
    return x ^ (x >> 15)


def row_seeds(seed: int, positions: torch.Tensor, layer_id: int, call: int) -> torch.Tensor:
    """One 32-bit seed per row, from the run seed, the row's position, the layer and call."""
    low = positions & _M32
    high = (positions >> 32) & _M32
    mixed = mix32(low ^ (seed & _M32))
    mixed = mix32(mixed ^ high ^ ((seed >> 32) & _M32))
    return mix32(mixed ^ ((layer_id * 65599 + call * 2654435) & _M32))


def keep_mask(seeds: torch.Tensor, per_row: int, p: float) -> torch.Tensor:
    """Bool (rows, per_row): element kept when its hash is >= p * 2^32."""
    index = mix32(torch.arange(per_row, dtype=torch.int64, device=seeds.device) + 0x9E3779B9)
    hashed = mix32(seeds[:, None] ^ index[None, :])
    return hashed >= int(p * 2**32)


def row_keys(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | None:
    """A key per slice of x's first dimension: its sample's position (x SUB_ROWS, + its
    sub-row when heads are folded into the batch, batch-major); None if not a multiple."""
    count = positions.numel()
    if x.dim() == 0 or count == 0 or x.shape[0] % count:
        return None
    repeat = x.shape[0] // count
    if repeat == 1:
        return positions * SUB_ROWS
    sub = torch.arange(x.shape[0], device=x.device) % repeat
    return positions.repeat_interleave(repeat) * SUB_ROWS + sub


def keyed_dropout(
    module: torch.nn.Module, x: torch.Tensor, layer_id: int, channelwise: bool
) -> torch.Tensor | None:
    """The dropped-out x, or None when the batch layout is unknown (caller falls back)."""
    if not module.training:
        return None
    return dropped_by_sample(module, x, float(module.p), layer_id, channelwise)  # type: ignore[arg-type]


def dropped_by_sample(
    site: torch.nn.Module, x: torch.Tensor, p: float, layer_id: int, channelwise: bool = False
) -> torch.Tensor | None:
    """x with each sample's elements dropped by its keyed mask; None without keys, at
    p = 0, or when the batch layout is unknown. `site` keeps what the probe learnt."""
    keys = current()
    if keys is None or p == 0.0:
        return None
    call = keys.next_call(layer_id)
    note(site, call, x.shape)
    # Where the batch lies in this call's input, as the start-up probe found (layouts.py).
    dim = 0 if channelwise or x.dim() == 0 else batch_dim(site, call)
    moved = x.movedim(dim, 0) if dim else x
    keyed_rows = row_keys(moved, keys.positions.to(x.device))
    if keyed_rows is None:
        return None
    if p >= 1.0:
        return x * 0
    seeds = row_seeds(keys.seed, keyed_rows, layer_id, call)
    if channelwise:
        per_row = x.shape[1] if x.dim() > 1 else 1
        mask = keep_mask(seeds, per_row, p).view(x.shape[0], per_row, *([1] * (x.dim() - 2)))
    else:
        per_row = moved[0].numel()
        mask = keep_mask(seeds, per_row, p).view_as(moved)
    dropped = moved * mask.to(x.dtype) / (1.0 - p)
    return dropped.movedim(0, dim) if dim else dropped


def make_keyed(module: torch.nn.Module, layer_id: int) -> None:
    """Patch one dropout module's forward (the instance only: class, name and state unchanged)."""
    channelwise = isinstance(module, CHANNELWISE)
    original = module.forward

    def forward(self: torch.nn.Module, x: torch.Tensor) -> Any:
        out = keyed_dropout(self, x, layer_id, channelwise)
        return original(x) if out is None else out

    module.forward = types.MethodType(forward, module)  # type: ignore[method-assign]
