"""The fleet interface for one process: the reference run of a script."""

from __future__ import annotations

import torch

from phalanx.runtime.sync import DoneWork, FleetProgress, Sync


class LocalSync(Sync):
    """One participant, no collective, a commit whenever the step is sound."""

    def __init__(self, name: str = "local") -> None:
        self.name = name

    def set_step(self, step: int) -> None:
        pass  # nobody else to tell

    def begin_step(self, speculate: bool = False) -> list[str]:
        return [self.name]

    def allreduce(self, tensor: torch.Tensor) -> DoneWork:
        return DoneWork()

    def errored(self) -> bool:
        return False

    def commit(self, local_ok: bool, reason: str = "") -> bool:
        return local_ok

    @property
    def last_error(self) -> str:
        return ""

    def report_step(self, step: int) -> None:
        pass

    def exchange_progress(
        self, step: int, complete: bool, rewind: bool = False
    ) -> FleetProgress | None:
        return None  # one process: no fleet to ask

    def close(self) -> None:
        pass
