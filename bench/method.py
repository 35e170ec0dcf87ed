"""The method section of docs/benchmarks.md; every number in it comes from the bench's constants."""

from __future__ import annotations

from bench.scenarios import (
    COMM_HEAVY,
    DEFAULT,
    FAULTS,
    MAX_RESTARTS,
    SCALING_HANG_S,
    SCALING_TIMEOUT_S,
    SOLO_STEPS,
    USER_CHECKPOINT_EVERY,
)
from bench.timeline import WARMUP_STEPS
from bench.workload import parameter_count
from phalanx.launch.launcher import RunPlan

PHALANX_TIMEOUT_S = RunPlan.__dataclass_fields__["timeout_s"].default


def text() -> list[str]:
    return [
        "## How it is measured",
        "",
        "- **Same chips everywhere.** Emulated chips compute on the host CPU with one torch "
        "thread; phalanx's `ComputePacer` pads each forward+backward to its CPU time divided by "
        "speed x the launcher's common time scale (`emulation_time_scale`, so 2 cores are not "
        "oversubscribed). The DDP workers and the solo runs use the same pacer and scale.",
        f"- **Model.** TinyGPT (`phalanx.demo.model`) on the stdlib-docstring corpus "
        f"(`phalanx.demo.corpus`): by default width {DEFAULT.width}, {DEFAULT.layers} layers, "
        f"context {DEFAULT.context}, global batch {DEFAULT.batch}: "
        f"{parameter_count(DEFAULT) / 1e6:.2f}M parameters, a "
        f"{4 * parameter_count(DEFAULT) / 1e6:.1f} MB gradient per step. Compute dominates "
        "communication (see the phase table: compute against quorum + allreduce + commit). "
        f"The communication-heavy configuration is width {COMM_HEAVY.width}, "
        f"{COMM_HEAVY.layers} layers, context {COMM_HEAVY.context}, batch {COMM_HEAVY.batch} "
        f"({parameter_count(COMM_HEAVY) / 1e6:.1f}M parameters).",
        "- **phalanx** runs as users run it: `phalanx run bench/phalanx_script.py --emulate ... "
        "--out DIR`; rates come from its events.jsonl (a step's commit time is its first "
        "participant's `step` event).",
        "- **DDP, equal split** is real `torch.nn.parallel.DistributedDataParallel` over gloo, "
        "launched by real torchrun (`python -m torch.distributed.run`, c10d rendezvous on a port "
        "the OS picked), one process per chip, B / N samples each, same global sample order. "
        "Pacing: DDP keeps its bucketed allreduce overlapped with backward; a DDP comm hook "
        "first sleeps until the emulated chip would have produced the bucket, then calls "
        "torch's default allreduce hook. So DDP is paced over the whole forward+backward and "
        "keeps its overlap advantage.",
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
        f"- **Scaling** (scenario 5): 2 plain CPU replicas (`--replicas 2`, no pacing), "
        f"{SCALING_TIMEOUT_S:g} s collective timeout, replica 1 frozen for "
        f"{SCALING_TIMEOUT_S + SCALING_HANG_S:g} s so it falls behind and heals from its peer; "
        "allreduce is the median over full-fleet steps.",
    ]
