"""A worker's error line reaches the launcher even when torch's warnings garble its log."""

from __future__ import annotations

import io

from phalanx.launch.workers import WorkerSlot
from phalanx.runtime.error_line import ERROR_FILE_ENV, say_error
from phalanx.runtime.worker_config import WorkerConfig


def _slot(tmp_path) -> WorkerSlot:
    config = WorkerConfig(replica="r0", index=0, lighthouse="x", out_dir=str(tmp_path))
    return WorkerSlot(config, tmp_path / "script.py", [], tmp_path / "logs")


def test_say_error_writes_the_stream_and_the_launchers_file(tmp_path, monkeypatch):
    slot = _slot(tmp_path)
    slot.log_dir.mkdir()
    monkeypatch.setenv(ERROR_FILE_ENV, str(slot.error_path))
    stream = io.StringIO()
    say_error("--steps: must be positive. Fix: pass --steps 10", stream)
    assert stream.getvalue() == "error: --steps: must be positive. Fix: pass --steps 10\n"
    assert slot.last_error_line() == "--steps: must be positive. Fix: pass --steps 10"


def test_a_line_garbled_in_the_log_is_still_found_through_the_file(tmp_path, monkeypatch):
    slot = _slot(tmp_path)
    slot.log_dir.mkdir()
    # A C++ warning without its newline yet, then ours on the same line: what CI once saw.
    slot.log_path.write_text("[W1130 ProcessGroupGloo.cpp:1] Warning: x error: the reason\n")
    assert slot.last_error_line() is None
    monkeypatch.setenv(ERROR_FILE_ENV, str(slot.error_path))
    say_error("the reason", io.StringIO())
    assert slot.last_error_line() == "the reason"


def test_without_the_file_the_log_line_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv(ERROR_FILE_ENV, raising=False)
    slot = _slot(tmp_path)
    slot.log_dir.mkdir()
    slot.log_path.write_text("noise\nerror: first\nmore noise\nerror: newest\n")
    assert slot.last_error_line() == "newest"
