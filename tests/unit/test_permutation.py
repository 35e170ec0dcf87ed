"""Epoch orders: a stored permutation when small, a keyed bijection (no table) when large."""

import itertools
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.data import permutation
from phalanx.data.permutation import KeyedBijection, epoch_indices
from phalanx.data.slicing import position_to_sample, sample_indices


@given(st.integers(1, 3000), st.integers(0, 2**40))
@settings(max_examples=60, deadline=None)
def test_the_keyed_order_is_a_permutation_of_every_size(n, key):
    order = KeyedBijection(n, key).apply(range(n))
    assert sorted(order) == list(range(n))


def test_the_keyed_order_depends_on_the_key_and_is_reproducible():
    a, b = KeyedBijection(1000, 1).apply(range(1000)), KeyedBijection(1000, 2).apply(range(1000))
    assert a != b
    assert a == KeyedBijection(1000, 1).apply(range(1000))
    # Shuffled, not a shift: few elements keep their place or their neighbour.
    assert sum(1 for i, x in enumerate(a) if x == i) < 20
    assert sum(1 for x, y in itertools.pairwise(a) if y == x + 1) < 20


def test_a_dataset_of_billions_costs_memory_in_the_slice_not_the_dataset():
    n = 2_500_000_000  # the gpt_1b profile's samples
    tracemalloc.start()
    slice_ = epoch_indices(3, 1, n, range(n - 5000, n))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(set(slice_)) == 5000 and all(0 <= i < n for i in slice_)
    assert peak < 5_000_000  # a table would be ~20 GB; a tuple of ints far more
    assert slice_ == epoch_indices(3, 1, n, range(n - 5000, n))
    assert slice_ != epoch_indices(3, 2, n, range(n - 5000, n))


def test_large_datasets_tile_epochs_exactly_once(monkeypatch):
    # Force the computed order onto a small dataset to check it end to end.
    monkeypatch.setattr(permutation, "TABLE_MAX_SAMPLES", 10)
    n, batch = 97, 13
    seen = [position_to_sample(p, 5, n) for p in range(3 * n)]
    for epoch in range(3):
        assert sorted(i for e, i in seen if e == epoch) == list(range(n))
    ranged = [
        i for s in range(0, 3 * n, batch) for i in sample_indices(s, min(s + batch, 3 * n), 5, n)
    ]
    assert ranged == [i for _, i in seen]


def test_the_stored_order_of_small_datasets_is_unchanged():
    import torch

    generator = torch.Generator()
    generator.manual_seed((7 * 1_000_003 + 2 * 7_919) % (2**63 - 1))
    expected = torch.randperm(50, generator=generator).tolist()
    assert epoch_indices(7, 2, 50, range(50)) == expected  # checkpoints of old runs resume alike


def test_a_position_outside_the_dataset_is_refused():
    with pytest.raises(ValueError):
        KeyedBijection(10, 0).apply([10])
