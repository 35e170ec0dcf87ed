"""`phalanx sites`: a whole sites run on one machine (the demo, tests, benches).

    phalanx sites --site a=1,1 --site b=0.5,0.5 --outer-every 20 train.py -- --steps 200

Each site is an ordinary `phalanx run` (its own lighthouse and run directory,
OUT/NAME) that joins an outer lighthouse this command starts; see
launch/sites_runner.py for how they run and stop, docs/sites.md for the design.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from phalanx.errors import UsageError
from phalanx.launch.flag_check import SitesCommand
from phalanx.launch.run_config import script_and_args


def sites_command(
    ctx: typer.Context,
    script: Annotated[Path, typer.Argument(help="Your training script (uses phalanx.Trainer).")],
    site: Annotated[
        list[str] | None,
        typer.Option(
            "--site",
            metavar="NAME=SPEC",
            help="A site and its chips, SPEC as --emulate takes it (repeatable).",
        ),
    ] = None,
    outer_every: Annotated[
        int | None, typer.Option(metavar="H", help="Inner steps between outer steps (required).")
    ] = None,
    outer_compression: Annotated[
        str | None,
        typer.Option(metavar="none|int8|4bit", help="What crosses the outer link (default none)."),
    ] = None,
    outer_block_size: Annotated[
        int | None, typer.Option(help="Values per scale when compressed (default 64).")
    ] = None,
    outer_error_feedback: Annotated[
        bool | None,
        typer.Option(help="Carry the quantisation error to the next round (default)."),
    ] = None,
    outer_lr: Annotated[float | None, typer.Option(help="Outer learning rate (default 0.7).")] = (
        None
    ),
    outer_momentum: Annotated[
        float | None, typer.Option(help="Outer Nesterov momentum (default 0.9).")
    ] = None,
    outer_replay: Annotated[
        Path | None,
        typer.Option(help="Take each round's step counts from a site's --out of an earlier run."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Run directory; site NAME's run is in OUT/NAME.")
    ] = Path("runs/sites"),
    timeout_s: Annotated[
        float | None, typer.Option(help="Each site's collective timeout (phalanx run's).")
    ] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Durable checkpoint every N steps, in every site.")
    ] = None,
    site_fault: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME:FAULT", help="--fault FAULT in site NAME's run (repeatable)."),
    ] = None,
    cut: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME:round=R,for_s=S[,delay_s=D]",
            help="Cut site NAME off for S seconds after outer round R (repeatable).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Print nothing but errors.")] = False,
) -> None:
    """Train SCRIPT on several sites of this machine, synchronised every H steps.

    Each site is a `phalanx run` of its own chips in OUT/NAME; an outer lighthouse
    joins them. Arguments after the options go to the script.
    """
    from phalanx.launch.site_cut import parse_cut
    from phalanx.launch.site_flags import SiteFlags, site_settings
    from phalanx.launch.sites_plan import (
        SiteEntry,
        SitesPlan,
        check_out_dir,
        parse_sites,
        site_faults,
    )

    script, arguments = script_and_args(ctx, script)
    parsed = parse_sites(site or [])
    names = [name for name, _, _ in parsed]
    if outer_every is None:
        raise UsageError("--outer-every", "is missing", "add e.g. --outer-every 20")
    # Every outer flag checked here, once, in the flags' words (each site checks them again).
    settings = site_settings(
        SiteFlags(
            names[0], ",".join(names), "127.0.0.1:1", outer_every, outer_compression,
            outer_block_size, outer_error_feedback, outer_lr, outer_momentum, outer_replay,
        )
    )  # fmt: skip
    if not script.is_file():
        raise UsageError(
            "SCRIPT", "does not exist", "give the path of your training script", str(script)
        )
    if timeout_s is not None and not timeout_s > 0:
        raise UsageError("--timeout-s", "must be > 0", "pass e.g. --timeout-s 5", timeout_s)
    if checkpoint_every is not None and checkpoint_every < 0:
        raise UsageError(
            "--checkpoint-every", "must be >= 0", "pass 0 to turn checkpoints off", checkpoint_every
        )
    faults = site_faults(site_fault or [], {name: replicas for name, _, replicas in parsed})
    cuts = tuple(parse_cut(text, names) for text in cut or [])
    check_out_dir(out, names)
    outer_flags = {
        flag: str(value)
        for flag, value in (
            ("--outer-every", outer_every),
            ("--outer-compression", outer_compression),
            ("--outer-block-size", outer_block_size),
            ("--outer-lr", outer_lr),
            ("--outer-momentum", outer_momentum),
            ("--outer-replay", outer_replay.absolute() if outer_replay else None),
        )
        if value is not None
    }
    if outer_error_feedback is not None:
        flag = "--outer-error-feedback" if outer_error_feedback else "--no-outer-error-feedback"
        outer_flags[flag] = ""
    run_flags: list[str] = []
    if timeout_s is not None:
        run_flags += ["--timeout-s", str(timeout_s)]
    if checkpoint_every is not None:
        run_flags += ["--checkpoint-every", str(checkpoint_every)]
    if quiet:
        run_flags.append("--quiet")
    plan = SitesPlan(
        script=script.absolute(),
        script_args=arguments,
        sites=tuple(
            SiteEntry(name, spec, replicas, tuple(faults[name])) for name, spec, replicas in parsed
        ),
        out_dir=out.absolute(),
        outer_flags=outer_flags,
        outer_settings={
            key: value
            for key, value in (settings.to_json() if settings else {}).items()
            if key not in ("site", "site_names", "outer")
        },
        cuts=cuts,
        run_flags=tuple(run_flags),
        quiet=quiet,
    )
    from phalanx.launch.sites_runner import SitesRunner

    raise typer.Exit(SitesRunner(plan).run())


def register(app: typer.Typer) -> None:
    app.command(
        "sites",
        cls=SitesCommand,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(sites_command)
