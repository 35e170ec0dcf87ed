"""One rank's part of a replica group: the model sharded inside the group (FSDP2).

A replica group (docs/groups.md) runs S ranks; every rank holds 1/S of the
weights, gradients and optimizer state, and gathers one unit's weights at a
time for forward and backward. Rank j of every group holds the same slice, so
torchft can replicate the groups rank by rank. This module owns everything
phalanx does with FSDP2: which modules become units, that gradients are
summed (not averaged) inside the group, and the rank's state as plain local
tensors for healing and checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed import ProcessGroup
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

# A module with more than this share of the model's parameters is split into its
# children: a unit is gathered whole, so the largest unit bounds a rank's peak.
UNIT_SHARE = 1 / 8


def shard_units(model: torch.nn.Module, share: float = UNIT_SHARE) -> list[torch.nn.Module]:
    """The modules sharded as units, innermost first (the root is not among them).

    Top down: a module holding at most `share` of the parameters is one unit;
    a larger one is split into its children (its own direct parameters stay
    with the root). Leaves are units whatever their size: a parameter is never
    split across units.
    """
    total = _count(model)
    units: list[torch.nn.Module] = []

    def visit(module: torch.nn.Module) -> None:
        for child in module.children():
            count = _count(child)
            if count == 0:
                continue
            if count <= share * total or not any(True for _ in child.children()):
                units.append(child)
            else:
                visit(child)

    visit(model)
    return units


def shard_model(model: torch.nn.Module, group: ProcessGroup, device_type: str = "cpu") -> None:
    """Shard `model` in place over `group` (every rank calls this on the same model).

    Its parameters become DTensors; build the optimizer after this. Gradients
    are summed over the group: phalanx's losses are weighted by each
    micro-batch's share of the global batch, so the sum is the group's gradient.
    """
    mesh = DeviceMesh.from_group(group, device_type)
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for module in model.modules():
        # phalanx's weighted losses need the group's gradient summed, not averaged. A plain
        # SUM too: for float32 and bfloat16 FSDP2 would otherwise reduce with
        # PREMUL_SUM(1 / factor), which gloo does not implement.
        if hasattr(module, "set_gradient_divide_factor"):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's slice of a sharded tensor (the tensor itself if not sharded)."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def local_state(
    params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """This rank's weights and optimizer state as plain tensors, in `params` order.

    The same rank of another group has the same shapes: it can load them
    (torchft's per-rank healing) without knowing about DTensors.
    """
    states = {}
    for index, param in enumerate(params):
        if param in optimizer.state:
            states[index] = {k: local_tensor(v) for k, v in optimizer.state[param].items()}
    return {"params": [local_tensor(p.detach()) for p in params], "optimizer": states}


def load_local_state(
    params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """The inverse of `local_state`, into a rank of the same layout (a healing group)."""
    if len(state["params"]) != len(params):
        raise ValueError(
            f"a rank state of {len(state['params'])} parameters cannot load into {len(params)}"
        )
    with torch.no_grad():
        for param, saved in zip(params, state["params"]):
            local_tensor(param).copy_(saved)
    optimizer.state.clear()
    for index, saved_state in state["optimizer"].items():
        param = params[int(index)]
        optimizer.state[param] = {key: _like(param, value) for key, value in saved_state.items()}


def _like(param: torch.Tensor, value: Any) -> Any:
    """An optimizer state entry shaped as `param` (a moment) or kept as is (a step count).

    An uneven shard's global shape cannot be inferred from the local one, so it
    is spelled out.
    """
    if not isinstance(param, DTensor) or not torch.is_tensor(value) or value.dim() == 0:
        return value.clone() if torch.is_tensor(value) else value
    return DTensor.from_local(
        value.clone(), param.device_mesh, param.placements, shape=param.shape,
        stride=param.stride(),
    )  # fmt: skip


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's tensors on every rank (a collective: all ranks call it)."""
    return {
        name: value.full_tensor() if isinstance(value, DTensor) else value
        for name, value in model.state_dict().items()
    }


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """`optimizer.state_dict()` with every sharded tensor gathered whole: the state of an
    unsharded replica, whatever the grouping (a collective: every rank calls it)."""
    packed = optimizer.state_dict()
    state = {}
    for index in sorted(packed["state"]):  # the same order on every rank
        entry = packed["state"][index]  # the optimizer's own dict: copied, never changed
        state[index] = {
            key: entry[key].full_tensor() if isinstance(entry[key], DTensor) else entry[key]
            for key in sorted(entry)
        }
    return {"state": state, "param_groups": packed["param_groups"]}


def load_full_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    model_tensors: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
) -> None:
    """Load an unsharded replica's state (a checkpoint) into this rank: its slices only.

    Each rank cuts its own slice from the whole tensors (no collective), so a
    checkpoint written under any grouping, or by a replica alone, loads here.
    """
    with torch.no_grad():
        for name, value in model.state_dict().items():
            whole = model_tensors[name]
            if isinstance(value, DTensor):
                local_tensor(value).copy_(_slice_like(whole, value).to_local())
            else:
                value.copy_(whole)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {}
    for index, entry in optimizer_state["state"].items():
        param = params[int(index)]
        state[index] = {
            key: _slice_like(value, param)
            if isinstance(param, DTensor) and torch.is_tensor(value) and value.dim() > 0
            else value
            for key, value in entry.items()
        }
    optimizer.load_state_dict({"state": state, "param_groups": optimizer_state["param_groups"]})


def _slice_like(whole: torch.Tensor, like: DTensor) -> DTensor:
    """`whole` sharded as `like` is, each rank keeping its own slice (nothing is sent)."""
    return distribute_tensor(
        whole.to(like.dtype), like.device_mesh, like.placements, src_data_rank=None
    )


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def local_numel(tensor: torch.Tensor) -> int:
    """Elements this rank holds of `tensor` (all of them if it is not sharded)."""
    return local_tensor(tensor).numel()


def grad_view(param: torch.Tensor, storage: torch.Tensor) -> torch.Tensor:
    """A gradient for `param` over `storage` (this rank's elements, flat).

    FSDP2 adds each reduce-scattered gradient into the sharded parameter's
    `.grad` in place when it is a DTensor: over a view of the step engine's
    bucket, that is where the group's sum lands (runtime/grad_buffer.py).
    """
    if not isinstance(param, DTensor):
        return storage.view_as(param)
    local = storage.view(param.to_local().shape)
    return DTensor.from_local(
        local, param.device_mesh, param.placements, shape=param.shape, stride=param.stride(),
        run_check=False,
    )  # fmt: skip
