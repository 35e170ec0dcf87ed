"""plan.toml: a layout `phalanx plan --out` writes and `phalanx run --plan` runs as written.

    [plan.layout]
    ranks_per_group = 3                  # S: ranks (processes) of every replica
    [plan.model]                         # what the layout was sized for
    name = "mlp.py"
    state_bytes = 667136                 # weights, gradients, optimizer state
    weight_bytes = 166784                # what a rank of a group gathers
    activation_fixed_bytes = 0
    activation_bytes_per_sample = 1024
    global_batch = 32
    [[plan.replica]]
    chips = [{id = "c0", speed = 1.0, memory_bytes = 800000, ranks = 2},
             {id = "c1", speed = 1.0, memory_bytes = 400000, ranks = 1}]

The tables sit under `plan` so that the same file is a `phalanx run --config`
file (`plan` is run's flag; keys beside it, such as `script`, are run's other
flags and are not read here). A file of the first version, with `[layout]`,
`[model]` and `[[replica]]` at the top, still reads.

The chips are emulated (speeds relative to this host, memory that binds).
Reading checks what would make the run fail later, each as one line naming
the field: a replica whose ranks do not cover the model's S slices, a chip
in two replicas, a chip whose memory holds less than its ranks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phalanx.devices.toml_write import dumps_table
from phalanx.emulate.memory_size import describe_bytes
from phalanx.errors import UsageError
from phalanx.plan.fields import reject_unknown_keys, required_number, text
from phalanx.plan.layout import (
    MAX_RANKS,
    Chip,
    Layout,
    ModelNeeds,
    PlacedChip,
    Replica,
    hosted_ranks,
    micro_batch,
)
from phalanx.plan.loading import read_table_file

_MODEL_KEYS = (
    "name",
    "state_bytes",
    "weight_bytes",
    "activation_fixed_bytes",
    "activation_bytes_per_sample",
    "global_batch",
    "samples_per_s",
)
_CHIP_KEYS = ("id", "speed", "memory_bytes", "ranks", "micro_batch")


def layout_document(layout: Layout) -> dict[str, Any]:
    m = layout.model
    model: dict[str, Any] = {
        "name": m.name,
        "state_bytes": m.state_bytes,
        "weight_bytes": m.weight_bytes,
        "activation_fixed_bytes": m.activation_fixed_bytes,
        "activation_bytes_per_sample": m.activation_bytes_per_sample,
        "global_batch": m.global_batch,
    }
    if m.samples_per_s is not None:
        model["samples_per_s"] = round(m.samples_per_s, 3)
    replicas = [
        {
            "chips": [
                {
                    "id": p.chip.id,
                    "speed": p.chip.speed,
                    "memory_bytes": p.chip.memory_bytes,
                    "ranks": p.ranks,
                    "micro_batch": p.micro_batch,
                }
                for p in r.chips
            ]
        }
        for r in layout.replicas
    ]
    return {"layout": {"ranks_per_group": layout.ranks_per_group}, "model": model,
            "replica": replicas}  # fmt: skip


def layout_toml(layout: Layout) -> str:
    """The layout as `[plan.*]` tables: the tail of a file `run --config` and `run --plan` read."""
    doc = layout_document(layout)
    parts = [dumps_table("plan.layout", doc["layout"]), dumps_table("plan.model", doc["model"])]
    parts += [dumps_table("plan.replica", r, array=True) for r in doc["replica"]]
    return "\n".join(parts)


def write_layout(path: Path, layout: Layout) -> None:
    head = (
        f"# phalanx layout: {len(layout.replicas)} replicas of {layout.model.name} on emulated "
        f"chips.\n# Run it: phalanx run --plan {path.name} SCRIPT\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + layout_toml(layout), encoding="utf-8")


def _int(table: dict[str, Any], key: str, where: str, least: int) -> int:
    return int(required_number(table, key, where, min_value=least, integer=True))


def _model(data: dict[str, Any]) -> ModelNeeds:
    table = data.get("model")
    if not isinstance(table, dict):
        raise UsageError("plan.model", "is missing", "write the plan with `phalanx plan --out`")
    reject_unknown_keys(table, _MODEL_KEYS, "plan.model")
    rate = table.get("samples_per_s")
    return ModelNeeds(
        name=text(table, "name", "plan.model", default="model"),
        state_bytes=_int(table, "state_bytes", "plan.model", 1),
        weight_bytes=_int(table, "weight_bytes", "plan.model", 0),
        activation_fixed_bytes=_int(table, "activation_fixed_bytes", "plan.model", 0),
        activation_bytes_per_sample=_int(table, "activation_bytes_per_sample", "plan.model", 0),
        global_batch=_int(table, "global_batch", "plan.model", 1),
        samples_per_s=None if rate is None else required_number(table, "samples_per_s",
                                                                "plan.model", min_value=0),
    )  # fmt: skip


def _chip(table: Any, where: str, model: ModelNeeds, ranks_per_group: int) -> PlacedChip:
    if not isinstance(table, dict):
        raise UsageError(where, "must be a table", "write {id = ..., speed = ..., ranks = ...}")
    reject_unknown_keys(table, _CHIP_KEYS, where)
    chip = Chip(
        id=text(table, "id", where),
        speed=required_number(table, "speed", where, min_value=0, min_inclusive=False),
        memory_bytes=_int(table, "memory_bytes", where, 1),
    )
    ranks = _int(table, "ranks", where, 1)
    return PlacedChip(chip, ranks, micro_batch(chip, ranks, model, ranks_per_group))


def _check_memory(placed: PlacedChip, where: str, model: ModelNeeds, ranks_per_group: int) -> None:
    """A chip must hold its ranks with one sample each (the smallest piece it can run)."""
    if placed.ranks <= hosted_ranks(placed.chip, model, ranks_per_group):
        return
    need = placed.ranks * model.rank_bytes(ranks_per_group, 1)
    who = "one rank needs" if placed.ranks == 1 else f"its {placed.ranks} ranks need (each"
    raise UsageError(
        f"{where}.memory_bytes",
        f"chip {placed.chip.id} has {describe_bytes(placed.chip.memory_bytes)}, less than "
        f"{who} {describe_bytes(need / placed.ranks)}: {model.describe_rank(ranks_per_group)}"
        + (")" if placed.ranks > 1 else ""),
        "give it fewer ranks (another chip of its replica more), more memory, or plan again "
        "with `phalanx plan --out`",
        placed.chip.memory_bytes,
    )


def read_layout(path: str | Path) -> Layout:
    """Parse and check plan.toml; every problem is one UsageError naming its field."""
    data = read_table_file(path, "--plan")
    if isinstance(data.get("plan"), dict):
        data = data["plan"]  # the keys beside [plan] are `phalanx run --config`'s, not ours
    reject_unknown_keys(data, ("layout", "model", "replica"), "plan")
    head = data.get("layout")
    if not isinstance(head, dict):
        raise UsageError("plan.layout", "is missing", "write the plan with `phalanx plan --out`")
    reject_unknown_keys(head, ("ranks_per_group",), "plan.layout")
    ranks_per_group = int(
        required_number(head, "ranks_per_group", "plan.layout", min_value=1,
                        max_value=MAX_RANKS, integer=True)
    )  # fmt: skip
    model = _model(data)
    tables = data.get("replica")
    if not isinstance(tables, list) or not tables:
        raise UsageError("plan.replica", "has no replica", "add [[replica]] tables with chips")
    replicas: list[Replica] = []
    seen: dict[str, str] = {}
    for i, table in enumerate(tables):
        where = f"plan.replica[{i}]"
        if not isinstance(table, dict) or not isinstance(table.get("chips"), list):
            raise UsageError(f"{where}.chips", "is missing", "list the replica's chips")
        reject_unknown_keys(table, ("chips",), where)
        placed = [
            _chip(t, f"{where}.chips[{j}]", model, ranks_per_group)
            for j, t in enumerate(table["chips"])
        ]
        if not placed:
            raise UsageError(f"{where}.chips", "is empty", "list the replica's chips")
        for j, p in enumerate(placed):
            if p.chip.id in seen:
                raise UsageError(
                    f"{where}.chips[{j}].id",
                    f"chip {p.chip.id} is also in {seen[p.chip.id]}: a chip trains in one replica",
                    "list each chip once",
                    p.chip.id,
                )
            seen[p.chip.id] = where
        covered = sum(p.ranks for p in placed)
        if covered != ranks_per_group:
            raise UsageError(
                f"{where}.chips",
                f"the chips' ranks add up to {covered}, but every replica holds the model in "
                f"ranks_per_group = {ranks_per_group} slices: "
                + ("some slices would have no chip" if covered < ranks_per_group
                   else "there are more ranks than slices"),
                f"give the replica's chips {ranks_per_group} ranks in all",
                covered,
            )  # fmt: skip
        for j, p in enumerate(placed):
            _check_memory(p, f"{where}.chips[{j}]", model, ranks_per_group)
        replicas.append(Replica(tuple(placed)))
    return Layout(model, ranks_per_group, tuple(replicas), ())
