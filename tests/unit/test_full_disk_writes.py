"""Writes a run can do without, on a full disk: one line per kind, never a traceback.

Most tests make the disk full with a monkeypatched error, so they run anywhere;
the ones marked `needs_tmpfs` fill a real 1 MiB tmpfs (root only, skipped
otherwise), as a user's disk fills.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from phalanx.faults.markers import MARKER_DIR, claim_once
from phalanx.launch import output_pump
from phalanx.launch.output_pump import OutputPump
from phalanx.launch.workers import WorkerSlot
from phalanx.observe import events as events_module
from phalanx.observe import report as report_module
from phalanx.observe import safe_write
from phalanx.observe.events import EventLog, read_events
from phalanx.observe.summary import SUMMARY_FILE, build_summary, write_summary
from phalanx.runtime.worker_config import WorkerConfig
from tests.disk_helpers import fill, mounted_tmpfs

pytestmark = pytest.mark.timeout(120)

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded_run"
needs_tmpfs = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a tmpfs needs root"
)


@pytest.fixture(autouse=True)
def said(monkeypatch):
    """Each test starts with nothing said; what would be said is collected here."""
    lines: list[str] = []
    safe_write.reset()
    safe_write.set_reporter(lines.append)
    yield lines
    safe_write.set_reporter(None)
    safe_write.reset()


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FullDiskOs:
    """The os module as one module sees it: the calls given fail or behave as on a full disk.

    Patched into a single module (`module.os`), never into `os` itself: pytest and
    subprocess go on using the real calls.
    """

    def __init__(self, **calls):
        self._calls = calls

    def __getattr__(self, name):
        return self._calls.get(name) or getattr(os, name)


@pytest.fixture
def tiny_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        yield disk


# ------------------------------------------------------------------ safe_write


def test_a_disk_error_is_said_once_per_kind_and_returns_false(said, tmp_path):
    tmp = tmp_path / "half.tmp"

    def half_written():
        tmp.write_text("half")
        _enospc()

    for _ in range(3):
        assert not safe_write.write_or_warn(
            "summary.json", tmp_path / "x", half_written, "nothing lost", "free space", cleanup=tmp
        )
    assert said == [
        f"warning: summary.json not written to {tmp_path / 'x'}: the disk is full "
        "(No space left on device); nothing lost. Fix: free space"
    ]
    assert not tmp.exists()  # a half-written file holds exactly the missing space
    assert safe_write.write_or_warn("summary.json", tmp_path, lambda: None, "", "")


def test_only_disk_errors_are_swallowed(said, tmp_path):
    def denied():
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        safe_write.write_or_warn("events", tmp_path, denied, "", "")
    with pytest.raises(ValueError):
        safe_write.write_or_warn("events", tmp_path, lambda: int("x"), "", "")
    assert said == []


def test_safetensors_disk_errors_are_recognised():
    class SafetensorError(Exception):  # safetensors' own type, matched by name: no import
        pass

    full = SafetensorError("Error while serializing: I/O error: No space left (os error 28)")
    assert safe_write.disk_errno(full) == errno.ENOSPC
    assert safe_write.disk_errno(SafetensorError("header too large")) is None
    assert safe_write.disk_errno(OSError(errno.EROFS, "ro")) == errno.EROFS
    assert safe_write.disk_errno(OSError(errno.EIO, "io")) is None


# ----------------------------------------------------------------- events.jsonl


def test_an_event_the_disk_refuses_is_dropped_with_one_warning(said, tmp_path, monkeypatch):
    log = EventLog(tmp_path, source="r0")
    log.emit("step", step=0)
    real_write = os.write
    calls = {"n": 0}

    def short_then_full(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[:7]))  # the disk took part of the line
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(events_module, "os", FullDiskOs(write=short_then_full))
    record = log.emit("step", step=1)
    log.emit("step", step=2)
    monkeypatch.undo()
    log.emit("step", step=3)
    assert record["step"] == 1  # the caller gets its record as always
    # No half line: the next line does not start in the middle of a cut one.
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 3]
    assert len(said) == 1 and said[0].startswith("warning: events not written to ")


@needs_tmpfs
def test_events_on_a_really_full_disk(said, tiny_disk):
    log = EventLog(tiny_disk, source="launcher")
    log.emit("run_start")
    fill(tiny_disk)
    for step in range(200):  # far more than the last page's slack
        log.emit("step", step=step, ranges=[[0, 48]], note="x" * 200)
    events = read_events(tiny_disk)
    assert events[0]["kind"] == "run_start" and len(events) < 200
    assert all(
        line.endswith("}") for line in (tiny_disk / "events.jsonl").read_text().split("\n")[:-1]
    )
    assert len(said) == 1 and "the disk is full" in said[0]


# --------------------------------------------------------- summary and report


def test_summary_and_report_on_a_full_disk_leave_no_temporary_file(said, tmp_path, monkeypatch):
    shutil.copy(RECORDED / "events.jsonl", tmp_path / "events.jsonl")
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: (self.touch(), _enospc()))
    assert write_summary(tmp_path, build_summary(tmp_path)) is None
    assert report_module.write_report_safely(tmp_path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"]
    assert [line.split(" not written")[0] for line in said] == [
        "warning: summary.json",
        "warning: report.html",
    ]
    assert f"`phalanx report {tmp_path}`" in said[0] and f"`phalanx report {tmp_path}`" in said[1]


def test_phalanx_report_writes_a_missing_summary(tmp_path):
    from tests.unit.test_fuzz_inputs import run_cli

    shutil.copy(RECORDED / "events.jsonl", tmp_path / "events.jsonl")
    code, out, err = run_cli(["report", str(tmp_path)])
    assert code == 0, err
    assert json.loads((tmp_path / SUMMARY_FILE).read_text()) == build_summary(tmp_path)
    assert f"summary: {tmp_path / SUMMARY_FILE}" in out


# ---------------------------------------------------------------- fault markers


def test_a_fault_whose_marker_cannot_be_written_does_not_fire(said, tmp_path, monkeypatch):
    from phalanx.faults import markers

    monkeypatch.setattr(markers, "os", FullDiskOs(open=_enospc))
    assert not claim_once(tmp_path, "kill-r1-s20-compute")
    assert not claim_once(tmp_path, "kill-r1-s20-compute")
    assert len(said) == 1 and "fault kill-r1-s20-compute" in said[0]
    assert "not injected" in said[0] and "never fire twice" in said[0]
    monkeypatch.undo()
    # Space again: it fires, once; a restart or a resume finds the marker.
    assert claim_once(tmp_path, "kill-r1-s20-compute")
    assert not claim_once(tmp_path, "kill-r1-s20-compute")
    assert (tmp_path / MARKER_DIR / "kill-r1-s20-compute").exists()


# -------------------------------------------------------------- worker output


def _child(tmp_path: Path, body: str) -> subprocess.Popen[bytes]:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def test_a_child_keeps_running_when_its_log_cannot_be_written(said, tmp_path, monkeypatch):
    monkeypatch.setattr(output_pump, "os", FullDiskOs(open=_enospc))  # every log append fails
    relayed: list[str] = []
    child = _child(
        tmp_path,
        """
        for i in range(20000):  # far more than a pipe holds: the child must never block
            print(f"line {i}")
        print("warning: checkpoint of step 30 not written")
        print("error: the final model could not be written")
        """,
    )
    assert child.stdout is not None
    pump = OutputPump(child.stdout, tmp_path / "r0.log", "worker output", relayed.append)
    assert child.wait(timeout=60) == 0
    pump.join(10)
    assert pump.lines()[-2:] == [
        "warning: checkpoint of step 30 not written",
        "error: the final model could not be written",
    ]
    assert relayed == ["warning: checkpoint of step 30 not written"]
    assert len(said) == 1 and said[0].startswith("warning: worker output not written to ")


def test_what_a_child_could_not_write_reaches_the_console_even_when_its_log_works(tmp_path):
    relayed: list[str] = []
    child = _child(
        tmp_path,
        """
        print("warning: checkpoint step_00000020 refused (truncated); using an older one")
        print("warning: checkpoint of step 30 not written to /run: the disk is full")
        """,
    )
    assert child.stdout is not None
    pump = OutputPump(child.stdout, tmp_path / "r0.log", "worker output", relayed.append)
    assert child.wait(timeout=60) == 0
    pump.join(10)
    assert relayed == ["warning: checkpoint of step 30 not written to /run: the disk is full"]
    assert (tmp_path / "r0.log").read_text().splitlines() == pump.lines()
    assert len(pump.lines()) == 2


def test_the_launcher_reads_a_workers_error_line_from_memory(said, tmp_path, monkeypatch):
    """The worker's log and `.error` file are both on the full disk; its line still arrives."""
    script = tmp_path / "worker.py"
    script.write_text("print('error: the final model could not be written. Fix: --resume')\n")
    config = WorkerConfig(replica="r0", index=0, lighthouse="x", out_dir=str(tmp_path))
    slot = WorkerSlot(config, script, [], tmp_path / "logs")
    slot.launch(restarted=False)
    while slot.poll() is None:
        assert slot.process is not None
        slot.process.wait(timeout=60)
    assert slot.last_error_line() == "the final model could not be written. Fix: --resume"
    saved = sorted(p.name for p in (tmp_path / ".workers").iterdir())
    assert saved == ["r0.json", "r0.restart.json"]  # a restart needs no write
    assert WorkerConfig.load(tmp_path / ".workers" / "r0.restart.json").restarted
    # Now nothing can be written at all: a restart still starts, its line still arrives.
    monkeypatch.setattr(output_pump, "os", FullDiskOs(open=_enospc))
    monkeypatch.setattr(WorkerConfig, "save", _enospc)
    (tmp_path / "logs" / "r0.log").unlink()
    slot.launch(restarted=True)
    while slot.poll() is None:
        assert slot.process is not None
        slot.process.wait(timeout=60)
    assert slot.exit_codes == [0, 0]
    assert slot.last_error_line() == "the final model could not be written. Fix: --resume"
    assert not (tmp_path / "logs" / "r0.log").exists()
    assert len(said) == 1 and "worker output not written" in said[0]


def test_a_kind_relayed_from_a_worker_first_is_not_said_again_by_the_launcher(tmp_path):
    said: list[str] = []
    safe_write.reset()
    safe_write.set_reporter(said.append)
    try:
        relayed = "warning: events not written to run/events.jsonl: the disk is full; ..."
        assert safe_write.say_once(relayed, prefix="r0: ")

        def full() -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        # The launcher's own write of the same kind fails later, its path spelt otherwise.
        safe_write.write_or_warn("events", tmp_path / "events.jsonl", full, "x", "y")
        assert said == ["r0: " + relayed]
    finally:
        safe_write.set_reporter(None)
        safe_write.reset()
