"""Replica groups in the planner and simulator: chips too small alone train in groups."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.plan.fleet_classes import load_fleet, parse_fleet
from phalanx.plan.groups import MAX_GROUP, chips_per_replica, group_fleet
from phalanx.plan.model_profile import load_model
from phalanx.plan.planner import make_plan
from phalanx.sim.engine import simulate
from phalanx.sim.policies import SimConfig, parse_policies

ROOT = Path(__file__).resolve().parents[2]
FLEET_12K = ROOT / "examples" / "fleets" / "old_accelerators_12k.toml"
LLAMA_7B = ROOT / "examples" / "models" / "llama_7b.toml"
GIB = 1024**3


def test_group_size_is_the_smallest_that_holds_a_shard_and_a_sample() -> None:
    fleet, model = load_fleet(FLEET_12K), load_model(LLAMA_7B)
    sizes = {c.name: chips_per_replica(c, model) for c in fleet.classes}
    assert sizes == {
        "acc-80g": 2,
        "acc-64g": 2,
        "acc-32g-a": 4,
        "acc-32g-b": 4,
        "acc-16g": 8,
        "cpu-256g": 1,
    }
    for c in fleet.classes:
        k = sizes[c.name]
        fits = model.state_bytes / k + model.activation_bytes_per_sample <= c.memory_bytes
        smaller_fits = k > 1 and (
            model.state_bytes / (k - 1) + model.activation_bytes_per_sample <= c.memory_bytes
        )
        assert fits and not smaller_fits


def test_a_group_fails_throttles_and_corrupts_as_often_as_its_chips_together() -> None:
    fleet, model = load_fleet(FLEET_12K), load_model(LLAMA_7B)
    grouped = group_fleet(fleet, model)
    chip, group = fleet.classes[4], grouped.fleet.classes[4]  # acc-16g, groups of 8
    g = grouped.groupings[4]
    assert (g.size, g.groups, g.chips_left) == (8, chip.usable // 8, chip.usable % 8)
    assert group.count == g.groups and group.defect_rate == 0.0
    assert group.mtbf_h == pytest.approx(chip.mtbf_h / 8)
    assert group.sdc_rate == pytest.approx(8 * chip.sdc_rate)
    assert group.power_max_w == pytest.approx(8 * chip.power_max_w)
    assert group.speed_sps(model) == pytest.approx(8 * chip.speed_sps(model) * g.efficiency)
    assert 0.5 < g.efficiency < 1.0
    # a faster in-group link leaves more of the compute
    fast = group_fleet(parse_fleet({"class": [_table(chip, group_gbps=1000)]}), model)
    assert fast.groupings[0].efficiency > g.efficiency


def _table(cls, **changes) -> dict:
    keys = ("name", "count", "peak_flops", "efficiency", "memory_bytes", "group_gbps")
    return {**{k: getattr(cls, k) for k in keys}, **changes}


def test_a_7b_model_on_chips_that_cannot_hold_it_alone_uses_most_of_them() -> None:
    fleet, model = load_fleet(FLEET_12K), load_model(LLAMA_7B)
    plan = make_plan(fleet, model)
    healthy_accelerators = sum(c.usable for c in fleet.classes if c.name != "cpu-256g")
    accelerators_used = sum(c.chips_used for c in plan.classes if c.name != "cpu-256g")
    assert accelerators_used >= 0.9 * healthy_accelerators
    assert plan.throughput_sps >= 0.5 * plan.solo_sps
    assert all(c.group_size > 1 for c in plan.classes if c.name.startswith("acc"))
    assert sum(s * n for c in plan.classes for s, n in c.shares) == model.global_batch
    for c in plan.classes:
        assert c.chips_used + sum(e.count for e in c.excluded) == c.count
    # One shard layout for every group (groups of 2, 4 and 8 chips): 8 ranks, so an
    # 80 GiB chip hosts 4 of them and a 16 GiB chip 1, each exactly its 1/k.
    assert plan.ranks_per_group == 8
    assert all(plan.ranks_per_group % c.group_size == 0 for c in plan.classes if c.used)

    # The simulator runs that plan, a group as the unit that fails.
    cfg = SimConfig(days=7.0, seed=0)
    result = simulate(fleet, model, plan, cfg, parse_policies("phalanx,ddp-restart"))
    assert (result.devices, result.chips) == (plan.replicas_used, plan.devices_used)
    phalanx, restart = result.policies
    assert phalanx.failures > 0
    assert 0 < phalanx.goodput_sps <= plan.throughput_sps * (1 + 1e-9)
    assert phalanx.goodput_sps > restart.goodput_sps


def test_the_plan_command_explains_the_groups(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    result = subprocess.run(
        [sys.executable, "-m", "phalanx", "plan", "--fleet", str(FLEET_12K),
         "--model", str(LLAMA_7B), "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "groups of 8 chips" in result.stdout and "replica groups" in result.stdout
    data = json.loads(out.read_text())
    by_name = {c["name"]: c for c in data["classes"]}
    assert by_name["acc-16g"]["group_size"] == 8
    assert by_name["acc-16g"]["chips_used"] == 8 * by_name["acc-16g"]["used"]
    assert data["devices_used"] == sum(c["chips_used"] for c in data["classes"])
    assert data["ranks_per_group"] == 8 and "(4 of the group's 8 ranks)" in result.stdout


def test_a_chip_too_small_even_for_the_largest_group_is_left_out_for_memory() -> None:
    model = load_model(LLAMA_7B)
    tiny = {"name": "tiny", "count": 4, "throughput_sps": 1.0, "memory_bytes": 2.5e9}
    big = {"name": "big", "count": 2, "throughput_sps": 1.0, "memory_gib": 256}
    plan = make_plan(parse_fleet({"class": [tiny, big]}), model)
    assert plan.classes[0].group_size == 0 and plan.classes[0].used == 0
    (memory,) = plan.classes[0].excluded
    assert memory.reason == "memory" and f"over {MAX_GROUP} chips" in memory.detail
