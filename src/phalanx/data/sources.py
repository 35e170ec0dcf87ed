"""Where a slice's samples come from: a map-style dataset or a stream.

Both map stream positions (data/slicing.py) to samples, so exactly-once
accounting and resumption work the same for both:

- `MapSource`: a dataset with `len()` and `[i]`; position p is sample
  `order(epoch)[offset]` of a seeded per-epoch permutation.
- `StreamSource`: an `IterableDataset` (or any iterable) read in its own order;
  position p is the p-th sample of the concatenated epochs. Every replica reads
  the same stream and keeps only its slice; a cursor moves forward, the last
  `retain` samples stay in memory for a retried step, and going back (resume,
  a step retried after a long wait) reopens the stream. A stream that can seek
  (`iter_from(offset)`, as `ShardedStream` has) skips to a position without
  reading what lies before it; one that has `set_epoch(epoch)` is told the
  epoch before each pass, as DistributedSampler users expect.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from phalanx.data.slicing import sample_indices
from phalanx.errors import UsageError


class SampleSource(Protocol):
    num_samples: int | None  # None: a stream whose length is learnt by reading it

    def samples(self, start: int, end: int) -> list[Any]: ...

    def indices(self, start: int, end: int) -> list[int] | None: ...


class MapSource:
    """A map-style dataset under seeded per-epoch permutations."""

    def __init__(self, dataset: Any, num_samples: int, seed: int) -> None:
        self.dataset, self.num_samples, self.seed = dataset, num_samples, seed

    def indices(self, start: int, end: int) -> list[int]:
        return sample_indices(start, end, self.seed, self.num_samples)

    def samples(self, start: int, end: int) -> list[Any]:
        return [self.dataset[i] for i in self.indices(start, end)]


class StreamSource:
    """An iterable read in order; positions count samples across epochs."""

    def __init__(self, dataset: Iterable[Any], retain: int = 0) -> None:
        self.dataset = dataset
        self.num_samples = _declared_length(dataset)
        self.retain = retain  # samples kept behind the cursor (a retried step re-reads them)
        self._epoch_starts = [0]  # global position where each epoch seen so far starts
        self._iterator: Iterator[Any] | None = None
        self._epoch = 0
        self._cursor = 0  # global position of the next sample the iterator yields
        self._kept: deque[Any] = deque()  # samples at [cursor - len(kept), cursor)

    def indices(self, start: int, end: int) -> None:
        return None  # a stream has no random access

    def samples(self, start: int, end: int) -> list[Any]:
        if end <= start:
            return []
        if self._iterator is None or start < self._cursor - len(self._kept):
            self._seek(start)
        out: list[Any] = []
        if start < self._cursor:  # a retried step: the start is still kept
            kept_from = self._cursor - len(self._kept)
            out = list(
                itertools.islice(self._kept, start - kept_from, min(end, self._cursor) - kept_from)
            )
        else:
            self._skip(start - self._cursor)
        while self._cursor < end:
            out.append(self._next())
        return out

    # ------------------------------------------------------------ the cursor
    def _epoch_start(self, epoch: int) -> int:
        return epoch * self.num_samples if self.num_samples else self._epoch_starts[epoch]

    def _seek(self, position: int) -> None:
        """Reopen the stream at the start of the epoch holding `position`, then skip to it."""
        if self.num_samples:
            epoch = position // self.num_samples
        else:  # unknown length: the last epoch start learnt at or before `position`
            epoch = max(e for e, s in enumerate(self._epoch_starts) if s <= position)
        self._open(epoch)
        self._skip(position - self._cursor)

    def _open(self, epoch: int) -> None:
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        self._kept.clear()
        self._epoch = epoch
        self._cursor = self._epoch_start(epoch)
        self._iterator = iter(self.dataset)

    def _skip(self, count: int) -> None:
        target = self._cursor + count
        iter_from = getattr(self.dataset, "iter_from", None)
        if callable(iter_from) and self.num_samples and count > self.retain:
            # A seekable stream of known length: jump without reading what lies between.
            epoch, offset = divmod(target, self.num_samples)
            self._open(epoch)
            if offset:
                self._iterator = iter(iter_from(offset))
                self._cursor = target
            return
        while self._cursor < target:
            self._next()

    def _next(self) -> Any:
        assert self._iterator is not None
        try:
            sample = next(self._iterator)
        except StopIteration:
            self._end_epoch()
            try:
                sample = next(self._iterator)
            except StopIteration:
                raise UsageError(
                    "Trainer(dataset=...)", "is an empty stream",
                    "pass an iterable that yields samples on every pass",
                ) from None  # fmt: skip
        self._kept.append(sample)
        if len(self._kept) > self.retain:
            self._kept.popleft()
        self._cursor += 1
        return sample

    def _end_epoch(self) -> None:
        length = self._cursor - self._epoch_start(self._epoch)
        if self.num_samples is not None and length != self.num_samples:
            raise UsageError(
                "Trainer(dataset=...)",
                f"yielded {length} samples in epoch {self._epoch} but len() says "
                f"{self.num_samples}",
                "make __len__ match what one pass yields (or drop __len__)",
            )
        if not self.num_samples and len(self._epoch_starts) == self._epoch + 1:
            self._epoch_starts.append(self._cursor)
        kept = list(self._kept)
        self._open(self._epoch + 1)
        self._kept.extend(kept)


class ShardedStream:
    """A stream made of shards of known length (files, object-store keys, ...).

    `open_shard(shard)` returns an iterator over one shard's samples. Knowing
    the lengths lets a replica (or a resumed run) start at any position by
    opening the right shard and skipping inside it only, so no replica reads
    the shards before its slice.
    """

    def __init__(
        self,
        shards: Sequence[Any],
        lengths: Sequence[int],
        open_shard: Callable[[Any], Iterable[Any]],
    ) -> None:
        if len(shards) != len(lengths) or not shards:
            raise UsageError(
                "ShardedStream(shards, lengths)", "need one length per shard, at least one shard",
                "pass lengths=[samples in shard 0, samples in shard 1, ...]",
            )  # fmt: skip
        if any(int(n) < 0 for n in lengths):
            raise UsageError("ShardedStream(lengths)", "has a negative length", "count samples")
        self.shards, self.lengths, self.open_shard = (
            list(shards),
            [int(n) for n in lengths],
            open_shard,
        )

    def __len__(self) -> int:
        return sum(self.lengths)

    def __iter__(self) -> Iterator[Any]:
        return self.iter_from(0)

    def iter_from(self, offset: int) -> Iterator[Any]:
        for shard, length in zip(self.shards, self.lengths, strict=True):
            if offset >= length:
                offset -= length
                continue
            yield from itertools.islice(iter(self.open_shard(shard)), offset, None)
            offset = 0


def _declared_length(dataset: Any) -> int | None:
    try:
        length = len(dataset)
    except TypeError:
        return None
    return int(length) if length > 0 else None
