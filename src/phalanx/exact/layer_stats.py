"""The collectives some layers need inside forward and backward, in one agreed order.

A BatchNorm over the global batch (exact/global_batchnorm.py) sums small
per-channel tensors across the fleet in its forward and its backward. Every
participant must issue the same collectives in the same order, including
one that computes nothing this step: it joins with zeros (`phantom`), in the
order its last computation recorded (or a dry run on two samples, if it has
never computed). The guard's recomputation of a vetoed slice (`replay`)
issues no collective at all: it reuses the sums the last attempt reduced,
which every participant holds identically.

Modes: `live` (reduce through the fleet, record), `replay` (reuse the
record), `trace` (local sums only, note the order: the dry run). Outside
them (a user calling the model, the start-up probes) nothing is reduced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch


@dataclass
class _Entry:
    layer: int
    phase: str  # forward | backward
    numel: int
    dtype: torch.dtype
    device: torch.device


@dataclass
class LayerStatsSync:
    allreduce: Callable[[torch.Tensor], None]  # sums in place across the participants
    dry_run: Callable[[], None] | None = None  # one small forward/backward, in trace mode
    mode: str | None = None
    recording: list[torch.Tensor] = field(default_factory=list)
    trace: list[_Entry] = field(default_factory=list)
    _cursor: int = 0

    @property
    def active(self) -> bool:
        return self.mode is not None

    @property
    def updates_running_stats(self) -> bool:
        return self.mode == "live"

    def reduce(self, tensor: torch.Tensor, layer: int, phase: str) -> torch.Tensor:
        if self.mode == "replay":
            if self._cursor >= len(self.recording):
                raise RuntimeError("a recomputed slice issued more layer collectives than recorded")
            recorded = self.recording[self._cursor]
            self._cursor += 1
            return recorded
        self.trace.append(_Entry(layer, phase, tensor.numel(), tensor.dtype, tensor.device))
        if self.mode == "live":
            self.allreduce(tensor)
            self.recording.append(tensor.detach().clone())
        return tensor

    @contextmanager
    def _mode(self, mode: str) -> Iterator[None]:
        previous, self.mode = self.mode, mode
        try:
            yield
        finally:
            self.mode = previous

    @contextmanager
    def live(self) -> Iterator[None]:
        self.recording = []
        previous_trace, self.trace = self.trace, []
        try:
            with self._mode("live"):
                yield
        except BaseException:
            self.trace = previous_trace  # a pass cut short is no order to follow
            raise

    @contextmanager
    def replay(self) -> Iterator[None]:
        self._cursor = 0
        with self._mode("replay"):
            yield

    @contextmanager
    def phantom(self) -> Iterator[None]:
        """A participant without samples: the same collectives, with zeros."""
        if not self.trace and self.dry_run is not None:
            with self._mode("trace"):
                self.dry_run()
        yield
        entries, self.recording = list(self.trace), []
        for entry in entries:
            zeros = torch.zeros(entry.numel, dtype=entry.dtype, device=entry.device)
            self.allreduce(zeros)
            self.recording.append(zeros)
