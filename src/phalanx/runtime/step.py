"""One step, top to bottom: quorum -> shares -> slice -> compute -> reduce -> guard -> commit -> apply.

1. **Quorum.** Ask the lighthouse who takes part (a replica that is behind
   heals from a live peer first). The ordered members are the same on every
   replica.
2. **Shares.** Every participant derives the same integer shares from the
   replicated fleet state (speeds learnt from earlier steps).
3. **Slice.** Step s covers stream positions [s*B, (s+1)*B); each participant
   takes its contiguous part.
4. **Compute.** Forward/backward of the slice, each micro-batch's loss
   weighted by its size / B, into the persistent gradient buckets.
5. **Reduce.** One SUM allreduce per bucket. The last bucket also carries the
   control block (runtime/control.py): loss, veto, throughput, heat,
   fingerprint and the guard's evidence, so every participant reads the same.
6. **Guard.** A participant whose slice failed its check (guard/slice_check.py)
   vetoed it; one whose parameter fingerprint is in the minority diverged.
   Either way the attempt is recomputed at once, in the same quorum, without
   them (they contribute zeros): same samples, exact math. While the others
   recompute, the vetoing replica reruns its slice and a peer recomputes it;
   their verdicts ride in the next attempt's control block and decide whether
   the chip or the data is to blame (guard/offences.py counts only the chip).
7. **Commit.** torchft's vote: any error (a dead peer inside the collective, a
   timeout) means the step is retried with a new quorum and the same samples.
8. **Apply.** Optimizer and scheduler step on the summed gradient, identical
   everywhere; the fleet state learns the speeds and the gradient norm.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch

from phalanx.data.slicing import participant_ranges
from phalanx.emulate.other_kind import round_differently
from phalanx.emulate.pacer import ComputePacer
from phalanx.faults.injector import FaultInjector
from phalanx.groups.member import GroupRank
from phalanx.guard import slice_check
from phalanx.guard.abft import AbftMonitor
from phalanx.guard.fingerprint import WIDTH, fingerprint_chunks
from phalanx.guard.kinds import check_replicas
from phalanx.guard.slice_check import SliceVerdict
from phalanx.observe.events import EventLog
from phalanx.runtime.compute import ComputeStopped, Workload, batches_gradient
from phalanx.runtime.control import (
    AGREES,
    DIFFERS,
    NOT_CHECKED,
    Control,
    ControlLayout,
    kind_code,
    plan_code,
)
from phalanx.runtime.fleet_watch import FleetWatch
from phalanx.runtime.grad_buffer import GradBuffer
from phalanx.runtime.model_buffers import ModelBuffers
from phalanx.runtime.precision import (
    MAX_OVERFLOW_RETRIES,
    MIN_SCALE,
    after_good_step,
    after_overflow,
    initial_scale,
)
from phalanx.runtime.reduction import Reduction
from phalanx.runtime.state import FleetState, TrainState
from phalanx.runtime.sync import Sync
from phalanx.shares.learning import SharePolicy, learn_from_step, slowed_down

# A replica's first steps after a (re)start are slow (allocation, first touch): it
# reports them negative so that nobody learns a cost model from them.
WARMUP_STEPS = 2


class LayerStats(Protocol):
    """Collectives some layers need inside forward/backward (exact/global_batchnorm.py)."""

    def live(self) -> Any: ...  # context: reduce across the fleet, and record
    def phantom(self) -> Any: ...  # context: a participant without samples joins with zeros
    def replay(self) -> Any: ...  # context: recompute a slice of the last attempt, no collectives


class NoLayerStats:
    @contextmanager
    def _nothing(self) -> Iterator[None]:
        yield

    def live(self) -> Any:
        return self._nothing()

    def phantom(self) -> Any:
        return self._nothing()

    def replay(self) -> Any:
        return self._nothing()


@dataclass
class GuardSetup:
    level: str  # off | standard | full
    fingerprints: bool  # compare parameter fingerprints (fleets only)
    abft: AbftMonitor | None = None


@dataclass
class StepContext:
    """Everything one step needs, handed in (nothing is read off a trainer)."""

    name: str
    events: EventLog
    watch: FleetWatch
    work: Workload
    params: list[torch.nn.Parameter]
    state: TrainState
    buffer: GradBuffer
    reduction: Reduction
    model_buffers: ModelBuffers
    sync: Sync
    shares: SharePolicy
    injector: FaultInjector
    pacer: ComputePacer
    guard: GuardSetup
    layer_stats: LayerStats = field(default_factory=NoLayerStats)
    steps: int = 0  # the run's length in committed steps
    overlap: bool = True  # launch gradient buckets during the last backward (off: exact BatchNorm)
    clip_grad_norm: float | None = None
    pace: Callable[[int], float | None] = lambda step: None  # emulated speed at a step
    steps_computed: int = 0  # by this process: its first ones are warm-up
    last_rate_sps: float = 0.0  # this replica's samples/s in its last attempt with samples
    heat: float = 0.0  # this replica's thermal cut (1 - derate), published in the buffer
    members: list[str] = field(default_factory=list)  # the last quorum's
    kinds: dict[str, str] = field(default_factory=dict)  # replica -> kind (what rounds alike)
    emulated_kind: str | None = None  # this emulated chip rounds like another vendor's
    group: GroupRank | None = None  # a rank of a replica group (groups/member.py)
    # A sites run (sites/site_state.py): where a step's samples lie in the global stream
    # (identity for one fleet) and whether the site's outer round follows a step.
    stream_step: Callable[[int], int] = lambda step: step
    outer_due: Callable[[int], bool] = lambda step: False
    outer_round: Callable[[], int] = lambda: 0  # the site's open outer round
    site: str | None = None


@dataclass
class Vetoed:
    """A slice vetoed in one attempt, waiting for the next attempt's evidence."""

    replica: str
    start: int  # stream positions [start, end)
    end: int
    norm: float  # the vetoing replica's normalised norm (from the control block)
    reason: str = ""
    own: SliceVerdict | None = None  # on the vetoing replica: its full verdict


@dataclass
class RoundResult:
    """What the attempts inside one quorum produced."""

    ok: bool = False
    reason: str = ""
    active: list[str] = field(default_factory=list)
    shares: list[int] = field(default_factory=list)
    loss: float = 0.0
    throughputs_sps: dict[str, float] = field(default_factory=dict)
    heats: dict[str, float] = field(default_factory=dict)
    detections: list[dict[str, Any]] = field(default_factory=list)
    at_fault: dict[str, str] = field(default_factory=dict)  # replica -> why (offences)
    diverged_self: bool = False
    outer_behind_self: bool = False  # a sites run: missed an outer round its peers applied
    # Replicas whose wrong gradient their own rerun reproduced while a peer's recomputation
    # of the same slice differed: their state (a flipped weight) may be wrong, not just
    # one computation. They do not commit, so the next quorum heals them from a peer.
    reproducibly_wrong: set[str] = field(default_factory=set)
    resync_self: bool = False  # of another kind: re-synchronise from the largest kind now
    resync: list[str] = field(default_factory=list)
    tie: bool = False
    # A fingerprint tie left to the vetoes: no majority vouched for any state this step.
    tie_to_vetoes: bool = False
    all_excluded: bool = False
    # The quorum this step speculated on formed otherwise: nothing was summed, and the
    # step begins again from the quorum that formed.
    moved: bool = False
    # Samples/s each member measured in its last attempt, exchanged after a failed commit.
    measured_sps: dict[str, float] = field(default_factory=dict)
    global_norm: float = math.nan  # of the summed gradient, unscaled
    loss_scale: float = 1.0  # fp16-mixed: the scale this round's gradients carry
    overflows: int = 0  # fp16-mixed: attempts recomputed at a halved scale
    compute_s: float = 0.0
    allreduce_s: float = 0.0
    guard_s: float = 0.0


@dataclass
class StepReport:
    """What one pass of the loop did, for the after-step hooks."""

    step: int
    members: list[str] = field(default_factory=list)
    round: RoundResult = field(default_factory=RoundResult)
    committed: bool = False
    reason: str = ""
    leave: bool = False  # the run is over for this replica (done, or finished elsewhere)
    trained: bool = False  # False: no step was attempted (not admitted, held back)
    quorum_s: float = 0.0
    commit_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # hooks add what they measure


# ----------------------------------------------------------------- the whole step
def take_step(ctx: StepContext) -> StepReport:
    """One pass: quorum, the attempts inside it, the commit vote, and the apply."""
    state = ctx.state  # its `fleet` is replaced when this replica heals: never keep it
    report = StepReport(state.fleet.step)
    first_quorum = not ctx.members
    # A replica back after the fleet finished must not train the last steps again.
    if ctx.watch.finished_without_us(
        state.fleet.step, ctx.steps, ctx.watch.ask(state.fleet.step) if first_quorum else None
    ):
        report.leave = True
        return report
    ctx.injector.at("start", state.fleet.step)
    # 1: quorum (a replica that is behind heals here, from a live peer). In a steady
    # fleet it is confirmed only at the step's first collective (speculation).
    step_before, quorum_t0 = state.fleet.step, time.time()
    members = ctx.sync.begin_step(speculate=_may_speculate(ctx, first_quorum, step_before))
    if state.fleet.step != step_before:
        ctx.events.emit(
            "heal",
            replica=ctx.name,
            from_step=step_before,
            step=state.fleet.step,
            duration_s=time.time() - quorum_t0,
        )
    changed = members != ctx.members
    if changed:
        ctx.events.emit(
            "quorum",
            replica=ctx.name,
            step=state.fleet.step,
            participants=members,
            # Speculated on (the survivors of a kill): its id is known only at the first sum.
            quorum_id=None if ctx.sync.unconfirmed() else ctx.sync.quorum_id,
            speculated=ctx.sync.unconfirmed(),
        )
        ctx.members = members
    progress = ctx.watch.ask(state.fleet.step) if changed or ctx.watch.waiting() else None
    report.step, report.members = state.fleet.step, members
    if ctx.watch.finished_without_us(state.fleet.step, ctx.steps, progress):
        report.leave = True  # it finished while we waited for this quorum
        return report
    if ctx.watch.hold_back(state.fleet.step, progress, members):
        return report
    report.quorum_s = time.time() - quorum_t0
    step = state.fleet.step
    if step >= ctx.steps:
        report.leave = True
        return report
    if ctx.name not in members:  # not admitted this round; ask again
        return report
    ctx.injector.corrupt_weights(step, ctx.params)
    ctx.pacer.speed = ctx.pace(step)
    ctx.injector.at("compute", step)
    # 2-6: the attempts.
    report.trained = True
    report.round = run_round(ctx, members, step, healed=state.fleet.step != step_before)
    if report.round.moved:  # the quorum formed otherwise: nothing was summed
        ctx.events.emit("quorum_moved", replica=ctx.name, step=step)
        discard(ctx)
        return take_step(ctx)  # from the quorum that formed (collected, no speculation)
    ctx.injector.at("commit", step)
    # 7: commit.
    if report.round.tie:
        ctx.sync.commit(False, report.round.reason)
        report.reason = report.round.reason
        discard(ctx)
        return report
    ok, report.reason = sound(ctx, report.round)
    commit_t0 = time.perf_counter()
    report.committed = ctx.sync.commit(ok, report.reason)
    report.commit_s = time.perf_counter() - commit_t0
    more = not report.committed or (step + 1 < ctx.steps and not ctx.outer_due(step + 1))
    if more and not ctx.watch.fleet_finished(ctx.steps):
        # The next quorum's round trip travels while this step is applied. (Not for a
        # replica the fleet finished without: the request would outlive the lighthouse,
        # and torchft's thread would hold the process's exit for the quorum timeout.)
        ctx.sync.prepare_next()
    # 8: apply.
    if report.committed:
        with state.updating():
            apply(ctx, report.round, step)
        ctx.watch.committed(state.fleet.step)
    else:
        report.reason = ctx.sync.last_error or report.reason
        discard(ctx)
    return report


def _may_speculate(ctx: StepContext, first_quorum: bool, step: int) -> bool:
    """May this step compute before its quorum is confirmed (runtime/sync_fleet.py)?

    Only where nothing but the step's own sums needs the quorum, and an attempt can
    be dropped without a trace: not the first quorum, no layer that issues collectives
    inside forward (exact BatchNorm), no trained buffers (a heal served to a joining
    peer while this replica computes would carry running statistics mid-update), not
    while waiting for the fleet, and not at a step an injected gradient fault is due (it fires once).
    The sync adds its own conditions (a replica group's ranks never speculate: their
    quorums come from rank 0; FleetSync.begin_step).
    """
    return (
        not first_quorum
        and isinstance(ctx.layer_stats, NoLayerStats)
        and ctx.model_buffers.numel == 0
        and not ctx.watch.waiting()
        and not ctx.injector.gradient_fault_due(step)
    )


# ----------------------------------------------------------------- 2-6: the attempts
def run_round(ctx: StepContext, members: list[str], step: int, healed: bool = False) -> RoundResult:
    """Compute, reduce and guard the step inside one quorum, recomputing without culprits."""
    result = RoundResult()
    work, fleet = ctx.work, ctx.state.fleet
    slot = members.index(ctx.name)
    layout = ControlLayout(
        len(members), WIDTH if ctx.guard.fingerprints else 0, ctx.model_buffers.numel
    )
    ctx.buffer.ensure_control(layout.numel)
    control = Control(ctx.buffer.control, layout)
    started = time.perf_counter()
    # The replicated state: parameters and the synchronised buffers (running statistics).
    replicated = [*ctx.params, *ctx.model_buffers.buffers]
    fingerprint = fingerprint_chunks(replicated) if ctx.guard.fingerprints else None
    # Coarse summaries are compared across kinds; a host of many knows only its own
    # replicas' kinds, so there every replica sends one (a pass over the parameters).
    known_kinds = {ctx.kinds.get(m, "") for m in members}
    several_known = len(known_kinds) > 1 or ctx.watch.many_hosts
    coarse = _coarse_summary(ctx.params) if fingerprint and several_known else None
    own_kind = kind_code(ctx.kinds.get(ctx.name, ""))
    result.guard_s += time.perf_counter() - started
    ctx.model_buffers.snapshot()
    # Speculating on a changed quorum (peers gone after a failed commit): the rate
    # exchange that begins a changed quorum waits until the slice is computed, so
    # that the compute overlaps the lighthouse's decision (runtime/sync_fleet.py).
    late_exchange = ctx.sync.quorum_changed() and ctx.sync.unconfirmed()
    rate_before_sps = ctx.last_rate_sps  # what the exchange tells, early or late
    # After a failed commit (or a member joining or leaving): if a chip slowed down
    # past the collective timeout, the same shares would fail the same way again.
    # Everyone learns every chip's latest rate (one small sum).
    early_exchange = ctx.sync.quorum_changed() and not late_exchange
    if early_exchange and not _tell_rates(
        ctx, fleet, result, members, slot, healed, rate_before_sps, step
    ):
        result.reason = "collective failed"
        return result
    excluded: set[str] = set()
    pending: list[Vetoed] = []
    waive_allowance = False  # every slice vetoed and finite: a data-wide spike, accept it
    result.loss_scale = fleet.loss_scale or initial_scale(work.precision)
    first_sum = True  # the attempt's first reduce carries the fingerprints
    # The last ones: nobody left. (A late exchange's recompute takes one more, on the
    # replicas that speculated only: every replica keeps the same number of sums.)
    for _attempt in range(len(members) + 2 + MAX_OVERFLOW_RETRIES + int(late_exchange)):
        active = [m for m in members if m not in excluded]
        if not active:
            result.reason = "every participant was excluded"
            result.all_excluded = True
            break
        shares = ctx.shares.shares(fleet, active, result.measured_sps)
        ranges = participant_ranges(ctx.stream_step(step), work.global_batch_size, shares)
        ctx.buffer.zero_()
        ctx.reduction.start()
        control.clear()
        # While the others compute, the evidence on the last attempt's vetoes.
        result.guard_s += _gather_evidence(
            ctx, control, members, active, pending, slot, result.loss_scale
        )
        ctx.model_buffers.restore()
        # 3-4: slice and compute (the first buckets' sums leave during the last backward).
        share = shares[active.index(ctx.name)] if ctx.name in active else 0
        verdict = SliceVerdict(False, 0.0)
        compute_s, loss, overflow = 0.0, 0.0, False
        if share:
            start, end = ranges[active.index(ctx.name)]
            overlap = (
                ctx.overlap and not ctx.injector.gradient_fault_due(step) and not late_exchange
            )
            try:
                loss, compute_s = _compute(ctx, start, end, overlap, result.loss_scale)
            except ComputeStopped:  # the quorum it speculated on moved: no sum, no verdict
                _drop_moved_attempt(ctx, result)
                break
        if late_exchange:
            late_exchange = False
            if not _tell_rates(ctx, fleet, result, members, slot, healed, rate_before_sps, step):
                if ctx.sync.moved():  # the quorum formed otherwise: nothing was summed
                    _drop_moved_attempt(ctx, result)
                else:
                    result.reason = "collective failed"
                break
            if ctx.shares.shares(fleet, active, result.measured_sps) != shares:
                continue  # a chip slowed down: compute again with the shares everyone derives
        if share:
            if ctx.group is not None:  # a rank computed its part of the group's share
                part = ctx.group.sub_range(start, end)
                share_computed = part[1] - part[0]
            else:
                share_computed = share
            ctx.last_rate_sps = share_computed / max(compute_s, 1e-9)
            ctx.injector.corrupt_gradient(step, ctx.params)
            guard_t0 = time.perf_counter()
            norm = ctx.reduction.measure_rest() / result.loss_scale
            if ctx.group is not None:  # the group's gradient, not this rank's shard of it
                norm = ctx.group.norm(norm)
            overflow = _overflowed(ctx, norm, result.loss_scale)
            verdict = (
                SliceVerdict(False, 0.0) if overflow else _check(ctx, share, waive_allowance, norm)
            )
            result.guard_s += time.perf_counter() - guard_t0
        else:
            with ctx.layer_stats.phantom():
                pass  # a participant without samples still joins the layers' collectives
        # (A participant without samples issued the late exchange above, like the others.)
        throughput = ctx.last_rate_sps if share else 0.0
        warming = ctx.steps_computed < WARMUP_STEPS
        control.put_loss(loss)
        control.put("throughput_sps", slot, -throughput if warming else throughput)
        plan = plan_code(step, active, shares)
        if ctx.group is None or ctx.group.leads:
            # What every rank of a group knows alike is written once (summed in the group).
            control.put("veto", slot, 1.0 if verdict.vetoed else 0.0)
            control.put("slice_norm", slot, verdict.norm if verdict.vetoed else 0.0)
            control.put("heat", slot, ctx.heat)
            control.put("overflow", slot, 1.0 if overflow else 0.0)
            control.put("healed", slot, 1.0 if healed else 0.0)
            control.put("kind", slot, own_kind)
            control.put("plan", slot, plan)
            control.put("outer_round", slot, float(ctx.outer_round()))
        if fingerprint is not None and first_sum:
            control.put_fingerprint(slot, fingerprint)
            if coarse is not None:
                control.put("coarse_sum", slot, coarse[0])
                control.put("coarse_abs", slot, coarse[1])
        first_computing = next(m for m, n in zip(active, shares) if n > 0)
        ctx.model_buffers.pack(
            control.buffers_view(), share / work.global_batch_size, ctx.name == first_computing
        )
        # 5: reduce (the summed gradient's norm is measured as the buckets arrive).
        reduce_t0 = time.perf_counter()
        ctx.reduction.launch_rest()
        ctx.injector.at("allreduce", step)
        result.global_norm = ctx.reduction.wait() / result.loss_scale
        if ctx.group is not None and not ctx.sync.errored():
            # Each rank saw its shard, summed with the same rank of the other groups.
            result.global_norm = ctx.group.norm(result.global_norm)
            ctx.group.sum_(ctx.buffer.control)
        result.allreduce_s += time.perf_counter() - reduce_t0
        result.compute_s += compute_s
        first, first_sum = first_sum, False
        if ctx.sync.moved():
            _drop_moved_attempt(ctx, result)
            break
        if ctx.sync.errored():
            result.reason = "collective failed"
            ctx.reduction.release()
            if ctx.sync.abandoned():  # its sums may still land in these buffers
                ctx.buffer.renew()
            break
        _check_plans(control, members, plan, step)
        # 6: guard.
        _attribute(control, members, pending, step, result)
        pending = []
        if any(v > 0.5 for v in control.read("overflow")):
            # fp16-mixed: someone's scaled gradient overflowed. Everyone read the same
            # flags: halve the scale and recompute the same samples at once.
            result.loss_scale = after_overflow(result.loss_scale)
            result.overflows += 1
            continue
        diverged: set[str] = set()
        behind = _behind_outer_round(members, control.read("outer_round")) if first else set()
        if behind:
            # A site's replica that missed an outer round its peers applied holds the old
            # anchor: not a chip's fault, and no tie (two replicas would otherwise restore
            # a checkpoint, older outer state and all). It sits this step out and heals.
            diverged = set(behind)
            result.detections.append(
                {
                    "check": "outer_round_behind",
                    "replicas": sorted(behind),
                    "attribution": "outer_round",
                }
            )
            result.diverged_self = result.outer_behind_self = ctx.name in behind
        if fingerprint is not None and first:
            summaries = {
                m: s
                for m, s in zip(
                    members, zip(control.read("coarse_sum"), control.read("coarse_abs"))
                )
                if m not in behind
            }
            copies = frozenset(m for m, h in zip(members, control.read("healed")) if h > 0.5)
            # Every participant's declared kind, the same for every observer.
            kinds = {m: str(int(code)) for m, code in zip(members, control.read("kind"))}
            check = check_replicas(
                {m: f for m, f in zip(members, control.fingerprints()) if m not in behind},
                summaries,
                kinds,
                step,
                copies,
            )
            if check.tie:
                result.detections.append({"check": "fingerprint_tie", "replicas": sorted(members)})
                if not _tie_left_to_vetoes(control):
                    result.tie = True
                    result.reason = "parameter fingerprints disagree and no majority exists"
                    return result
                result.tie_to_vetoes = True
            diverged |= set(check.diverged)
            _blame_diverged(check.diverged, copies, result)
            result.diverged_self = ctx.name in diverged
            result.resync = check.resync
            result.resync_self = ctx.name in check.resync
        vetoes = control.read("veto")
        vetoers = [m for m, v in zip(members, vetoes) if v > 0.5 and m in active]
        if not vetoers and not diverged:
            result.ok = True
            result.active, result.shares, result.loss = active, shares, control.loss()
            result.throughputs_sps = dict(zip(members, control.read("throughput_sps")))
            result.heats = dict(zip(members, control.read("heat")))
            return result
        norms = control.read("slice_norm")
        everyone = set(vetoers) == set(active) and not diverged and not waive_allowance
        if everyone and all(math.isfinite(norms[members.index(m)]) for m in vetoers):
            # Every slice of the batch is far above the fleet's norm, on every chip:
            # the data (a loss spike), not a chip. Apply it as one process would.
            waive_allowance = True
            result.detections.append(
                {"check": "gradient_spike", "replicas": vetoers, "attribution": "data"}
            )
            continue
        for member in vetoers:
            if member in diverged:
                continue  # its gradient came from wrong parameters: the divergence is the offence
            start, end = ranges[active.index(member)]
            own = verdict if member == ctx.name else None
            pending.append(
                Vetoed(member, start, end, norms[members.index(member)], verdict.reason, own)
            )
        excluded |= set(vetoers) | diverged
    for vetoed in pending:  # no attempt followed to carry their evidence
        result.detections.append(_veto_detection(vetoed, NOT_CHECKED, NOT_CHECKED, "unknown"))
    return result


class PlanMismatch(RuntimeError):
    """Participants derived different shares for one attempt: exact math is impossible."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(message)
        self.step = step


def _check_plans(control: Control, members: list[str], plan: float, step: int) -> None:
    """Every participant derives the step's shares on its own; they must all agree.

    They disagree only when replicas run different code (a rolling upgrade, or an
    install edited while a run goes on: a restarted replica loads the new code) or
    read a different fleet state. Their slices would then overlap or leave gaps,
    silently: the sum would not be the global batch's gradient. Nobody commits; every
    replica leaves with one error line (runtime/trainer.py), and the launcher stops the
    run: the checkpoints stay, for a `--resume` with one version of the code.
    """
    plans = control.read("plan")
    if all(p == plan for p in plans):
        return
    others = sorted(m for m, p in zip(members, plans) if p != plan)
    raise PlanMismatch(
        step,
        f"step {step}: {', '.join(others)} derived other shares than this replica: "
        "the replicas run different phalanx code or fleet states; run one version "
        "everywhere and continue with --resume",
    )


def _tell_rates(
    ctx: StepContext,
    fleet: FleetState,
    result: RoundResult,
    members: list[str],
    slot: int,
    healed: bool,
    rate_sps: float,
    step: int,
) -> bool:
    """The rate exchange that begins a changed quorum, and a line if this chip slowed.

    False: the step cannot go on (the sum failed, or the quorum it speculated on
    formed otherwise and nothing was summed).
    """
    result.measured_sps = _exchange_rates(ctx, members, slot, healed, rate_sps)
    if ctx.sync.moved() or ctx.sync.errored():
        return False
    _say_if_slowed(ctx, fleet, result.measured_sps, step)
    return True


def _exchange_rates(
    ctx: StepContext, members: list[str], slot: int, healed: bool, rate_sps: float
) -> dict[str, float]:
    """One small sum: every member's samples/s in its last attempt (0: none to tell).

    `rate_sps`: this replica's, from before the step (a late exchange comes after
    its slice is computed, and must tell what an early one would have).
    A replica that healed in this quorum was away (frozen, cut off): its last rate
    is from a stall the fleet already stepped past, not from its chip.
    """
    rates = torch.zeros(len(members), dtype=torch.float64)
    rates[slot] = 0.0 if healed else rate_sps
    ctx.sync.allreduce(rates).wait()
    if ctx.group is not None:  # each rank sent its own part's rate: the group's is the sum
        ctx.group.sum_(rates)
    return {m: float(r) for m, r in zip(members, rates.tolist()) if r > 0}


def _say_if_slowed(
    ctx: StepContext, fleet: FleetState, measured: dict[str, float], step: int
) -> None:
    """One event and one line from the chip itself when its measured rate cut its share."""
    rate = slowed_down(fleet, measured).get(ctx.name)
    if rate is None:
        return
    learnt = fleet.throughput_sps.get(ctx.name, 0.0)
    ctx.events.emit("slowdown", replica=ctx.name, step=step, measured_sps=rate, learnt_sps=learnt)
    print(
        f"{ctx.name}: computed {rate:.3g} samples/s in its last attempt, {learnt:.3g} "
        f"learnt: its share of step {step} is cut to what it computes in time",
        flush=True,
    )


def _drop_moved_attempt(ctx: StepContext, result: RoundResult) -> None:
    """The quorum speculated on formed otherwise: nothing was summed, the attempt ends."""
    result.moved = True
    result.reason = "the quorum formed otherwise than speculated"
    ctx.reduction.release()


def _compute(
    ctx: StepContext, start: int, end: int, overlap: bool, loss_scale: float
) -> tuple[float, float]:
    """Forward/backward of stream positions [start, end); (weighted loss, seconds)."""
    work = ctx.work
    if ctx.group is not None:
        return _compute_in_group(ctx, ctx.group, start, end, loss_scale)
    batches = work.feed.take(start, end)
    # The workers read the likeliest next slices (this share, a batch on) meanwhile.
    batch = work.global_batch_size
    work.feed.read_ahead(start + batch, end + batch, batch)
    if ctx.guard.abft is not None:
        ctx.guard.abft.reset()
    ctx.pacer.begin(units=end - start)
    with ctx.layer_stats.live():
        arm = ctx.reduction.arm if overlap else None
        # A speculative step stops at the next micro-batch or backward once its quorum
        # is known to have moved: on a host whose cores are full, computing on would
        # take them from the replica that just joined.
        loss = batches_gradient(work, batches, arm, loss_scale, stop=ctx.sync.moved_already)
    return loss, ctx.pacer.end()


def _compute_in_group(
    ctx: StepContext, group: GroupRank, start: int, end: int, loss_scale: float
) -> tuple[float, float]:
    """A group rank's part of its group's slice; as many forwards as the busiest rank.

    FSDP gathers and scatters inside every forward and backward, so every rank
    of the group runs the same number of them: a rank with fewer micro-batches
    repeats one with weight 0 (it adds nothing to the gradient).
    """
    work = ctx.work
    lo, hi = group.sub_range(start, end)
    batches = work.feed.read_now(lo, hi) if hi > lo else []
    forwards = group.most(len(batches))
    if len(batches) < forwards:
        filler = batches[0] if batches else work.feed.read_now(start, start + 1)[0]
        batches = [*batches, *[replace(filler, count=0)] * (forwards - len(batches))]
    ctx.pacer.begin(units=hi - lo)
    loss = batches_gradient(work, batches, None, loss_scale)
    return loss, ctx.pacer.end()


def _overflowed(ctx: StepContext, norm: float, loss_scale: float) -> bool:
    """fp16-mixed: a non-finite scaled gradient is the scale's fault while it can shrink."""
    return ctx.work.precision.scaled and not math.isfinite(norm) and loss_scale > MIN_SCALE


def _check(ctx: StepContext, share: int, waive_allowance: bool, norm: float) -> SliceVerdict:
    """This replica's own verdict on the gradient it just computed (`norm`: its L2 norm)."""
    if ctx.guard.level == "off":
        return SliceVerdict(False, 0.0)
    abft = ctx.guard.abft.failures if ctx.guard.abft is not None else 0
    history = [] if waive_allowance else ctx.state.fleet.grad_norms
    return slice_check.judge(norm, share, ctx.work.global_batch_size, history, abft)


def _recompute_verdict(ctx: StepContext, vetoed: Vetoed, loss_scale: float) -> SliceVerdict:
    """Recompute a slice vetoed in the last attempt (own rerun or a peer's check), then clear."""
    if ctx.guard.abft is not None:
        ctx.guard.abft.reset()
    work = ctx.work
    batches = work.feed.read_now(vetoed.start, vetoed.end)
    ctx.pacer.begin(units=vetoed.end - vetoed.start)
    with ctx.layer_stats.replay():
        batches_gradient(work, batches, loss_scale=loss_scale)
    ctx.pacer.end()
    norm = math.sqrt(ctx.buffer.norm_sq()) / loss_scale
    verdict = _check(ctx, vetoed.end - vetoed.start, False, norm)
    ctx.buffer.zero_grads()
    ctx.model_buffers.restore()
    return verdict


def _gather_evidence(
    ctx: StepContext,
    control: Control,
    members: list[str],
    active: list[str],
    pending: list[Vetoed],
    slot: int,
    loss_scale: float,
) -> float:
    """Rerun our own vetoed slice, or recompute a peer's as its verifier; seconds spent."""
    started = time.perf_counter()
    for number, vetoed in enumerate(pending):
        verifier = active[number % len(active)]
        if vetoed.replica == ctx.name and vetoed.own is not None:
            again = _recompute_verdict(ctx, vetoed, loss_scale)
            same = slice_check.reproduces(vetoed.own, again)
            control.put("rerun", slot, AGREES if same else DIFFERS)
        elif verifier == ctx.name:
            theirs = SliceVerdict(True, vetoed.norm)
            mine = _recompute_verdict(ctx, vetoed, loss_scale)
            same = slice_check.reproduces(theirs, mine)
            control.put("peer_verdict", members.index(vetoed.replica), AGREES if same else DIFFERS)
    return time.perf_counter() - started


def _behind_outer_round(members: list[str], rounds: list[float]) -> set[str]:
    """The members whose site's open outer round is older than another member's.

    Outer rounds only advance by a commit that a majority of the sites agreed, so the
    newest is the one to hold; the others heal from a member that holds it.
    """
    newest = max(rounds)
    return {m for m, r in zip(members, rounds) if r < newest}


def _blame_diverged(diverged: dict[str, str], copies: frozenset[str], result: RoundResult) -> None:
    """A detection for each replica whose parameters left the majority; offences for chips.

    A replica that healed at this quorum holds its source's state, not its chip's: if
    that differs, the source was already wrong (chaos schedule 107: a weight flipped on
    r0 just before r1 healed from it). No offence; it still does not commit, and heals
    again from a replica that did.
    """
    for member in sorted(diverged):
        attribution = "heal_source" if member in copies else "chip"
        if attribution == "chip":
            result.at_fault[member] = diverged[member]
        result.detections.append(
            {"check": "fingerprint_mismatch", "replica": member, "attribution": attribution}
        )


def _tie_left_to_vetoes(control: Control) -> bool:
    """May a fingerprint tie be settled by this attempt's vetoes instead of a checkpoint?

    Yes when some participants' gradients were non-finite and others' were not: a
    flipped weight usually makes its holder's gradient overflow. The veto path then
    gathers evidence (the holder's rerun, a peer's recomputation of its slice), and a
    replica found reproducibly wrong does not commit and heals from one that did.
    Only non-finite vetoes: a finite outlier is the data's as often as not, and with
    two holders a peer's recomputation cannot tell which of them is wrong.
    """
    vetoes, norms = control.read("veto"), control.read("slice_norm")
    broken = [v > 0.5 and not math.isfinite(n) for v, n in zip(vetoes, norms)]
    return any(broken) and not all(broken)


def _attribute(
    control: Control, members: list[str], pending: list[Vetoed], step: int, result: RoundResult
) -> None:
    """Decide, from the evidence that rode in this attempt, who is to blame for each veto."""
    if not pending:
        return
    reruns, peers = control.read("rerun"), control.read("peer_verdict")
    healed = control.read("healed")
    for vetoed in pending:
        index = members.index(vetoed.replica)
        rerun, peer = int(reruns[index]), int(peers[index])
        if result.tie_to_vetoes and healed[index] > 0.5 and rerun == AGREES and peer == DIFFERS:
            # It healed at this quorum and no fingerprint majority vouched for its state:
            # the wrong state is its source's, not its chip's. No offence; it still does
            # not commit, so it heals again from a committer. (With a majority that its
            # fingerprint matched, its state was right and the wrong gradient its chip's.)
            attribution = "heal_source"
            result.reproducibly_wrong.add(vetoed.replica)
        elif rerun == DIFFERS or peer == DIFFERS:
            attribution = "chip"
            why = (
                "its rerun of the slice differed"
                if rerun == DIFFERS
                else "a peer recomputed the slice and disagreed"
            )
            result.at_fault[vetoed.replica] = why
            if rerun == AGREES and peer == DIFFERS:
                result.reproducibly_wrong.add(vetoed.replica)
        elif rerun == AGREES and peer == AGREES:
            attribution = "data"
        else:
            attribution = "unknown"
        result.detections.append(_veto_detection(vetoed, rerun, peer, attribution))


_EVIDENCE = {NOT_CHECKED: "not checked", AGREES: "same", DIFFERS: "different"}


def _veto_detection(vetoed: Vetoed, rerun: int, peer: int, attribution: str) -> dict[str, Any]:
    detection: dict[str, Any] = {
        "check": "gradient_veto",
        "replica": vetoed.replica,
        "samples": vetoed.end - vetoed.start,
        "normalised_norm": vetoed.norm if math.isfinite(vetoed.norm) else str(vetoed.norm),
        "rerun": _EVIDENCE[rerun],
        "peer": _EVIDENCE[peer],
        "attribution": attribution,
    }
    if vetoed.reason:
        detection["reason"] = vetoed.reason
    return detection


def _coarse_summary(params: list[torch.nn.Parameter]) -> tuple[float, float]:
    """(L1 norm, L2 norm) of the parameters: compared across kinds, with tolerance.

    Norms, not a plain sum: a sum of signed parameters can cancel to near zero,
    and then last-bit differences look like a large relative change."""
    l1 = sum(float(torch.linalg.vector_norm(p.detach(), ord=1)) for p in params)
    l2 = sum(float(torch.linalg.vector_norm(p.detach())) ** 2 for p in params) ** 0.5
    return l1, l2


# ----------------------------------------------------------------- 7-8: commit, apply
def sound(ctx: StepContext, result: RoundResult) -> tuple[bool, str]:
    """May this replica vote to commit? Also measures the summed gradient's norm."""
    if not result.ok:
        return False, result.reason or "the step failed"
    if result.outer_behind_self:
        return False, "its site's outer round is behind a peer's (a missed outer round): healing"
    if result.diverged_self:
        return False, "parameters differ from the majority"
    if ctx.name in result.reproducibly_wrong:
        # Committing would carry a possibly corrupt state on (and serve it to healing
        # peers): stay behind and heal from a peer at the next quorum instead.
        return False, "its wrong gradient was reproduced while a peer's differed: healing"
    if result.resync_self:
        return False, "re-synchronising from the largest kind (rounding drift)"
    if not math.isfinite(result.global_norm):
        return False, "non-finite values in the summed gradient"
    return True, ""


def apply(ctx: StepContext, result: RoundResult, step: int) -> None:
    """Apply the committed step: identical inputs on every replica, identical outcome."""
    state = ctx.state
    factor = 1.0 / result.loss_scale  # fp16-mixed: the gradients carry the loss scale
    if ctx.clip_grad_norm is not None and result.global_norm > ctx.clip_grad_norm:
        # The summed gradient is identical everywhere, so is its norm: clip as torch does.
        factor *= ctx.clip_grad_norm / (result.global_norm + 1e-6)
    if factor != 1.0:
        for bucket in ctx.buffer.buckets:
            bucket.grads.mul_(factor)
    ctx.model_buffers.apply()
    state.optimizer.step()
    if ctx.emulated_kind is not None:
        round_differently(ctx.params, step, ctx.emulated_kind)
    if state.scheduler is not None:
        state.scheduler.step()
    fleet = state.fleet
    learn_from_step(
        fleet,
        result.active,
        result.shares,
        result.throughputs_sps,
        result.heats,
        result.measured_sps,
    )
    fleet.grad_norms = slice_check.remember_global_norm(fleet.grad_norms, result.global_norm)
    if ctx.work.precision.scaled:
        good = 0 if result.overflows else fleet.scale_good_steps
        fleet.loss_scale, fleet.scale_good_steps = after_good_step(result.loss_scale, good)
    fleet.step = step + 1
    ctx.steps_computed += 1


def discard(ctx: StepContext) -> None:
    """An uncommitted step leaves no trace: gradients cleared, buffers as they were."""
    ctx.buffer.zero_()
    ctx.model_buffers.restore()
