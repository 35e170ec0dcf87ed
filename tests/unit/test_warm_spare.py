"""A warm spare becomes a worker exactly as `python script.py ARGS` would start one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from phalanx.launch import spare_pool
from phalanx.launch.output_pump import OutputPump
from phalanx.launch.spare_pool import READY, SparePool, may_raise_priority_back, pool_for
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
    tasks = os.listdir("/proc/self/task")
    print("nice", sorted({os.getpriority(os.PRIO_PROCESS, int(t)) for t in tasks}))
    if "--fail" in sys.argv:
        raise RuntimeError("the script failed")
    sys.exit(int(sys.argv[1]))
    """
)


LAUNCHER_NICE = os.getpriority(os.PRIO_PROCESS, 0)
# Lowered for the imports and raised back for the worker, where this host lets us.
IDLE_IMPORT = may_raise_priority_back(LAUNCHER_NICE)


def _nice_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])  # field 19, after the name


def _ready_pool() -> SparePool:
    pool = SparePool(LAUNCHER_NICE if IDLE_IMPORT else None)
    pool.start()
    wait_for(pool._is_ready, 90, "the spare's imports")
    return pool


def _run(pool: SparePool, script, args: list[str]) -> tuple[int, str]:
    env = {**os.environ, "SPARE_TEST": "yes"}
    env.pop("ONLY_IN_LAUNCH_ENV", None)
    handout = pool.take(str(script), args, env)
    assert handout is not None and not handout.owes_ready
    process = handout.process
    assert process.stdout is not None
    with process.stdout:
        output = process.stdout.read().decode()
    return process.wait(timeout=60), output


def test_a_spare_runs_the_script_as_main_with_its_args_env_and_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("ONLY_IN_LAUNCH_ENV", "spare-was-started-with-it")
    script = tmp_path / "job" / "train.py"
    script.parent.mkdir()
    script.write_text(SCRIPT)
    pool = _ready_pool()
    assert pool._spare is not None
    # It waits at the import priority (nothing to do with the workers' time) ...
    assert _nice_of(pool._spare.pid) == (19 if IDLE_IMPORT else LAUNCHER_NICE)
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
    # ... and runs the worker, every thread of it, at the launcher's, as a cold one would.
    assert f"nice [{LAUNCHER_NICE}]" in lines


def test_a_failing_script_exits_as_it_would_cold(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    pool = _ready_pool()
    try:
        code, output = _run(pool, script, ["0", "--fail"])
    finally:
        pool.close()
    assert code == 1 and "RuntimeError: the script failed" in output


def test_a_spare_still_importing_becomes_the_worker_at_its_priority_without_its_ready_line(
    tmp_path,
):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    pool = SparePool(LAUNCHER_NICE if IDLE_IMPORT else None)
    assert pool.take(sys.executable, [], {}) is None  # none started
    pool.start()
    try:
        handout = pool.take(str(script), ["0"], {**os.environ, "SPARE_TEST": "yes"})
        assert handout is not None and handout.owes_ready  # taken in the middle of its imports
        log = tmp_path / "worker.log"
        assert handout.process.stdout is not None
        pump = OutputPump(handout.process.stdout, log, "worker output", drop_through=READY)
        assert handout.process.wait(timeout=90) == 0
        pump.join(30)
    finally:
        pool.close()
    lines = log.read_text().splitlines()
    assert "ready" not in lines and lines[0] == "name __main__", lines
    assert f"nice [{LAUNCHER_NICE}]" in lines  # raised to the workers' priority


def test_a_spare_that_died_leaves_no_pipe_open_when_the_next_one_starts():
    pool = SparePool()
    pool.start()
    dead = pool._spare
    assert dead is not None
    os.killpg(dead.pid, 9)
    dead.wait(timeout=30)
    pool.start()  # a launcher runs for weeks: one leaked pipe per dead spare adds up
    try:
        assert pool._spare is not dead
        assert dead.stdin is not None and dead.stdin.closed
        assert dead.stdout is not None and dead.stdout.closed
    finally:
        fresh = pool._spare
        pool.close()
    assert fresh is not None and fresh.stdin.closed and fresh.stdout.closed


def test_a_dead_spare_is_not_handed_out():
    pool = SparePool()
    pool.start()
    spare = pool._spare
    assert spare is not None
    pool.close()
    assert spare.poll() is not None
    assert pool.take(sys.executable, [], {}) is None


def test_the_pump_drops_the_owed_line_and_what_came_before_it_across_reads(tmp_path):
    read_end, write_end = os.pipe()
    log = tmp_path / "out.log"
    pump = OutputPump(os.fdopen(read_end, "rb"), log, "worker output", drop_through=READY)
    for piece in (b"a warning\nalrea", b"dy\nre", b"ady\nname x\nready\n", b"tail\n"):
        os.write(write_end, piece)
    os.close(write_end)
    pump.join(30)
    # "already" is not the owed line; the first "ready" line is; a later one is the worker's.
    assert log.read_text() == "name x\nready\ntail\n"
    assert pump.lines() == ["name x", "ready", "tail"]


def test_the_pump_completes_a_line_begun_elsewhere_and_keeps_all_of_a_child_that_never_owed(
    tmp_path,
):
    # The launcher read "rea" while the spare imported; the rest comes through the pipe.
    read_end, write_end = os.pipe()
    log = tmp_path / "begun.log"
    pump = OutputPump(
        os.fdopen(read_end, "rb"), log, "worker output", drop_through=READY, begun=b"rea"
    )
    os.write(write_end, b"dy\nname x\n")
    os.close(write_end)
    pump.join(30)
    assert log.read_text() == "name x\n"
    # A spare handed out mid-import that dies before its "ready": its traceback is kept.
    read_end, write_end = os.pipe()
    log = tmp_path / "died.log"
    pump = OutputPump(os.fdopen(read_end, "rb"), log, "worker output", drop_through=READY)
    os.write(write_end, b"Traceback (most recent call last):\nImportError: no torch\n")
    os.close(write_end)
    pump.join(30)
    assert log.read_text() == "Traceback (most recent call last):\nImportError: no torch\n"
    assert pump.lines()[-1] == "ImportError: no torch"


class _Slot:
    def __init__(self, threads: int, parts: int = 0) -> None:
        self.config = type("Config", (), {"threads": threads})()
        self.parts = [None] * parts


def test_a_spare_where_a_core_is_free_or_its_imports_can_wait_for_idle_time(monkeypatch):
    monkeypatch.delenv("PHALANX_WARM_SPARE", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(spare_pool, "may_raise_priority_back", lambda nice: True)
    # A core free: it imports at the workers' priority.
    assert pool_for([_Slot(1), _Slot(1), _Slot(1)]) is not None
    assert pool_for([_Slot(1), _Slot(1), _Slot(1)]).worker_priority is None
    assert pool_for([_Slot(1, parts=2)]) is None  # groups restart cold: no use for one
    # The cores full (a group runs a process per rank): it imports at the lowest
    # priority and goes back to the workers' own.
    full = pool_for([_Slot(1, parts=3), _Slot(1)])
    assert full is not None and full.worker_priority == LAUNCHER_NICE
    assert pool_for([_Slot(2), _Slot(2)]).worker_priority == LAUNCHER_NICE
    # Where this host does not let a priority go back up: off, unless forced on.
    monkeypatch.setattr(spare_pool, "may_raise_priority_back", lambda nice: False)
    assert pool_for([_Slot(4)]) is None
    assert pool_for([_Slot(1)]) is not None  # a core free: no priority change needed
    monkeypatch.setenv("PHALANX_WARM_SPARE", "1")
    assert pool_for([_Slot(4)]).worker_priority is None
    monkeypatch.setenv("PHALANX_WARM_SPARE", "0")
    assert pool_for([_Slot(1)]) is None


def test_the_priority_probe_leaves_the_launcher_as_it_was():
    before = os.getpriority(os.PRIO_PROCESS, 0)
    may_raise_priority_back(before)
    assert os.getpriority(os.PRIO_PROCESS, 0) == before


def test_a_workers_setup_imports_nothing_the_spare_left_out():
    # What a worker's setup touches first (an optimizer's constructor imports the
    # compiler stack, 0.5 s) must already be loaded in a spare, or every restart pays it.
    probe = textwrap.dedent(
        """
        import sys
        from phalanx.launch.warm_spare import _warm_up
        _warm_up()
        before = set(sys.modules)
        import torch
        model = torch.nn.Linear(4, 2)
        optimizer = torch.optim.AdamW(model.parameters())
        model(torch.zeros(3, 4)).sum().backward()
        optimizer.step()
        heavy = ("torch._dynamo", "torch._inductor", "torch.fx", "torch._functorch")
        late = sorted(m for m in set(sys.modules) - before if m.startswith(heavy))
        print(len(late), late[:5])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.startswith("0 "), out.stdout


def test_only_a_spare_importing_at_the_lowest_priority_starts_at_launch(monkeypatch):
    started: list[int | None] = []
    monkeypatch.setattr(SparePool, "start", lambda self: started.append(self.worker_priority))
    SparePool().start_at_launch()  # at the workers' priority: waits for the first step
    SparePool(worker_priority=0).start_at_launch()
    assert started == [0]


def test_a_childs_log_exists_before_the_child_says_anything(tmp_path):
    read_end, write_end = os.pipe()
    log = tmp_path / "quiet.log"
    pump = OutputPump(os.fdopen(read_end, "rb"), log, "lighthouse log")
    # A child killed before its first line (a lighthouse shut down at once) still has the
    # log file every message names.
    assert log.exists() and log.read_bytes() == b""
    os.close(write_end)
    pump.join(30)
    assert log.read_bytes() == b""
