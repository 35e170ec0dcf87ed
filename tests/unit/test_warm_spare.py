"""A warm spare becomes a worker exactly as `python script.py ARGS` would start one."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from phalanx.launch.spare_pool import SparePool, pool_for
from tests.fleet_helpers import wait_for

pytestmark = pytest.mark.timeout(120)

SCRIPT = textwrap.dedent(
    """
    import os, sys
    print("name", __name__)
    print("argv", sys.argv[1:])
    print("path0", sys.path[0])
    print("file", __file__)
    print("env", os.environ.get("SPARE_TEST"), os.environ.get("ONLY_IN_LAUNCH_ENV"))
    print("stdin", repr(sys.stdin.read()))
    if "--fail" in sys.argv:
        raise RuntimeError("the script failed")
    sys.exit(int(sys.argv[1]))
    """
)


def _ready_pool() -> SparePool:
    pool = SparePool()
    pool.start()
    wait_for(pool._is_ready, 90, "the spare's imports")
    return pool


def _run(pool: SparePool, script, args: list[str]) -> tuple[int, str]:
    env = {**os.environ, "SPARE_TEST": "yes"}
    env.pop("ONLY_IN_LAUNCH_ENV", None)
    process = pool.take(str(script), args, env)
    assert process is not None and process.stdout is not None
    output = process.stdout.read().decode()
    return process.wait(timeout=60), output


def test_a_spare_runs_the_script_as_main_with_its_args_env_and_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("ONLY_IN_LAUNCH_ENV", "spare-was-started-with-it")
    script = tmp_path / "job" / "train.py"
    script.parent.mkdir()
    script.write_text(SCRIPT)
    pool = _ready_pool()
    try:
        code, output = _run(pool, script, ["3", "--x"])
        assert pool.take(str(script), [], {}) is None  # handed out: no spare until restarted
    finally:
        pool.close()
    assert code == 3, output
    lines = output.splitlines()
    assert "ready" not in lines  # the spare's own line never reaches the worker's log
    assert "name __main__" in lines
    assert "argv ['3', '--x']" in lines
    assert f"path0 {script.parent}" in lines and f"file {script}" in lines
    # The worker's environment is the launch's, whole: nothing left from the spare's.
    assert "env yes None" in lines
    assert "stdin ''" in lines


def test_a_failing_script_exits_as_it_would_cold(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    pool = _ready_pool()
    try:
        code, output = _run(pool, script, ["0", "--fail"])
    finally:
        pool.close()
    assert code == 1 and "RuntimeError: the script failed" in output


def test_a_spare_still_importing_or_dead_is_not_handed_out():
    pool = SparePool()
    assert pool.take(sys.executable, [], {}) is None  # none started
    pool.start()
    spare = pool._spare
    assert spare is not None
    pool.close()
    assert spare.poll() is not None
    assert pool.take(sys.executable, [], {}) is None


class _Slot:
    def __init__(self, threads: int, parts: int = 0) -> None:
        self.config = type("Config", (), {"threads": threads})()
        self.parts = [None] * parts


def test_a_spare_only_where_a_core_is_free_unless_asked(monkeypatch):
    monkeypatch.delenv("PHALANX_WARM_SPARE", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert pool_for([_Slot(1), _Slot(1), _Slot(1)]) is not None
    assert pool_for([_Slot(2), _Slot(2)]) is None
    assert pool_for([_Slot(1, parts=3), _Slot(1)]) is None  # a group runs a process per rank
    monkeypatch.setenv("PHALANX_WARM_SPARE", "1")
    assert pool_for([_Slot(4)]) is not None
    monkeypatch.setenv("PHALANX_WARM_SPARE", "0")
    assert pool_for([_Slot(1)]) is None
