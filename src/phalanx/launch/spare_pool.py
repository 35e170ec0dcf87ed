"""The launcher's warm spare (launch/warm_spare.py): start one, hand it out, start the next.

When: a spare imports torch (about 2 s of a core) and then waits in memory
(a few hundred MB). On a host with a core to spare beyond its workers' threads
that costs the fleet nothing: it imports at the workers' priority. On a host
whose cores the workers already fill (a 2-core machine running 2-4 chips) it
imports at the lowest CPU priority and becomes a worker at the launcher's own,
so its imports take only the time the workers leave idle; that needs this
process to be allowed to raise a priority back (root, CAP_SYS_NICE or a
RLIMIT_NICE that allows it, probed once in a thread of its own). Where it is
not, the spare is off: importing at the workers' priority would take a core
from them, and one left at the lowest would make a slow worker.
`PHALANX_WARM_SPARE=0` turns it off, `=1` forces it on even then.

Measured (2026-12-04, 2-core host, 4 emulated chips, spare forced on): a killed
replica was back in 0.55 s instead of 2.5 s and the bench's goodput under kill
+ hang rose from 0.84 to 0.91-0.93 (one run each), the fault-free rate
unchanged. It was off by default where the cores are full until a site's
replicas met their outer round whole or not at all (sites/outer_link.py): a
restarted replica back this fast reached its first outer round in step with
its site peer, and torchft's lighthouse could form the round's quorum with the
peer alone (tests/e2e/test_sites_run.py hung for 300 s).

A spare that said "ready" (its imports are done) becomes the worker at once.
One still importing is handed out too, raised to the workers' priority: it
becomes the worker as soon as its imports end, which is never later than a
cold start beginning now, and sooner by whatever it imported in the workers'
idle time (on a 2-core host whose chips fill both cores, a spare at the lowest
priority was often not ready when a kill 7 s into the bench came). Its
"ready" line, when it comes, is dropped from the worker's log. A spare that
died is passed over and the worker starts cold, as it always did. The launcher stops the spare when the run ends; a spare
also dies with the launcher (PDEATHSIG), like every worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from phalanx.launch.orphans import die_with_parent
from phalanx.launch.process_tree import close_pipes
from phalanx.launch.warm_spare import (
    IMPORT_PRIORITY,
    READY,
    SESSION_DEFAULT_NICE,
    set_group_nice,
)

__all__ = ["READY", "Handout", "SparePool", "may_raise_priority_back", "pool_for"]
NEXT_SPARE_AFTER_S = 10.0  # after a hand-out, before the next spare starts importing
# The kernel lets a scheduling group's nice change once per 100 ms, system-wide.
_GROUP_RETRY_S = 0.3


class Handout(NamedTuple):
    """A spare turned worker; `owes_ready`: it was still importing, and will yet say so.

    `begun`: the start of a line of its output the launcher read already (the rest of
    that line comes through the worker's pipe)."""

    process: subprocess.Popen[bytes]
    owes_ready: bool
    begun: bytes = b""


class SparePool:
    """At most one warm spare on this host, started on demand and after each hand-out."""

    def __init__(self, worker_priority: int | None = None) -> None:
        # None: the spare imports at the launcher's priority; else it imports at the
        # lowest and becomes a worker at this one.
        self.worker_priority = worker_priority
        self._spare: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._seen = b""  # what the spare wrote so far, up to its "ready"
        self._not_before_s = 0.0

    def start(self) -> None:
        """Start a spare if there is none (non-blocking: it imports in the background)."""
        if self._spare is not None and self._spare.poll() is None:
            return
        if time.monotonic() < self._not_before_s:
            return
        if self._spare is not None:  # one that died: its pipes, not left to the collector
            close_pipes(self._spare)
        env = dict(os.environ)  # a worker's launch env is handed over whole later
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._ready, self._seen = False, b""
        argv = [sys.executable, "-m", "phalanx.launch.warm_spare"]
        if self.worker_priority is not None:
            argv += ["--priority", str(self.worker_priority)]
        self._spare = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # as a cold worker: its own session and process group
            preexec_fn=die_with_parent,
        )

    def start_at_launch(self) -> None:
        """Start now if this spare imports at the lowest priority: it takes only what the
        workers leave, and a kill in the first seconds of training finds it ready. One at
        the workers' priority waits for the first step (it would slow their start)."""
        if self.worker_priority is not None:
            self.start()

    def _is_ready(self) -> bool:
        spare = self._spare
        if spare is None or spare.poll() is not None or spare.stdout is None:
            return False
        fd = spare.stdout.fileno()
        # Read the fd itself (no buffer of Python's): the worker's output pump reads it
        # next, and must find nothing of the spare's left behind. Import warnings may
        # come before "ready"; they are dropped (every cold worker prints them too).
        while not self._ready and select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                return False
            self._seen = (self._seen + chunk)[-4096:]
            self._ready = self._seen == READY or self._seen.endswith(b"\n" + READY)
        return self._ready

    def take(self, script: str, args: list[str], env: dict[str, str]) -> Handout | None:
        """A process running `script` as a worker with `env`, or None (start it cold)."""
        spare = self._spare
        if spare is None or spare.poll() is not None or spare.stdin is None:
            return None  # a dead one is closed by the next start() or close()
        ready = self._is_ready()
        self._spare, self._ready = None, False
        if not ready:
            self._promote(spare)
        job = {"script": script, "args": list(args), "env": env}
        try:
            spare.stdin.write((json.dumps(job) + "\n").encode())
            spare.stdin.close()
        except OSError:  # it died just now
            self._kill(spare)
            return None
        # The next spare waits: its imports would take a core from the restarted worker
        # and the fleet just when they catch up.
        self._not_before_s = time.monotonic() + NEXT_SPARE_AFTER_S
        begun = b"" if ready else self._seen.rsplit(b"\n", 1)[-1]
        self._seen = b""
        return Handout(spare, owes_ready=not ready, begun=begun)

    def _promote(self, spare: subprocess.Popen[bytes]) -> None:
        """A spare still importing goes on at the workers' priority, as a cold worker would.

        (Its own switch, when it becomes the worker, checks and completes this: launch/
        warm_spare.py. The probe that made this pool said the kernel lets us.)
        """
        if self.worker_priority is None:
            return  # it imports at the workers' priority already
        # The main thread first: threads it starts from now on inherit its priority.
        tids = [spare.pid]
        with contextlib.suppress(OSError):  # it died just now: its exit is seen as a worker's
            tids += [int(t.name) for t in Path(f"/proc/{spare.pid}/task").iterdir()]
        for tid in tids:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid, self.worker_priority)
        # Not for long: its own switch retries, once its imports are done.
        with contextlib.suppress(OSError):
            set_group_nice(
                SESSION_DEFAULT_NICE, Path(f"/proc/{spare.pid}/autogroup"), _GROUP_RETRY_S
            )

    def close(self) -> None:
        if self._spare is not None:
            self._kill(self._spare)
            self._spare = None

    @staticmethod
    def _kill(spare: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(spare.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            spare.wait(timeout=5)
        close_pipes(spare)


def pool_for(slots: Sequence[Any]) -> SparePool | None:
    """A spare pool for this host's worker slots, when it is wanted (see above)."""
    if all(getattr(s, "parts", None) for s in slots):
        return None  # a group's ranks restart together, cold: a spare would go unused
    forced = os.environ.get("PHALANX_WARM_SPARE")
    if forced == "0":
        return None
    # A group slot runs one process per rank.
    busy_threads = sum(
        max(1, int(getattr(s.config, "threads", 1) or 1)) * max(1, len(getattr(s, "parts", ())))
        for s in slots
    )
    if (os.cpu_count() or 1) > busy_threads:
        return SparePool()  # a core is free: it imports at the workers' priority
    priority = os.getpriority(os.PRIO_PROCESS, 0)  # what a cold worker starts with
    if may_raise_priority_back(priority):
        return SparePool(priority)  # imports in the workers' idle time, then runs as one
    return SparePool() if forced == "1" else None


def may_raise_priority_back(priority: int) -> bool:
    """Whether a process of ours, lowered to the import priority, may go back to `priority`.

    Tried for real in a thread of its own (Linux keeps a priority per thread), so the
    launcher's own priority never changes: the kernel's rule (capability, RLIMIT_NICE)
    is what decides, not a guess at it.
    """
    allowed: list[bool] = []

    def probe() -> None:
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, IMPORT_PRIORITY)
            os.setpriority(os.PRIO_PROCESS, tid, priority)
            allowed.append(True)
        except OSError:
            allowed.append(False)

    thread = threading.Thread(target=probe, name="phalanx-priority-probe")
    thread.start()
    thread.join()
    return allowed == [True]
