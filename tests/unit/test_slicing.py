from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from phalanx.data.slicing import (
    epoch_permutation,
    microbatches,
    participant_ranges,
    position_to_sample,
    sample_indices,
)


@given(
    st.integers(1, 50),
    st.integers(1, 300),
    st.lists(st.integers(1, 40), min_size=1, max_size=6),
    st.integers(0, 3),
)
def test_steps_tile_the_stream_and_every_epoch_sample_once(num_samples, steps, shares, seed):
    global_batch = sum(shares)
    seen: Counter = Counter()
    for step in range(steps):
        for start, end in participant_ranges(step, global_batch, shares):
            for index in sample_indices(start, end, seed, num_samples):
                seen[index] += 1
    full_epochs, rest = divmod(steps * global_batch, num_samples)
    # every sample of a completed epoch once per epoch; the partial epoch adds at most one more
    assert all(full_epochs <= count <= full_epochs + 1 for count in seen.values())
    assert sum(seen.values()) == steps * global_batch
    assert sum(1 for c in seen.values() if c == full_epochs + 1) == rest


@given(st.integers(1, 40), st.integers(0, 200), st.integers(0, 5))
def test_position_and_range_agree(num_samples, position, seed):
    epoch, index = position_to_sample(position, seed, num_samples)
    assert sample_indices(position, position + 1, seed, num_samples) == [index]
    assert epoch == position // num_samples


def test_epochs_differ_and_are_permutations():
    first, second = epoch_permutation(7, 0, 100), epoch_permutation(7, 1, 100)
    assert sorted(first) == sorted(second) == list(range(100))
    assert first != second


def test_the_split_does_not_change_which_samples_a_step_uses():
    whole = sample_indices(*participant_ranges(3, 64, [64])[0], 0, 1000)
    parts = [sample_indices(s, e, 0, 1000) for s, e in participant_ranges(3, 64, [30, 20, 9, 5])]
    assert [i for part in parts for i in part] == whole


def test_microbatches_cover_slice_in_order():
    assert microbatches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert microbatches([1, 2, 3], None) == [[1, 2, 3]]
    assert microbatches([], 4) == []
