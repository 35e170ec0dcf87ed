"""Dropout that is not a module: `F.dropout` and attention dropout, keyed by sample too.

Attention dropout lives inside functions, not `nn.Dropout` modules:
`F.scaled_dot_product_attention(..., dropout_p=p)` (Hugging Face's attention,
nanoGPT, `nn.MultiheadAttention(need_weights=False)` as nn.Transformer*
layers call it) and `F.dropout` on the attention weights
(`nn.MultiheadAttention` with its default need_weights=True). Drawn from the
process's random stream, its masks made such models depend on the split
(the start-up probe said so, and the usual advice was attn_pdrop=0).

With exact=True both functions are wrapped in `torch.nn.functional` (where
these callers look them up at call time). Outside a compute loop's keys they
are PyTorch's own. Inside, `F.dropout` draws each sample's mask like a keyed
`nn.Dropout` (one call counter for all its call sites, in the order the forward
makes them, which is the same on every replica), and attention with dropout is
computed by its definition - softmax(q k^T * scale + mask), each sample's
weights dropped by its keyed mask, times v - instead of a fused kernel, whose
random stream cannot be keyed. That costs the memory of the attention weights
(batch x heads x length x length) and the fused kernel's speed, and only while
dropout_p > 0: evaluation and attention without dropout keep the kernel.
Where the batch lies is probed at start like for the modules (exact/layouts.py).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F

from phalanx.exact.keyed_dropout import dropped_by_sample

# Layer ids of the two call sites (modules have ids >= 0: their place in named_modules).
DROPOUT_ID = -1
ATTENTION_ID = -2


class CallSite(torch.nn.Module):
    """Holds what the layout probe learns about one wrapped function's calls."""


DROPOUT_SITE = CallSite()
ATTENTION_SITE = CallSite()
SITES = {"F.dropout": DROPOUT_SITE, "scaled_dot_product_attention": ATTENTION_SITE}


@functools.cache  # once per process
def install() -> None:
    """Wrap F.dropout and F.scaled_dot_product_attention (once per process)."""
    dropout = F.dropout
    attention = F.scaled_dot_product_attention

    def keyed_dropout(
        input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
    ) -> torch.Tensor:
        dropped = dropped_by_sample(DROPOUT_SITE, input, p, DROPOUT_ID) if training else None
        if dropped is None:
            return dropout(input, p, training, inplace)
        return input.copy_(dropped) if inplace else dropped

    def keyed_attention(
        query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        try:
            out = _by_definition(query, key, value, *args, **kwargs)
        except (TypeError, RuntimeError):  # an argument or a layout (nested tensors) the
            out = None  # definition lacks: the kernel, whose dropout the start-up probe names
        return attention(query, key, value, *args, **kwargs) if out is None else out

    F.dropout = keyed_dropout  # type: ignore[assignment]
    F.scaled_dot_product_attention = keyed_attention  # type: ignore[assignment]


def _by_definition(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor | None:
    """Attention with keyed dropout on its weights; None: no dropout or no keys (the kernel)."""
    if dropout_p == 0.0 or query.dim() < 3:
        return None
    from phalanx.exact.keys import current

    if current() is None:
        return None
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        groups = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(groups, dim=-3)
        value = value.repeat_interleave(groups, dim=-3)
    length, source = query.shape[-2], key.shape[-2]
    scores = query @ key.transpose(-2, -1) * (scale or 1.0 / math.sqrt(query.shape[-1]))
    if is_causal:
        causal = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    weights = torch.softmax(scores, dim=-1)
    dropped = dropped_by_sample(ATTENTION_SITE, weights, dropout_p, ATTENTION_ID)
    if dropped is None:
        return None
    return dropped.to(value.dtype) @ value
