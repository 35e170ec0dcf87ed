"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from phalanx.chaos import netns


@pytest.fixture
def network() -> Iterator[netns.Network]:
    """Network namespaces on a bridge (hosts on one machine), removed afterwards.

    Skipped with the reason where namespaces or tc (which shapes the links) are missing.
    """
    reason = netns.unavailable()
    if reason is None and shutil.which("tc") is None:
        reason = "needs tc (iproute2) to shape a host's link"
    if reason is not None:
        pytest.skip(reason)
    net = netns.Network()
    try:
        net.create_bridge()
        yield net
    finally:
        net.cleanup()
