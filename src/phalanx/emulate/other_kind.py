"""An emulated chip of another kind: its optimizer kernels round differently.

Two vendors' (or a CPU's and a GPU's) kernels apply the same summed gradient
and can end a step with parameters that differ in the last bit. To exercise
that on one CPU, a replica emulated with `kind=NAME` moves, after every
optimizer step, a pseudo-random half of its parameters' elements one unit in
the last place up. Deterministic in (run step, element, kind): replicas of
the same kind stay bit-identical to each other, replicas of different kinds
do not, exactly like real hardware.
"""

from __future__ import annotations

import zlib

import torch

from phalanx.exact.keyed_dropout import mix32

_M32 = 0xFFFFFFFF


@torch.no_grad()
def round_differently(params: list[torch.nn.Parameter], step: int, kind: str) -> None:
    salt = (zlib.crc32(kind.encode()) ^ (step * 2654435761)) & _M32
    for number, param in enumerate(params):
        flat = param.detach().view(-1)
        index = torch.arange(flat.numel(), device=flat.device, dtype=torch.int64)
        chosen = (mix32(index ^ ((salt + number * 40503) & _M32)) & 1).bool()
        up = torch.full_like(flat[chosen], float("inf"))
        flat[chosen] = torch.nextafter(flat[chosen], up)
