"""The fleet interface on torchft: quorum, heal, one SUM allreduce, commit.

We use torchft's Manager directly (not its DDP wrapper, which crashed the
survivors when a peer died inside the allreduce) with a synchronous quorum:
exact slicing needs the ordered membership before compute, and a healing
replica then loads its state at quorum time and takes part in the same step.
"""

from __future__ import annotations

import contextlib
import re
import socket
from datetime import timedelta
from typing import Any

import torch
from torch.distributed import ReduceOp

from phalanx.runtime.state import TrainState
from phalanx.runtime.worker_config import WorkerConfig


class _QuorumRecorder:
    """Wraps torchft's ManagerClient to keep the last quorum result.

    Manager reads `replica_ids` (the ordered members) from the quorum result
    and throws it away; we need it to derive everybody's slice.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self.last: Any = None

    def _quorum(self, *args: Any, **kwargs: Any) -> Any:
        self.last = self._client._quorum(*args, **kwargs)
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _natural_key(name: str) -> tuple[str, int]:
    match = re.match(r"^(.*?)(\d+)$", name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)


def stable_name(replica_id: str) -> str:
    """torchft appends ':<uuid>' to our replica id; the part before it is stable."""
    return replica_id.split(":", 1)[0]


class FleetSync:
    def __init__(self, config: WorkerConfig, state: TrainState, host: str | None = None) -> None:
        # Imported here: local runs must not pay for torchft's import.
        from torch.distributed import TCPStore
        from torchft.manager import Manager
        from torchft.process_group import ProcessGroupGloo

        from phalanx.runtime.advertise import checkpoint_transport

        # What peers on other hosts dial: our store, ManagerServer and checkpoint server.
        host = host or config.advertise_host
        self.name = config.replica
        self.state = state
        timeout = timedelta(seconds=config.timeout_s)
        # Each replica group (here: one process) owns a store for its PG rendezvous.
        self._store = TCPStore(host, 0, is_master=True, wait_for_workers=False)
        self._pg = ProcessGroupGloo(timeout=timeout)
        self.manager = Manager(
            pg=self._pg,
            load_state_dict=state.load_state_dict,
            state_dict=state.state_dict,
            min_replica_size=1,
            use_async_quorum=False,
            timeout=timeout,
            quorum_timeout=timedelta(seconds=config.quorum_timeout_s),
            connect_timeout=timedelta(seconds=max(config.timeout_s, 10.0)),
            rank=0,
            world_size=1,
            store_addr=host,
            store_port=self._store.port,
            lighthouse_addr=config.lighthouse,
            replica_id=config.replica,
            hostname=host if host != "0.0.0.0" else socket.gethostname(),
            heartbeat_interval=timedelta(milliseconds=config.heartbeat_ms),
            init_sync=True,
            checkpoint_transport=checkpoint_transport(host, timeout),
        )
        self._recorder = _QuorumRecorder(self.manager._client)
        self.manager._client = self._recorder  # type: ignore[assignment]
        self.quorum_id: int | None = None
        self._last_error = ""

    def set_step(self, step: int) -> None:
        """Tell torchft where a checkpoint left us, before the first quorum."""
        self.manager.load_state_dict({"step": step, "batches_committed": 0})

    def begin_step(self) -> list[str]:
        """Join the next quorum (healing first if behind); return the ordered participants."""
        self.manager.start_quorum()
        result = self._recorder.last
        self.quorum_id = result.quorum_id
        names = {stable_name(rid) for rid in result.replica_ids}
        if len(names) < len(result.replica_ids):
            # Two live replicas under one name would compute the same slice twice.
            # (A crashed predecessor still in the quorum ends the same way: the restart heals it.)
            raise RuntimeError(
                f"two replicas in quorum {result.quorum_id} share a name ({sorted(result.replica_ids)}): "
                "give every host its own --host-id"
            )
        return sorted(names, key=_natural_key)

    def allreduce(self, tensor: torch.Tensor) -> Any:
        return self.manager.allreduce(tensor, reduce_op=ReduceOp.SUM)

    def commit(self, local_ok: bool, reason: str = "") -> bool:
        if not local_ok:
            self.manager.report_error(RuntimeError(reason or "local veto"))
        error = self.manager.errored()
        self._last_error = str(error.original_exception) if error is not None else reason
        return self.manager.should_commit()

    def errored(self) -> bool:
        return self.manager.errored() is not None

    @property
    def last_error(self) -> str:
        return self._last_error.splitlines()[0] if self._last_error else ""

    def close(self) -> None:
        # Shutting down after peers vanished must not fail a finished run.
        with contextlib.suppress(Exception):
            self.manager.shutdown(wait=False)
