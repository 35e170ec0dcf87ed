"""What `phalanx sites` will run, checked before anything starts: one `phalanx run` per site.

Pure: flags in, a `SitesPlan` (or one UsageError line) out, and each site's
`phalanx run` arguments from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phalanx.errors import UsageError
from phalanx.launch.site_cut import CutSpec

SITE_EXAMPLE = "--site a=1,1 --site b=0.5,0.5 (each site's chips as --emulate takes them)"


@dataclass(frozen=True)
class SiteEntry:
    name: str
    emulate: str  # the site's chips, `--emulate` syntax
    replicas: int
    faults: tuple[str, ...] = ()  # `--fault` specs of its `phalanx run`


@dataclass(frozen=True)
class SitesPlan:
    script: Path
    script_args: list[str]
    sites: tuple[SiteEntry, ...]
    out_dir: Path
    # `--outer-every`, `--outer-compression`, ...: flag -> value, passed to every site.
    outer_flags: dict[str, str] = field(default_factory=dict)
    # The outer round's settings those flags make (SiteRunSettings' fields), for the record.
    outer_settings: dict[str, Any] = field(default_factory=dict)
    cuts: tuple[CutSpec, ...] = ()
    run_flags: tuple[str, ...] = ()  # --timeout-s, --checkpoint-every, --quiet
    quiet: bool = False

    @property
    def names(self) -> list[str]:
        return [site.name for site in self.sites]

    def run_dir(self, name: str) -> Path:
        return self.out_dir / name

    def site_argv(self, site: SiteEntry, outer: str) -> list[str]:
        """`phalanx run ...` of one site, its outer lighthouse at `outer` (HOST:PORT)."""
        argv = ["run", str(self.script), "--emulate", site.emulate]
        argv += ["--out", str(self.run_dir(site.name)), "--site", site.name]
        argv += ["--sites", ",".join(self.names), "--outer", outer]
        for flag, value in self.outer_flags.items():
            argv += [flag] if value == "" else [flag, value]
        argv += list(self.run_flags)
        for fault in site.faults:
            argv += ["--fault", fault]
        return [*argv, "--", *self.script_args]


def parse_site(text: str) -> tuple[str, str, int]:
    """`NAME=SPEC` -> (name, spec, replicas); SPEC as `--emulate` takes it."""
    from phalanx.fleetnet.hosts import check_name

    name, sep, spec = (part.strip() for part in text.partition("="))
    if not sep or not name:
        raise UsageError("--site", "is not NAME=SPEC", f"write e.g. {SITE_EXAMPLE}", text)
    check_name("--site", name)
    if not spec:
        raise UsageError(
            f"--site {name}",
            f"site {name} has no replicas",
            f"give its chips after '=', e.g. --site {name}=1,0.5, or drop the site",
            text,
        )
    try:
        return name, spec, _replicas(spec)
    except UsageError as err:  # the --emulate parser's line, naming this site's flag
        raise UsageError(
            f"--site {name}", err.problem, err.fix.replace("--emulate ", f"--site {name}="),
            err.value,
        ) from None  # fmt: skip


def _replicas(spec: str) -> int:
    if "+" in spec:  # replica groups: chips of one replica joined by '+'
        from phalanx.groups.layout import parse_emulate_replicas

        return len(parse_emulate_replicas(spec))
    from phalanx.emulate.spec import parse_emulate_chips

    return len(parse_emulate_chips(spec))


def parse_sites(texts: list[str]) -> list[tuple[str, str, int]]:
    if not texts:
        raise UsageError("--site", "is missing", f"give one --site per site, e.g. {SITE_EXAMPLE}")
    sites = [parse_site(text) for text in texts]
    names = [name for name, _, _ in sites]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(
            "--site", f"site {twice[0]} is given twice", "give every site its own name", twice[0]
        )
    return sites


def site_faults(texts: list[str], replicas: dict[str, int]) -> dict[str, list[str]]:
    """`--site-fault NAME:KIND:...` -> site -> its `--fault` specs (each checked now)."""
    from phalanx.faults.spec import parse_fault

    faults: dict[str, list[str]] = {name: [] for name in replicas}
    for text in texts:
        name, sep, spec = (part.strip() for part in text.partition(":"))
        if not sep or name not in replicas:
            raise UsageError(
                "--site-fault",
                f"does not start with a site's name {list(replicas)}",
                "write NAME:FAULT, e.g. --site-fault a:kill:replica=0,step=20,restart_s=2",
                text,
            )
        try:
            parse_fault(spec, replicas[name])
        except UsageError as err:  # the --fault parser's line, naming this flag and site
            field = err.field.replace("--fault", "--site-fault", 1) + f" (site {name})"
            raise UsageError(field, err.problem, err.fix, err.value) from None
        faults[name].append(spec)
    return faults


def check_out_dir(out_dir: Path, names: list[str]) -> None:
    """A new directory for the run: an earlier sites run there would mix into this one."""
    from phalanx.observe.events import EVENTS_FILE
    from phalanx.sites.fleet_accounting import FLEET_SUMMARY_FILE

    used = [out_dir / FLEET_SUMMARY_FILE] + [out_dir / name / EVENTS_FILE for name in names]
    if any(path.exists() for path in used):
        raise UsageError(
            "--out",
            "already holds a sites run",
            "choose a new --out, or delete this one",
            str(out_dir),
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(
            "--out", f"cannot be created ({err.strerror})", "choose a writable place", str(out_dir)
        ) from None
