"""Replica groups (issue 15): an uneven layout's throughput against the ideal, memory per chip.

    python bench/groups.py [--steps 30] [--repeats 2]

A float32 MLP on one fast chip with 1.4x the memory its state needs and four
chips of half its speed and half its memory, which cannot hold it alone. `phalanx plan --emulate FLEET --script` measures the model and
chooses the layout (which chips form each replica, how many ranks each chip
hosts); `phalanx run --plan` trains it. The ideal is the sum of the chips'
solo rates for the same model (each chip's speed x the rate of one speed-1
chip trained alone, measured in the same run with no memory cap and the
same emulation time scale). Memory per chip is the most its ranks held while
a micro-batch ran (summary.json `devices[].memory`) against its cap.

Writes bench/results/groups.json and docs/_generated/groups_bench.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fleet_helpers import MLP, events, phalanx, summary  # noqa: E402

from bench.group_microbatch import measure as microbatch_cpu  # noqa: E402
from bench.timeline import steady_rate_sps, step_times  # noqa: E402

MODEL_ARGS = ["--width", "512", "--repeat", "1", "--samples", "16384", "--batch", "2048"]
BATCH = 2048
# Chip-seconds per wall second, for every run alike so rates compare: low enough that the
# five chips' six ranks stay paced (not host-bound) on two cores.
TIME_SCALE = 0.2
WARMUP_STEPS = 5
FAST_SPEED, SLOW_SPEED, SLOW_CHIPS = 1.0, 0.5, 4


def fleet_spec(state_bytes: int) -> str:
    """A fast chip of 1.4x the model's state, four slow chips of half its memory.

    Alone, the fast chip trains and the slow ones cannot; grouped, all five train,
    with room beside their shards for micro-batches of some 80 samples.
    """
    fast = int(1.4 * state_bytes)
    return f"{FAST_SPEED}:mem={fast}B,{SLOW_SPEED}x{SLOW_CHIPS}:mem={fast // 2}B"


def steady_sps(run: Path) -> float:
    """Samples per second over the committed steps after warm-up (bench/timeline.py's rule)."""
    return steady_rate_sps(step_times(events(run), first_writer=True), BATCH, WARMUP_STEPS)


def _run(out: Path, steps: int, *where: str) -> Path:
    result = phalanx(
        "run", str(MLP), "--out", str(out), *where, "--quiet",
        "--emulation-time-scale", str(TIME_SCALE), "--", *MODEL_ARGS, "--steps", str(steps),
        timeout_s=1200,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"{out.name} failed: {result.stderr[-2000:]}")
    return out


def measure(steps: int, repeats: int, tmp: Path) -> dict:
    from phalanx.plan.layout_file import read_layout
    from phalanx.plan.layout_needs import needs_of_script

    needs = needs_of_script(MLP, MODEL_ARGS)
    fleet = fleet_spec(needs.state_bytes)
    plan = tmp / "plan.toml"
    done = phalanx("plan", "--emulate", fleet, "--script", str(MLP), "--out", str(plan), "--",
                   *MODEL_ARGS, timeout_s=600)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"plan failed: {done.stderr[-2000:]}")
    layout = read_layout(plan)
    rows = []
    for repeat in range(repeats):  # A B A B: the group run and the solo chip interleaved
        grouped = _run(tmp / f"groups-{repeat}", steps, "--plan", str(plan))
        solo = _run(tmp / f"solo-{repeat}", steps, "--emulate", "1")
        solo_sps = steady_sps(solo)
        chip_speeds = FAST_SPEED + SLOW_SPEED * SLOW_CHIPS
        rows.append(
            {
                "group_sps": steady_sps(grouped),
                "solo_speed1_sps": solo_sps,
                "ideal_sps": chip_speeds * solo_sps,
                "devices": [
                    {"id": d["id"], "memory": d["memory"], "final_share": d["final_share"]}
                    for d in summary(grouped)["devices"]
                ],
            }
        )
    return {
        "fleet": fleet,
        "model_args": MODEL_ARGS,
        "time_scale": TIME_SCALE,
        "steps": steps,
        "state_bytes": needs.state_bytes,
        "layout": [
            [
                {
                    "id": p.chip.id,
                    "speed": p.chip.speed,
                    "memory_bytes": p.chip.memory_bytes,
                    "ranks": p.ranks,
                }
                for p in r.chips
            ]
            for r in layout.replicas
        ],
        "ranks_per_group": layout.ranks_per_group,
        "predicted_speed": layout.speed,
        "runs": rows,
        # What FSDP2 adds on a rank's own thread per micro-batch (paced by the chip).
        "microbatch": microbatch_cpu(
            layout.ranks_per_group, layout.replicas[-1].chips[0].micro_batch, 512
        ),
    }


def render(result: dict) -> str:
    from phalanx.emulate.memory_size import describe_bytes

    runs = result["runs"]
    mb = result["microbatch"]
    ranks = result["ranks_per_group"] * len(result["layout"])
    ratio = statistics.median(r["group_sps"] / r["ideal_sps"] for r in runs)
    lines = [
        f"Fleet `{result['fleet']}` (speeds relative to this host, memory that binds); "
        f"model: examples/mlp.py {' '.join(result['model_args'])} (float32, state "
        f"{describe_bytes(result['state_bytes'])}: no chip holds it alone). Layout chosen by "
        f"`phalanx plan --emulate ... --script`: {result['ranks_per_group']} ranks per replica, "
        + "; ".join(
            "replica "
            + " + ".join(f"{c['id']} (speed {c['speed']:g}, {c['ranks']} ranks)" for c in r)
            for r in result["layout"]
        )
        + f". Emulation time scale {result['time_scale']}, {result['steps']} steps, steps "
        f"{WARMUP_STEPS}.. measured, {len(runs)} repeat(s).",
        "",
        "| repeat | groups samples/s | ideal samples/s (sum of solo rates) | groups / ideal | "
        "planner's prediction / ideal |",
        "|---|---|---|---|---|",
    ]
    solo_speeds = FAST_SPEED + SLOW_SPEED * SLOW_CHIPS
    predicted = result["predicted_speed"] / solo_speeds
    for i, r in enumerate(runs):
        lines.append(
            f"| {i} | {r['group_sps']:.0f} | {r['ideal_sps']:.0f} | "
            f"{r['group_sps'] / r['ideal_sps']:.2f} | {predicted:.2f} |"
        )
    lines += [
        "",
        f"Median groups / ideal: **{ratio:.2f}**. The planner's prediction counts compute "
        "only. What the groups lose on this host: FSDP2's work around each micro-batch "
        "(gathering the weights for forward and again for backward, reduce-scattering the "
        "gradient, its hooks and copies) runs on the rank's own thread. Measured "
        f"(bench/group_microbatch.py): one micro-batch of {mb['samples']} samples, forward + "
        f"backward, takes {mb['whole_cpu_ms']:.1f} ms of CPU on that thread with the model "
        f"whole and {mb['sharded_cpu_ms']:.1f} ms sharded over {mb['ranks']} ranks "
        f"({mb['sharded_wall_ms']:.0f} ms of wall time, waits included). An emulated chip "
        "paces only its compute: the model's CPU time per sample, measured whole before it "
        "is sharded (runtime/compute_probe.py), over the chip's speed; FSDP2's host work "
        f"shows as the time it takes here, {ranks} rank processes on two cores exchanging over "
        "loopback gloo, several times a step, as each rank's micro-batches are capped by its "
        "chip's memory. On accelerators those gathers use the chips' links and overlap "
        "compute; this host measures the protocol, not that overlap.",
        "",
              "| replica | chip | ranks | most held | cap | held / cap |", "|---|---|---|---|---|---|"]  # fmt: skip
    for device in runs[-1]["devices"]:
        for chip in (device["memory"] or {}).get("chips", []):
            lines.append(
                f"| {device['id']} | {chip['chip']} | {chip['ranks']} | "
                f"{describe_bytes(chip['peak_bytes'])} | {describe_bytes(chip['cap_bytes'])} | "
                f"{chip['peak_bytes'] / chip['cap_bytes']:.0%} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.steps, args.repeats, Path(tmp))
    (ROOT / "bench" / "results" / "groups.json").write_text(json.dumps(result, indent=2) + "\n")
    out = ROOT / "docs" / "_generated" / "groups_bench.md"
    out.write_text(render(result))
    print(out.read_text())


if __name__ == "__main__":
    main()
