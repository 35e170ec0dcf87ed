"""The stand-still check stays inside what lets a lighthouse give up on a replica."""

from __future__ import annotations

import pytest

from phalanx.cli import main
from phalanx.runtime.liveness import (
    HEARTBEAT_INTERVAL_MS,
    MIN_SHARED_HEARTBEAT_TIMEOUT_MS,
    RUN_HEARTBEAT_TIMEOUT_MS,
    stood_still_limit_s,
)


@pytest.mark.parametrize(
    "timeout_ms", [RUN_HEARTBEAT_TIMEOUT_MS, MIN_SHARED_HEARTBEAT_TIMEOUT_MS, 2000, 60_000]
)
def test_a_replica_vetoes_before_its_peers_can_have_given_up_on_it(timeout_ms: int) -> None:
    # The lighthouse gives up after a whole timeout without a heartbeat; the last one left
    # at most an interval before the stand-still began. The check must fire earlier, with
    # room for a late heartbeat.
    limit_s = stood_still_limit_s(timeout_ms)
    assert limit_s + 0.1 <= (timeout_ms - HEARTBEAT_INTERVAL_MS) / 1000
    assert limit_s >= 0.25  # and above a busy host's scheduling gaps (a tick is 50 ms)


def test_the_check_is_the_exercised_one() -> None:
    # Before timeouts were configurable the limit was 0.5 s under a 1 s timeout; the
    # chaos campaign ran with it. A shorter limit vetoed healthy replicas on a loaded
    # host (a 57M model beside the test suite: its stall clock missed 0.4 s once), so
    # `phalanx run`'s own timeout is the shortest that keeps it.
    assert stood_still_limit_s(MIN_SHARED_HEARTBEAT_TIMEOUT_MS) == 0.5
    assert stood_still_limit_s(RUN_HEARTBEAT_TIMEOUT_MS) == pytest.approx(0.5)


def test_a_timeout_with_no_room_for_heartbeats_is_refused() -> None:
    with pytest.raises(ValueError, match="no room"):
        stood_still_limit_s(150)


def test_a_shared_lighthouse_below_the_floor_is_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["lighthouse", "--heartbeat-timeout-ms", "300"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "--heartbeat-timeout-ms" in err and f">= {MIN_SHARED_HEARTBEAT_TIMEOUT_MS}" in err
    assert len(err.strip().splitlines()) == 1
