"""Keyed dropout under activation checkpointing: a recomputed forward draws the same masks.

A keyed dropout (exact/keyed_dropout.py) tells a layer's calls apart by a
counter per micro-batch (`SampleKeys.calls`): a weight-tied layer's second call
draws another mask than its first. Activation checkpointing (torch.utils.
checkpoint, Hugging Face's `gradient_checkpointing_enable()`) runs a segment's
forward again during backward; the counters have moved on by then, so the
recomputed segment drew other masks than the forward did, and backward
differentiated another network than the loss came from: wrong gradients,
silently (also in one process).

PyTorch keeps its own dropout consistent by saving the random state when the
segment starts (`torch.get_rng_state()`) and restoring it before the recompute
(`torch.set_rng_state(...)`, inside `torch.random.fork_rng`, which restores
the state at its end). The counters ride along: for each state read, a copy
of them and the keys they belong to are kept (while the state lives), and
setting that state puts them back and publishes those keys in the calling
thread, so the recompute counts from where the segment's forward began (also when backward
runs outside the compute loop's keys, in a user's own loop, or on a device's
autograd thread). `fork_rng`'s end sets the state it saved on entry, which
restores what was published there. The reentrant and non-reentrant
checkpoints both work this way; `preserve_rng_state=False` gives up the
masks' consistency for PyTorch's dropout too, and for these.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable

import torch

from phalanx.exact import keys as published_keys

# id of a state tensor torch handed out -> (the keys published then, their call counters).
# A side table, not an attribute: a state the user pickles stays a plain tensor.
_snapshots: dict[int, tuple[published_keys.SampleKeys | None, dict[int, int] | None]] = {}


@functools.cache  # once per process
def install() -> None:
    """Wrap torch's get/set of the CPU random state (once per process)."""
    get_state: Callable[[], torch.Tensor] = torch.get_rng_state
    set_state: Callable[[torch.Tensor], None] = torch.set_rng_state

    def get_rng_state() -> torch.Tensor:
        state = get_state()
        keys = published_keys.current()
        _snapshots[id(state)] = (keys, dict(keys.calls)) if keys is not None else (None, None)
        weakref.finalize(state, _snapshots.pop, id(state), None)
        return state

    def set_rng_state(new_state: torch.Tensor) -> None:
        set_state(new_state)
        snapshot = _snapshots.get(id(new_state))
        if snapshot is None:  # a state made elsewhere (a copy, a file's)
            return
        keys, calls = snapshot
        if keys is not None and calls is not None:
            keys.calls.clear()
            keys.calls.update(calls)
        published_keys.publish(keys)

    for module in (torch, torch.random):
        module.get_rng_state = get_rng_state  # type: ignore[assignment,attr-defined]
        module.set_rng_state = set_rng_state  # type: ignore[assignment,attr-defined]
