"""The integer split and the sync model against brute force and first principles."""

from __future__ import annotations

import heapq

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.plan.cost import makespan_s, split_shares, sync_s
from phalanx.plan.fleet_classes import SyncParams

speeds_st = st.lists(st.floats(0.05, 50.0), min_size=1, max_size=4)


def _greedy_makespan(speeds: list[float], counts: list[int], batch: int) -> float:
    """Reference: hand out samples one by one to the device that would finish it first."""
    heap = [(1.0 / s, s, 0) for s, n in zip(speeds, counts, strict=True) for _ in range(n)]
    heapq.heapify(heap)
    worst = 0.0
    for _ in range(batch):
        t, s, k = heapq.heappop(heap)
        worst = max(worst, t)
        heapq.heappush(heap, ((k + 2) / s, s, k + 1))
    return worst


@settings(max_examples=150, deadline=None)
@given(speeds=speeds_st, data=st.data(), batch=st.integers(1, 300))
def test_makespan_is_the_optimal_integer_split(
    speeds: list[float], data: st.DataObject, batch: int
) -> None:
    counts = data.draw(st.lists(st.integers(0, 5), min_size=len(speeds), max_size=len(speeds)))
    if sum(counts) == 0:
        counts[0] = 1
    t = float(makespan_s(speeds, counts, batch))
    assert np.isclose(t, _greedy_makespan(speeds, counts, batch), rtol=1e-9)


@settings(max_examples=150, deadline=None)
@given(speeds=speeds_st, data=st.data(), batch=st.integers(1, 5000))
def test_split_shares_sums_exactly_and_meets_the_makespan(
    speeds: list[float], data: st.DataObject, batch: int
) -> None:
    counts = np.array(
        data.draw(st.lists(st.integers(0, 40), min_size=len(speeds), max_size=len(speeds)))
    )
    if counts.sum() == 0:
        counts[0] = 1
    t, hi, lo = split_shares(speeds, counts, batch)
    assert int((counts * hi - lo).sum()) == batch
    assert np.all(lo <= counts) and np.all(hi >= 0) and np.all(hi[lo > 0] >= 1)
    busy = np.where(counts > 0, hi / np.array(speeds), 0.0)
    assert busy.max() <= t * (1 + 1e-12)


def test_vectorised_rows_and_empty_rows() -> None:
    counts = np.array([[1, 0], [0, 2], [0, 0]])
    t = makespan_s([2.0, 1.0], counts, 4)
    assert t[0] == 2.0 and t[1] == 2.0 and np.isinf(t[2])


def test_sync_is_free_alone_and_grows_with_the_fleet() -> None:
    sync = SyncParams(latency_s=1e-5, overhead_s=0.004, overlap=0.5)
    y = sync_s(np.array([1, 2, 64, 10_000]), 1e9, 1e9, sync)
    assert y[0] == 0.0
    assert y[1] == np.float64(0.004 + 0.5 * 2.0 + 2e-5)
    assert np.all(np.diff(y) > 0)
