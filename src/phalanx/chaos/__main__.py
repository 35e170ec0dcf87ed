"""`python -m phalanx.chaos --schedules N --seed S --out DIR`: run a chaos campaign."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from phalanx.chaos.campaign import CampaignConfig, available_categories, run_campaign
from phalanx.chaos.runner import Workload
from phalanx.chaos.schedule import CATEGORIES
from phalanx.errors import EXIT_USAGE, UsageError

# examples/ sits next to src/ in the repository.
DEFAULT_SCRIPT = Path(__file__).resolve().parents[3] / "examples" / "mlp.py"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m phalanx.chaos", description=__doc__)
    parser.add_argument("--schedules", type=int, default=200, help="randomised schedules to run")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (schedule i is fixed)")
    parser.add_argument("--out", type=Path, default=Path("runs/chaos"), help="run directories")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per schedule")
    parser.add_argument("--timeout-s", type=float, default=2.0, help="collective timeout")
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=600.0,
        help="limit per schedule: ~10x a schedule's wall on a loaded machine, so only a hang hits it",
    )
    parser.add_argument("--results", type=Path, default=Path("bench/results/chaos.json"))
    parser.add_argument("--table", type=Path, default=Path("docs/_generated/chaos_table.md"))
    parser.add_argument(
        "--doc", type=Path, default=None, help="refresh the chaos table inside this Markdown file"
    )
    parser.add_argument("--script", type=Path, default=DEFAULT_SCRIPT)
    parser.add_argument("--keep-runs", action="store_true", help="keep passing runs' directories")
    parser.add_argument(
        "--budget-min", type=float, default=None, help="start no schedule after this many minutes"
    )
    parser.add_argument("--shrink", action="store_true", help="minimise failing schedules")
    parser.add_argument(
        "--only", type=str, default=None, help="comma-separated schedule indices to run (repro)"
    )
    parser.add_argument(
        "--without",
        type=str,
        default="",
        help="comma-separated fault categories to leave out (e.g. netcut)",
    )
    parser.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="keep the schedules already in --results (same seed and steps), run the rest",
    )
    parser.add_argument("--code-label", default=None, help="what code is under test (recorded)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="schedules run at once (each its own fleet and ports)"
    )
    return parser


def _validate(args: argparse.Namespace) -> None:
    if args.schedules < 1:
        raise UsageError("--schedules", "must be >= 1", "pass e.g. --schedules 200", args.schedules)
    if args.steps < 8:
        raise UsageError("--steps", "must be >= 8 to leave room for faults", "use 30", args.steps)
    unknown = set(filter(None, args.without.split(","))) - set(CATEGORIES)
    if unknown:
        raise UsageError("--without", f"unknown categories {sorted(unknown)}", f"use {CATEGORIES}")
    if args.only is not None and not all(i.strip().isdigit() for i in args.only.split(",")):
        raise UsageError("--only", "must be schedule indices", "e.g. --only 3,17", args.only)
    if not 1 <= args.jobs <= 16:
        raise UsageError("--jobs", "must be 1..16", "use 3 on 2 cores", args.jobs)
    if not args.timeout_s > 0 or not args.deadline_s > 0:
        raise UsageError("--timeout-s/--deadline-s", "must be > 0", "use e.g. 2 and 300")
    if not args.script.is_file():
        raise UsageError("--script", "does not exist", "pass examples/mlp.py", str(args.script))


def _previous(args: argparse.Namespace) -> tuple[tuple[dict, ...], str | None, float]:
    """The records, command and wall time of an earlier run of this campaign in --results."""
    if not args.results.exists():
        return (), None, 0.0
    document = json.loads(args.results.read_text())
    if document.get("seed") != args.seed or document["workload"]["steps"] != args.steps:
        raise UsageError("--continue", "--results holds another campaign", "drop --continue")
    return tuple(document["schedules"]), document.get("command"), float(document.get("wall_s", 0))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _validate(args)
    except UsageError as err:
        print(f"error: {err.message()}", file=sys.stderr)
        return EXIT_USAGE
    categories, left_out = available_categories(tuple(filter(None, args.without.split(","))))
    for category, why in left_out.items():
        print(f"{category}: {why}", flush=True)
    only = None if args.only is None else tuple(int(i) for i in args.only.split(","))
    try:
        previous, before, wall_s = _previous(args) if args.resume else ((), None, 0.0)
    except UsageError as err:
        print(f"error: {err.message()}", file=sys.stderr)
        return EXIT_USAGE
    command = (
        f"--schedules {args.schedules} --seed {args.seed} --steps {args.steps} --jobs {args.jobs}"
        + ("" if args.budget_min is None else f" --budget-min {args.budget_min:g}")
        + (" --continue" if args.resume else "")
        + ("" if args.only is None else f" --only {args.only}")
    )
    config = CampaignConfig(
        schedules=args.schedules,
        seed=args.seed,
        out_dir=args.out,
        workload=Workload(script=args.script, steps=args.steps, timeout_s=args.timeout_s),
        results_json=args.results,
        table_md=args.table,
        deadline_s=args.deadline_s,
        keep_runs=args.keep_runs,
        shrink=args.shrink,
        doc_md=args.doc,
        budget_s=None if args.budget_min is None else args.budget_min * 60,
        jobs=args.jobs,
        categories=categories,
        only=only,
        left_out=tuple(left_out.items()),
        previous=previous,
        previous_wall_s=wall_s,
        code_label=args.code_label,
        command=command if before is None else f"{before}, then {command}",
    )
    # SIGTERM as Ctrl-C: the campaign stops its fleets and namespaces before it exits.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        records = run_campaign(config, log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print("stopped; the results of the finished schedules are written", file=sys.stderr)
        return 130
    return 0 if all(not r["violations"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
