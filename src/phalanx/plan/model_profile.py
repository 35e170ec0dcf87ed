"""The model profile: what one replica of the model costs in memory, FLOPs and bytes.

A profile file (TOML or JSON) holds its keys at the top level or in a
`[model]` table. Example (examples/models/gpt_1b.toml):

    name = "gpt-1.3b"
    params = 1.3e9
    bytes_per_param = 16             # bf16 weights + fp32 master + Adam moments
    grad_bytes_per_param = 2         # what the allreduce moves per parameter
    activation_bytes_per_sample = 1.5e9
    flops_per_sample = 1.6e13        # forward + backward, ~6 * params * tokens
    global_batch = 32768             # samples per optimizer step
    train_samples = 2.5e9            # optional: the simulator's target
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx.plan.fields import number, number_or, reject_unknown_keys, required_number, text
from phalanx.plan.loading import read_table_file

_KEYS = (
    "name",
    "params",
    "bytes_per_param",
    "grad_bytes_per_param",
    "activation_bytes_per_sample",
    "flops_per_sample",
    "global_batch",
    "train_samples",
)


@dataclass(frozen=True)
class ModelProfile:
    name: str
    params: float
    bytes_per_param: float
    grad_bytes_per_param: float
    activation_bytes_per_sample: float
    flops_per_sample: float | None
    global_batch: int
    train_samples: float | None = None

    @property
    def state_bytes(self) -> float:
        """Weights, gradients and optimizer state of one full replica."""
        return self.params * self.bytes_per_param

    @property
    def grad_bytes(self) -> float:
        """Bytes every step's allreduce carries."""
        return self.params * self.grad_bytes_per_param

    def replica_bytes(self, micro_batch: int = 1) -> float:
        """Memory one device needs to hold a replica and run `micro_batch` samples."""
        return self.state_bytes + micro_batch * self.activation_bytes_per_sample


def parse_model(data: dict[str, Any], where: str = "model") -> ModelProfile:
    table = data.get("model", data) if isinstance(data.get("model"), dict) else data
    # Sub-tables that are not ours (e.g. [meta]) are ignored; unknown keys are not.
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    reject_unknown_keys(scalars, _KEYS, where)
    pos: dict[str, Any] = {"min_value": 0, "min_inclusive": False}
    return ModelProfile(
        name=text(table, "name", where, default="model"),
        params=required_number(table, "params", where, min_value=1),
        bytes_per_param=number_or(table, "bytes_per_param", where, 16.0, **pos),
        grad_bytes_per_param=number_or(table, "grad_bytes_per_param", where, 4.0, **pos),
        activation_bytes_per_sample=required_number(
            table, "activation_bytes_per_sample", where, min_value=0
        ),
        flops_per_sample=number(table, "flops_per_sample", where, **pos),
        global_batch=int(required_number(table, "global_batch", where, min_value=1, integer=True)),
        train_samples=number(table, "train_samples", where, min_value=1),
    )


def load_model(path: str | Path) -> ModelProfile:
    return parse_model(read_table_file(path, "--model"), where="model")
