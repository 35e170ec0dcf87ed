"""Worker processes: spawn, watch, restart. One process per replica."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from phalanx.fleetnet.hosts import gloo_interface
from phalanx.launch.orphans import die_with_parent
from phalanx.launch.output_pump import OutputPump, append_or_warn
from phalanx.launch.spare_pool import READY, SparePool
from phalanx.runtime.error_line import ERROR_FILE_ENV
from phalanx.runtime.worker_config import ENV_VAR, WorkerConfig

OUTPUT_KIND = "worker output"  # one disk warning for all workers' logs
# argparse's last line when a script refuses its arguments: "train.py: error: argument ...".
ARGPARSE_ERROR = re.compile(r"^(?P<prog>[^\s:]+): error: (?P<message>.+)$")
DRAIN_S = 2.0  # an exited worker's last output is in the pipe; a grandchild may hold it open


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
    out_of_memory: bool = False  # left because the model does not fit its chip (exit 6)
    # The launcher's relay of a worker's `warning:` lines while its log cannot take them.
    relay: Callable[[str, str], object] | None = None
    pump: OutputPump | None = None
    # A process that has imported torch already, for restarts (launch/spare_pool.py).
    spares: SparePool | None = None
    warm: bool = False  # the last launch took a warm spare

    @property
    def name(self) -> str:
        return self.config.replica

    @property
    def file_label(self) -> str:
        """The replica's name; a group's ranks past the first add their rank."""
        rank = self.config.group_rank
        return self.name if not rank else f"{self.name}.rank{rank}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.file_label}.log"

    @property
    def error_path(self) -> Path:
        """Where the worker writes its one-line error (runtime/error_line.py)."""
        return self.log_dir / f"{self.file_label}.error"

    def config_path(self, restarted: bool) -> Path:
        suffix = ".restart" if restarted else ""
        return self.log_dir.parent / ".workers" / f"{self.file_label}{suffix}.json"

    def _save_configs(self) -> None:
        """Both configs a launch can need, written at the first launch.

        A restart then writes nothing before the worker runs: on a disk that
        filled mid-run it still brings a crashed replica back. (At the first
        launch a full disk stops the run: see launch/cli.py.)
        """
        self.config_path(False).parent.mkdir(parents=True, exist_ok=True)
        for restarted in (False, True):
            replace(self.config, restarted=restarted).save(self.config_path(restarted))

    def launch(self, restarted: bool) -> None:
        if self.launches == 0:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._save_configs()
        self.config.restarted = restarted
        env = dict(os.environ)
        env[ENV_VAR] = str(self.config_path(restarted))
        # Gloo binds the interface of the advertised address (loopback on one host).
        interface = gloo_interface(self.config.advertise_host)
        if interface is not None:
            env.setdefault("GLOO_SOCKET_IFNAME", interface)
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("PYTHONUNBUFFERED", "1")
        env[ERROR_FILE_ENV] = str(self.error_path)
        self.error_path.unlink(missing_ok=True)  # a line from an earlier launch is not this one's
        header = f"--- launch {self.launches + 1} at {time.strftime('%H:%M:%S')} ---\n"
        append_or_warn(self.log_path, header.encode(), OUTPUT_KIND, self.log_dir)
        # The script's own directory first on the path, as `python script.py` would have it.
        # Output goes through a pipe the launcher copies into the log: a full disk drops
        # lines instead of failing the worker's own writes (launch/output_pump.py).
        handout = None
        if restarted and self.spares is not None:
            handout = self.spares.take(str(self.script), self.script_args, env)
        self.warm = handout is not None
        self.process = (
            handout.process
            if handout is not None
            else subprocess.Popen(
                [sys.executable, str(self.script), *self.script_args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the launcher, which stops workers cleanly
                preexec_fn=die_with_parent,
            )
        )
        assert self.process.stdout is not None
        relay, name = self.relay, self.name
        self.pump = OutputPump(
            self.process.stdout,
            self.log_path,
            OUTPUT_KIND,
            (lambda line: relay(name, line)) if relay is not None else None,
            shown_path=self.log_dir,
            drop_through=READY if handout is not None and handout.owes_ready else None,
            begun=handout.begun if handout is not None else b"",
        )
        self.launches += 1
        self.restart_at = None

    def poll(self) -> int | None:
        if self.process is None:
            return None
        code = self.process.poll()
        if code is not None:
            self.exit_codes.append(code)
            self.process = None
            self._drain()
        return code

    def _drain(self) -> None:
        """Copy the exited worker's last output (its error line) before anyone reads it."""
        if self.pump is not None:
            self.pump.join(DRAIN_S)

    @property
    def alive(self) -> bool:
        return self.process is not None

    def signal(self, signum: int) -> None:
        """Send `signum` to the worker's process group (it runs in a session of its own)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None
        self._drain()

    def _output_lines(self) -> list[str]:
        """The worker's latest output: kept in memory (the log may have met a full disk)."""
        if self.pump is not None:
            return self.pump.lines()
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def last_error_line(self) -> str | None:
        with contextlib.suppress(OSError):
            if line := self.error_path.read_text(errors="replace").strip():
                return line
        for line in reversed(self._output_lines()):
            if line.startswith("error: "):
                return line[len("error: ") :]
            # The user's script refused its own arguments (argparse: "PROG: error: MSG").
            if found := ARGPARSE_ERROR.match(line):
                return (
                    f"{found['prog']} rejected its arguments (after --): {found['message']} "
                    f"(its usage is in {self.log_path})"
                )
        return None

    def tail(self, count: int = 15) -> str:
        return "\n".join(self._output_lines()[-count:])
