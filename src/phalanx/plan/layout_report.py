"""What `phalanx plan --emulate` prints: each replica's chips, ranks, memory and pace."""

from __future__ import annotations

from rich.table import Table

from phalanx.emulate.memory_size import describe_bytes
from phalanx.plan.layout import Layout


def layout_table(layout: Layout) -> Table:
    s = layout.ranks_per_group
    table = Table(title=f"layout for {layout.model.name}: {s} rank{'s' * (s > 1)} per replica")
    for column in ("replica", "chip", "speed", "memory", "ranks", "micro-batch", "holds",
                   "replica pace"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("replica", "chip") else "right")
    for i, replica in enumerate(layout.replicas):
        for j, placed in enumerate(replica.chips):
            need = placed.need_bytes(layout.model, s)
            table.add_row(
                f"r{i}" if j == 0 else "",
                placed.chip.id,
                f"{placed.chip.speed:g}",
                describe_bytes(placed.chip.memory_bytes),
                str(placed.ranks),
                str(placed.micro_batch),
                f"{describe_bytes(need)} ({need / placed.chip.memory_bytes:.0%})",
                f"{replica.speed(s):.2f}" if j == 0 else "",
            )
    return table


def layout_lines(layout: Layout) -> list[str]:
    """Why this layout, what it leaves out, and what it should reach."""
    m = layout.model
    s = layout.ranks_per_group
    lines = [
        f"model: state {describe_bytes(m.state_bytes)} (weights {describe_bytes(m.weight_bytes)}),"
        f" activations {describe_bytes(m.activation_bytes_per_sample)} per sample; "
        f"one rank of {s} holds {describe_bytes(m.rank_bytes(s))} with one sample "
        f"({m.describe_rank(s)})"
    ]
    if s > 1:
        lines.append(
            f"why {s} ranks: it is the split whose replicas compute fastest together; each "
            "chip hosts as many ranks as its memory allows, in proportion to its speed"
        )
    for chip, why in layout.left_out:
        lines.append(f"left out: {chip.id} ({describe_bytes(chip.memory_bytes)}): {why}")
    solo = sum(p.chip.speed for r in layout.replicas for p in r.chips) + sum(
        c.speed for c, _ in layout.left_out
    )
    rate = m.samples_per_s
    pace = f"{layout.speed:.2f} chip-speeds"
    if rate is not None:
        pace += f" = {layout.speed * rate:.1f} samples/s"
    lines.append(
        f"predicted: {pace}, {layout.speed / solo:.0%} of the chips' solo speeds together "
        f"({solo:.2f}, as if each held the model alone); traffic inside a group not counted"
    )
    return lines
