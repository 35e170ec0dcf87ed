"""One quorum's worth of a step: compute, guard, allreduce, and in-place recompute.

Within one quorum the process group is fixed, so when the summed buffer shows
a veto (a replica's own gradient check failed) or a parameter fingerprint that
differs from the majority, every participant knows who, identically. They
recompute the step at once without those replicas (which then contribute
zeros), in the same quorum: the same samples, exact math, no new quorum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from phalanx.data.slicing import participant_ranges, sample_indices
from phalanx.guard.fingerprint import WIDTH, fingerprint_chunks, majority
from phalanx.runtime.compute import FlatBuffer, accumulate_slice_gradient, gradient_norm

WARMUP_STEPS = 2


@dataclass
class RoundOutcome:
    ok: bool  # the summed buffer may be applied
    flat: FlatBuffer | None = None
    active: list[str] = field(default_factory=list)  # who computed slices
    shares: list[int] = field(default_factory=list)
    reason: str = ""
    diverged_self: bool = False  # this replica's parameters differ from the majority
    tie: bool = False  # two replicas disagree and no majority exists
    own_norm: float = 0.0  # norm of this replica's accepted contribution
    own_share: int = 0
    compute_s: float = 0.0
    allreduce_s: float = 0.0
    guard_s: float = 0.0  # fingerprint + gradient check (ABFT hooks run inside compute)
    detections: list[dict[str, Any]] = field(default_factory=list)


class StepRound:
    """Runs the attempts of one step inside one quorum. See the module docstring."""

    def __init__(self, trainer: Any, name: str, members: list[str], step: int) -> None:
        self.t = trainer
        self.name = name
        self.members = members
        self.step = step
        self.slot = members.index(name)

    def _compute(self, indices: list[int], start: int) -> tuple[float, float]:
        t = self.t
        t.pacer.begin()
        loss = accumulate_slice_gradient(
            t.model,
            t.loss_fn,
            t.dataset,
            indices,
            t.global_batch_size,
            t.max_microbatch,
            t.device,
            rng_seed=t.seed * 1_000_003 + start,
        )
        return loss, t.pacer.end()

    def _local_check(self, share: int, norm: float) -> str | None:
        t = self.t
        if t.abft is not None and t.abft.failures:
            return f"ABFT checksum failed in {t.abft.failures} linear layer output(s)"
        if t.sanity is None:
            return None
        return t.sanity.check(norm, share, t.global_batch_size)

    def run(self, choose_shares: Any, injector: Any, sync: Any) -> RoundOutcome:
        t, name, step = self.t, self.name, self.step
        guard_t0 = time.perf_counter()
        fingerprint = fingerprint_chunks(t.params) if t.fingerprints else None
        outcome_guard_s = time.perf_counter() - guard_t0
        excluded: set[str] = set()
        outcome = RoundOutcome(ok=False, guard_s=outcome_guard_s)
        for _attempt in range(len(self.members) + 1):  # the last pass finds nobody left
            active = [m for m in self.members if m not in excluded]
            if not active:
                outcome.reason = "every participant was excluded"
                return outcome
            shares = choose_shares(active)
            share = dict(zip(active, shares)).get(name, 0)
            indices: list[int] = []
            start = 0
            if share:
                start, end = participant_ranges(step, t.global_batch_size, shares)[
                    active.index(name)
                ]
                indices = sample_indices(start, end, t.seed, t.num_samples)
            if t.abft is not None:
                t.abft.reset()
            if indices:
                loss, compute_s = self._compute(indices, start)
            else:
                loss, compute_s = 0.0, 0.0
                for param in t.params:
                    param.grad = None
            injector.corrupt_gradient(step, t.params)
            guard_t0 = time.perf_counter()
            own_norm = gradient_norm(t.params) if indices and t.sanity is not None else 0.0
            veto = self._local_check(share, own_norm) if indices else None
            outcome.guard_s += time.perf_counter() - guard_t0
            flat = FlatBuffer(t.params, len(self.members), WIDTH if fingerprint else 0)
            # A replica's first steps after (re)start are slow (allocation, first
            # touch): it reports them negative so nobody learns a cost model from them.
            measured_sps = len(indices) / max(compute_s, 1e-9) if indices else 0.0
            warming = t.local_steps < WARMUP_STEPS
            flat.pack(
                loss,
                self.slot,
                bool(veto),
                -measured_sps if warming else measured_sps,
                fingerprint,
                heat=t.thermal.heat if t.thermal is not None else 0.0,
            )
            sync_t0 = time.perf_counter()
            work = sync.allreduce(flat.tensor)
            injector.at("allreduce", step)
            work.wait()
            outcome.allreduce_s += time.perf_counter() - sync_t0
            outcome.compute_s += compute_s
            if sync.errored():
                outcome.reason = "collective failed"
                return outcome
            vetoers = {m for m, v in zip(self.members, flat.vetoes()) if v} - excluded
            diverged: set[str] = set()
            if fingerprint is not None:
                held = {
                    m: fp for m, fp in zip(self.members, flat.fingerprints()) if m not in excluded
                }
                value, odd = majority(held)
                if value is None and len(held) > 1:
                    outcome.tie = True
                    outcome.reason = "parameter fingerprints disagree and no majority exists"
                    outcome.detections.append(
                        {"check": "fingerprint_tie", "replicas": sorted(held)}
                    )
                    return outcome
                diverged = set(odd)
                fingerprint = None  # checked once per round: the parameters do not change
            if veto and share:
                rerun = self._attribution_rerun(indices, start, share)
                outcome.detections.append(
                    {
                        "check": "gradient_veto",
                        "replica": name,
                        "reason": veto,
                        "local_rerun": rerun,
                    }
                )
            for member in sorted(diverged):
                outcome.detections.append({"check": "fingerprint_mismatch", "replica": member})
            if name in diverged:
                outcome.diverged_self = True
            if not vetoers and not diverged:
                outcome.ok = True
                outcome.flat, outcome.active, outcome.shares = flat, active, shares
                outcome.own_norm, outcome.own_share = own_norm, share
                return outcome
            excluded |= vetoers | diverged
        outcome.reason = "too many exclusions"
        return outcome

    def _attribution_rerun(self, indices: list[int], start: int, share: int) -> str:
        """Recompute this replica's own slice: 'bad' again means a persistent fault here."""
        t = self.t
        if t.abft is not None:
            t.abft.reset()
        self._compute(indices, start)
        verdict = "bad" if self._local_check(share, gradient_norm(t.params)) else "ok"
        for param in t.params:
            param.grad = None
        return verdict
