"""The fleet interface for one process: the reference run of a script."""

from __future__ import annotations

import torch


class _DoneWork:
    def wait(self) -> bool:
        return True


class LocalSync:
    """One participant, no collective, a commit whenever the step is sound."""

    def __init__(self, name: str = "local") -> None:
        self.name = name

    def begin_step(self) -> list[str]:
        return [self.name]

    def allreduce(self, tensor: torch.Tensor) -> _DoneWork:
        return _DoneWork()

    def commit(self, local_ok: bool, reason: str = "") -> bool:
        return local_ok

    def errored(self) -> bool:
        return False

    @property
    def last_error(self) -> str:
        return ""

    def exchange_progress(self, step: int, complete: bool, rewind: bool = False) -> None:
        return None  # one process: no fleet to ask

    def report_step(self, step: int) -> None:
        pass

    def close(self) -> None:
        pass
