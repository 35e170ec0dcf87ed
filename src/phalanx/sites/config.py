"""The settings of a run over sites, each checked into one clear line naming field and fix.

`phalanx run --outer-every H` (and `outer_every` per site in the fleet file)
will build one of these; the pure blocks of this package take their parts
(`OuterSettings`, `Codec`) as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from phalanx.errors import UsageError
from phalanx.sites.compression import Codec
from phalanx.sites.outer_optimizer import OuterSettings


@dataclass(frozen=True)
class SiteSpec:
    """A set of replicas on fast links: exact synchronous steps inside, outer steps across."""

    name: str
    replicas: int


@dataclass(frozen=True)
class SitesConfig:
    outer_every: int  # H: inner steps of the fastest site between outer steps
    sites: tuple[SiteSpec, ...]
    outer: OuterSettings = field(default_factory=OuterSettings)
    compression: Codec = field(default_factory=lambda: Codec("none"))
    error_feedback: bool = True

    def __post_init__(self) -> None:
        _check_outer_every(self.outer_every)
        _check_sites(self.sites)
        if self.compression.scheme != "none" and not self.error_feedback:
            # Without feedback, a value below half a block's step is sent as 0 every round:
            # the outer momentum then never sees it, a bias that grows with the rounds.
            raise UsageError(
                "error_feedback",
                f"is off with compression {self.compression.scheme!r}: the outer optimizer "
                "would accumulate the quantisation bias round after round",
                "set error_feedback = true, or compression = 'none'",
                self.error_feedback,
            )


def _check_outer_every(outer_every: object) -> None:
    if isinstance(outer_every, bool) or not isinstance(outer_every, int) or outer_every < 1:
        raise UsageError(
            "outer_every",
            "must be an integer >= 1 (inner steps between outer steps)",
            "use e.g. --outer-every 100 (DiLoCo's H); 1 synchronises every step",
            outer_every,
        )


def _check_sites(sites: tuple[SiteSpec, ...]) -> None:
    if not sites:
        raise UsageError("sites", "is empty", "name at least one site and give it replicas", sites)
    names: set[str] = set()
    for index, site in enumerate(sites):
        if not site.name or site.name in names:
            raise UsageError(
                f"sites[{index}].name",
                "is empty or used by another site",
                "give every site its own name",
                site.name,
            )
        names.add(site.name)
        if (
            isinstance(site.replicas, bool)
            or not isinstance(site.replicas, int)
            or site.replicas < 1
        ):
            raise UsageError(
                f"sites[{index}].replicas",
                f"site {site.name!r} has no replicas",
                f"put at least one device in site {site.name!r}, or remove the site",
                site.replicas,
            )
