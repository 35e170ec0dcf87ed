"""Which dimension of a dropout's input is the batch: learnt at start, not guessed per call.

A keyed dropout (exact/keyed_dropout.py) needs each element's sample. The
first dimension is the batch in most models, or a whole multiple of it (heads
folded in, batch-major); but a sequence-first model (`nn.LSTM`,
`nn.TransformerEncoderLayer` and `nn.MultiheadAttention` as PyTorch builds
them by default, `batch_first=False`) gives its dropouts (length, batch, ...).
Guessed from the shape alone, a length that is a multiple of the slice's
sample count passed for a folded batch: the masks then followed the split,
not the sample, and nothing said so.

So before the first step each keyed call is watched in two probe forwards
of different sample counts (2 and 3: the first samples of the stream, no
gradient, buffers restored): the dimension whose size grows in proportion to the
count is the batch. The first dimension wins when it scales (batch-major,
also with a sequence length that varies between the probes); otherwise the
one other dimension that scales is used (the mask is drawn with that
dimension moved to the front). A call where no dimension, or more than one
besides the first, scales is named in a warning and keeps the first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

BATCH_DIMS = "_phalanx_batch_dims"  # on a keyed module: call number -> batch dimension
_SEEN = "_phalanx_seen_shapes"  # on a keyed module while a probe records: call -> shape


def batch_dim(module: torch.nn.Module, call: int) -> int:
    return getattr(module, BATCH_DIMS, {}).get(call, 0)


def note(module: torch.nn.Module, call: int, shape: torch.Size) -> None:
    """Record the input shape of a keyed call, while a probe records (else nothing)."""
    seen = getattr(module, _SEEN, None)
    if seen is not None:
        seen.setdefault(call, tuple(shape))


@contextmanager
def _recording(modules: list[torch.nn.Module]) -> Iterator[list[dict[int, tuple[int, ...]]]]:
    shapes: list[dict[int, tuple[int, ...]]] = []
    for module in modules:
        setattr(module, _SEEN, {})
        shapes.append(getattr(module, _SEEN))
    try:
        yield shapes
    finally:
        for module in modules:
            delattr(module, _SEEN)


def scaling_dim(
    small: tuple[int, ...], large: tuple[int, ...], ratio: tuple[int, int]
) -> int | None:
    """The batch dimension of a call seen at `small` and `large` sample counts; None: unclear."""
    count_small, count_large = ratio
    if len(small) != len(large) or not small:
        return None
    scales = [d for d, (a, b) in enumerate(zip(small, large)) if a * count_large == b * count_small]
    if 0 in scales:
        return 0
    return scales[0] if len(scales) == 1 else None


def learn_batch_dims(
    labelled: dict[str, torch.nn.Module],
    forward_of: Callable[[int], None],
    counts: tuple[int, int],
) -> list[str]:
    """Run `forward_of(count)` at both counts; set each keyed call's batch dimension.

    Returns the labels of the layers with a call whose batch dimension is unclear.
    """
    modules = list(labelled.values())
    seen: list[list[dict[int, tuple[int, ...]]]] = []
    for count in counts:
        with _recording(modules) as shapes:
            forward_of(count)
        seen.append(shapes)
    unclear: list[str] = []
    for (label, module), small, large in zip(labelled.items(), seen[0], seen[1]):
        dims: dict[int, int] = {}
        for call in small.keys() & large.keys():
            dim = scaling_dim(small[call], large[call], counts)
            if dim is None:
                if label not in unclear:
                    unclear.append(label)
            elif dim:
                dims[call] = dim
        setattr(module, BATCH_DIMS, dims)
    return unclear
