"""One site of `phalanx sites`: its `phalanx run` as a child, its output relayed line by line.

The child runs in a session of its own (a Ctrl-C in the terminal reaches
`phalanx sites`, which stops every site in order) and dies with its parent
(launch/orphans.py); its workers die with it the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO

from phalanx.launch.orphans import die_with_parent
from phalanx.launch.process_tree import signal_tree

PREFIX_COLUMNS = 80  # the child's console width when ours is unknown


class SiteProcess:
    def __init__(
        self, name: str, argv: Sequence[str], quiet: bool, columns: int = PREFIX_COLUMNS
    ) -> None:
        self.name = name
        self.prefix = f"[{name}] "
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        # rich wraps at COLUMNS off a terminal: keep a prefixed line as wide as ours.
        env["COLUMNS"] = str(max(40, columns - len(self.prefix)))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "phalanx", *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        # --quiet: the site prints errors only (it runs with --quiet); they still show.
        self._relays = [
            self._relay(self.process.stdout, None if quiet else sys.stdout),
            self._relay(self.process.stderr, sys.stderr),
        ]
        self.code: int | None = None

    def _relay(self, pipe: IO[bytes], sink: IO[str] | None) -> threading.Thread:
        def copy() -> None:
            for raw in pipe:
                if sink is not None:
                    line = raw.decode(errors="replace").rstrip("\n")
                    with contextlib.suppress(OSError, ValueError):  # our own output closed
                        print(f"{self.prefix}{line}", file=sink, flush=True)
            pipe.close()

        thread = threading.Thread(target=copy, name=f"relay {self.name}", daemon=True)
        thread.start()
        return thread

    @property
    def pid(self) -> int | None:
        """The site's `phalanx run` process while it runs."""
        return self.process.pid if self.code is None else None

    def poll(self) -> int | None:
        if self.code is None:
            self.code = self.process.poll()
            if self.code is not None:
                self.drain()
        return self.code

    def drain(self, timeout_s: float = 2.0) -> None:
        """Its last lines out before anything is printed after them."""
        for thread in self._relays:
            thread.join(timeout_s)

    def signal(self, signum: int) -> None:
        """To its `phalanx run` alone: it stops its own workers (SIGINT, SIGTERM)."""
        if self.code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL to the site's every process (workers run in sessions of their own)."""
        if self.process.poll() is None:
            signal_tree(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.poll()
