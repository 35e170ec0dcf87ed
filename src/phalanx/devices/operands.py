"""Inputs whose products are exact, so any changed bit in a result is visible.

Matmuls of small integers are computed exactly in every float format as long
as every partial sum is an integer the format can hold: |a|,|b| <= 8 with
k = 64 gives sums below 2^12 for float32/float64 (and TF32); |a|,|b| <= 2
with k = 16 stays below 2^7 for bfloat16 and float16. A float64 CPU product
cast to the dtype is then the one right answer, and `out != ref` counts
every flipped bit (except the sign of an exact zero).
"""

from __future__ import annotations

import functools

import torch

SEEDS_PER_DTYPE = 4  # distinct inputs cycled through the repeats

DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
# relative error allowed for random-input matmul/conv against float64; float32
# allows for TF32 (cuDNN uses it for convolutions by default)
TOLERANCE = {"float64": 1e-10, "float32": 5e-3, "float16": 1e-2, "bfloat16": 4e-2}


def exact_shape(dtype: str, side: int) -> tuple[int, int, int]:
    k = 16 if dtype in ("float16", "bfloat16") else 64
    return side, k, side


@functools.lru_cache(maxsize=64)
def exact_operands(
    dtype: str, side: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, b, a@b) on the host CPU in `dtype`, the product computed in float64."""
    m, k, n = exact_shape(dtype, side)
    bound = 2 if k == 16 else 8
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(-bound, bound + 1, (m, k), generator=g, dtype=torch.float64)
    b = torch.randint(-bound, bound + 1, (k, n), generator=g, dtype=torch.float64)
    ref = a @ b
    target = DTYPES[dtype]
    return a.to(target), b.to(target), ref.to(target)


@functools.lru_cache(maxsize=32)
def random_operands(dtype: str, seed: int) -> dict[str, torch.Tensor]:
    """Random-normal matmul and conv inputs with their float64 results."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(256, 256, generator=g, dtype=torch.float64)
    b = torch.randn(256, 256, generator=g, dtype=torch.float64)
    x = torch.randn(4, 16, 32, 32, generator=g, dtype=torch.float64)
    w = torch.randn(32, 16, 3, 3, generator=g, dtype=torch.float64)
    target = DTYPES[dtype]
    # round the inputs to the dtype first, so the reference sees what the device sees
    a, b, x, w = (t.to(target) for t in (a, b, x, w))
    return {
        "a": a,
        "b": b,
        "matmul_ref": a.double() @ b.double(),
        "x": x,
        "w": w,
        "conv_ref": torch.nn.functional.conv2d(x.double(), w.double(), padding=1),
    }


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    diff = (out.double().cpu() - ref).abs().max().item()
    scale = ref.abs().max().item() or 1.0
    return diff / scale if diff == diff else float("inf")  # NaN counts as infinitely wrong
