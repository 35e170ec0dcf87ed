"""The method section of docs/benchmarks.md; every number in it comes from the bench's constants."""

from __future__ import annotations

from bench.scenarios import (
    COMM_HEAVY,
    DEFAULT,
    EQUAL_100M,
    EQUAL_300M,
    FAULTS,
    MAX_RESTARTS,
    SCALING_HANG_S,
    SCALING_TIMEOUT_S,
    SOLO_STEPS,
    USER_CHECKPOINT_EVERY,
)
from bench.timeline import WARMUP_STEPS
from bench.workload import Workload, heads, parameter_count
from phalanx.launch.launcher import RunPlan

PHALANX_TIMEOUT_S = RunPlan.__dataclass_fields__["timeout_s"].default


def text() -> list[str]:
    return [
        "## How it is measured",
        "",
        "- **Same chips everywhere.** Emulated chips compute on the host CPU with one torch "
        "thread; phalanx's `ComputePacer` pads each forward+backward to its CPU time divided by "
        "speed x the launcher's common time scale (`emulation_time_scale`, so 2 cores are not "
        "oversubscribed). The DDP workers and the solo runs use the same pacer and scale. The "
        "CPU time is the least of the chip's last 9 for the same number of samples: the same "
        "slice's CPU time varied by up to 1.6x (85-137 ms for 32 samples) with the other "
        "workers on the host, noise a real accelerator's kernels do not have, and a neighbour "
        "only ever adds CPU time. Results before 2026-12-02 include that noise whole; results "
        "from 2026-12-02 to 2026-12-04 paced to the median of the last 5, which still let a "
        "chip's paced time wander by 10-20% and made chips slower in a fleet than alone (the "
        "solo ideal then ran 5% faster than the same chips' rates inside phalanx's run).",
        f"- **Model.** TinyGPT (`phalanx.demo.model`) on the stdlib-docstring corpus "
        f"(`phalanx.demo.corpus`): by default width {DEFAULT.width}, {DEFAULT.layers} layers, "
        f"context {DEFAULT.context}, global batch {DEFAULT.batch}: "
        f"{parameter_count(DEFAULT) / 1e6:.2f}M parameters, a "
        f"{4 * parameter_count(DEFAULT) / 1e6:.1f} MB gradient per step. Compute dominates "
        "communication (see the phase table: compute against quorum + allreduce + commit). "
        f"The communication-heavy configuration is width {COMM_HEAVY.width}, "
        f"{COMM_HEAVY.layers} layers, context {COMM_HEAVY.context}, batch {COMM_HEAVY.batch} "
        f"({parameter_count(COMM_HEAVY) / 1e6:.1f}M parameters).",
        _model_scale(),
        "- **phalanx** runs as users run it: `phalanx run bench/phalanx_script.py --emulate ... "
        "--out DIR`; rates come from its events.jsonl (a step's commit time is its first "
        "participant's `step` event).",
        "- **DDP, equal split** is real `torch.nn.parallel.DistributedDataParallel` over gloo, "
        "launched by real torchrun (`python -m torch.distributed.run`, c10d rendezvous on a port "
        "the OS picked), one process per chip, B / N samples each, same global sample order. "
        "Pacing: DDP keeps its bucketed allreduce overlapped with backward; a DDP comm hook "
        "first sleeps until the emulated chip would have produced the bucket, then calls "
        "torch's default allreduce hook. So DDP is paced over the whole forward+backward and "
        "keeps its overlap advantage. phalanx's buckets are paced the same way (since "
        "2026-12-03: before, its early buckets left when the host had computed them, ahead "
        "of the emulated chip, which favoured phalanx in the model-scale rows).",
        f"- **torchrun elastic restart**: the same workers with `--max-restarts {MAX_RESTARTS}` "
        f"and a checkpoint (model + optimizer, rank 0) every K steps: K = "
        f"{USER_CHECKPOINT_EVERY} as a user would pick it (a few seconds of training here; "
        "phalanx checkpoints at the same interval), and K = 1. A failure restarts every worker, which "
        "resumes from the newest checkpoint. Faults use phalanx's own `FaultInjector` "
        "(real SIGKILL / SIGSTOP, once per run through marker files). Workers join gloo "
        "through a per-attempt store prefix: torch 2.13's torchrun keeps its store across "
        "restarts, and without it the restarted group never connects.",
        f"- **ideal**: `bench/solo.py` runs each distinct chip speed alone ({SOLO_STEPS} steps, "
        "same pacing, its speed-proportional share of B, with its optimizer step, no sync); "
        "the ideal is the sum of the chips' solo rates.",
        f"- **Rates.** Throughput is samples between the commit of step {WARMUP_STEPS} and the "
        "last step over the time between them (warm-up excluded for every contender alike). "
        "Goodput is the global batch x steps from the commit of step 0 to the last commit, "
        "divided by that time, so all that faults cost falls inside; it is divided by the same "
        "contender's fault-free run of the same repeat (for both torchrun rows: the fault-free "
        f"DDP run with K = {USER_CHECKPOINT_EVERY}, so the K = 1 row also carries its per-step "
        "saving). Wall time is the whole command, process start-up included.",
        f"- **Fault schedule** (scenario 2, both contenders): {'; '.join(FAULTS)}. "
        "phalanx restarts the killed replica after restart_s and drops the hung one after its "
        f"{PHALANX_TIMEOUT_S:g} s collective timeout (the default of `phalanx run`); DDP waits "
        f"for the hung worker. That is {len(FAULTS)} faults in {DEFAULT.steps} steps, a far "
        "higher fault rate than a real fleet's: the goodput ratios are a stress test.",
        "- **Recovery** (scenario 3) is read from phalanx's events: `fault` -> first `step` "
        "of another replica; `worker_restart` (launcher) -> `worker_start` (process start) -> "
        "`heal` (its duration_s: state transfer) -> the replica's first `step` (rest). "
        "For torchrun: last commit before the failure -> first commit of a new step.",
        "- **Step phases, memory and balance** (scenario 4's extra rows). Non-compute share: "
        "a step (commit to commit) minus the critical participant's compute, over the step, "
        "per-step medians; for DDP every rank records its paced forward+backward until its "
        "last gradient bucket left, the rest of backward and its optimizer step in steps.jsonl. "
        "The goal asks phalanx's share to exceed DDP's by at most the given points (a lower "
        "share passes). Peak RSS per replica: each process's `ru_maxrss` at its end (phalanx: "
        "`worker_done` events and summary.json `devices[].peak_rss_bytes`; DDP: each rank's "
        "`done` record; solo: the one process that runs the chips in turn), the largest replica "
        "of a run; the ratio is paired per repeat. Imbalance: phalanx's median `imbalance` over "
        "its median step (see the phase table). Equal shares: over the steps after warm-up, "
        "the largest share over the smallest among chips of the same speed, the worst step.",
        f"- **Scaling** (scenario 5): 2 plain CPU replicas (`--replicas 2`, no pacing), "
        f"{SCALING_TIMEOUT_S:g} s collective timeout, replica 1 frozen for "
        f"{SCALING_TIMEOUT_S + SCALING_HANG_S:g} s so it falls behind and heals from its peer; "
        "allreduce is the median over full-fleet steps.",
    ]


def _shape(work: Workload) -> str:
    return (
        f"{parameter_count(work) / 1e6:.0f}M parameters (width {work.width}, {work.layers} "
        f"layers, {heads(work)} heads, context {work.context}), B={work.batch}"
    )


def _model_scale() -> str:
    scale_100m, scale_300m = EQUAL_100M, EQUAL_300M
    return (
        "- **Model scale** (scenario 4, `full` only): TinyGPT at GPT-2-like shapes, "
        f"{_shape(scale_100m.work)} on {scale_100m.fleet.name} and {_shape(scale_300m.work)} "
        f"on {scale_300m.fleet.name}, {scale_100m.work.steps} steps each (the character "
        "vocabulary keeps the embeddings small). With AdamW a replica holds about 16 bytes per "
        "parameter; one contender runs at a time. phalanx runs with --timeout-s "
        f"{scale_100m.timeout_s:g} (its collective timeout, {PHALANX_TIMEOUT_S:g} s by "
        "default; DDP's workers use 120 s): at this scale compute, optimizer step and "
        "allreduce take seconds each on a shared host, and a collective that waits longer "
        "than the timeout for a peer fails the step."
    )
