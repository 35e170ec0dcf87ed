"""The step's allreduce, bucket by bucket, overlapped with the backward pass.

Every replica launches the buckets in the same order (bucket 0 first): a
bucket is launched as soon as all of its parameters' gradients are complete
and every earlier bucket is launched, so on the last micro-batch the sums of
the first buckets travel while backward still computes the rest (DDP's
overlap). Before a bucket leaves, the replica measures its own part of it
(the guard's slice norm: the allreduce sums in place). The last bucket holds
the control block and leaves only after the replica's verdict is written.

While waiting, each summed bucket's norm is measured as soon as it arrives,
while the later buckets are still in flight: the global gradient norm (for
the guard's reference, the finiteness check and clipping) costs almost
nothing on the critical path.

On an emulated chip a bucket leaves no earlier than the chip would have made
it: `before_launch` (the compute pacer's `pace_so_far`) first sleeps out the emulated
time of the backward so far, as the DDP contender's comm hook does in bench/.
Otherwise the host, which computes the whole backward at once and only then
sleeps out the chip's time, would let the early buckets travel during time the
emulated chip is still computing them.

Overlap is off when a layer issues collectives of its own inside backward
(exact BatchNorm: every replica must issue collectives in one order, and one
without samples never runs backward) and for a step with an injected
gradient fault (the fault must land before the gradient leaves).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from phalanx.runtime.grad_buffer import Bucket, GradBuffer
from phalanx.runtime.grad_buffer import squared_norm as _norm_sq
from phalanx.runtime.sync import Sync, Work


class Reduction:
    """One attempt's collectives on a `GradBuffer`."""

    def __init__(self, buffer: GradBuffer, sync: Sync) -> None:
        self.buffer = buffer
        self.sync = sync
        self._armed = False
        self._launched = 0
        self._works: list[Work] = []
        self.local_norm_sq = 0.0  # this replica's contribution, bucket by bucket
        # Called before a bucket leaves during backward (an emulated chip's pacing).
        self.before_launch: Callable[[], object] | None = None
        self._owner: dict[int, Bucket] = {}
        for bucket in buffer.buckets:
            for param in bucket.params:
                self._owner[id(param)] = bucket
                param.register_post_accumulate_grad_hook(self._ready)

    def release(self) -> None:
        """Drop the attempt's works: a failed group closes its connections only when
        nothing holds it any more (runtime/torchft_access.py: close_failed_group)."""
        self._works = []

    # ---------------------------------------------------------------- launch
    def start(self) -> None:
        """A new attempt: nothing launched, nothing measured."""
        self._armed = False
        self._launched = 0
        self._works = []
        self.local_norm_sq = 0.0

    def arm(self) -> None:
        """From now on (the last micro-batch's backward) launch buckets as they complete."""
        self._armed = True
        for bucket in self.buffer.buckets:
            bucket.ready = 0

    def _ready(self, param: torch.Tensor) -> None:
        if not self._armed:
            return
        self._owner[id(param)].ready += 1
        self._launch_complete()

    def _launch_complete(self) -> None:
        buckets = self.buffer.buckets
        # The last bucket carries the control block: it waits for the verdict.
        while self._launched < len(buckets) - 1:
            bucket = buckets[self._launched]
            if bucket.ready < len(bucket.params):
                return
            self._launch(bucket)

    def _launch(self, bucket: Bucket) -> None:
        if self.before_launch is not None:
            self.before_launch()
        self.local_norm_sq += _norm_sq(bucket.grads)
        self._works.append(self.sync.allreduce(bucket.flat))
        self._launched += 1

    def measure_rest(self) -> float:
        """The replica's own contribution norm, with the buckets not launched yet; disarms."""
        self._armed = False
        rest = sum(_norm_sq(b.grads) for b in self.buffer.buckets[self._launched :])
        return math.sqrt(self.local_norm_sq + rest)

    def launch_rest(self) -> None:
        """Everything not launched yet, in order, then a separate control block if any."""
        for bucket in self.buffer.buckets[self._launched :]:
            self._works.append(self.sync.allreduce(bucket.flat))
        self._launched = len(self.buffer.buckets)
        if self.buffer.control_separate:
            self._works.append(self.sync.allreduce(self.buffer.control))

    # ------------------------------------------------------------------ wait
    def wait(self) -> float:
        """Wait for every sum; return the summed gradient's norm (nan/inf propagate)."""
        total = 0.0
        buckets = self.buffer.buckets
        for number, work in enumerate(self._works):
            work.wait()
            if number < len(buckets):
                total += _norm_sq(buckets[number].grads)
        return math.sqrt(total) if math.isfinite(total) else total
