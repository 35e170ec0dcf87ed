"""What the launcher tells each worker. Passed as a JSON file named by PHALANX_WORKER.

The environment variable only says *that* a script runs under `phalanx run`
and where its config lies; every setting is in the file, written by the
launcher from its validated flags.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from phalanx.runtime.liveness import HEARTBEAT_INTERVAL_MS, MIN_SHARED_HEARTBEAT_TIMEOUT_MS

ENV_VAR = "PHALANX_WORKER"


@dataclass
class WorkerConfig:
    replica: str  # stable name, e.g. "r1"
    index: int
    lighthouse: str
    out_dir: str
    advertise_host: str = "127.0.0.1"  # the address peers on other hosts reach us at
    speed: float | None = None  # emulated speed, None on a real device
    time_scale: float = 1.0  # common slow-down of all emulated chips (see launcher)
    device: str = "cpu"  # the torch device this replica binds (`phalanx run --devices`)
    threads: int = (
        1  # intra-op threads: 1 for an emulated chip, a fair part of the host's for a CPU
    )
    faults: list[dict[str, Any]] = field(default_factory=list)
    # Every replica of the fleet: name -> {"hint_sps": float|None, "max_share": int|None}.
    fleet: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeout_s: float = 5.0
    quorum_timeout_s: float = 60.0
    heartbeat_ms: int = HEARTBEAT_INTERVAL_MS
    # The lighthouse's heartbeat timeout: the launcher's own lighthouse's, else the least
    # a shared one may use (runtime/liveness.py).
    heartbeat_timeout_ms: int = MIN_SHARED_HEARTBEAT_TIMEOUT_MS
    start_barrier: str | None = None  # host:port of the launcher's TCPStore
    fleet_size: int = 1
    restarted: bool = False
    checkpoint_every: int | None = None
    keep_checkpoints: int | None = None
    guard: str | None = None  # overrides the script's Trainer(guard=...)
    precision: str | None = None  # overrides the script's Trainer(precision=...)
    # `--emulate ...:kind=NAME`: this emulated chip rounds like another vendor's.
    emulated_kind: str | None = None
    # `--emulate ...:mem=SIZE`: this emulated chip's memory, which binds (emulate/memory.py).
    emulated_memory_bytes: int | None = None
    defects: dict[str, Any] | None = None  # emulated chip defects (from fleet.toml)
    device_table: dict[str, Any] | None = None  # this replica's [[device]] table
    rescreen_every_s: float | None = None  # periodic correctness probe; None: off
    power_limit_w: float | None = None  # chosen by --objective/--power-budget-w; None: full
    thermal_guard: bool = True  # move share away from a chip nearing its throttle point
    # Admission (fleetnet/admission.py): the fleet secret's file (never the secret: this
    # config is world-readable). None: dial `lighthouse` directly, without a tunnel.
    secret_file: str | None = None
    lighthouse_wait_s: float = 300.0  # retry the quorum this long while no lighthouse answers
    # Wall-clock start of the launcher: the gate tells a finished run from a new one by it.
    launched_at_s: float | None = None
    many_hosts: bool = False  # joined a fleet's lighthouse (`phalanx run --lighthouse`)
    # A replica group (docs/groups.md): this process is rank `group_rank` of the
    # group's `group_ranks`; they meet at `group_store` (host:port, one per launch).
    group_rank: int = 0
    group_ranks: int = 1
    group_store: str | None = None
    group_chip: int = 0  # which of its replica's chips hosts this rank (chip_memory events)
    # A sites run (docs/sites.md): sites/run_settings.SiteRunSettings.to_json(); None: one fleet.
    sites: dict[str, Any] | None = None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> WorkerConfig:
        return cls(**json.loads(Path(path).read_text()))


def from_environment() -> WorkerConfig | None:
    path = os.environ.get(ENV_VAR)
    return WorkerConfig.load(path) if path else None
