"""A child's output: through a pipe into its log file, so a full disk cannot stop the child.

Workers and the lighthouse used to write their output straight into files in
`logs/`. On a full disk that kills them in ways no handler sees: torchft's
Rust code logs to stderr from its own threads and stops serving when a log
write fails (seen: the lighthouse stayed alive and never formed a quorum
again), and a Python `print` raises OSError anywhere in the step loop. A pipe
never fills a disk; the launcher copies what arrives into the log and, while
the disk refuses it, drops it with one warning (observe/safe_write.py). The
child never waits on the disk.

The pump also keeps the child's last lines in memory: the launcher's error
line and crash tail come from there when the log could not be written, and
the child's own warnings are relayed to the user's console: those about
what it could not write (a checkpoint, its events) and about layers that
make the result depend on the split always, the others while its log
cannot take them; and its notes (a sensor or knob its device lacks), always.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

from phalanx.observe.safe_write import say_once, write_or_warn

KEEP_LINES = 200
KEEP_HELD_BYTES = 1 << 20  # a child's output held back until it says what it owes
CHUNK_BYTES = 65536
WARNING_PREFIX = "warning: "
NOT_WRITTEN = " not written to "  # a child's disk warnings (safe_write.py, checkpoint.py)
NOT_EXACT = "warning: not exact: "  # a layer that makes the result split-dependent (exact/)
# A real device's missing sensor or knob, said once by its worker (runtime/hooks.py).
DEVICE_NOTE = "note: "


class OutputPump:
    """Copies `pipe` into `log_path` on a thread of its own until the child closes it."""

    def __init__(
        self,
        pipe: IO[bytes],
        log_path: Path,
        kind: str,
        relay: Callable[[str], object] | None = None,
        shown_path: Path | None = None,
        drop_through: bytes | None = None,
        begun: bytes = b"",
    ) -> None:
        """`drop_through`: a line (with its newline) the child owes before its own output;
        it and everything before it are dropped (a warm spare's "ready", launch/spare_pool.py),
        unless the child ends without it (then it all goes to the log: a traceback).
        `begun`: the start of the child's current line, read by someone else already."""
        self.log_path = log_path
        self._drop_through = drop_through
        self._dropped = begun  # the line begun, while the owed line has not come
        self._held = bytearray()  # what was dropped, in case the owed line never comes
        self._kind = kind  # what the disk warning names: `worker output`, `lighthouse log`
        self._shown_path = shown_path or log_path  # the logs folder where one line covers many
        self._pipe = pipe
        self._relay = relay
        self._lines: deque[str] = deque(maxlen=KEEP_LINES)
        self._partial = b""
        self._lock = threading.Lock()
        _create_empty(log_path)
        self._thread = threading.Thread(target=self._run, name=f"output {log_path.name}")
        self._thread.daemon = True  # a child that keeps the pipe open must not hold the launcher
        self._thread.start()

    def lines(self) -> list[str]:
        """The child's last complete lines (at most KEEP_LINES), oldest first."""
        with self._lock:
            return list(self._lines)

    def join(self, timeout_s: float) -> None:
        """Wait until the child's output is all copied (EOF), at most `timeout_s`."""
        self._thread.join(timeout_s)

    def _run(self) -> None:
        fd = self._pipe.fileno()
        try:
            while chunk := os.read(fd, CHUNK_BYTES):
                chunk = self._past_owed_line(chunk)
                if chunk:
                    self._take(chunk)
            if self._drop_through is not None and self._held:
                self._take(bytes(self._held))  # it ended without the owed line: keep it all
        except OSError:
            pass  # the pipe was closed under us (the launcher is shutting down)
        finally:
            self._pipe.close()

    def _take(self, chunk: bytes) -> None:
        new_lines = self._remember(chunk)
        written = self._write(chunk)
        if self._relay is not None:
            self._relay_warnings(new_lines, written, self._relay)

    def _past_owed_line(self, chunk: bytes) -> bytes:
        """`chunk` without what comes up to and including the owed line (all of it, until then)."""
        owed = self._drop_through
        if owed is None:
            return chunk
        self._held += chunk
        del self._held[:-KEEP_HELD_BYTES]
        text, start = self._dropped + chunk, 0
        while (end := text.find(b"\n", start)) != -1:
            if text[start : end + 1] == owed:
                self._drop_through, self._dropped, self._held = None, b"", bytearray()
                return text[end + 1 :]
            start = end + 1
        # The line begun: its head is enough to tell (a longer line is never the owed one).
        self._dropped = text[start:][: len(owed)]
        return b""

    @staticmethod
    def _relay_warnings(lines: list[str], written: bool, relay: Callable[[str], object]) -> None:
        for line in lines:
            # What the child could not write, always: the user must learn it while the
            # disk is full, and events.jsonl may be on that disk too. And a model that
            # cannot be exact: said once at start, it must not hide in a log.
            always = NOT_WRITTEN in line or line.startswith(NOT_EXACT)
            warning = line.startswith(WARNING_PREFIX) and (not written or always)
            if warning or line.startswith(DEVICE_NOTE):
                relay(line)

    def _write(self, chunk: bytes) -> bool:
        try:
            return append_or_warn(self.log_path, chunk, self._kind, self._shown_path)
        except OSError as err:  # not the disk (a log directory removed?): still never stop
            say_once(f"warning: {self._kind} not written to {self._shown_path}: {err.strerror}")
            return False

    def _remember(self, chunk: bytes) -> list[str]:
        parts = (self._partial + chunk).split(b"\n")
        self._partial = parts.pop()[-CHUNK_BYTES:]  # a line without its newline yet
        lines = [p.decode(errors="replace").rstrip("\r") for p in parts]
        with self._lock:
            self._lines.extend(lines)
        return lines


def _create_empty(log_path: Path) -> None:
    """Create the log now: the path our messages name exists even for a child that is
    killed before it says anything (a lighthouse killed right after it started)."""
    with contextlib.suppress(OSError):  # a full disk: the first write says so, once
        os.close(_open_log(log_path))


def _open_log(log_path: Path) -> int:
    """A log opened for appending, created if missing: each write lands at its end."""
    return os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def append_or_warn(log_path: Path, data: bytes, kind: str, shown_path: Path | None = None) -> bool:
    """Append `data` to a log; on a full disk drop it with one warning per `kind`."""

    def append() -> None:
        fd = _open_log(log_path)
        try:
            rest = memoryview(data)
            while rest:
                written = os.write(fd, rest)
                if written == 0:  # a regular file refuses with ENOSPC; never loop on 0
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(log_path))
                rest = rest[written:]
        finally:
            os.close(fd)

    return write_or_warn(
        kind,
        shown_path or log_path,
        append,
        "training goes on; those lines are lost (warnings among them are shown here)",
        "free space there; writing goes on by itself",
    )
