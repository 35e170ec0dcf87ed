"""Worker processes: spawn, watch, restart. One process per replica."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from phalanx.launch.hosts import gloo_interface
from phalanx.launch.orphans import die_with_parent
from phalanx.runtime.error_line import ERROR_FILE_ENV
from phalanx.runtime.worker_config import ENV_VAR, WorkerConfig


@dataclass
class WorkerSlot:
    config: WorkerConfig
    script: Path
    script_args: list[str]
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    launches: int = 0
    restart_at: float | None = None  # monotonic time of a pending restart
    exit_codes: list[int] = field(default_factory=list)
    finished: bool = False

    @property
    def name(self) -> str:
        return self.config.replica

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @property
    def error_path(self) -> Path:
        """Where the worker writes its one-line error (runtime/error_line.py)."""
        return self.log_dir / f"{self.name}.error"

    def launch(self, restarted: bool) -> None:
        self.config.restarted = restarted
        config_path = self.log_dir.parent / ".workers" / f"{self.name}.json"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config.save(config_path)
        env = dict(os.environ)
        env[ENV_VAR] = str(config_path)
        # Gloo binds the interface of the advertised address (loopback on one host).
        interface = gloo_interface(self.config.advertise_host)
        if interface is not None:
            env.setdefault("GLOO_SOCKET_IFNAME", interface)
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("PYTHONUNBUFFERED", "1")
        env[ERROR_FILE_ENV] = str(self.error_path)
        # The script's own directory first on the path, as `python script.py` would have it.
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.error_path.unlink(missing_ok=True)  # a line from an earlier launch is not this one's
        log = self.log_path.open("ab")
        log.write(f"--- launch {self.launches + 1} at {time.strftime('%H:%M:%S')} ---\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [sys.executable, str(self.script), *self.script_args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops workers cleanly
            preexec_fn=die_with_parent,
        )
        log.close()
        self.launches += 1
        self.restart_at = None

    def poll(self) -> int | None:
        if self.process is None:
            return None
        code = self.process.poll()
        if code is not None:
            self.exit_codes.append(code)
            self.process = None
        return code

    @property
    def alive(self) -> bool:
        return self.process is not None

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def last_error_line(self) -> str | None:
        with contextlib.suppress(OSError):
            if line := self.error_path.read_text(errors="replace").strip():
                return line
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            if line.startswith("error: "):
                return line[len("error: ") :]
        return None

    def tail(self, count: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-count:])
        except OSError:
            return ""
