"""What the step needs from the fleet, as one declared interface.

Two implementations: `LocalSync` (one process, the reference run) and
`FleetSync` (torchft's Manager, a lighthouse, gloo). The step and the
trainer only ever talk to this interface, so neither probes for methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

import torch

from phalanx.fleetnet.fleet_progress import FleetProgress


class Work(Protocol):
    """A collective in flight: `wait()` returns when the tensor holds the sum."""

    def wait(self) -> object: ...


class DoneWork:
    """A collective that is already complete (one participant: nothing to sum)."""

    def wait(self) -> bool:
        return True


class Sync(ABC):
    """Quorum, sum, commit: one replica's view of the fleet for one step."""

    name: str
    quorum_id: int | None = None

    @abstractmethod
    def set_step(self, step: int) -> None:
        """Where a checkpoint left us, before the first quorum."""

    def prepare_next(self) -> None:  # noqa: B027 (optional: one process has nothing to ask)
        """Request the next step's quorum early, while this step is applied (optional)."""

    @abstractmethod
    def begin_step(self, speculate: bool = False) -> list[str]:
        """Join the next quorum (healing first if behind); the ordered participants.

        `speculate`: the caller can take the last quorum's members on trust and
        start computing; the quorum is then confirmed before the first collective,
        and `moved()` says when it formed otherwise (the attempt is discarded).
        """

    def moved(self) -> bool:
        """Did the quorum speculated on form otherwise (nothing was summed)?"""
        return False

    def moved_already(self) -> bool:
        """Is the quorum speculated on known to have formed otherwise, by now?

        A look that never waits: the step asks between micro-batches and before
        backward, so a change of members stops the speculative compute there
        instead of at the first collective.
        """
        return False

    def unconfirmed(self) -> bool:
        """Does this step compute on members whose quorum is not known yet?

        (A speculative step, before its first collective.) A step that speculates
        on a *new* membership (peers gone after a failed commit) still owes the
        collectives a changed quorum begins with: it issues them once computed.
        """
        return False

    def quorum_changed(self) -> bool:
        """Is this quorum another than the last one (a failed commit makes a new one)?

        Every member of the quorum gets the same answer.
        """
        return False

    @abstractmethod
    def allreduce(self, tensor: torch.Tensor) -> Work:
        """Sum `tensor` in place over the participants (asynchronously)."""

    @abstractmethod
    def errored(self) -> bool:
        """Has a collective of this quorum failed (a peer died, a timeout)?"""

    def abandoned(self) -> bool:
        """Did this attempt stop waiting for a collective that may still complete later?

        (A frozen peer: the fleet gave up on it while gloo still waits.) Its tensors
        must not be used again (runtime/grad_buffer.py: renew).
        """
        return False

    @abstractmethod
    def commit(self, local_ok: bool, reason: str = "") -> bool:
        """Vote on the step; True: apply it. An error anywhere means False."""

    @property
    @abstractmethod
    def last_error(self) -> str:
        """One line: why the last commit failed ('' when it did not)."""

    @abstractmethod
    def report_step(self, step: int) -> None:
        """Tell the fleet a committed step (many hosts: the gate keeps the newest)."""

    @abstractmethod
    def exchange_progress(
        self, step: int, complete: bool, rewind: bool = False
    ) -> FleetProgress | None:
        """Report our progress, read the fleet's (None: one host, or no gate)."""

    @abstractmethod
    def close(self) -> None:
        """Leave the fleet; never raises."""
