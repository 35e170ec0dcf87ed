"""What one site's replicas are told about the sites run, from `phalanx run --site ...`.

The launcher validates the flags (`SitesConfig` and the checks below) and hands
this to every worker inside its WorkerConfig (`sites`, as JSON). A site is an
ordinary phalanx fleet with its own lighthouse; these settings add the outer
quorum (`outer`, a lighthouse every site reaches) and the outer round.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from phalanx.errors import UsageError
from phalanx.sites.compression import Codec
from phalanx.sites.config import SitesConfig, SiteSpec
from phalanx.sites.outer_optimizer import DILOCO_OUTER_LR, DILOCO_OUTER_MOMENTUM, OuterSettings


@dataclass(frozen=True)
class SiteRunSettings:
    site: str  # this site's name
    site_names: tuple[str, ...]  # every site of the run, in site-index order
    outer: str  # host:port of the outer lighthouse (a plain torchft lighthouse)
    outer_every: int  # H: inner steps of the fastest site per outer round
    compression: str = "none"
    block_size: int = 64
    error_feedback: bool = True
    outer_lr: float = DILOCO_OUTER_LR
    outer_momentum: float = DILOCO_OUTER_MOMENTUM
    # A previous run's directory (any site's): its outer_round records fix every round's
    # inner-step counts and which sites counted, in place of the clock (a replay).
    replay: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "site_names", tuple(self.site_names))
        if self.site not in self.site_names:
            raise UsageError(
                "--site",
                f"is not one of the run's sites {list(self.site_names)}",
                "name this site in --sites too (every site passes the same --sites)",
                self.site,
            )
        # One line per bad field (H < 1, duplicate names, unknown compression, ...).
        self.config(replicas=1)

    @property
    def index(self) -> int:
        return self.site_names.index(self.site)

    @property
    def sites(self) -> int:
        return len(self.site_names)

    @property
    def codec(self) -> Codec:
        return Codec(self.compression, self.block_size)

    @property
    def outer_settings(self) -> OuterSettings:
        return OuterSettings(self.outer_lr, self.outer_momentum)

    def config(self, replicas: int) -> SitesConfig:
        return SitesConfig(
            outer_every=self.outer_every,
            sites=tuple(SiteSpec(name, replicas) for name in self.site_names),
            outer=self.outer_settings,
            compression=self.codec,
            error_feedback=self.error_feedback,
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["site_names"] = list(self.site_names)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SiteRunSettings:
        return cls(**{**data, "site_names": tuple(data["site_names"])})
