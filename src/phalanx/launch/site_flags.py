"""`phalanx run --site NAME --sites a,b --outer HOST:PORT --outer-every H ...`: checked.

The flags become a `SiteRunSettings` (sites/run_settings.py), which every worker
of the site receives in its WorkerConfig. SiteRunSettings and the blocks under it
name their fields as a config file does (`outer_every`, `compression`); on the
command line the user typed flags, so every error is re-raised here naming the
flag (FLAG_OF_FIELD): the one place where field names become flag names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phalanx.errors import UsageError

if TYPE_CHECKING:
    from phalanx.sites.run_settings import SiteRunSettings

# A field of SiteRunSettings (or of what it builds) -> (its flag, the fix in flag words).
# A fix of None keeps the field's own fix text (it already speaks of flags or values).
FLAG_OF_FIELD: dict[str, tuple[str, str | None]] = {
    "outer_every": ("--outer-every", None),
    "compression": ("--outer-compression", "use --outer-compression none, int8 or 4bit"),
    "compression_block_size": ("--outer-block-size", "use e.g. --outer-block-size 64"),
    "error_feedback": (
        "--no-outer-error-feedback",
        "drop --no-outer-error-feedback, or use --outer-compression none",
    ),
    "outer_lr": (
        "--outer-lr",
        "use e.g. --outer-lr 0.7 (DiLoCo), or --outer-lr 1 --outer-momentum 0 to average",
    ),
    "outer_momentum": (
        "--outer-momentum",
        "use e.g. --outer-momentum 0.9 (DiLoCo), or 0 for no momentum",
    ),
    "sites": ("--sites", "name every site once, e.g. --sites a,b"),
}
SITE_FLAGS = ("--site", "--sites", "--outer")


@dataclass(frozen=True)
class SiteFlags:
    """The sites flags of `phalanx run` as given (None: not given)."""

    site: str | None = None
    sites: str | None = None
    outer: str | None = None
    outer_every: int | None = None
    compression: str | None = None
    block_size: int | None = None
    error_feedback: bool | None = None
    outer_lr: float | None = None
    outer_momentum: float | None = None
    replay: Path | None = None

    def given_outer_flags(self) -> list[str]:
        """The `--outer-*` flags given, by name."""
        named = {
            "--outer-every": self.outer_every,
            "--outer-compression": self.compression,
            "--outer-block-size": self.block_size,
            "--outer-error-feedback": self.error_feedback,
            "--outer-lr": self.outer_lr,
            "--outer-momentum": self.outer_momentum,
            "--outer-replay": self.replay,
        }
        return [flag for flag, value in named.items() if value is not None]


def site_settings(flags: SiteFlags) -> SiteRunSettings | None:
    """The site's settings, or None for a run that is not a site; bad flags: UsageError."""
    if flags.site is None:
        stray = [
            flag
            for flag, value in (("--sites", flags.sites), ("--outer", flags.outer))
            if value is not None
        ] + flags.given_outer_flags()
        if stray:
            raise UsageError(
                stray[0],
                "belongs to a sites run, and --site is not given",
                "add --site NAME --sites a,b --outer HOST:PORT --outer-every H, or drop "
                + ", ".join(stray),
            )
        return None
    absent = [
        flag
        for flag, value in (
            ("--sites", flags.sites),
            ("--outer", flags.outer),
            ("--outer-every", flags.outer_every),
        )
        if value is None
    ]
    if absent:
        raise UsageError(
            "--site",
            f"needs {', '.join(absent)} too",
            "a site names every site (--sites a,b), the outer lighthouse (--outer HOST:PORT) "
            "and the outer round (--outer-every H)",
            flags.site,
        )
    from phalanx.fleetnet.hosts import check_name, parse_endpoint, url_host

    check_name("--site", flags.site)
    names = [check_name("--sites", name.strip()) for name in (flags.sites or "").split(",")]
    host, port = parse_endpoint("--outer", flags.outer or "")
    replay = _replay_dir(flags.replay)
    # Imported once the cheap checks passed: the codecs import torch.
    from phalanx.sites.run_settings import SiteRunSettings

    chosen: dict[str, Any] = {
        key: value
        for key, value in (
            ("compression", flags.compression),
            ("block_size", flags.block_size),
            ("error_feedback", flags.error_feedback),
            ("outer_lr", flags.outer_lr),
            ("outer_momentum", flags.outer_momentum),
        )
        if value is not None
    }
    try:
        return SiteRunSettings(
            site=flags.site,
            site_names=tuple(names),
            outer=f"{url_host(host)}:{port}",
            outer_every=flags.outer_every,  # type: ignore[arg-type]  # checked above
            replay=None if replay is None else str(replay),
            **chosen,
        )
    except UsageError as err:
        raise as_flag_error(err) from None


def as_flag_error(err: UsageError) -> UsageError:
    """The same error, naming the flag where it named a settings field."""
    field = err.field.split("[", 1)[0]  # `sites[1].name` is the --sites list
    if field not in FLAG_OF_FIELD:
        return err
    flag, fix = FLAG_OF_FIELD[field]
    return UsageError(flag, err.problem, fix or err.fix, err.value)


def _replay_dir(replay: Path | None) -> Path | None:
    """`--outer-replay` names a previous site's run directory, which holds events.jsonl."""
    if replay is None:
        return None
    from phalanx.observe.events import EVENTS_FILE

    if not (replay / EVENTS_FILE).is_file():
        raise UsageError(
            "--outer-replay",
            f"is not a run directory with an {EVENTS_FILE}",
            "give the --out of a previous site's run (any site of it)",
            str(replay),
        )
    return replay.absolute()
