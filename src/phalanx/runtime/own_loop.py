"""Bring your own loop: the user writes the forward, phalanx owns the step.

    loop = phalanx.prepare(model, optimizer=..., dataset=..., global_batch_size=256, steps=1000)
    for batch in loop:            # every forward the fleet needs, on the chip
        loss = my_loss(model, batch)   # the mean over this batch's samples
        loop.backward(loss)       # phalanx weights it, backpropagates, reduces, commits
    print(loop.summary)

Under it runs the same engine as `Trainer` (runtime/step.py), unchanged: the
user's loop body stands in for `loss_fn`. The engine runs in a thread of its
own and asks the user's thread for each forward through a one-slot handoff;
the two threads strictly alternate, so the user's forward, phalanx's backward
and the fleet's collectives never overlap. Everything the engine does around
a forward (the slice and its weight, micro-batches, retries with new shares,
a peer's slice recomputed to settle a guard veto, the start-up probes,
healing, checkpoints, pre-emption) happens between two iterations of the
user's loop. The state that torch keeps per thread (autocast, grad mode) and
phalanx's sample keys (exact dropout) are carried over with each forward.

Why a thread and not a step-at-a-time API: a step may need several forwards
that only the engine can schedule (a retry after a member died, a recompute
of a vetoed slice), and every such path already exists, tested, in the one
step engine; a second engine written inside out would be a second place for
the fleet's promises to break.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch

from phalanx.errors import UsageError
from phalanx.exact import keys
from phalanx.runtime.preemption import Preemption


@dataclass(frozen=True)
class Forward:
    """One forward the engine asks for."""

    batch: Any
    keys: keys.SampleKeys | None  # stream positions of its rows (None: a start-up probe)
    grad: bool
    autocast_dtype: torch.dtype | None


class _Stopped(BaseException):
    """The user's loop ended before the run did (a `break`, an exception).

    A BaseException: code that falls back on `except Exception` (the start-up
    probes) must not swallow it and ask for another forward nobody will serve.
    """


class OwnLoop:
    """Iterate for the batches to forward; call `backward(loss)` after each one."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.summary: dict[str, Any] | None = None
        self._asks: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
        self._losses: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
        self._current: Forward | None = None
        self._started = False
        trainer.loss_fn = self._forward_in_user_thread
        # SIGTERM is caught by the main thread only: set the handler here, read it there.
        self._preemption = Preemption()

    # ---------------------------------------------------------- user's thread
    def __iter__(self) -> Iterator[Any]:
        if self._started:
            raise UsageError("iter(loop)", "was called twice", "iterate a prepared loop once")
        self._started = True
        self._preemption.install()
        engine = threading.Thread(target=self._engine, name="phalanx-engine", daemon=True)
        engine.start()
        try:
            while True:
                kind, payload = self._asks.get()
                if kind == "done":
                    self.summary = payload
                    return
                if kind == "error":
                    raise payload
                self._current = payload
                with _contexts(payload, self.trainer.device):
                    yield payload.batch
                if self._current is not None:  # the body did not call backward
                    self._stop_engine(engine)  # it waits for that loss: unwind it first
                    raise UsageError(
                        "loop body", "did not call loop.backward(loss)",
                        "end every iteration with loop.backward(loss)",
                    )  # fmt: skip
        except GeneratorExit:
            self._stop_engine(engine)  # the engine unwinds; the run is incomplete
            print(
                f"phalanx: the loop stopped at step {self.step} of {self.trainer.steps}; "
                f"checkpoints stay in {self.trainer.out_dir} and a new run there goes on "
                "from the newest",
                flush=True,
            )
            raise
        finally:
            engine.join(timeout=None if self.summary is not None else 60)

    def _stop_engine(self, engine: threading.Thread) -> None:
        """Tell the engine to unwind at its next wait for a loss.

        The last loss handed over may still be in the one-slot queue (a `break` right
        after `backward`): the engine takes it, computes, and asks again, and then it
        must find the stop. So wait for the slot while the engine lives; a dead engine
        needs no stop, and an ended one leaves the stop unread (harmless).
        """
        while engine.is_alive():
            with contextlib.suppress(queue.Full):
                self._losses.put(("stop", None), timeout=0.1)
                return

    def backward(self, loss: torch.Tensor) -> None:
        """Hand the forward's loss (mean over its samples) to phalanx, which weights it and
        runs the backward; the reduction and commit follow when the slice is done."""
        if self._current is None:
            raise UsageError(
                "loop.backward(loss)", "was called without a batch from the loop",
                "call it once per batch the loop yields",
            )  # fmt: skip
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise UsageError(
                "loop.backward(loss)", "needs a one-element tensor",
                "return the mean loss over the batch", type(loss).__name__,
            )  # fmt: skip
        self._current = None
        self._losses.put(("loss", loss))

    @property
    def step(self) -> int:
        """The step being computed (committed steps so far)."""
        return int(self.trainer.state.fleet.step)

    @property
    def positions(self) -> tuple[int, int] | None:
        """Stream positions [start, end) of the batch being forwarded (None: a probe)."""
        current = self._current
        if current is None or current.keys is None:
            return None
        first = int(current.keys.positions[0])
        return first, first + current.keys.positions.numel()

    # -------------------------------------------------------- engine's thread
    def _engine(self) -> None:
        try:
            summary = self.trainer.fit(preemption=self._preemption)
        except _Stopped:
            return
        except BaseException as err:  # SystemExit (pre-emption, profile) included
            self._asks.put(("error", err))
            return
        self._asks.put(("done", summary))

    def _forward_in_user_thread(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        autocast = None
        device_type = self.trainer.device.type
        if torch.is_autocast_enabled(device_type):
            autocast = torch.get_autocast_dtype(device_type)
        request = Forward(batch, keys.current(), torch.is_grad_enabled(), autocast)
        self._asks.put(("forward", request))
        kind, loss = self._losses.get()
        if kind == "stop":
            raise _Stopped()
        return loss


def _contexts(forward: Forward, device: torch.device) -> ExitStack:
    """The engine thread's per-thread state, recreated in the user's thread."""
    stack = ExitStack()
    stack.enter_context(torch.set_grad_enabled(forward.grad))
    if forward.autocast_dtype is not None:
        stack.enter_context(torch.autocast(device_type=device.type, dtype=forward.autocast_dtype))
    if forward.keys is not None:
        stack.enter_context(keys.published(forward.keys))
    return stack


def prepare(
    model: torch.nn.Module,
    optimizer: Any,
    dataset: Any,
    global_batch_size: int,
    steps: int,
    **options: Any,
) -> OwnLoop:
    """A loop over the batches of a fleet run; `options` are `Trainer`'s (no `loss_fn`)."""
    from phalanx.runtime.trainer import Trainer

    if "loss_fn" in options:
        raise UsageError(
            "prepare(loss_fn=...)", "is not taken: your loop computes the loss",
            "drop loss_fn, or use phalanx.Trainer with it",
        )  # fmt: skip
    trainer = Trainer(model, optimizer, dataset, _no_loss, global_batch_size, steps, **options)
    return OwnLoop(trainer)


def _no_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    raise AssertionError("replaced by OwnLoop")  # never called: OwnLoop sets loss_fn
