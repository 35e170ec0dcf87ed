"""Persistent, bucketed gradient storage: every `param.grad` is a view into a bucket.

Allocated once for the model (and again only when the step's control block
must grow, i.e. when more participants than ever before join), never per
attempt. Autograd accumulates into the views in place, so a replica's
weighted gradient is already laid out for the collective: no pack, no
unpack, no copy. Each bucket is summed by one allreduce, in bucket order on
every replica (DDP's `gradient_as_bucket_view`, with phalanx's weighting).

The last bucket also carries the step's control block (veto, throughput,
fingerprint, ... see runtime/control.py) when the gradients are float32 or
float64: one collective fewer per step. With half-precision gradients the
control block is a float64 tensor of its own, so that throughputs and
fingerprint chunks stay exact (65535 is inf in float16).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from phalanx.groups.sharding import grad_view, local_numel, local_tensor

# Gradients per bucket: large enough that per-collective latency is amortised,
# small enough that the first buckets' sums overlap the rest of the backward.
BUCKET_BYTES = 25 * 2**20
_CONTROL_DTYPES = (torch.float32, torch.float64)


@dataclass
class Bucket:
    flat: torch.Tensor  # what is allreduced: the gradients, then (last bucket) control
    params: list[torch.nn.Parameter]
    offsets: list[int]
    grad_numel: int
    ready: int = 0  # params of this bucket whose gradient is complete (overlap hooks)
    launched: bool = False

    @property
    def grads(self) -> torch.Tensor:
        return self.flat[: self.grad_numel]


@dataclass
class GradBuffer:
    """The model's gradients as buckets, plus the control block of the step."""

    params: list[torch.nn.Parameter]
    control_numel: int
    bucket_bytes: int = BUCKET_BYTES
    buckets: list[Bucket] = field(init=False)
    control: torch.Tensor = field(init=False)  # a view (last bucket) or a tensor of its own
    control_separate: bool = field(init=False)

    def __post_init__(self) -> None:
        self.buckets = _plan_buckets(self.params, self.bucket_bytes)
        self._allocate()

    def _allocate(self) -> None:
        last = self.buckets[-1] if self.buckets else None
        dtype = last.flat.dtype if last is not None else torch.float64
        self.control_separate = last is None or dtype not in _CONTROL_DTYPES
        device = last.flat.device if last is not None else torch.device("cpu")
        if self.control_separate or last is None:
            self.control = torch.zeros(self.control_numel, dtype=torch.float64, device=device)
        else:
            flat = torch.zeros(last.grad_numel + self.control_numel, dtype=dtype, device=device)
            last.flat = flat
            self.control = flat[last.grad_numel :]
        self.attach()

    def ensure_control(self, control_numel: int) -> None:
        """Size the control block for this quorum exactly (gradients are zeroed after).

        Exactly, never only growing: the last bucket, control included, is one
        collective, and every participant must send the same number of bytes. A
        replica that once saw four members and one that started in a quorum of three
        would otherwise send different sizes: gloo aborts the process on the
        mismatch, and the restarted replica crashed the same way on every launch.
        """
        if control_numel == self.control_numel:
            return
        self.control_numel = control_numel
        self._allocate()

    def renew(self) -> None:
        """Fresh storage for every bucket (and the control block); `param.grad` follow.

        After a collective was abandoned rather than failed (a frozen peer,
        runtime/freeze_watch.py), gloo may still complete it in the background
        when that peer wakes, writing its sum into the tensors it was given: the
        old storage is left to it, and freed when it ends. A new membership
        follows such an attempt, so this is still one allocation per membership.
        """
        for bucket in self.buckets:
            bucket.flat = torch.zeros_like(bucket.flat)
        if self.control_separate or not self.buckets:
            self.control = torch.zeros_like(self.control)
        else:
            last = self.buckets[-1]
            self.control = last.flat[last.grad_numel :]
        self.attach()

    def attach(self) -> None:
        """Point every `param.grad` at its view (again, if user code replaced or cleared it)."""
        for bucket in self.buckets:
            for param, offset in zip(bucket.params, bucket.offsets):
                storage = bucket.flat[offset : offset + local_numel(param)]
                grad = param.grad
                if grad is None or local_tensor(grad).data_ptr() != storage.data_ptr():
                    param.grad = grad_view(param, storage)

    def zero_(self) -> None:
        for bucket in self.buckets:
            bucket.flat.zero_()
            bucket.ready = 0
            bucket.launched = False
        if self.control_separate:
            self.control.zero_()

    def zero_grads(self) -> None:
        """Clear the gradients only (the control block is being filled)."""
        for bucket in self.buckets:
            bucket.grads.zero_()

    def norm_sq(self) -> float:
        """Squared L2 norm of all gradients, one fused reduction per bucket (inf/nan propagate)."""
        return sum(squared_norm(bucket.grads) for bucket in self.buckets)

    def collectives(self) -> list[torch.Tensor]:
        """What to allreduce, in the order every replica issues it."""
        tensors = [bucket.flat for bucket in self.buckets]
        if self.control_separate:
            tensors.append(self.control)
        return tensors


def squared_norm(tensor: torch.Tensor) -> float:
    """Squared L2 norm in the tensor's own precision (half precision in float32).

    A float64 copy of a 100M-parameter gradient would cost 0.75 s on one CPU
    core; the native norm costs 0.1 s and is precise enough for a guard (its
    comparisons allow 1e-3) and for clipping (torch clips in this precision).
    """
    if tensor.numel() == 0:
        return 0.0
    dtype = torch.float32 if tensor.element_size() < 4 else None
    return float(torch.linalg.vector_norm(tensor, dtype=dtype)) ** 2


def _plan_buckets(params: list[torch.nn.Parameter], bucket_bytes: int) -> list[Bucket]:
    """Buckets in reverse parameter order (the order backward completes them), one dtype each."""
    buckets: list[Bucket] = []
    current: list[torch.nn.Parameter] = []
    size_bytes = 0

    def close() -> None:
        if not current:
            return
        offsets, offset = [], 0
        for param in current:
            offsets.append(offset)
            offset += local_numel(param)
        flat = torch.zeros(offset, dtype=current[0].dtype, device=current[0].device)
        buckets.append(Bucket(flat, list(current), offsets, offset))

    for param in reversed(params):
        same_kind = not current or (
            param.dtype == current[0].dtype and param.device == current[0].device
        )
        if current and (not same_kind or size_bytes >= bucket_bytes):
            close()
            current, size_bytes = [], 0
        current.append(param)
        size_bytes += local_numel(param) * param.element_size()
    close()
    return buckets
