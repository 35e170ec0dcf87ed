"""Collated micro-batches of a slice, read ahead while the chip computes.

The step engine asks for stream positions [start, end) (its slice); the feed
returns them as micro-batches, collated by the user's `collate_fn`. With
`loader_workers=0` it reads in this process when asked, as a DataLoader with
`num_workers=0` does. With workers, reading happens in forked processes
(data/loader_workers.py), and as soon as a slice is handed out the feed
starts reading the slices the replica will most likely get next: the same
share one global batch later, and as many batches ahead as there are workers
(each worker reads a whole slice, so N workers keep up with reading that
costs up to N times the compute). Shares change rarely, so the guess is
usually right; when it is wrong (a new quorum, a re-balance, a retried step)
the guesses are dropped and the slice is read at once. Which samples a step uses
never depends on the guess, only when they are read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import default_collate

from phalanx.data.loader_workers import LoaderWorkers, read_chunk
from phalanx.data.sources import SampleSource, StreamSource

Collate = Callable[[list[Any]], Any]


@dataclass(frozen=True)
class MicroBatch:
    position: int  # stream position of its first sample (keys the randomness, exact/)
    count: int
    batch: Any  # collated, on the host (pinned when the chip can use that)


class BatchFeed:
    def __init__(
        self,
        source: SampleSource,
        seed: int,
        max_microbatch: int | None,
        collate_fn: Collate | None = None,
        loader_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.source = source
        self.seed = seed
        self.max_microbatch = max_microbatch
        self.collate_fn = collate_fn or default_collate
        # A stream has one cursor: one reader process keeps it.
        self.loader_workers = (
            min(loader_workers, 1) if isinstance(source, StreamSource) else loader_workers
        )
        self.pin_memory = pin_memory
        self._workers: LoaderWorkers | None = None
        # Slices being read ahead, in step order: ((start, end), their micro-batches' futures).
        self._ahead: deque[tuple[tuple[int, int], list[Any]]] = deque()
        self.read_ahead_hits = 0
        self.read_ahead_misses = 0

    @property
    def num_samples(self) -> int | None:
        return self.source.num_samples

    def start(self) -> None:
        """Fork the readers (call before the replica starts any threads of its own)."""
        if self.loader_workers and self._workers is None:
            self._workers = LoaderWorkers(self.source, self.collate_fn, self.loader_workers)

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
            self._workers = None
        self._ahead.clear()

    def chunks(self, start: int, end: int) -> list[tuple[int, int]]:
        size = self.max_microbatch or max(end - start, 1)
        return [(p, min(p + size, end)) for p in range(start, end, size)]

    def take(self, start: int, end: int) -> list[MicroBatch]:
        """This replica's slice of the step: read ahead if that was guessed.

        Wrong guesses are dropped here: their reads would only delay this one.
        """
        if self._ahead and self._ahead[0][0] == (start, end):
            self.read_ahead_hits += 1
            return self._collect(self._ahead.popleft()[1])
        self._drop_guesses()
        return self.read_now(start, end)

    def read_now(self, start: int, end: int, whole: bool = False) -> list[MicroBatch]:
        """Positions [start, end) now (a peer's slice to check, a probe); the guesses stay.

        `whole`: one batch of all of them, whatever the micro-batch size.
        """
        return self._collect(self._submit(start, end, whole))

    def read_ahead(self, start: int, end: int, stride: int) -> None:
        """Keep the workers reading [start, end) and the slices `stride` apart after it,
        one per worker (nothing without workers)."""
        if self._workers is None or end <= start:
            return
        wanted = [(start + k * stride, end + k * stride) for k in range(self.loader_workers)]
        if [key for key, _ in self._ahead] != wanted[: len(self._ahead)]:
            self._drop_guesses()
        for key in wanted[len(self._ahead) :]:
            self._ahead.append((key, self._submit(*key)))

    def _drop_guesses(self) -> None:
        while self._ahead:
            self.read_ahead_misses += 1
            for _, _, future in self._ahead.popleft()[1]:
                future.cancel()  # a read already running finishes and is thrown away

    def _collect(self, pending: list[tuple[int, int, Future[Any] | None]]) -> list[MicroBatch]:
        return [
            MicroBatch(s, e - s, self._host(future.result() if future else None, s, e))
            for s, e, future in pending
        ]

    def _submit(
        self, start: int, end: int, whole: bool = False
    ) -> list[tuple[int, int, Future[Any] | None]]:
        chunks = [(start, end)] if whole else self.chunks(start, end)
        if self._workers is None:  # read when used, in this process
            return [(s, e, None) for s, e in chunks]
        return [(s, e, self._workers.submit(self.seed, s, e)) for s, e in chunks]

    def _host(self, batch: Any, start: int, end: int) -> Any:
        if batch is None:
            batch = read_chunk(self.source, self.collate_fn, self.seed, start, end)
        return _pinned(batch) if self.pin_memory else batch


def _pinned(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    if isinstance(batch, dict):
        return {k: _pinned(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_pinned(v) for v in batch)
    return batch
