"""The lighthouse's heartbeat verdicts, read from a real lighthouse (torchft's page format)."""

import time
from datetime import timedelta

import pytest

from phalanx.launch.lighthouse import Lighthouse, LighthouseSettings
from phalanx.runtime.freeze_watch import FreezeWatch, WatchedWork, describe
from phalanx.runtime.torchft_access import expired_heartbeats

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def lighthouse():
    server = Lighthouse(LighthouseSettings(heartbeat_timeout_ms=2000))
    yield server
    server.shutdown()


def _heartbeat(address: str, replica_id: str) -> None:
    from torchft._torchft import LighthouseClient

    LighthouseClient(address, timedelta(seconds=5)).heartbeat(replica_id)


def test_only_replicas_past_the_heartbeat_timeout_are_given_up_on(lighthouse):
    _heartbeat(lighthouse.address, "r2:uuid-2")
    assert expired_heartbeats(lighthouse.address, 1.0) == set()  # just seen
    deadline = time.monotonic() + 30
    expired: set[str] = set()
    while "r2:uuid-2" not in expired and time.monotonic() < deadline:
        expired = expired_heartbeats(lighthouse.address, 1.0) or set()
        time.sleep(0.1)  # polling the lighthouse's verdict, bounded by the deadline
    assert expired == {"r2:uuid-2"}
    _heartbeat(lighthouse.address, "r0:uuid-0")  # alive: never in the verdict
    assert expired_heartbeats(lighthouse.address, 1.0) == {"r2:uuid-2"}

    watch = FreezeWatch(lighthouse.address, own_name="r1")
    watch.set_quorum(["r0:uuid-0", "r1:uuid-1", "r3:uuid-3"])
    assert watch.frozen_members() == []  # r2 is dead, but not in this quorum
    watch.set_quorum(["r0:uuid-0", "r1:uuid-1", "r2:uuid-2"])
    assert watch.frozen_members() == ["r2:uuid-2"]


def test_an_unreachable_lighthouse_gives_no_verdict():
    assert expired_heartbeats("http://127.0.0.1:9", 0.5) is None
    watch = FreezeWatch("http://127.0.0.1:9", own_name="r0")
    watch.set_quorum(["r0:a", "r1:b"])
    assert watch.frozen_members() == []


def test_a_collective_that_failed_already_is_not_waited_for():
    class Placeholder:  # what torchft returns after an error: no process-group work
        def wait(self) -> bool:
            return True

    work = WatchedWork(Placeholder(), FreezeWatch("http://127.0.0.1:9", "r0"), fleet=None)
    assert work.wait() is True


def test_the_retry_line_names_the_frozen_replicas():
    line = describe(["r3:u3", "r1:u1"], 1.04)
    assert line.startswith("r1, r3 stopped heartbeating") and "1.0 s" in line
