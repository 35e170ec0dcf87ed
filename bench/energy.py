"""Energy objectives, the power budget and the thermal guard, measured side by side.

    python bench/energy.py [--repeats 2] [--steps 40]

Part 1, on a fleet of two new chips and two old ones that burn as much power
for about a third of the work (power curves as fleet.toml writes them), a
compute-bound MLP runs three ways, interleaved A B C A B C: all chips at full power
(`--objective time`), `--objective energy`, and `--power-budget-w`. Every run
uses the same emulation time scale, so wall-clock throughputs compare. We
report steady-state throughput and joules per sample (steps 5.. end, from the
step events: energy counters of every device, samples committed), and the
fleet's modelled draw summed per step against the budget.

Part 2: three MLP chips, one so badly cooled that at a full share it would
pass its throttle point and shut down; with the thermal guard on and off.

Writes bench/results/energy.json and docs/_generated/energy_bench.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fleet_helpers import MLP, events, phalanx, qualified_fleet, summary  # noqa: E402

NEW = "[device.power]\nidle_w = 60\nmax_w = 300\n"
OLD = "[device.power]\nidle_w = 50\nmax_w = 300\n"
POWER_FLEET = qualified_fleet(
    ("new-0", 1.0, NEW), ("new-1", 1.0, NEW), ("old-0", 0.35, OLD), ("old-1", 0.35, OLD)
)
# 0.25 chip-seconds per core-second over the full fleet's 2.7 units of speed, on 2 cores:
# the launcher's own choice for the full-power fleet, fixed so every config shares it.
TIME_SCALE = 0.25 * 2 / 2.7
BUDGET_W = 700
CONFIGS: dict[str, list[str]] = {
    "full power": ["--objective", "time"],
    "objective energy": ["--objective", "energy"],
    f"budget {BUDGET_W} W": ["--power-budget-w", str(BUDGET_W)],
}
BATCH = 256
# Compute-bound on purpose (a 256-wide layer applied 16 times: 66k parameters, so the
# allreduce is small): the regime where power limits matter. A step far from
# compute-bound pays idle draw while it waits, which dilutes any energy saving.
POWER_MLP_ARGS = ["--width", "256", "--repeat", "16", "--samples", "4096"]
WARMUP_STEPS = 5

HOT_FLEET = qualified_fleet(
    ("cool-0", 0.05, ""),
    ("cool-1", 0.05, ""),
    ("hot", 0.05, "[device.thermal]\nresistance_c_per_w = 0.7\ntime_constant_s = 3.0\n"),
)
MLP_ARGS = ["--dtype", "float64", "--steps", "100", "--batch", "48", "--samples", "500",
            "--repeat", "6", "--checkpoint-every", "10"]  # fmt: skip


def steady_state(run: Path, batch: int) -> dict[str, float]:
    """Throughput and J/sample over steps >= WARMUP_STEPS, and the per-step fleet draw."""
    by_step: dict[int, dict[str, dict]] = {}
    for e in events(run):
        if e["kind"] == "step" and e.get("source") == e["replica"]:
            by_step.setdefault(e["step"], {})[e["replica"]] = e
    steps = sorted(s for s in by_step if s >= WARMUP_STEPS)
    first, last = steps[0], steps[-1]
    t0 = min(e["t"] for e in by_step[first].values())
    t1 = min(e["t"] for e in by_step[last].values())
    energy_j = 0.0
    for replica in by_step[last]:
        if replica in by_step[first]:  # no restarts in these runs: counters are continuous
            energy_j += by_step[last][replica]["energy_j"] - by_step[first][replica]["energy_j"]
    samples = batch * (last - first)
    # Every chip at its computing draw at once: the worst moment of each step.
    draw_w = [
        sum(e.get("busy_power_w") or e["power_w"] for e in per.values()) for per in by_step.values()
    ]
    start = next(e for e in events(run) if e["kind"] == "run_start")
    plan = start.get("energy_plan") or {}
    return {
        "throughput_sps": samples / (t1 - t0),
        "j_per_sample": energy_j / samples,
        "max_draw_w": max(draw_w),
        "training": [p["device"] for p in plan.get("points", []) if p["train"]] or None,
        "limits_w": {p["device"]: p["limit_w"] for p in plan.get("points", []) if p["train"]},
    }


def power_runs(repeats: int, steps: int, tmp: Path) -> dict[str, list[dict]]:
    fleet = tmp / "power.toml"
    fleet.write_text(POWER_FLEET)
    runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    for repeat in range(repeats):
        for name, flags in CONFIGS.items():  # interleaved: drift hits every config alike
            out = tmp / f"{name.replace(' ', '_')}-{repeat}"
            result = phalanx(
                "run", str(MLP), "--out", str(out), "--fleet", str(fleet), "--quiet",
                "--emulation-time-scale", f"{TIME_SCALE:.6f}", *flags,
                "--", *POWER_MLP_ARGS, "--steps", str(steps), "--batch", str(BATCH),
                timeout_s=1200,
            )  # fmt: skip
            if result.returncode != 0:
                raise SystemExit(f"run failed: {result.stdout}\n{result.stderr}")
            runs[name].append(steady_state(out, BATCH))
            print(name, runs[name][-1], flush=True)
    return runs


def thermal_runs(tmp: Path) -> dict[str, dict]:
    fleet = tmp / "hot.toml"
    fleet.write_text(HOT_FLEET)
    rows = {}
    for name, flags in (("guard on", []), ("guard off", ["--no-thermal-guard"])):
        out = tmp / name.replace(" ", "_")
        result = phalanx("run", str(MLP), "--fleet", str(fleet), "--out", str(out), "--quiet",
                         *flags, "--", *MLP_ARGS, timeout_s=900)  # fmt: skip
        all_events = events(out)
        hot = [e for e in all_events if e["kind"] == "step" and e.get("source") == "r2"]
        info = summary(out)
        rows[name] = {
            "exit_code": result.returncode,
            "completed": bool(info.get("completed")),
            "hot_max_temperature_c": max((e["temperature_c"] for e in hot), default=None),
            "thermal_shutdowns": sum(1 for e in all_events if e["kind"] == "device_failure"),
            "hot_chip_restarts": sum(
                1 for e in all_events if e["kind"] == "worker_restart" and e["replica"] == "r2"
            ),
            "guard_actions": sum(1 for e in all_events if e["kind"] == "thermal"),
            "hot_samples": {d["id"]: d["samples"] for d in info["devices"]}.get("r2"),
            "throughput_sps": info.get("throughput_sps"),
        }
        print(name, rows[name], flush=True)
    return rows


def _median(values: list[float]) -> float:
    return statistics.median(values)


def render(power: dict[str, list[dict]], thermal: dict[str, dict], args: argparse.Namespace) -> str:
    base = power["full power"]
    lines = [
        "| run | devices training (limit) | throughput vs full power | J/sample vs full power "
        "| J/sample | max fleet draw per step (W) |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in power.items():
        limits = rows[0]["limits_w"]
        devices = ", ".join(
            f"{d} ({'full' if w is None else f'{w:g} W'})" for d, w in limits.items()
        )
        # Paired within a repeat (the runs of one repeat ran back to back), as in benchmarks.md.
        sps = [r["throughput_sps"] / b["throughput_sps"] for r, b in zip(rows, base)]
        jps = [r["j_per_sample"] / b["j_per_sample"] for r, b in zip(rows, base)]
        lines.append(
            f"| {name} | {devices or 'all (full)'} | {_median(sps):.3f} ({min(sps):.3f}-{max(sps):.3f}) "
            f"| {_median(jps):.3f} ({min(jps):.3f}-{max(jps):.3f}) "
            f"| {_median([r['j_per_sample'] for r in rows]):.4f} "
            f"| {max(r['max_draw_w'] for r in rows):.0f} |"
        )
    lines += [
        "",
        f"Generated by `python bench/energy.py --repeats {args.repeats} --steps {args.steps}` on "
        f"{args.date}: MLP {' '.join(POWER_MLP_ARGS)} (compute-bound), "
        f"{args.steps} steps of {BATCH}, fleet new-0/new-1 "
        "(speed 1, 60-300 W) and old-0/old-1 (speed 0.35, 50-300 W), default power-to-speed curve "
        "(half the power keeps 80% of the speed), emulation time scale fixed at "
        f"{TIME_SCALE:.3f}, runs interleaved; median (min-max) over repeats, steps "
        f"{WARMUP_STEPS}.. end. Energy is the emulated chips' power model, integrated in chip time.",
        "",
        "| thermal guard | run completed | hot chip max temperature (C) | thermal shutdowns "
        "| hot chip restarts | guard actions | hot chip samples |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in thermal.items():
        temperature = row["hot_max_temperature_c"]
        lines.append(
            f"| {name} | {'yes' if row['completed'] else 'no'} "
            f"| {'n/a' if temperature is None else f'{temperature:.1f}'} | {row['thermal_shutdowns']} "
            f"| {row['hot_chip_restarts']} | {row['guard_actions']} | {row['hot_samples']} |"
        )
    lines += [
        "",
        "Three float64 MLP chips (speed 0.05), 100 steps of 48; the hot one settles at "
        "25 C + 0.7 C/W x its draw (time constant 3 s), throttles at 85 C and shuts down at 100 C.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the table from energy.json"
    )
    args = parser.parse_args()
    results = ROOT / "bench" / "results" / "energy.json"
    if args.render_only:
        stored = json.loads(results.read_text())
        power, thermal = stored["power"], stored["thermal"]
        args.repeats, args.steps, args.date = stored["repeats"], stored["steps"], stored["date"]
    else:
        args.date = time.strftime("%Y-%m-%d")
        with tempfile.TemporaryDirectory() as tmp:
            power = power_runs(args.repeats, args.steps, Path(tmp))
            thermal = thermal_runs(Path(tmp))
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(
            json.dumps(
                {"repeats": args.repeats, "steps": args.steps, "date": time.strftime("%Y-%m-%d"),
                 "power": power, "thermal": thermal},
                indent=1,
            )
        )  # fmt: skip
    text = render(power, thermal, args)
    (ROOT / "docs" / "_generated" / "energy_bench.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
