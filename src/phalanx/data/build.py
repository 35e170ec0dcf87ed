"""The feed a Trainer reads from, built and checked from what the user passed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import IterableDataset

from phalanx.data.feed import BatchFeed
from phalanx.data.sources import MapSource, SampleSource, StreamSource
from phalanx.errors import UsageError


def source_of(dataset: Any, seed: int, global_batch_size: int) -> SampleSource:
    """A map-style dataset (len + [i]) or a stream (an IterableDataset or any iterable)."""
    if isinstance(dataset, IterableDataset) or (
        not hasattr(dataset, "__getitem__") and hasattr(dataset, "__iter__")
    ):
        # Keep one global batch behind the cursor: a retried step re-reads its slice.
        return StreamSource(dataset, retain=global_batch_size)
    try:
        size = len(dataset)
        dataset[0]
    except TypeError:
        raise UsageError(
            "Trainer(dataset=...)",
            "is neither a map-style dataset (len() and [i]) nor an iterable",
            "pass a torch.utils.data.Dataset, an IterableDataset, or any object with "
            "__len__ and __getitem__",
        ) from None
    except IndexError:
        size = 0
    if size == 0:
        raise UsageError("Trainer(dataset=...)", "is empty", "pass a dataset with samples")
    return MapSource(dataset, size, seed)


def make_feed(
    dataset: Any,
    seed: int,
    global_batch_size: int,
    max_microbatch: int | None,
    collate_fn: Callable[[list[Any]], Any] | None,
    loader_workers: int,
    pin_memory: bool | None,
    device: torch.device,
) -> BatchFeed:
    if (
        isinstance(loader_workers, bool)
        or not isinstance(loader_workers, int)
        or loader_workers < 0
    ):
        raise UsageError(
            "Trainer(loader_workers=...)", "must be an integer >= 0",
            "pass 0 (read in the training process) or the number of reader processes",
            loader_workers,
        )  # fmt: skip
    if collate_fn is not None and not callable(collate_fn):
        raise UsageError(
            "Trainer(collate_fn=...)", "is not callable",
            "pass a function from a list of samples to a batch", collate_fn,
        )  # fmt: skip
    # Pinned host memory speeds the copy to an accelerator; a CPU chip has no use for it.
    pin = device.type != "cpu" if pin_memory is None else bool(pin_memory) and device.type != "cpu"
    return BatchFeed(
        source_of(dataset, seed, global_batch_size), seed, max_microbatch, collate_fn,
        loader_workers, pin,
    )  # fmt: skip
