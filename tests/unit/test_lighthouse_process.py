"""The launcher's lighthouse child: it starts, says where it listens, and leaves nothing open.

A launcher restarts its lighthouse after a crash (launch/launcher.py) and runs for weeks:
every pipe of an old child must be closed, not left to the garbage collector (whose
ResourceWarning surfaced in an unrelated report once, CI stop 36).
"""

import urllib.request

import pytest

from phalanx.launch.lighthouse import LighthouseProcess, LighthouseSettings

pytestmark = pytest.mark.timeout(60)


def test_a_lighthouse_child_answers_and_its_shutdown_closes_every_pipe(tmp_path):
    log = tmp_path / "lighthouse.log"
    lighthouse = LighthouseProcess(LighthouseSettings(), log)
    process = lighthouse._process
    try:
        assert lighthouse.alive and lighthouse.port > 0
        with urllib.request.urlopen(f"{lighthouse.address}/status", timeout=10) as page:
            assert page.status == 200
    finally:
        lighthouse.shutdown()
    assert not lighthouse.alive and lighthouse.exit_code is not None
    assert all(pipe is None or pipe.closed for pipe in (process.stdin, process.stdout))
    assert process.stderr is not None and process.stderr.closed  # the log pump's, at EOF
