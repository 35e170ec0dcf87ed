"""Replica groups in training (docs/groups.md): a model no chip holds alone trains exactly.

Real processes: two groups of unequal emulated chips (an 800 KB and a 400 KB
chip; three 400 KB chips), each group three ranks of one FSDP2-sharded float64
model, torchft replicating the groups rank by rank. The last chip of one group
is killed (its group goes down and restarts as one, then heals rank by rank
from the other group) and the small chip of the other hangs. After 60 steps the run is
resumed from its last checkpoint (one whole state, gathered by a group) on
groups of two ranks on other chips. The result is the one-process run's,
within 1e-9, every sample used once. The same model on one chip of the
smallest size does not fit: one line, exit code 6.
"""

from __future__ import annotations

import pytest

from tests.fleet_helpers import (
    EXACT_ARGS,
    MLP,
    events,
    local_run,
    max_param_diff,
    phalanx,
    summary,
)

pytestmark = [pytest.mark.dist, pytest.mark.timeout(420)]
SMALL = "mem=400KB"  # the model's weights, gradients and AdamW moments: 667 KB
GROUPS = f"1:mem=800KB+1:{SMALL},1:{SMALL}+1:{SMALL}+1:{SMALL}"
# The same chips, slow (a step ~0.5 s): the killed group's three processes start again
# (15-25 s on a busy 2-core host) and heal while the other group is still training.
SLOW_GROUPS = GROUPS.replace("1:", "0.0003:")


def test_groups_of_unequal_chips_train_a_model_no_chip_holds_across_a_kill_a_hang_and_a_regroup(
    tmp_path,
):
    # 60 steps: long enough for the killed group's three processes to start again and heal.
    # (One application of the hidden layer: FSDP2 gathers a unit's weights again for
    # every call, and the memory probe counts each gathered copy it sees saved.)
    args = [*EXACT_ARGS, "--repeat", "1"]
    reference = local_run(MLP, tmp_path / "one-process", args)
    run = tmp_path / "run"
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", SLOW_GROUPS, "--timeout-s", "5",
        "--quiet",
        "--fault", "kill:replica=1,step=3,restart_s=1,chip=2",
        "--fault", "hang:replica=0,step=30,seconds=2,chip=1",
        "--", *args, "--steps", "60", timeout_s=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = events(run)
    caps = [e for e in log if e["kind"] == "chip_memory"]
    assert len({(e["replica"], e["rank"]) for e in caps}) == 6  # every rank of both groups
    assert all(e["cap_bytes"] == 400_000 for e in caps)
    assert all(e["state_bytes"] < 667_000 / 2 for e in caps)  # a shard, not the model
    heals = [e for e in log if e["kind"] == "heal" and e["replica"] == "r1"]
    assert heals, "the restarted group never healed"
    after = [e for e in log if e["kind"] == "step" and e["step"] > heals[0]["step"]]
    assert any("r1" in e["participants"] for e in after)
    # Each checkpoint is one whole state (the group's ranks gathered, its first wrote)...
    assert [e["step"] for e in log if e["kind"] == "checkpoint"][-1] == 60
    # ... so groups of two ranks on other chips resume it, and train on to 100.
    other = "1:mem=600KB+1:mem=600KB,1:mem=600KB+1:mem=600KB"
    resumed = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", other, "--quiet", "--resume",
        "--", *args, timeout_s=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # (A restarted group loads the newest checkpoint too: the killed one may have.)
    later = events(run)[len(log) :]
    assert {(e["replica"], e["step"]) for e in later if e["kind"] == "resume"} == {
        ("r0", 60),
        ("r1", 60),
    }
    done = summary(run)
    assert done["completed"] and (done["data"]["duplicates"], done["data"]["missing"]) == (0, 0)
    assert max_param_diff(run, reference) < 1e-9


def test_the_model_fits_no_small_chip_alone_and_the_plan_for_the_fleet_runs(tmp_path):
    args = [*EXACT_ARGS, "--repeat", "1"]
    result = phalanx(
        "run", str(MLP), "--out", str(tmp_path / "run"), "--emulate", f"1:{SMALL}", "--quiet",
        "--", *args, timeout_s=200,
    )  # fmt: skip
    assert result.returncode == 6, result.stdout[-2000:] + result.stderr[-2000:]
    assert "out of memory" in (result.stdout + result.stderr).lower()
    # The planner measures the script's model and groups such a fleet's chips. In float32,
    # at half the memory: FSDP2 reduces float32 with an op gloo lacks unless told to SUM.
    args = [*args, "--dtype", "float32"]
    plan = tmp_path / "plan.toml"
    fleet = "1:mem=400KB,1x4:mem=200KB"
    result = phalanx(
        "plan", "--emulate", fleet, "--script", str(MLP), "--out", str(plan), "--", *args,
        timeout_s=200,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "ranks_per_group = 3" in plan.read_text()
    # ... and `phalanx run --plan` runs exactly that layout, each chip within its memory.
    steps = ["--steps", "12"]
    run = tmp_path / "planned"
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--plan", str(plan), "--quiet", "--", *args, *steps,
        timeout_s=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = events(run)
    assert {e["cap_bytes"] for e in log if e["kind"] == "chip_memory"} == {200_000}
    assert not [e for e in log if e["kind"] == "out_of_memory"]
    done = summary(run)
    assert done["steps"] == 12 and (done["data"]["duplicates"], done["data"]["missing"]) == (0, 0)
