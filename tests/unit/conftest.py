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
