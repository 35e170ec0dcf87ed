"""plan.toml (plan/layout_file.py): written, read back, and every bad plan one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.errors import UsageError
from phalanx.plan.layout import Chip, ModelNeeds, plan_layout
from phalanx.plan.layout_file import read_layout, write_layout

MLP = ModelNeeds("mlp", 667_680, 166_920, 0, 3_344, 48, 1000.0)
FLEET = [Chip("c0", 1, 800_000), *[Chip(f"c{i}", 1, 400_000) for i in range(1, 5)]]


@pytest.fixture
def plan_text(tmp_path: Path) -> str:
    path = tmp_path / "plan.toml"
    write_layout(path, plan_layout(FLEET, MLP))
    return path.read_text()


def test_a_written_plan_reads_back_as_the_same_layout(tmp_path: Path):
    layout = plan_layout(FLEET, MLP)
    path = tmp_path / "plan.toml"
    write_layout(path, layout)
    again = read_layout(path)
    assert again.ranks_per_group == layout.ranks_per_group
    assert again.model == layout.model
    assert [[(p.chip, p.ranks) for p in r.chips] for r in again.replicas] == [
        [(p.chip, p.ranks) for p in r.chips] for r in layout.replicas
    ]


# (what the user broke, the field named, words of the problem)
BROKEN = {
    "ranks_short": ("ranks = 2, micro_batch", "plan.replica[0].chips", "some slices would have no chip"),
    "chip_twice": ('id = "c4"', "plan.replica[1].chips[0].id", "also in plan.replica[0]"),
    "cap_too_small": ("memory_bytes = 400000, ranks = 1, micro_batch = 3 }]", "plan.replica[0].chips[1].memory_bytes", "less than one rank needs"),
}  # fmt: skip


def _break(text: str, case: str) -> str:
    if case == "ranks_short":  # the 800 KB chip's two ranks become one
        return text.replace("ranks = 2,", "ranks = 1,", 1)
    if case == "chip_twice":  # the second replica's first chip is the first replica's
        return text.replace('id = "c1"', 'id = "c4"', 1)
    # the first replica's small chip shrinks below one rank's need
    return text.replace("memory_bytes = 400000, ranks = 1", "memory_bytes = 300000, ranks = 1", 1)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_plan_names_the_field(tmp_path: Path, plan_text: str, case: str):
    path = tmp_path / "bad.toml"
    path.write_text(_break(plan_text, case))
    with pytest.raises(UsageError) as err:
        read_layout(path)
    _, field, words = BROKEN[case]
    assert err.value.field == field and words in err.value.problem


def test_phalanx_run_refuses_a_broken_plan_in_one_line_exit_2(tmp_path: Path, plan_text: str):
    path = tmp_path / "bad.toml"
    path.write_text(_break(plan_text, "ranks_short"))
    script = Path(__file__).parents[2] / "examples" / "mlp.py"
    done = subprocess.run(
        [sys.executable, "-m", "phalanx", "run", str(script), "--plan", str(path),
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: plan.replica[0].chips:"), done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


def test_a_plan_of_the_first_version_still_reads(tmp_path: Path):
    # [layout], [model] and [[replica]] at the top, before they moved under [plan] (run.toml).
    from phalanx.devices.toml_write import dumps
    from phalanx.plan.layout_file import layout_document

    layout = plan_layout(FLEET, MLP)
    path = tmp_path / "old.toml"
    path.write_text(dumps(layout_document(layout)))
    again = read_layout(path)
    assert (again.ranks_per_group, again.model) == (layout.ranks_per_group, layout.model)
