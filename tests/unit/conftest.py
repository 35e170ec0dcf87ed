from typing import Any

import pytest
import typer


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """`phalanx plan` and `phalanx simulate` as one CLI app (each registered by its folder)."""
    from phalanx.plan.cli import register
    from phalanx.sim.cli import register as register_simulate

    a = typer.Typer()
    register(a)
    register_simulate(a)
    return a


@pytest.fixture(scope="module")
def run_cmd() -> Any:
    """The click command of `phalanx run`, as the CLI builds it: its --config parser included."""
    from phalanx.launch.cli import register

    a = typer.Typer()
    register(a)
    return typer.main.get_command(a).commands["run"]  # type: ignore[attr-defined]
