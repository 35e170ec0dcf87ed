"""Streams as a source of slices: positions are the stream's order, across epochs and seeks."""

import pytest
import torch
from torch.utils.data import IterableDataset

from phalanx.data import ShardedStream
from phalanx.data.build import source_of
from phalanx.data.sources import MapSource, StreamSource
from phalanx.errors import UsageError


class Counting(IterableDataset):
    """0..n-1 per pass (plus 1000 * epoch when told the epoch); counts what it yields."""

    def __init__(self, n: int, with_len: bool = False) -> None:
        self.n, self.with_len, self.epoch, self.yielded, self.passes = n, with_len, 0, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.passes += 1
        for i in range(self.n):
            self.yielded += 1
            yield 1000 * self.epoch + i

    def __len__(self) -> int:
        if not self.with_len:
            raise TypeError("no length")
        return self.n


@pytest.mark.parametrize("with_len", [False, True])
def test_positions_run_through_epochs_in_the_stream_order(with_len):
    source = StreamSource(Counting(7, with_len), retain=5)
    got = [x for start in range(0, 21, 3) for x in source.samples(start, start + 3)]
    assert got == [e * 1000 + i for e in range(3) for i in range(7)]


def test_a_retried_slice_is_served_from_memory_and_an_older_one_reopens_the_stream():
    stream = Counting(10)
    source = StreamSource(stream, retain=4)
    assert source.samples(0, 6) == [0, 1, 2, 3, 4, 5]
    assert source.samples(3, 5) == [3, 4]  # kept: no new pass
    assert stream.passes == 1
    assert source.samples(0, 2) == [0, 1]  # behind what is kept: read again
    assert stream.passes == 2


def test_other_replicas_slices_are_skipped_and_a_resume_lands_on_the_same_sample():
    first = StreamSource(Counting(9), retain=3)
    assert first.samples(4, 6) == [4, 5]
    assert first.samples(13, 15) == [1004, 1005]  # next epoch
    resumed = StreamSource(Counting(9), retain=3)  # a new process, e.g. --resume
    assert resumed.samples(13, 15) == [1004, 1005]


def test_a_sharded_stream_opens_only_the_shard_that_holds_the_position():
    opened = []

    def open_shard(name):
        opened.append(name)
        return iter([f"{name}{i}" for i in range(4)])

    stream = ShardedStream(["a", "b", "c"], [4, 4, 4], open_shard)
    source = source_of(stream, seed=0, global_batch_size=4)
    assert isinstance(source, StreamSource) and source.num_samples == 12
    assert source.samples(9, 11) == ["c1", "c2"]
    assert opened == ["c"]  # no shard before it was read
    assert source.samples(14, 15) == ["a2"]  # the next epoch starts at shard a
    assert list(stream) == [f"{s}{i}" for s in "abc" for i in range(4)]


def test_a_stream_whose_pass_disagrees_with_its_len_is_named():
    source = StreamSource(Counting(5, with_len=True), retain=2)
    source.num_samples = 6  # what a wrong __len__ would say
    with pytest.raises(UsageError, match="yielded 5 samples in epoch 0 but len"):
        source.samples(0, 8)


def test_an_empty_stream_is_an_error_not_a_hang():
    with pytest.raises(UsageError, match="empty stream"):
        StreamSource(Counting(0), retain=1).samples(0, 1)


def test_map_style_and_bad_datasets():
    data = torch.utils.data.TensorDataset(torch.arange(10.0))
    assert isinstance(source_of(data, 0, 4), MapSource)
    assert isinstance(source_of(iter(range(5)), 0, 4), StreamSource)  # a generator is a stream
    with pytest.raises(UsageError, match="is empty"):
        source_of([], 0, 4)
    with pytest.raises(UsageError, match="neither a map-style dataset"):
        source_of(42, 0, 4)
    with pytest.raises(UsageError, match="one length per shard"):
        ShardedStream(["a"], [1, 2], lambda s: iter([]))
