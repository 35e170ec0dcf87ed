"""Worker processes that read and collate micro-batches ahead of the chip.

They are forked once, before the replica joins the fleet (no gloo or torchft
threads exist yet, so the children inherit no half-held locks), like a
DataLoader's workers: the dataset and `collate_fn` are inherited, not
pickled, so lambdas and open files work. A stream (data/sources.py) has one
reader: its cursor lives in that child alone. Each child dies with its parent
(PR_SET_PDEATHSIG): a SIGKILLed replica leaves no orphans that would hold its
memory. SIGINT and SIGTERM to the replica's process group are the replica's to
act on: its readers ignore them and go on serving its last reads. A child
seeds torch from the micro-batch's stream position before reading it, as the
main process does, so augmentations that draw from torch's generator give the
same samples whichever process reads them.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import torch

# Registers torch reductions: tensors cross processes through shared memory.
import torch.multiprocessing

from phalanx.data.sources import SampleSource

_SOURCE: Any = None
_COLLATE: Callable[[list[Any]], Any] | None = None
_PR_SET_PDEATHSIG = 1


def fetch_seed(seed: int, position: int) -> int:
    """The torch seed under which the samples at `position` are read (not the forward's)."""
    return (seed * 1_000_003 + position) * 2 + 1


def read_chunk(source: SampleSource, collate_fn: Callable[[list[Any]], Any], seed: int,
               start: int, end: int) -> Any:  # fmt: skip
    """The collated samples at stream positions [start, end)."""
    torch.manual_seed(fetch_seed(seed, start))
    return collate_fn(source.samples(start, end))


class LoaderWorkers:
    """A pool of `count` forked readers of one source."""

    def __init__(
        self, source: SampleSource, collate_fn: Callable[[list[Any]], Any], count: int
    ) -> None:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self._pool = ProcessPoolExecutor(
            max_workers=count,
            mp_context=multiprocessing.get_context(method),
            initializer=_start_child,
            initargs=(source, collate_fn, os.getpid()),
        )
        # Fork every child now, from this (the main) thread: later forks would copy
        # the fleet's threads' locks, and PDEATHSIG follows the forking thread.
        for future in [self._pool.submit(os.getpid) for _ in range(count)]:
            future.result()

    def submit(self, seed: int, start: int, end: int) -> Future[Any]:
        return self._pool.submit(_read_in_child, seed, start, end)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _start_child(source: SampleSource, collate_fn: Callable[[list[Any]], Any], parent: int) -> None:
    global _SOURCE, _COLLATE
    _SOURCE, _COLLATE = source, collate_fn
    torch.set_num_threads(1)  # the chip's threads belong to the replica, not its readers
    # Ctrl-C and SIGTERM are the parent's to handle: `phalanx run` and Slurm send a
    # pre-emption's SIGTERM to the replica's whole process group, and a reader that
    # died of it broke the replica's next read, so it crashed instead of checkpointing.
    # The parent closes its readers when it leaves, and PDEATHSIG covers a killed one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(0)


def _read_in_child(seed: int, start: int, end: int) -> Any:
    assert _COLLATE is not None
    return read_chunk(_SOURCE, _COLLATE, seed, start, end)
