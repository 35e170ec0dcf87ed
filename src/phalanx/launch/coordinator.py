"""The fleet's coordinator as replicas see it: an admission gate, a supervised lighthouse behind it.

The gate listens on the fleet's address and outlives the lighthouse. When the
lighthouse child dies (or a fault kills it) it is restarted on a new loopback
port and the gate forwards to it from then on, so replicas keep the address
they were given. Meanwhile replicas finish the step they are in (a step needs
no lighthouse), then retry their quorum until it answers (see `FleetSync`).

`poll()` restarts the child: call it from the thread that lives as long as the
coordinator. The child is bound to its parent *thread* by PR_SET_PDEATHSIG, so
one started from a short-lived thread would die with that thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from phalanx.fleetnet.admission import AdmissionGate, Refusal, split_address
from phalanx.launch.lighthouse import LighthouseProcess, LighthouseSettings

RESTART_RETRY_S = 1.0  # after a failed restart attempt

EventSink = Callable[..., Any]  # like EventLog.emit: (kind, **fields)


class GatedLighthouse:
    def __init__(
        self,
        settings: LighthouseSettings,
        secret: bytes,
        log_path: Path,
        on_event: EventSink | None = None,
        restart_delay_s: float = 0.0,
    ) -> None:
        # The lighthouse itself is never reachable from outside: loopback, an OS-picked port.
        self._settings = replace(settings, bind_host="127.0.0.1", port=0)
        self._log_path = log_path
        self._emit: EventSink = on_event or (lambda kind, **fields: None)
        self.restart_delay_s = restart_delay_s
        self.gate = AdmissionGate(
            secret, settings.bind_host.strip("[]"), settings.port, on_refused=self._on_refused
        )
        self.incarnation = 0  # of the lighthouse behind the gate (set by each start)
        self.restarts = 0
        self._down_since: float | None = None  # wall-clock time the lighthouse was lost
        self._restart_at: float | None = None  # monotonic time of the next restart attempt
        try:
            self._child: LighthouseProcess = self._start()
        except BaseException:
            self.gate.close()
            raise

    @property
    def address(self) -> str:
        """What replicas dial (the gate), as http://HOST:PORT."""
        host = "127.0.0.1" if self.gate.host in ("0.0.0.0", "::") else self.gate.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.gate.port}"

    @property
    def up(self) -> bool:
        return self._down_since is None

    def _start(self) -> LighthouseProcess:
        child = LighthouseProcess(self._settings, self._log_path)
        host, port = split_address(child.address)
        self.incarnation = self.gate.set_upstream(host, port)
        return child

    def kill(self, restart_after_s: float | None = None, **fields: Any) -> None:
        """SIGKILL the lighthouse now (fault injection); `poll()` restarts it."""
        self._child.shutdown()
        self._lost("injected", restart_after_s, **fields)

    def poll(self) -> None:
        """Notice a dead lighthouse; restart it when due. Cheap: call it every supervisor tick."""
        if self._down_since is None:
            if self._child.alive:
                return
            code = self._child.exit_code
            self._child.shutdown()  # reaped, its last log lines kept, its pipes closed
            self._lost("exited", None, code=code)
        assert self._restart_at is not None
        if time.monotonic() < self._restart_at:
            return
        try:
            self._child = self._start()
        except (RuntimeError, OSError, ValueError) as err:
            self._restart_at = time.monotonic() + RESTART_RETRY_S
            self._emit("lighthouse_restart_failed", reason=str(err))
            return
        down_s = time.time() - (self._down_since or time.time())
        self.restarts += 1
        self._down_since = self._restart_at = None
        self._emit(
            "lighthouse_restart",
            down_s=round(down_s, 4),
            restarts=self.restarts,
            incarnation=self.incarnation,
        )

    def _lost(self, cause: str, restart_after_s: float | None, **fields: Any) -> None:
        self.gate.clear_upstream()
        delay_s = self.restart_delay_s if restart_after_s is None else restart_after_s
        self._down_since = time.time()
        self._restart_at = time.monotonic() + delay_s
        self._emit("lighthouse_down", cause=cause, restart_in_s=delay_s, **fields)

    def admission(self) -> dict[str, Any]:
        """Totals for summary.json: who was refused, who came in."""
        return {
            "refused": self.gate.refused,
            "refused_by_peer": dict(self.gate.refused_by_peer),
            "admitted": self.gate.admitted,
            "while_lighthouse_down": self.gate.unavailable,
        }

    def _on_refused(self, refusal: Refusal) -> None:
        # Called on the gate's thread; EventLog.emit appends one line under a lock.
        self._emit(
            "admission_refused",
            peer=refusal.peer,
            reason=refusal.reason,
            count_from_peer=refusal.count_from_peer,
        )

    def shutdown(self) -> None:
        self._child.shutdown()
        self.gate.close()
