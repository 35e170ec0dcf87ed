"""Bad settings of a sites run: one clear line naming the field and the fix."""

from __future__ import annotations

import pytest

from phalanx.errors import UsageError
from phalanx.sites.compression import Codec
from phalanx.sites.config import SitesConfig, SiteSpec

TWO_SITES = (SiteSpec("home", 4), SiteSpec("remote", 2))


def test_a_good_config_is_kept_as_given() -> None:
    config = SitesConfig(100, TWO_SITES, compression=Codec("4bit", 64))
    assert config.outer.lr == 0.7 and config.outer.momentum == 0.9 and config.outer.nesterov
    assert config.error_feedback


@pytest.mark.parametrize("outer_every", [0, -3, 2.5, True])
def test_outer_every_below_one(outer_every: object) -> None:
    with pytest.raises(UsageError) as err:
        SitesConfig(outer_every, TWO_SITES)  # type: ignore[arg-type]
    assert err.value.field == "outer_every"
    assert "--outer-every" in err.value.fix and "\n" not in str(err.value)


def test_a_site_without_replicas_is_named() -> None:
    with pytest.raises(UsageError) as err:
        SitesConfig(20, (SiteSpec("home", 2), SiteSpec("remote", 0)))
    assert err.value.field == "sites[1].replicas"
    assert "'remote'" in str(err.value) and "Fix:" in str(err.value)


def test_duplicate_or_no_sites() -> None:
    with pytest.raises(UsageError, match=r"sites\[1\]\.name"):
        SitesConfig(20, (SiteSpec("a", 1), SiteSpec("a", 1)))
    with pytest.raises(UsageError, match="sites: is empty"):
        SitesConfig(20, ())


def test_compression_without_error_feedback_is_refused() -> None:
    with pytest.raises(UsageError) as err:
        SitesConfig(20, TWO_SITES, compression=Codec("int8"), error_feedback=False)
    assert err.value.field == "error_feedback"
    assert "error_feedback = true" in err.value.fix
    # Uncompressed, feedback has nothing to keep: no complaint.
    assert not SitesConfig(20, TWO_SITES, error_feedback=False).error_feedback
