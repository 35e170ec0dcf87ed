"""examples/slurm/phalanx.sbatch, run by bash as Slurm would, on a simulated 2-node allocation.

`tests/fake_slurm/` holds stand-ins for `scontrol` and `srun`, put first on PATH:
srun starts one copy of its command per simulated node (SLURM_NODEID,
SLURMD_NODENAME, SLURM_PROCID set), all on this machine, and the lighthouse binds
loopback on a port the OS picks. Everything else is the real script: the
lighthouse it starts on "node0", the secret it creates, one `phalanx run` per
node joining that lighthouse, the signal forwarding and the exit code. A requeue
is simulated as Slurm does it: the same script again, with SLURM_RESTART_COUNT=1.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phalanx.observe.summary import build_summary
from tests.fleet_helpers import (
    EXACT_ARGS,
    EXACT_STEPS,
    MLP,
    ROOT,
    events,
    independent_data_check,
    kill_tree,
    local_run,
    max_param_diff,
    summary,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SBATCH = ROOT / "examples" / "slurm" / "phalanx.sbatch"
FAKE_SLURM = ROOT / "tests" / "fake_slurm"
JOB_ID = "4242"
NODES = ("node0", "node1")
EXIT_PREEMPTED = 75


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The float64 MLP trained in one process: what the simulated cluster must reproduce."""
    return local_run(MLP, tmp_path_factory.mktemp("reference") / "run", EXACT_ARGS)


def _job_env(tmp_path: Path, restarts: int, settings: dict[str, str]) -> dict[str, str]:
    """The environment Slurm gives a batch script, plus the script's own settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "PHALANX"))}
    env.update(
        PATH=f"{FAKE_SLURM}{os.pathsep}{env['PATH']}",
        SLURM_JOB_ID=JOB_ID,
        SLURM_JOB_NODELIST="node[0-1]",
        SLURM_JOB_NUM_NODES=str(len(NODES)),
        SLURM_SUBMIT_DIR=str(tmp_path),
        SLURM_RESTART_COUNT=str(restarts),
        FAKE_SLURM_LOG=str(tmp_path / "slurm.log"),
        PHALANX_CMD=f"{sys.executable} -m phalanx",
        PHALANX_OUT=str(tmp_path / "run"),
        PHALANX_EMULATE="0.05",  # one slow emulated chip per node: a step lasts ~0.1 s
        # Both "nodes" are this machine: loopback, and a port the OS picks.
        PHALANX_LIGHTHOUSE_HOST="127.0.0.1",
        PHALANX_BIND_HOST="127.0.0.1",
        PHALANX_PORT="0",
        PHALANX_RUN_FLAGS="--timeout-s 2 --quiet",
    )
    env.update(settings)
    return env


def _submit(tmp_path: Path, restarts: int = 0, **settings: str) -> subprocess.Popen[str]:
    """The batch script as Slurm starts it on the first node (in a session of its own)."""
    with (tmp_path / f"job-{restarts}.out").open("w") as log:  # the child holds its own copy
        return subprocess.Popen(
            ["bash", str(SBATCH), str(MLP), *EXACT_ARGS],
            cwd=tmp_path, env=_job_env(tmp_path, restarts, settings), stdout=log,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip


def _finish(job: subprocess.Popen[str], tmp_path: Path, timeout_s: float) -> tuple[int, str]:
    try:
        code = job.wait(timeout=timeout_s)
    finally:
        if job.poll() is None:
            kill_tree(job)
    output = "".join(p.read_text() for p in sorted(tmp_path.glob("job-*.out")))
    return code, output


def _requeues(tmp_path: Path) -> list[str]:
    """The job ids the script passed to `scontrol requeue` (the fake one records them)."""
    log = tmp_path / "slurm.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.split()[1] for line in lines if line.startswith("requeue ")]


def _launches(run: Path) -> list[dict]:
    """Every node's `phalanx run` starts (their run_start events say whether with --resume)."""
    return [
        e
        for node in NODES
        for e in events(run / "nodes" / node)
        if e["kind"] == "run_start" and e["source"] == "launcher"
    ]


def _fleet_record(run: Path, into: Path) -> Path:
    """Every node's events in one file: the fleet's record (README, Many hosts)."""
    into.mkdir()
    lines = [(run / "nodes" / n / "events.jsonl").read_text() for n in NODES]
    (into / "events.jsonl").write_text("".join(lines))
    return into


def _check_one_fleet_exact(run: Path, tmp_path: Path, reference: Path, always_both: bool) -> None:
    """Both nodes' replicas trained in one fleet, every sample once; the reference's math.

    `always_both`: the lighthouse waited for both (--min-replicas 2). With 1, the node
    whose replica started first trains the first steps alone, and the other heals from
    it and joins (a node's own summary then counts only its own steps).
    """
    for node in NODES:
        node_dir = run / "nodes" / node
        assert summary(node_dir)["completed"]
        assert max_param_diff(node_dir, reference) < 1e-9
        # Checkpoints are shared: the next allocation finds them whichever node it is.
        assert (node_dir / "checkpoints").resolve() == (run / "checkpoints").resolve()
    fleet = _fleet_record(run, tmp_path / "fleet")
    steps = [e for e in events(fleet) if e["kind"] == "step"]
    together = {e["step"] for e in steps if set(e["participants"]) == {"node0-r0", "node1-r0"}}
    assert {e["step"] for e in steps} == set(range(EXACT_STEPS))
    if always_both:
        assert together == set(range(EXACT_STEPS))
    else:  # the replica that started later joined, and the two trained to the end together
        assert EXACT_STEPS - 1 in together
    data = build_summary(fleet)["data"]
    assert data["steps_committed"] == EXACT_STEPS and data["duplicates"] == data["missing"] == 0
    assert independent_data_check(fleet, num_samples=500) == (0, 0)


def test_a_two_node_job_trains_one_fleet_exactly(tmp_path, reference):
    code, output = _finish(_submit(tmp_path, PHALANX_MIN_REPLICAS="2"), tmp_path, timeout_s=400)
    assert code == 0, output
    run = tmp_path / "run"
    _check_one_fleet_exact(run, tmp_path, reference, always_both=True)
    secret = run / "fleet.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert _requeues(tmp_path) == []
    assert not any(e["resume"] for e in _launches(run)) and "Traceback" not in output


def _signal_mid_run(tmp_path: Path, signum: int) -> tuple[int, str]:
    """Submit, and once both nodes train together past step 13 send `signum` to the batch
    shell only (as `--signal=B:...` does). Past step 13, the newest periodic checkpoint
    (every 10) is older than the fleet."""
    node0 = tmp_path / "run" / "nodes" / "node0"

    def both_past_step_13() -> bool:
        return (node0 / "events.jsonl").exists() and any(
            e["kind"] == "step" and e["step"] >= 13 and len(e["participants"]) == len(NODES)
            for e in events(node0)
        )

    job = _submit(tmp_path)
    try:
        wait_for(both_past_step_13, timeout_s=300, what="both nodes past step 13")
    except BaseException:
        kill_tree(job)
        raise
    os.kill(job.pid, signum)
    return _finish(job, tmp_path, timeout_s=120)


def _check_preempted(run: Path, code: int, output: str) -> int:
    """Exit 75, every replica left at a step boundary, the newest step checkpointed: its step."""
    assert code == EXIT_PREEMPTED, output
    assert "Traceback" not in output, output
    stopped = [e for n in NODES for e in events(run / "nodes" / n) if e["kind"] == "preempted"]
    assert {e["replica"] for e in stopped} == {"node0-r0", "node1-r0"}, output
    newest = max(e["step"] for e in stopped)
    committed = [e["step"] for n in NODES for e in events(run / "nodes" / n) if e["kind"] == "step"]
    assert newest == max(committed) + 1
    assert (run / "checkpoints" / f"step_{newest:08d}").is_dir(), output
    return newest


def test_a_preempted_job_checkpoints_exits_75_and_its_requeue_resumes_exactly(tmp_path, reference):
    """SIGTERM: Slurm pre-empts the job (or scancel); Slurm requeues a pre-empted job itself."""
    run = tmp_path / "run"
    code, output = _signal_mid_run(tmp_path, signal.SIGTERM)
    newest = _check_preempted(run, code, output)
    assert _requeues(tmp_path) == []

    requeued_at = time.time()
    code, output = _finish(_submit(tmp_path, restarts=1), tmp_path, timeout_s=400)
    assert code == 0, output
    starts = [e for e in _launches(run) if e["t"] > requeued_at]
    assert len(starts) == len(NODES) and all(e["resume"] for e in starts), output
    # The replica that starts first resumes from that checkpoint; one that starts later
    # may load a newer one (the checkpoints are shared) before it heals from a peer.
    resumed = [
        e["step"]
        for n in NODES
        for e in events(run / "nodes" / n)
        if e["kind"] == "resume" and e["t"] > requeued_at
    ]
    assert len(resumed) == len(NODES) and min(resumed) == newest, (resumed, output)
    _check_one_fleet_exact(run, tmp_path, reference, always_both=False)


def test_the_time_limit_warning_checkpoints_and_requeues_the_job(tmp_path):
    """SIGUSR1 from `--signal=B:USR1@180`: the script checkpoints and requeues its job
    (what the requeued job does is the test above)."""
    code, output = _signal_mid_run(tmp_path, signal.SIGUSR1)
    _check_preempted(tmp_path / "run", code, output)
    assert _requeues(tmp_path) == [JOB_ID]
