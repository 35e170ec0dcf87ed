"""Everything a replica must hold to continue training, as one object.

The same state travels three ways: to a healing peer (torchft's in-memory
transport), into a durable checkpoint (safetensors + JSON, no pickle), and
back. The fleet part (shares and throughput estimates) is replicated: every
participant updates it identically from the committed step's allreduce.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class FleetState:
    step: int = 0  # next step to run == number of committed steps
    throughput_sps: dict[str, float] = field(default_factory=dict)
    shares: dict[str, int] = field(default_factory=dict)  # shares of the last committed step
    sps_history: dict[str, list[float]] = field(default_factory=dict)  # recent measurements
    timings: dict[str, list[list[float]]] = field(default_factory=dict)  # recent (samples, seconds)
    costs: dict[str, list[float]] = field(default_factory=dict)  # fitted (fixed_s, per_sample_s)
    derates: dict[str, float] = field(default_factory=dict)  # thermal guard cuts (< 1 only)
    # Norms of the last committed global gradients: the guard's one reference for every slice.
    grad_norms: list[float] = field(default_factory=list)
    # fp16-mixed: the fleet's loss scale (None: not started yet) and steps since it changed.
    loss_scale: float | None = None
    scale_good_steps: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "throughput_sps": self.throughput_sps,
            "shares": self.shares,
            "sps_history": self.sps_history,
            "timings": self.timings,
            "costs": self.costs,
            "derates": self.derates,
            "grad_norms": self.grad_norms,
            "loss_scale": self.loss_scale,
            "scale_good_steps": self.scale_good_steps,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FleetState:
        return cls(
            step=int(data["step"]),
            throughput_sps={k: float(v) for k, v in data["throughput_sps"].items()},
            shares={k: int(v) for k, v in data["shares"].items()},
            sps_history={k: [float(x) for x in v] for k, v in data.get("sps_history", {}).items()},
            timings={
                k: [[float(a), float(b)] for a, b in v] for k, v in data.get("timings", {}).items()
            },
            costs={k: [float(x) for x in v] for k, v in data.get("costs", {}).items()},
            derates={k: float(v) for k, v in data.get("derates", {}).items()},
            grad_norms=[float(v) for v in data.get("grad_norms", [])],
            loss_scale=None if data.get("loss_scale") is None else float(data["loss_scale"]),
            scale_good_steps=int(data.get("scale_good_steps", 0)),
        )


# How long a healing peer's request waits for this replica to finish applying a step.
STABLE_WAIT_S = 300.0


@dataclass
class TrainState:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any | None
    fleet: FleetState = field(default_factory=FleetState)
    # A rank of a replica group: it holds and serves its shard only (groups/sharding.py);
    # it heals from the same rank of a peer group.
    sharded: bool = False
    # Of a group's ranks, the one that writes what they gathered (checkpoints).
    writes_for_group: bool = True
    # More state that travels with the rest (heals, checkpoints): name -> an object with
    # state_dict()/load_state_dict(). A sites run's SiteState (sites/site_state.py).
    extra: dict[str, Any] = field(default_factory=dict)
    # Clear while a committed step is being applied. The next quorum is requested
    # before that (runtime/sync_fleet.py), so a peer may ask to heal from this state
    # mid-update: it waits for the update to finish.
    _stable: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._stable.set()

    @contextmanager
    def updating(self) -> Iterator[None]:
        self._stable.clear()
        try:
            yield
        finally:
            self._stable.set()

    def state_dict(self) -> dict[str, Any]:
        """The state for a healing peer or a checkpoint: parameters by reference, buffers copied.

        torchft asks for it only when a peer heals from this replica, at the
        quorum, and serves it until this replica's next commit vote, which waits
        for the healing peer's vote, cast only after it has loaded the state.
        Parameters and optimizer state change only when a step is applied, after
        that vote: they are served by reference, so a 300M-parameter model is
        never held twice. Buffers (BatchNorm's running statistics) change during
        the forward of the very step being served: they are copied, as are the
        non-tensor parts (the fleet state, scheduler counters).
        """
        if not self._stable.wait(STABLE_WAIT_S):
            raise TimeoutError("this replica's state stayed mid-update; it cannot serve a heal")
        if self.sharded:
            from phalanx.groups.sharding import local_state

            return {
                "shard": local_state(list(self.model.parameters()), self.optimizer),
                "buffers": {k: v.detach().clone() for k, v in self.model.named_buffers()},
                "scheduler": copy.deepcopy(self.scheduler.state_dict())
                if self.scheduler is not None
                else None,
                "fleet": copy.deepcopy(self.fleet.to_json()),
            }
        parameters = {id(p) for p in self.model.parameters()}
        model = {
            key: value if id(value) in parameters else value.detach().clone()
            for key, value in self.model.state_dict(keep_vars=True).items()
        }
        return {
            "model": {key: value.detach() for key, value in model.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": copy.deepcopy(self.scheduler.state_dict())
            if self.scheduler is not None
            else None,
            "fleet": copy.deepcopy(self.fleet.to_json()),
            **self.extra_state(),
        }

    def extra_state(self) -> dict[str, Any]:
        """The `extra` parts' states (copies: they change between steps, at outer rounds)."""
        if not self.extra:
            return {}
        return {"extra": {name: part.state_dict() for name, part in self.extra.items()}}

    def load_extra(self, state: dict[str, Any]) -> None:
        """Load the `extra` parts; a state without them (an older checkpoint) is refused."""
        for name, part in self.extra.items():
            stored = state.get("extra", {}).get(name)
            if stored is None:
                raise ValueError(f"the state holds no {name!r} part, which this run needs")
            part.load_state_dict(stored)

    def whole_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The model's tensors and optimizer state as an unsharded replica holds them.

        A rank of a group gathers its group's slices (a collective: every rank of
        the group calls it), so a checkpoint is one state whatever the grouping.
        """
        if self.sharded:
            from phalanx.groups.sharding import full_optimizer_state, full_state_dict

            return full_state_dict(self.model), full_optimizer_state(self.optimizer)
        return self.model.state_dict(), self.optimizer.state_dict()

    def load_whole(self, model: dict[str, torch.Tensor], optimizer: dict[str, Any]) -> None:
        """The inverse of `whole_tensors`: a rank of a group keeps its slices of them."""
        if self.sharded:
            from phalanx.groups.sharding import load_full_state

            load_full_state(self.model, self.optimizer, model, optimizer)
            return
        with torch.no_grad():
            self.model.load_state_dict(model)
        self.optimizer.load_state_dict(optimizer)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "shard" in state:
            from phalanx.groups.sharding import load_local_state

            load_local_state(list(self.model.parameters()), self.optimizer, state["shard"])
            with torch.no_grad():
                for name, buffer in self.model.named_buffers():
                    buffer.copy_(state["buffers"][name])
        else:
            with torch.no_grad():
                self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.fleet = FleetState.from_json(state["fleet"])
        self.load_extra(state)
